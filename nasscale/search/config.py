"""A search's settings as one frozen dataclass: read from a study config (studies/*.yaml), overridden
by command-line flags, validated in one place, and stored in the study so the study explains itself.

Light core: no torch.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from nasscale.errors import SpecError, read_text_file
from nasscale.evaluate.settings import (
    DEFAULT_TEST_FRACTION,
    DEFAULT_VALIDATION_FRACTION,
    RECIPE_DEFAULTS,
    TrainSettings,
)
from nasscale.units import parse_count

Direction = Literal["minimize", "maximize"]  # as optuna.create_study takes them
# Each objective with its Optuna direction. latency: milliseconds of a batch-1 forward pass (see latency_table).
# train_time: measured milliseconds per image of one SGD training step at the proxy batch size (EfficientNetV2).
OBJECTIVE_DIRECTIONS: dict[str, Direction] = {"accuracy": "maximize", "macs": "minimize", "params": "minimize",
                                              "latency": "minimize", "train_time": "minimize"}
# evolution: regularized evolution; local: multi-objective local search (nasscale.search.evolution); gp: Optuna's
# Gaussian-process sampler.
SAMPLER_NAMES = ("nsga2", "tpe", "random", "evolution", "local", "gp")
# auto: Optuna's median pruner (ASHA on Ray) for single-objective studies, none for multi-objective ones (Optuna
# prunes single objectives only); mo-asha: multi-objective successive halving (nasscale.search.early_stopping).
PRUNER_NAMES = ("auto", "none", "mo-asha")
REWARD_NAMES = ("mnas",)
TRAINING_EVALUATOR = "training"
ZERO_COST_PREFIX = "zero-cost:"  # --evaluator zero-cost:NAME scores each trial with a proxy instead of training
BENCH_PREFIX = "bench:"  # --evaluator bench:FILE answers each trial from a benchmark table (nasscale bench)
BACKEND_NAMES = ("optuna", "ray")
DEFAULT_STORAGE = "sqlite:///nasscale.db"


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchConfig:
    space: str = "mnas"  # a built-in space name or a YAML file
    data: str = "digits"  # digits | fashion-mnist[:DIR] | imagefolder:DIR | cifar10:DIR
    study: str | None = None  # default: "<space>-<data>"
    storage: str = DEFAULT_STORAGE
    trials: int = 20  # total trained trials in the study; re-running resumes up to this number
    timeout: float | None = None  # seconds for this run
    objectives: tuple[str, ...] = ("accuracy", "macs")
    max_macs: int | None = None
    max_params: int | None = None
    # TPE: the one sampler that beat random search at every budget on the shipped table (README, Benchmarks).
    sampler: str = "tpe"
    population_size: int = 8  # NSGA-II generation size; regularized evolution's population; random startup trials
    # of local search and GP
    tournament_size: int = 3  # regularized evolution: population members drawn to pick a parent
    pruner: str = "auto"  # PRUNER_NAMES
    min_epochs: int = 1  # mo-asha: the first rung, in epochs
    reduction_factor: int = 3  # mo-asha: eta; rungs at min_epochs x eta^k, the top 1/eta of each rung go on
    reward: str | None = None  # "mnas": single objective ACC x (MACs / target_macs) ^ reward_exponent
    target_macs: int | None = None
    reward_exponent: float = -0.07
    # Latency: milliseconds per batch-1 forward pass, predicted from a table (nasscale latency-table) when one is
    # given, else measured on the built model (fastest of latency_repeats runs with `threads` threads).
    max_latency: float | None = None  # a budget, like max_macs: an over-budget sample is not trained
    target_latency: float | None = None  # T of MnasNet's reward ACC x (LAT / T) ^ reward_exponent
    latency_table: str | None = None
    latency_repeats: int = 10
    # Training time: milliseconds per image of one SGD step (forward, backward, optimizer step) of a fresh build at
    # the architecture's deployed resolution, batch_size images, `threads` threads on `device`; measured once per
    # architecture (nasscale.evaluate.train_time). A budget like max_latency: an over-budget sample is not trained.
    max_train_ms: float | None = None
    # Evaluation: "training" (proxy training) or "zero-cost:NAME" (score with a zero-cost proxy, no training).
    evaluator: str = TRAINING_EVALUATOR
    prefilter: str | None = None  # "NAME:K": score K candidates per trial with proxy NAME, train the best
    seed: int = 0
    # Proxy training
    epochs: int = RECIPE_DEFAULTS.epochs
    batch_size: int = RECIPE_DEFAULTS.batch_size
    learning_rate: float = RECIPE_DEFAULTS.learning_rate
    optimizer: str = RECIPE_DEFAULTS.optimizer
    schedule: str = RECIPE_DEFAULTS.schedule
    label_smoothing: float = RECIPE_DEFAULTS.label_smoothing
    # One deployment resolution per study: every architecture is trained, evaluated and costed at its own
    # resolution, the space's choices mapped in proportion onto this one (nasscale.space.deployment).
    resolution: int | None = None  # None: the data's native size (nasscale.evaluate.data.native_resolution)
    # A fidelity, like fewer epochs: train the largest architecture at this size instead, the others in
    # proportion (cost stays counted at the deployment resolution). None: train at the deployment resolution.
    proxy_resolution: int | None = None
    # The protocol: search on a validation split of the training data; the test set is final evaluation's.
    validation_fraction: float = DEFAULT_VALIDATION_FRACTION
    test_fraction: float = DEFAULT_TEST_FRACTION  # held out of data with no official test set
    split_seed: int = 0  # the same splits for every search seed, so seeds compare on the same data
    max_train_samples: int | None = None
    threads: int = 1  # torch threads per trial; more only pays on an idle machine
    device: str = "cpu"  # where trials train: cpu, cuda or cuda:N
    # Distributed search (docs/distributed.md). The Optuna backend runs one trial at a time per process: start
    # one process per worker on a shared storage. The Ray backend runs `workers` trials at once.
    backend: str = "optuna"
    ray_address: str | None = None  # None: start a local Ray runtime; "auto" or HOST:PORT: join a cluster
    workers: int = 1  # Ray actors, each running one trial at a time
    cpus_per_trial: int = 1  # Ray CPUs per trial, and its torch threads
    gpus_per_trial: float = 0.0  # Ray GPUs reserved per trial

    def __post_init__(self) -> None:
        validate_config(self)

    @property
    def study_name(self) -> str:
        if self.study:
            return self.study
        space = Path(self.space).stem if self.space.endswith((".yaml", ".yml")) else self.space
        return f"{space}-{self.data.split(':', 1)[0]}"

    @property
    def is_multi_objective(self) -> bool:
        return self.reward is None and len(self.objectives) > 1

    @property
    def directions(self) -> list[Direction]:
        if self.reward is not None:
            return ["maximize"]
        return [OBJECTIVE_DIRECTIONS[name] for name in self.objectives]

    @property
    def objective_names(self) -> list[str]:
        """As recorded in the study: resuming it with other objectives (or another evaluator) is refused."""
        if self.reward:
            return [f"reward_{self.reward}" + ("_latency" if self.target_latency is not None else "")]
        return [self.accuracy_name if name == "accuracy" else name for name in self.objectives]

    @property
    def zero_cost_proxy(self) -> str | None:
        """The proxy of --evaluator zero-cost:NAME; None for training or a benchmark table."""
        return self.evaluator.removeprefix(ZERO_COST_PREFIX) if self.evaluator.startswith(ZERO_COST_PREFIX) else None

    @property
    def benchmark_table(self) -> str | None:
        """The FILE of --evaluator bench:FILE: trials are answered from that table instead of trained."""
        return self.evaluator.removeprefix(BENCH_PREFIX) if self.evaluator.startswith(BENCH_PREFIX) else None

    @property
    def accuracy_name(self) -> str:
        """The accuracy objective's name: accuracy when trials train, the proxy's score when they do not."""
        proxy = self.zero_cost_proxy
        return "accuracy" if proxy is None else f"score_{proxy}"

    @property
    def prefilter_proxy(self) -> tuple[str, int] | None:
        """(proxy, K) of --prefilter NAME:K."""
        if self.prefilter is None:
            return None
        name, _, count = self.prefilter.partition(":")
        return name, int(count)

    @property
    def needs_latency(self) -> bool:
        """Whether each trial's latency is an objective, a budget or the reward's cost."""
        as_objective = self.reward is None and "latency" in self.objectives
        return as_objective or self.max_latency is not None or (self.reward is not None
                                                                 and self.target_latency is not None)

    @property
    def needs_train_time(self) -> bool:
        """Whether each trial's training step is timed: train_time is an objective (never of a reward) or a budget."""
        return (self.reward is None and "train_time" in self.objectives) or self.max_train_ms is not None

    def train_settings(self, seed: int, resolution: int | None = None) -> TrainSettings:
        """How one trial trains: this config's proxy-training fields, the recipe's defaults for the rest;
        ``resolution`` is the size its images are resized to (``training_resolution``)."""
        return TrainSettings(epochs=self.epochs, batch_size=self.batch_size, learning_rate=self.learning_rate,
                             optimizer=self.optimizer, schedule=self.schedule, label_smoothing=self.label_smoothing,
                             resolution=resolution, threads=self.threads, seed=seed, device=self.device)

    def training_resolution(self, arch_resolution: int, deployment_resolution: int) -> int:
        """The size an architecture trains at: its own, or with ``proxy_resolution`` that fidelity scaled by the
        architecture's share of the deployment resolution, so that a resolution choice still matters."""
        if self.proxy_resolution is None:
            return arch_resolution
        return max(1, round(self.proxy_resolution * arch_resolution / deployment_resolution))

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["objectives"] = list(self.objectives)
        return data


CONFIG_FIELDS = tuple(field.name for field in dataclasses.fields(SearchConfig))
FIELD_DEFAULTS = {field.name: field.default for field in dataclasses.fields(SearchConfig)}
# What a trial's proxy accuracy depends on besides its architecture: recorded on each trial (for rerun) and
# inherited by the scaler's candidates from the search that produced their baseline.
PROXY_SETTING_FIELDS = ("data", "resolution", "validation_fraction", "test_fraction", "split_seed",
                        "max_train_samples", "seed", "epochs", "batch_size", "learning_rate", "optimizer", "schedule",
                        "label_smoothing", "proxy_resolution", "threads")
COUNT_FIELDS = ("max_macs", "max_params", "target_macs")
MILLISECOND_FIELDS = ("max_latency", "target_latency")
MILLISECONDS_PER_UNIT = {"ms": 1.0, "s": 1000.0, "us": 1e-3}
TRAIN_MS_RULE = ("must be a positive finite number of milliseconds per training image (--max-train-ms), e.g. 0.5 "
                 "or 500us")
DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[-+]?[0-9]+)?)\s*(ms|s|us)?\s*$", re.IGNORECASE)


def parse_milliseconds(text: str | int | float, *, name: str = "value") -> float:
    """Parse "15ms", "15", "0.015s" or "800us" into milliseconds (a plain number means milliseconds)."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        value = float(text)
    else:
        match = DURATION.match(str(text))
        if match is None:
            raise SpecError(name, f"must be a duration such as 15ms, 0.5s or 800us, got {text!r}")
        value = float(match.group(1)) * MILLISECONDS_PER_UNIT[(match.group(2) or "ms").lower()]
    if not (math.isfinite(value) and value > 0):
        raise SpecError(name, f"must be a positive duration, got {text!r}")
    return value


def parse_train_ms(text: str | int | float) -> float:
    """--max-train-ms: milliseconds per image, as a number or a duration ("0.5", "0.5ms", "500us")."""
    try:
        return parse_milliseconds(text, name="max_train_ms")
    except SpecError:
        raise SpecError("max_train_ms", f"{TRAIN_MS_RULE}, got {text!r}") from None


def accuracy_label(evaluator: str | None) -> str:
    """How tables and reports head the accuracy column: "val_accuracy" (a validation-split accuracy), or
    "score (synflow)" for a zero-cost study."""
    if not evaluator or evaluator == TRAINING_EVALUATOR or evaluator.startswith(BENCH_PREFIX):
        return "val_accuracy"
    return f"score ({evaluator.removeprefix(ZERO_COST_PREFIX)})"


# What each annotation of a SearchConfig field accepts, and how a message names it (bool is no number here).
KIND_NAMES: dict[Any, tuple[tuple[type, ...], str]] = {
    int: ((int,), "a whole number"), float: ((int, float), "a number"), str: ((str,), "text"),
    bool: ((bool,), "true or false"), tuple: ((tuple,), "a list"), type(None): ((type(None),), "null")}


def check_field_types(config: SearchConfig) -> None:
    """Every field against its annotation, so that a YAML leaf of the wrong kind (learning_rate: fast) is named
    here rather than failing later as a comparison; a field added to the dataclass is covered by its annotation."""
    hints = typing.get_type_hints(SearchConfig)
    for field in dataclasses.fields(config):
        value, kinds = getattr(config, field.name), _field_kinds(hints[field.name])
        if kinds is None:
            continue
        accepted = tuple(kind for types, _ in kinds for kind in types)
        if not isinstance(value, accepted) or (isinstance(value, bool) and bool not in accepted):
            raise SpecError(field.name, f"must be {' or '.join(name for _, name in kinds)}, got {value!r}")


def _field_kinds(hint: Any) -> list[tuple[tuple[type, ...], str]] | None:
    """What an annotation accepts; None for one without an entry (a Literal, a mapping), which its own check covers."""
    if typing.get_origin(hint) is tuple:  # tuple[str, ...]: its items are normalised to text when read
        return [KIND_NAMES[tuple]]
    kinds = []
    for member in typing.get_args(hint) or (hint,):
        kind = KIND_NAMES.get(typing.get_origin(member) or member)
        if kind is None:
            return None
        kinds.append(kind)
    return kinds


def validate_config(config: SearchConfig) -> None:
    check_field_types(config)
    if not config.objectives:
        raise SpecError("objectives", f"name at least one of {', '.join(OBJECTIVE_DIRECTIONS)}")
    for name in config.objectives:
        if name not in OBJECTIVE_DIRECTIONS:
            raise SpecError("objectives", f"unknown objective {name!r}; choose from {', '.join(OBJECTIVE_DIRECTIONS)}")
    if len(set(config.objectives)) != len(config.objectives):
        raise SpecError("objectives", f"names an objective twice: {','.join(config.objectives)}")
    if "accuracy" not in config.objectives and config.reward is None:
        raise SpecError("objectives", "must include accuracy (a search that never trains is 'nasscale sample')")
    if config.sampler not in SAMPLER_NAMES:
        raise SpecError("sampler", f"must be one of {', '.join(SAMPLER_NAMES)}, got {config.sampler!r}")
    validate_evaluation(config)
    validate_reward(config)
    for name in ("trials", "epochs", "batch_size", "population_size", "tournament_size", "threads", "workers",
                 "cpus_per_trial", "latency_repeats", "min_epochs", "reduction_factor"):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise SpecError(name, f"must be a positive integer, got {value!r}")
    if config.population_size < 2 and config.sampler in ("nsga2", "evolution"):
        raise SpecError("population_size", f"must be at least 2 for {config.sampler}, got {config.population_size}")
    if config.tournament_size > config.population_size and config.sampler == "evolution":
        raise SpecError("tournament_size", f"draws from the population of {config.population_size}; give at most "
                                           f"that many, got {config.tournament_size}")
    for name in ("resolution", "proxy_resolution", "max_train_samples", *COUNT_FIELDS):
        value = getattr(config, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise SpecError(name, f"must be a positive integer, got {value!r}")
    if config.timeout is not None and not config.timeout > 0:
        raise SpecError("timeout", f"must be positive seconds, got {config.timeout!r}")
    for name in ("validation_fraction", "test_fraction"):
        if not 0 < getattr(config, name) < 1:
            raise SpecError(name, f"must be in (0, 1), got {getattr(config, name)!r}")
    if not config.learning_rate > 0:
        raise SpecError("learning_rate", f"must be positive, got {config.learning_rate!r}")
    for name in MILLISECOND_FIELDS:
        value = getattr(config, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                                  or not (math.isfinite(value) and value > 0)):
            raise SpecError(name, f"must be positive milliseconds, got {value!r}")
    train_ms = config.max_train_ms
    if train_ms is not None and (isinstance(train_ms, bool) or not (math.isfinite(train_ms) and train_ms > 0)):
        raise SpecError("max_train_ms", f"{TRAIN_MS_RULE}, got {train_ms!r}")
    validate_pruner(config)
    validate_backend(config)


def validate_pruner(config: SearchConfig) -> None:
    if config.pruner not in PRUNER_NAMES:
        raise SpecError("pruner", f"must be one of {', '.join(PRUNER_NAMES)}, got {config.pruner!r}")
    if config.pruner != "mo-asha":
        for name in ("min_epochs", "reduction_factor"):
            if getattr(config, name) != FIELD_DEFAULTS[name]:
                raise SpecError(name, "sets the rungs of --pruner mo-asha; add it, or leave this out")
        return
    if config.zero_cost_proxy is not None:
        raise SpecError("pruner", "mo-asha stops training early; with --evaluator zero-cost:NAME nothing trains")
    if config.reduction_factor < 2:
        raise SpecError("reduction_factor", f"must be at least 2 (keep the top 1/eta of each rung), got "
                                            f"{config.reduction_factor}")
    if config.min_epochs >= config.epochs:
        raise SpecError("min_epochs", f"must be below --epochs ({config.epochs}) for mo-asha to stop anything, got "
                                      f"{config.min_epochs}; raise --epochs or lower --min-epochs")


def validate_reward(config: SearchConfig) -> None:
    if config.reward is not None and "train_time" in config.objectives:
        raise SpecError("objectives", "train_time is an objective of the multi-objective search, not a term of "
                                      "--reward mnas: drop --reward, or keep it and budget with --max-train-ms")
    if config.reward is None:
        if config.target_latency is not None:
            raise SpecError("target_latency", "is the T of --reward mnas; add --reward mnas, or use --max-latency "
                                              "for a budget")
        return
    if config.reward not in REWARD_NAMES:
        raise SpecError("reward", f"must be one of {', '.join(REWARD_NAMES)}, got {config.reward!r}")
    if config.target_macs is None and config.target_latency is None:
        raise SpecError("target_macs", "is required with --reward mnas (the T of ACC x (MACs/T)^w), e.g. 400M; "
                                       "or give --target-latency (ACC x (LAT/T)^w), e.g. 15ms")
    if config.target_macs is not None and config.target_latency is not None:
        raise SpecError("target_latency", "cannot be combined with target_macs: the mnas reward weighs one cost; "
                                          "give --target-macs or --target-latency")
    if config.zero_cost_proxy is not None:
        raise SpecError("reward", "multiplies an accuracy in [0, 1] by a cost ratio; a zero-cost score (a log, "
                                  "possibly negative) does not fit it: use --objectives accuracy,latency (or macs) "
                                  "with --evaluator zero-cost:NAME")


def validate_evaluation(config: SearchConfig) -> None:
    """The evaluator's and the prefilter's shape; their proxy names are checked against the proxies when the
    search starts (nasscale.search.prepare_context), which keeps this module free of torch."""
    evaluator = config.evaluator
    valid = isinstance(evaluator, str) and (evaluator == TRAINING_EVALUATOR or any(
        evaluator.startswith(prefix) and evaluator.removeprefix(prefix) for prefix in (ZERO_COST_PREFIX, BENCH_PREFIX)))
    if not valid:
        raise SpecError("evaluator", f"must be {TRAINING_EVALUATOR}, {ZERO_COST_PREFIX}NAME (e.g. "
                                     f"{ZERO_COST_PREFIX}synflow) or {BENCH_PREFIX}FILE (a nasscale bench table), "
                                     f"got {evaluator!r}")
    if config.prefilter is None:
        return
    name, separator, count = str(config.prefilter).partition(":")
    if not (isinstance(config.prefilter, str) and name and separator and count.strip().lstrip("-").isdigit()):
        raise SpecError("prefilter", f"must be NAME:K, e.g. naswot:8 (score K candidates per trial with a zero-cost "
                                     f"proxy and train the best), got {config.prefilter!r}")
    if int(count) < 1:
        raise SpecError("prefilter", f"K must be at least 1 candidate per trial, got {config.prefilter!r}")
    if config.zero_cost_proxy is not None:
        raise SpecError("prefilter", "saves training runs; with --evaluator zero-cost:NAME no trial trains: "
                                     "leave one of them out")


def validate_backend(config: SearchConfig) -> None:
    device = config.device
    if not isinstance(device, str) or not (device in ("cpu", "cuda") or device.startswith("cuda:")):
        raise SpecError("device", f"must be cpu, cuda or cuda:N, got {device!r}")
    if config.backend not in BACKEND_NAMES:
        raise SpecError("backend", f"must be one of {', '.join(BACKEND_NAMES)}, got {config.backend!r}")
    gpus = config.gpus_per_trial
    if isinstance(gpus, bool) or not isinstance(gpus, int | float) or not gpus >= 0:
        raise SpecError("gpus_per_trial", f"must be a number >= 0, got {gpus!r}")
    if gpus > 0 and not config.device.startswith("cuda"):
        raise SpecError("gpus_per_trial", "reserves GPUs that trials use only with --device cuda; add it, or "
                                          "leave --gpus-per-trial out")
    if config.backend == "ray":
        if config.threads not in (1, config.cpus_per_trial):
            raise SpecError("threads", f"with the ray backend each trial uses --cpus-per-trial threads "
                                       f"({config.cpus_per_trial}); leave --threads out")
        return
    ray_only = {"workers": config.workers != 1, "ray_address": config.ray_address is not None,
                "cpus_per_trial": config.cpus_per_trial != 1, "gpus_per_trial": gpus != 0}
    for name, given in ray_only.items():
        if given:
            raise SpecError(name, "applies to --backend ray; with the Optuna backend start one 'nasscale search' "
                                  "process per worker on a shared --storage (and use --threads for torch threads)")


def _normalise(values: Mapping[str, Any], source: str | None) -> dict[str, Any]:
    """Accept YAML spellings: hyphenated keys, "400M" counts, "accuracy,macs" objectives."""
    normalised: dict[str, Any] = {}
    for key, value in values.items():
        name = str(key).replace("-", "_")
        if name not in CONFIG_FIELDS:
            raise SpecError(str(key), f"unknown key; valid keys are {', '.join(CONFIG_FIELDS)}", source=source)
        parse = _value_parser(name)
        if parse is not None and value is not None:
            try:
                value = parse(value)
            except SpecError as error:
                raise error.with_source(source) if source else error from None
        if name == "objectives" and isinstance(value, str):
            value = tuple(part.strip() for part in value.split(",") if part.strip())
        elif name == "objectives" and isinstance(value, list | tuple):
            value = tuple(str(part).strip() for part in value)
        normalised[name] = value
    return normalised


def _value_parser(name: str) -> Callable[[Any], Any] | None:
    """How a field's text is read: counts ("400M"), durations ("15ms"), the training-time budget; None: as given."""
    if name in COUNT_FIELDS:
        return functools.partial(parse_count, name=name)
    if name in MILLISECOND_FIELDS:
        return functools.partial(parse_milliseconds, name=name)
    return parse_train_ms if name == "max_train_ms" else None


def make_config(file_values: Mapping[str, Any] | None = None, overrides: Mapping[str, Any] | None = None, *,
                source: str | None = None) -> SearchConfig:
    """Config file values, then explicit overrides (flags the user gave; None means not given)."""
    values = _normalise(file_values or {}, source)
    values |= _normalise({key: value for key, value in (overrides or {}).items() if value is not None}, None)
    try:
        return SearchConfig(**values)
    except SpecError as error:
        raise error.with_source(source) if source and not error.source else error from None
    except TypeError as error:  # a YAML value of the wrong shape
        raise SpecError("", str(error), source=source) from None


def load_config_file(path: str) -> dict[str, Any]:
    import yaml

    text = read_text_file(path, what="study config", hint="see studies/ for examples")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise SpecError("", f"not valid YAML: {str(error).splitlines()[0]}", source=path) from None
    if data is None or data == {}:  # a search on the defaults, which the user did not ask for
        raise SpecError("", "is empty; give at least one setting (see studies/ for examples) or leave --config out",
                        source=path)
    if not isinstance(data, Mapping):
        raise SpecError("", f"must be a mapping of settings, got {type(data).__name__}", source=path)
    return dict(data)
