"""One search trial, whichever backend runs it: sample an architecture, check the budgets, evaluate it (proxy
training, or a zero-cost proxy's score) and record everything a study needs to rebuild the model.

The flow per trial: sample(space, chooser) -> Arch -> assess (cost, latency, budget checks) -> [prefilter]
-> train (or score). An over-budget sample stops at the assessment: with a latency table it is never built;
without one it is built and timed (batch 1, fastest of --latency-repeats runs), never trained.

Latency, when the search needs it (an objective, --max-latency, or the reward's --target-latency), is the
table's prediction (``latency_source`` "table") or the measurement ("measured"); a table's prediction is
recorded whenever a table is given. ``--prefilter NAME:K`` scores the trial's sample and K - 1 random
candidates within the budgets (drawn from a chooser seeded by the trial's seed, so a retry draws the same)
and trains the best-scored one: that one is the trial's ``arch``, the one best, export, scale and rerun read.
The Optuna parameters stay those of the sample, so a sampler learns from a value that may belong to a
candidate (a known approximation: it then credits the sampled region with its best neighbour's result).
Training time (``--objectives accuracy,train_time`` or ``--max-train-ms``) is measured after latency, on a fresh
build (never the model that then trains): milliseconds per image of one SGD step at the architecture's deployed
resolution and the proxy batch size, once per architecture (cached in the process, and taken from the study's
record of the same architecture when a trial repeats one). An over-budget sample stops there, untrained.
Measured latencies assume the trial has the machine to itself: with several workers on one machine, prefer a
table (or measure on idle hardware), since concurrent trials slow each other's timings.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from nasscale.errors import NasscaleError
from nasscale.evaluate.benchmark_table import load_table
from nasscale.evaluate.data import load_splits, native_resolution, split_record
from nasscale.evaluate.latency_table import (
    latency_range,
    load_latency_table,
    predict_latency,
    require_listed_stages,
    space_parts,
)
from nasscale.evaluate.proxy_validation import proxy_batch
from nasscale.evaluate.settings import check_device
from nasscale.search.config import SearchConfig
from nasscale.search.record import (
    ATTR_ACCURACY,
    ATTR_ARCH,
    ATTR_ARCH_ID,
    ATTR_HISTORY,
    ATTR_LATENCY,
    ATTR_LATENCY_SOURCE,
    ATTR_MACS,
    ATTR_PARAMS,
    ATTR_SUMMARY,
    ATTR_TIMINGS,
    ATTR_TRAIN_TIME,
    ATTR_TRAIN_TIME_SETUP,
    LATENCY_FROM_TABLE,
    LATENCY_MEASURED,
)
from nasscale.space.deployment import at_resolution
from nasscale.space.domains import distinct_integer_values
from nasscale.space.extent import mac_range, space_size
from nasscale.space.parsing import load_space
from nasscale.space.sampling import RandomChooser, sample
from nasscale.spec.arch import Arch, to_dict
from nasscale.spec.cost import Cost, cost
from nasscale.spec.serialization import summary
from nasscale.units import format_count

logger = logging.getLogger(__name__)
MEASURE_WARMUP = 3
TRAIN_STEP_REPEATS = 5  # timed SGD steps per measured training time (the fastest counts), after
TRAIN_STEP_WARMUP = 2  # these untimed ones
PROXY_BATCH_SIZE = 64  # images in the zero-cost proxies' batch, as `nasscale proxies` scores them
MAX_DRAWS_PER_CANDIDATE = 50  # prefilter draws per wanted candidate before it makes do with fewer
TEST_ACCURACY = "test_accuracy"  # final evaluation's number: never a trial attribute, never chosen on


class SearchError(NasscaleError):
    """The search cannot start or go on (e.g. a budget that no architecture of the space meets)."""


class ScoreFailed(NasscaleError):
    """A zero-cost proxy gave no finite score: the trial fails, the study goes on."""


class Progress(Protocol):
    """What the CLI shows while a search runs; the library reports, the CLI renders."""

    def trial_started(self, number: int, arch: Arch, trial_cost: Cost) -> None: ...
    def epoch_finished(self, number: int, epoch: int, epochs: int, accuracy: float) -> None: ...
    def trial_finished(self, number: int, state: str, values: list[float] | None) -> None: ...


class SilentProgress:
    def trial_started(self, number: int, arch: Arch, trial_cost: Cost) -> None:
        pass

    def epoch_finished(self, number: int, epoch: int, epochs: int, accuracy: float) -> None:
        pass

    def trial_finished(self, number: int, state: str, values: list[float] | None) -> None:
        pass


@dataclass(frozen=True, slots=True)
class SearchContext:
    """Everything loaded once per search run and shared by its trials."""

    config: SearchConfig
    space: Any  # nasscale.space.SearchSpace
    train: Any  # nasscale.evaluate.data.Dataset
    validation: Any
    in_channels: int
    num_classes: int
    latency_table: Any = None  # nasscale.latency_table.LatencyTable of --latency-table
    proxy_batch: Any = None  # (images, labels) the zero-cost proxies score on, when the search uses one
    resolution: int | None = None  # the deployment resolution ``space`` was mapped onto
    splits: dict[str, Any] | None = None  # nasscale.evaluate.data.split_record: where the accuracies come from
    benchmark: Any = None  # nasscale.evaluate.benchmark_table.BenchmarkTable of --evaluator bench:FILE

    def training_resolution(self, arch: Arch) -> int:
        return self.config.training_resolution(arch.resolution, self.resolution or arch.resolution)


def prepare_context(config: SearchConfig) -> SearchContext:
    """Load the space, the data and the latency table (clear errors for each) and check every budget is reachable
    at all, so that a search that cannot work fails before its first trial."""
    check_proxy_names(config)
    check_device(config.device)
    train, validation = load_search_splits(config)
    resolution = config.resolution or native_resolution(train)
    space = at_resolution(load_space(config.space), resolution)
    size = space_size(space)
    if size < config.trials:  # no trial evaluates an architecture twice (nasscale.search.backends.optuna_backend)
        raise SearchError(f"space {config.space!r} holds {size} distinct architectures, fewer than --trials "
                          f"{config.trials}; every trial evaluates a new one: lower --trials to at most {size}")
    if config.max_macs is not None:
        smallest, _ = mac_range(space, in_channels=train.in_channels, num_classes=train.num_classes)
        if smallest > config.max_macs:
            raise SearchError(f"--max-macs {format_count(config.max_macs)} is below the smallest architecture of "
                              f"space {config.space!r} ({format_count(smallest)} MACs); raise the budget or use a "
                              "smaller space")
    table = load_search_table(config, space, train.in_channels, train.num_classes)
    batch = None
    if config.zero_cost_proxy is not None or config.prefilter is not None:
        proxy_size = config.training_resolution(resolution, resolution)
        batch = proxy_batch(train, PROXY_BATCH_SIZE, resolution=proxy_size, seed=config.seed)
    splits = split_record(config.data, train, validation, validation_fraction=config.validation_fraction,
                          test_fraction=config.test_fraction, split_seed=config.split_seed)
    benchmark = None
    if config.benchmark_table is not None:
        benchmark = load_table(config.benchmark_table)
        benchmark.check_fits(space_definition=space.to_dict(), data=config.data, resolution=resolution)
        benchmark.check_epochs(config.epochs)
    return SearchContext(config, space, train, validation, train.in_channels, train.num_classes, table, batch,
                         resolution, splits, benchmark)


def load_search_splits(config: SearchConfig) -> tuple[Any, Any]:
    """(train, validation) of the protocol: what a search or the scaler may see; never the test set."""
    return load_splits(config.data, validation_fraction=config.validation_fraction,
                       test_fraction=config.test_fraction, split_seed=config.split_seed,
                       max_train_samples=config.max_train_samples)


def check_proxy_names(config: SearchConfig) -> None:
    named = {"--evaluator": config.zero_cost_proxy, "--prefilter": (config.prefilter_proxy or (None,))[0]}
    for flag, name in named.items():
        if name is not None:
            # torch: imported where needed, so this module loads without it
            from nasscale.evaluate.zero_cost import check_proxy_name

            try:
                check_proxy_name(name)
            except NasscaleError as error:
                raise SearchError(f"{flag}: {error}") from None


def load_search_table(config: SearchConfig, space: Any, in_channels: int, num_classes: int) -> Any:
    """The table of --latency-table, checked up front: built for the data's channels and classes, holding every
    part the space can produce, and (with --max-latency) predicting some architecture within the budget."""
    if config.latency_table is None:
        return None
    path = config.latency_table
    table = load_latency_table(path)
    resolutions = distinct_integer_values(space.resolution)  # the deployed space's
    at = f" --resolution {resolutions[0]}" if len(resolutions) == 1 else ""
    rebuild = (f"build one with 'nasscale latency-table --space {config.space}{at} --in-channels {in_channels} "
               f"--num-classes {num_classes} --out FILE'")
    if (table.in_channels, table.num_classes) != (in_channels, num_classes):
        raise SearchError(f"--latency-table {path}: built for {table.in_channels} input channels and "
                          f"{table.num_classes} classes, but data {config.data!r} has {in_channels} and "
                          f"{num_classes}; {rebuild}")
    require_listed_stages(space)
    keys = [part.key for part in space_parts(space, in_channels=in_channels, num_classes=num_classes)]
    missing = [key for key in keys if key not in table.entries]
    if missing:
        raise SearchError(f"--latency-table {path}: lacks {len(missing)} of the {len(keys)} parts of space "
                          f"{config.space!r} (e.g. '{missing[0]}'; table of space {table.space!r}); {rebuild}")
    if config.max_latency is not None:
        fastest, _ = latency_range(table, space)
        if fastest > config.max_latency:
            raise SearchError(f"--max-latency {config.max_latency:g} ms is below the fastest architecture of space "
                              f"{config.space!r} ({fastest:.3g} ms predicted by {path}); raise the budget or use a "
                              "smaller space")
    return table


def propose(chooser: Any, context: SearchContext) -> Arch:
    return sample(context.space, chooser, in_channels=context.in_channels, num_classes=context.num_classes)


def budget_violation(trial_cost: Cost, config: SearchConfig) -> str | None:
    """Why an architecture is over budget, or None. Checked before anything is built."""
    if config.max_macs is not None and trial_cost.macs > config.max_macs:
        return f"MACs {format_count(trial_cost.macs)} > budget {format_count(config.max_macs)}"
    if config.max_params is not None and trial_cost.params > config.max_params:
        return f"params {format_count(trial_cost.params)} > budget {format_count(config.max_params)}"
    return None


def latency_violation(latency_ms: float | None, source: str | None, config: SearchConfig) -> str | None:
    if config.max_latency is not None and latency_ms is not None and latency_ms > config.max_latency:
        return f"latency {latency_ms:.3g} ms ({source}) > budget {config.max_latency:g} ms"
    return None


def train_time_violation(train_ms: float | None, config: SearchConfig) -> str | None:
    if config.max_train_ms is not None and train_ms is not None and train_ms > config.max_train_ms:
        return f"train time {train_ms:.3g} ms/image (measured) > budget {config.max_train_ms:g} ms/image"
    return None


def mnas_reward(accuracy: float, cost_value: float, target: float, exponent: float) -> float:
    """MnasNet's soft-constraint reward ACC x (COST / T) ^ w, the objective behind EfficientNet-B0; COST is the
    MACs (EfficientNet) or the latency in milliseconds (MnasNet), T its target."""
    return accuracy * (cost_value / target) ** exponent


def objective_values(accuracy: float, trial_cost: Cost, config: SearchConfig, latency_ms: float | None = None,
                     train_ms: float | None = None) -> list[float]:
    if config.reward == "mnas":
        if config.target_latency is not None:
            return [mnas_reward(accuracy, _required(latency_ms), config.target_latency, config.reward_exponent)]
        assert config.target_macs is not None  # validate_reward: the mnas reward has target_macs or target_latency
        return [mnas_reward(accuracy, trial_cost.macs, config.target_macs, config.reward_exponent)]
    by_name = {"accuracy": lambda: accuracy, "macs": lambda: float(trial_cost.macs),
               "params": lambda: float(trial_cost.params), "latency": lambda: _required(latency_ms),
               "train_time": lambda: _required(train_ms, "train_time")}
    return [by_name[name]() for name in config.objectives]


def _required(value: float | None, name: str = "latency") -> float:
    if value is None:  # assess() measures whenever config.needs_latency (needs_train_time): a bug, not a user error
        raise SearchError(f"internal error: a {name} objective without its measurement")
    return value


# ------------------------------------------------------------------------------------------ assessment


@dataclass(frozen=True, slots=True)
class Candidate:
    """An architecture with what is known before it is evaluated: its cost, its latency, any budget it breaks."""

    arch: Arch
    cost: Cost
    latency_ms: float | None = None
    latency_source: str | None = None  # LATENCY_FROM_TABLE or LATENCY_MEASURED
    violation: str | None = None
    train_ms: float | None = None  # milliseconds per image of one training step, when the search needs it
    train_setup: dict[str, Any] | None = None  # what train_ms was measured with (train_time_setup)

    def attributes(self) -> dict[str, Any]:
        attributes = architecture_attributes(self.arch, self.cost)
        if self.latency_ms is not None:
            attributes |= {ATTR_LATENCY: self.latency_ms, ATTR_LATENCY_SOURCE: self.latency_source}
        if self.train_ms is not None:
            attributes |= {ATTR_TRAIN_TIME: self.train_ms, ATTR_TRAIN_TIME_SETUP: self.train_setup}
        return attributes


def assess(arch: Arch, context: SearchContext, *, recorded: Iterable[Mapping[str, Any]] = ()) -> Candidate:
    """Cost, latency and training time of ``arch`` and the first budget it breaks. The analytic budgets come
    first, so an architecture over them is never built; a table's prediction is recorded even then (it is free).
    ``recorded``: the study's trial attributes, whose training time of the same architecture measured with the same
    settings is reused instead of measured again."""
    config = context.config
    trial_cost = cost(arch)
    violation = budget_violation(trial_cost, config)
    if context.latency_table is not None:
        latency, source = predict_latency(context.latency_table, arch), LATENCY_FROM_TABLE
    elif config.needs_latency and violation is None:
        latency, source = measured_latency(arch, config), LATENCY_MEASURED
    else:
        latency, source = None, None
    violation = violation or latency_violation(latency, source, config)
    train_ms, setup = None, None
    if config.needs_train_time and violation is None:
        setup = train_time_setup(arch, config)
        train_ms = recorded_train_time(arch, setup, recorded)
        train_ms = measured_train_time(arch, config) if train_ms is None else train_ms
        violation = train_time_violation(train_ms, config)
    return Candidate(arch, trial_cost, latency, source, violation, train_ms=train_ms, train_setup=setup)


def measured_latency(arch: Arch, config: SearchConfig) -> float:
    """Milliseconds of a batch-1 forward pass of the built model with the search's thread count: the fastest of
    ``latency_repeats`` runs, the figure other jobs disturb least and the one a latency table predicts."""
    # torch: imported where needed, so this module loads without it
    from nasscale.evaluate.latency import measure_arch_latency

    return measure_arch_latency(arch, batch_size=1, threads=config.threads, repeats=config.latency_repeats,
                                warmup=MEASURE_WARMUP).min_ms


def train_time_setup(arch: Arch, config: SearchConfig) -> dict[str, Any]:
    """What a training time is measured with (the process cache's key, less the arch_id): the architecture's own
    resolution in the deployed space, the proxy batch size, the thread count and the device."""
    return {"resolution": arch.resolution, "batch_size": config.batch_size, "threads": config.threads,
            "device": config.device}


def recorded_train_time(arch: Arch, setup: Mapping[str, Any], recorded: Iterable[Mapping[str, Any]]) -> float | None:
    """The training time a trial of the study recorded for ``arch`` with the same ``setup``, or None."""
    for attrs in recorded:
        if (attrs.get(ATTR_ARCH_ID) == arch.arch_id and attrs.get(ATTR_TRAIN_TIME) is not None
                and attrs.get(ATTR_TRAIN_TIME_SETUP) == dict(setup)):
            return float(attrs[ATTR_TRAIN_TIME])
    return None


def measured_train_time(arch: Arch, config: SearchConfig) -> float:
    """Milliseconds per image of one SGD step of a fresh build of ``arch`` (train_time_setup's settings): the
    fastest of TRAIN_STEP_REPEATS steps, measured once per architecture in a process."""
    # torch: imported where needed, so this module loads without it
    from nasscale.evaluate.train_time import measure_train_step_ms

    return measure_train_step_ms(arch, batch_size=config.batch_size, resolution=arch.resolution,
                                 in_channels=arch.in_channels, num_classes=arch.num_classes, threads=config.threads,
                                 device=config.device, repeats=TRAIN_STEP_REPEATS, warmup=TRAIN_STEP_WARMUP)


# ----------------------------------------------------------------------------------- zero-cost proxies


def proxy_score(name: str, arch: Arch, context: SearchContext, *, seed: int) -> float:
    """Proxy ``name`` of ``arch`` on the search's proxy batch, its network initialised from ``seed`` (the seed its
    training starts from), with the search's thread count."""
    import torch

    # torch: imported where needed, so this module loads without it
    from nasscale.evaluate.zero_cost import ProxyError, score

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(context.config.threads)
    try:
        return score(name, arch, context.proxy_batch, seed=seed)
    except ProxyError as error:
        raise ScoreFailed(str(error)) from None
    finally:
        torch.set_num_threads(previous_threads)


def score_architecture(arch: Arch, context: SearchContext, *, seed: int) -> dict[str, Any]:
    """--evaluator zero-cost:NAME: the proxy's score stands for the accuracy objective; nothing is trained."""
    started = time.perf_counter()
    proxy = context.config.zero_cost_proxy
    assert proxy is not None  # callers score only under --evaluator zero-cost:NAME
    value = proxy_score(proxy, arch, context, seed=seed)
    return {ATTR_ACCURACY: value, ATTR_TIMINGS: {"score_seconds": time.perf_counter() - started}}


def prefilter_candidates(first: Candidate, context: SearchContext, *, seed: int,
                         evaluated: frozenset[str] = frozenset()) -> list[Candidate]:
    """The trial's own sample and up to K - 1 distinct random architectures within the budgets, none of them
    ``evaluated`` already, drawn from a chooser seeded by the trial's seed (a retry draws the same ones)."""
    assert context.config.prefilter_proxy is not None  # callers prefilter only under --prefilter NAME:K
    _, wanted = context.config.prefilter_proxy
    chooser = RandomChooser(seed)
    candidates, seen = [first], {first.arch.arch_id, *evaluated}
    for _ in range((wanted - 1) * MAX_DRAWS_PER_CANDIDATE):
        if len(candidates) >= wanted:
            break
        arch = propose(chooser, context)
        if arch.arch_id in seen:
            continue
        seen.add(arch.arch_id)
        candidate = assess(arch, context)
        if candidate.violation is None:
            candidates.append(candidate)
    if len(candidates) < wanted:
        logger.warning("prefilter found %d of %d candidates within the budgets", len(candidates), wanted)
    return candidates


def prefilter(first: Candidate, context: SearchContext, *, seed: int,
              evaluated: frozenset[str] = frozenset()) -> tuple[Candidate, dict[str, Any]]:
    """--prefilter NAME:K: score the candidates with proxy NAME and pick the best (the sample on a tie). Returns it
    with the record of every candidate's id and score; a candidate the proxy fails on scores None."""
    assert context.config.prefilter_proxy is not None  # callers prefilter only under --prefilter NAME:K
    name, wanted = context.config.prefilter_proxy
    started = time.perf_counter()
    candidates = prefilter_candidates(first, context, seed=seed, evaluated=evaluated)
    scores: list[float | None] = []
    for candidate in candidates:
        try:
            scores.append(proxy_score(name, candidate.arch, context, seed=seed))
        except ScoreFailed as error:
            logger.warning("prefilter: %s", error)
            scores.append(None)
    scored = {index: value for index, value in enumerate(scores) if value is not None}
    if not scored:
        raise ScoreFailed(f"{name} scored none of the {len(candidates)} prefilter candidates")
    chosen = max(scored, key=scored.__getitem__)
    record = {"proxy": name, "wanted": wanted, "chosen": chosen, "sampled_arch_id": first.arch.arch_id,
              "seconds": time.perf_counter() - started,
              "candidates": [{"arch_id": candidate.arch.arch_id, "score": value, "macs": candidate.cost.macs,
                              "latency_ms": candidate.latency_ms, "train_time_ms": candidate.train_ms,
                              "summary": summary(candidate.arch)}
                             for candidate, value in zip(candidates, scores, strict=True)]}
    return candidates[chosen], record


# ------------------------------------------------------------------------------------------- training


def architecture_attributes(arch: Arch, trial_cost: Cost) -> dict[str, Any]:
    return {ATTR_ARCH: to_dict(arch), ATTR_ARCH_ID: arch.arch_id, ATTR_SUMMARY: summary(arch),
            ATTR_MACS: trial_cost.macs, ATTR_PARAMS: trial_cost.params}


def train_architecture(arch: Arch, context: SearchContext, *, seed: int,
                       on_epoch: Callable[[int, float], None] | None = None, test_set: Any = None) -> dict[str, Any]:
    """Build and proxy-train ``arch`` (or, with --evaluator bench:FILE, read what training it did from the table);
    returns the attributes to record (accuracy, history, timings). ``test_set`` is for final evaluation only (the
    scale ladder's steps, chosen before it is read): the trained model is scored on it once, as ``test_accuracy``."""
    if context.benchmark is not None:
        return answer_from_table(arch, context, on_epoch=on_epoch)
    import torch

    # torch: imported where needed, so this module loads without it
    from nasscale.evaluate.training import evaluate_model, train_model
    from nasscale.models.build import build

    started = time.perf_counter()
    torch.manual_seed(seed)  # the initial weights are part of what a seed reproduces
    model = build(arch)
    build_seconds = time.perf_counter() - started

    def report(record) -> None:
        if on_epoch is not None:
            on_epoch(record.epoch, record.validation_accuracy)

    settings = context.config.train_settings(seed, context.training_resolution(arch))
    result = train_model(model, context.train, context.validation, settings, on_epoch=report)
    attributes = {
        ATTR_ACCURACY: result.validation_accuracy,
        ATTR_HISTORY: [[record.epoch, record.train_loss, record.validation_accuracy, record.seconds]
                       for record in result.history],
        ATTR_TIMINGS: {"build_seconds": build_seconds, "train_seconds": result.train_seconds,
                       "train_images_per_second": result.train_images_per_second},
    }
    if test_set is not None:
        attributes[TEST_ACCURACY] = evaluate_model(model, test_set, settings)[0]
    return attributes


def stopped_train_seconds(arch: Arch, context: SearchContext, epochs: int, elapsed: float) -> float:
    """The training seconds of a trial stopped early after ``epochs``: as spent, or with a benchmark table what
    the real trial spent up to then (the compute samplers are compared at)."""
    if context.benchmark is None or epochs < 1:
        return elapsed
    return float(context.benchmark.answer(arch.arch_id, epochs).seconds)


def answer_from_table(arch: Arch, context: SearchContext, *,
                      on_epoch: Callable[[int, float], None] | None = None) -> dict[str, Any]:
    """The tabular evaluator: the validation accuracy the table records after each of the search's epochs (so
    pruners see the same learning curve a real trial would report), and as ``train_seconds`` the compute the
    real trial spent, so samplers compare at equal compute."""
    epochs = context.config.epochs
    curve = [context.benchmark.answer(arch.arch_id, epoch) for epoch in range(1, epochs + 1)]
    for answer in curve:
        if on_epoch is not None:
            on_epoch(answer.epochs, answer.validation_accuracy)
    row = context.benchmark.rows[arch.arch_id]
    return {
        ATTR_ACCURACY: curve[-1].validation_accuracy,
        ATTR_HISTORY: [[point.epoch, point.train_loss, point.validation_accuracy, None]
                       for point in row.curve[:epochs]],
        ATTR_TIMINGS: {"train_seconds": curve[-1].seconds, "tabular": True},
    }
