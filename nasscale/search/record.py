"""Every key a study and its trials are recorded under, in one place: the trial user attributes the search
writes and the report, ``best``, ``scale`` and ``rerun`` read; the study attributes (config, space,
objectives, the scaling ladder); and Optuna's own system attribute names for retries.
"""

from __future__ import annotations

# Trial attributes: the study is the single record of a search, so each trial keeps all of these.
ATTR_ARCH = "arch"
ATTR_ARCH_ID = "arch_id"
ATTR_SUMMARY = "summary"
ATTR_MACS = "macs"
ATTR_PARAMS = "params"
ATTR_ACCURACY = "accuracy"
ATTR_HISTORY = "history"
ATTR_SEED = "seed"
ATTR_INFEASIBLE = "infeasible"
ATTR_FAIL_REASON = "fail_reason"
ATTR_TIMINGS = "timings"
ATTR_TRAINED = "trained"  # holds one of the study's --trials slots: trained, or scored by a zero-cost evaluator
ATTR_LATENCY = "latency_ms"  # milliseconds per batch-1 forward pass
ATTR_LATENCY_SOURCE = "latency_source"  # LATENCY_FROM_TABLE or LATENCY_MEASURED
ATTR_TRAIN_TIME = "train_time_ms"  # milliseconds per image of one SGD training step (measured, fresh build)
ATTR_TRAIN_TIME_SETUP = "train_time_setup"  # what it was measured with: resolution, batch_size, threads, device
ATTR_EVALUATOR = "evaluator"  # SearchConfig.evaluator: what the accuracy attribute holds
ATTR_PREFILTER = "prefilter"  # the scored candidates of --prefilter and which one trained
ATTR_DUPLICATE_OF = "duplicate_of"  # the trial that evaluated this one's architecture: not trained again
ATTR_RUNGS = "rungs"  # MO-ASHA: {"EPOCH": {"values": [...], "promoted": bool}} per rung reached
ATTR_EPOCHS_TRAINED = "epochs_trained"  # epochs a trained trial ran (fewer than --epochs when stopped early)

LATENCY_FROM_TABLE = "table"
LATENCY_MEASURED = "measured"

# Trial attributes of distributed runs.
ATTR_SKIPPED = "skipped"  # sampled while the last slot was taken: not trained
ATTR_RETRIED_FROM = "retried_from"  # the killed or interrupted trial this one repeats
ATTR_INTERRUPTED = "interrupted"
ATTR_WORKER = "worker"  # host:pid of the process that trained it
ATTR_STARTED_AT = "started_at"  # wall-clock seconds (Unix time) when training started, and ended
ATTR_FINISHED_AT = "finished_at"
ATTR_PROXY_SETTINGS = "proxy_settings"  # the settings it was trained with, for `nasscale rerun`
# Optuna's own names for a retry's origin (RetryHeartbeatStaleTrialCallback reads them).
SYSTEM_ATTR_FAILED_TRIAL = "failed_trial"
SYSTEM_ATTR_RETRY_HISTORY = "retry_history"
SYSTEM_ATTR_HEARTBEAT = "nasscale_heartbeat"

# Study user attributes: the search's settings, space and objectives (so the study explains itself), and the
# latest ladder's rows (what nasscale.report.data draws) with the rest of its record.
STUDY_ATTR_CONFIG = "nasscale_config"
STUDY_ATTR_SPACE = "nasscale_space"
STUDY_ATTR_OBJECTIVES = "nasscale_objectives"
# The protocol: where the study's accuracies come from (nasscale.evaluate.data.split_record), and the one
# resolution its architectures are trained, evaluated and costed at. A study without them predates the protocol.
STUDY_ATTR_SPLITS = "nasscale_splits"
STUDY_ATTR_RESOLUTION = "nasscale_deployment_resolution"
LADDER_ATTR = "nasscale_ladder"
LADDER_META_ATTR = "nasscale_ladder_meta"
LADDER_FORMAT = 1
