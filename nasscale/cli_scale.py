"""``nasscale scale``: compound scaling of a preset, an architecture file or a search's best trial.

nasscale/cli.py registers ``scale`` on the app; this module imports nothing from it at load time (the console and
the JSON printer are imported inside the command), so there is no import cycle.

Order of work: check every flag and open the baseline first (bad input costs nothing); then compute everything
(solver grid, proxy training, ladder, latency) and render every output; only then record the ladder in the study
storage and write the files, so an error leaves nothing half-written.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from nasscale.errors import ScalingError, SpecError, UnknownNameError
from nasscale.units import format_count, parse_count

if TYPE_CHECKING:
    from nasscale.arch import Arch
    from nasscale.study import SearchConfig

# Study user attributes: the latest ladder's rows (what nasscale.report draws) and the rest of its record.
LADDER_ATTR = "nasscale_ladder"
LADDER_META_ATTR = "nasscale_ladder_meta"
LADDER_FORMAT = 1
DEFAULT_STORAGE = "sqlite:///nasscale.db"
# Proxy-training settings a scaled candidate inherits from the search that produced its baseline.
EVALUATION_FIELDS = ("data", "epochs", "batch_size", "learning_rate", "optimizer", "schedule", "label_smoothing",
                     "proxy_resolution", "validation_fraction", "max_train_samples", "threads", "seed")


# ---------------------------------------------------------------------------------------------------- flags


@dataclass(frozen=True, slots=True)
class ScaleRequest:
    """The command's flags, parsed and checked."""

    base: str | None
    study: str | None
    trial: int | None
    storage: str
    phis: tuple[int, ...]
    coefficients: tuple[float, float, float] | None
    solve: bool
    target_macs: int | None
    budget_exact: bool
    resolution_multiple: int
    step: float
    tolerance: float
    max_coefficient: float
    dry_run: bool
    non_uniform: bool
    max_resolution: int | None
    out: Path | None
    latency: bool
    latency_repeats: int
    latency_warmup: int
    record_study: str | None
    evaluate: bool
    max_candidates: int
    evaluation_overrides: dict[str, Any]
    quiet: bool

    @property
    def solving(self) -> bool:
        return not self.non_uniform and self.coefficients is None and (self.solve or self.study is not None)

    @property
    def record_target(self) -> str | None:
        if self.dry_run:
            return None
        return self.record_study or self.study


def parse_phis(text: str) -> tuple[int, ...]:
    """``"3"`` or an inclusive range ``"1..7"``."""
    from nasscale.scaling import MAX_PHI

    first, separator, last = text.strip().partition("..")
    try:
        low = int(first)
        high = int(last) if separator else low
    except ValueError:
        raise SpecError("--phi", f"must be an integer or a range such as 1..7, got {text!r}") from None
    if high < low:
        raise SpecError("--phi", f"range {text!r} is empty; write LOW..HIGH")
    for value in (low, high):
        if not 0 <= value <= MAX_PHI:
            raise SpecError("--phi", f"must be in 0..{MAX_PHI} (base MACs x 2^phi), got {value}")
    return tuple(range(low, high + 1))


def parse_coefficients(text: str) -> tuple[float, float, float]:
    """``"1.2,1.1,1.15"`` -> (alpha, beta, gamma), each at least 1."""
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise SpecError("--coefficients", f"must be alpha,beta,gamma such as 1.2,1.1,1.15, got {text!r}")
    for name, value in zip(("alpha", "beta", "gamma"), values, strict=True):
        if not math.isfinite(value) or value < 1:
            raise SpecError("--coefficients", f"{name} must be at least 1 (compound scaling never shrinks), "
                                              f"got {value:g}")
    return values


def check_combinations(request: ScaleRequest, explicit_evaluate: bool | None) -> None:
    """Flags that contradict each other: one line naming both."""
    if (request.base is None) == (request.study is None):
        raise SpecError("", "give the baseline with --base PRESET_OR_FILE or --study NAME (one of them)")
    if request.trial is not None and request.study is None:
        raise SpecError("--trial", "needs --study")
    if request.coefficients is not None and request.solve:
        raise SpecError("--solve", "solves the coefficients; drop --coefficients, or drop --solve to use them")
    if request.non_uniform and (request.coefficients is not None or request.solve):
        raise SpecError("--non-uniform", "allocates depth per stage and takes no --coefficients or --solve")
    if request.target_macs is not None and len(request.phis) != 1:
        raise SpecError("--macs", f"is the target of a single phi, got --phi with {len(request.phis)} values")
    if request.dry_run:
        clashing = [flag for flag, given in (("--evaluate", explicit_evaluate), ("--latency", request.latency),
                                             ("--out", request.out is not None),
                                             ("--record-study", request.record_study is not None)) if given]
        if clashing:
            raise SpecError("--dry-run", f"is analytic only and writes nothing; drop {', '.join(clashing)}")
    if request.out is not None and request.out.exists() and not request.out.is_dir():
        raise SpecError("--out", f"{request.out} exists and is not a folder")


# ------------------------------------------------------------------------------------------------ baseline


@dataclass(frozen=True, slots=True)
class Baseline:
    arch: Arch
    name: str  # preset name, file path or "study S trial N"
    study: Any | None  # the optuna.Study it came from
    trial: int | None
    accuracy: float | None  # the trial's recorded proxy accuracy
    search_config: dict[str, Any] | None  # the study's recorded search settings

    def record(self) -> dict[str, Any]:
        from nasscale.arch import to_dict
        from nasscale.cost import cost

        total = cost(self.arch)
        study_name = self.study.study_name if self.study is not None else None
        return {"name": self.name, "study": study_name, "trial": self.trial, "arch_id": self.arch.arch_id,
                "params": total.params, "macs": total.macs, "resolution": self.arch.resolution,
                "accuracy": self.accuracy, "arch": to_dict(self.arch)}


def load_baseline(request: ScaleRequest) -> Baseline:
    if request.base is not None:
        from nasscale.presets import resolve_arch

        return Baseline(resolve_arch(request.base), request.base, None, None, None, None)
    from nasscale.backends.optuna_backend import STUDY_ATTR_CONFIG
    from nasscale.results import get_trial, open_study, trial_arch
    from nasscale.search import ATTR_ACCURACY

    require_storage_file(request.storage)
    study = open_study(request.study, request.storage)
    trial = get_trial(study, request.trial) if request.trial is not None else best_trial_by_accuracy(study)
    return Baseline(trial_arch(trial), f"study {study.study_name} trial {trial.number}", study, trial.number,
                    trial.user_attrs.get(ATTR_ACCURACY), study.user_attrs.get(STUDY_ATTR_CONFIG))


def require_storage_file(url: str) -> None:
    """Opening a missing SQLite file would create an empty storage; a mistyped --storage should fail instead."""
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///").split("?", 1)[0])
        if str(path) not in ("", ":memory:") and not path.is_file():
            raise UnknownNameError(f"storage {url!r}: no such file {path}; check --storage")


def best_trial_by_accuracy(study: Any) -> Any:
    """The completed trial with the highest proxy accuracy (fewer MACs breaks ties)."""
    import optuna

    from nasscale.search import ATTR_ACCURACY, ATTR_ARCH, ATTR_MACS

    scored = [trial for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
              if trial.user_attrs.get(ATTR_ACCURACY) is not None and ATTR_ARCH in trial.user_attrs]
    if not scored:
        raise UnknownNameError(f"study {study.study_name!r} has no completed trial to scale yet; run nasscale search "
                               "first or pick one with --trial N")
    return max(scored, key=lambda trial: (trial.user_attrs[ATTR_ACCURACY], -(trial.user_attrs.get(ATTR_MACS) or 0)))


def evaluation_config(request: ScaleRequest, baseline: Baseline) -> SearchConfig:
    """Proxy settings: the flags, else the baseline study's search settings, else the search defaults."""
    from nasscale.study import make_config

    inherited = {key: value for key, value in (baseline.search_config or {}).items() if key in EVALUATION_FIELDS}
    return make_config(inherited, request.evaluation_overrides)


# ---------------------------------------------------------------------------------------------- evaluation


class ProxyEvaluator:
    """The search's proxy evaluator (``train_architecture``) for scaled candidates.

    A candidate trains with the data's channels and classes, at the proxy resolution times its own resolution
    over the base's: the resolution coefficient then counts in the proxy as it does in the MACs. Every candidate
    starts from the same seed, so candidates differ by architecture only. Scores are cached per architecture.
    """

    def __init__(self, config: SearchConfig, base_resolution: int, report: Callable[[str], None]):
        from nasscale.data import load_splits
        from nasscale.search import SearchContext

        train, validation = load_splits(config.data, validation_fraction=config.validation_fraction,
                                        seed=config.seed, max_train_samples=config.max_train_samples)
        self.context = SearchContext(config, None, train, validation, train.in_channels, train.num_classes)
        self.base_proxy_resolution = config.proxy_resolution or train.images.shape[-1]
        self.base_resolution = base_resolution
        self.report = report
        self.scores: dict[tuple[str, int], float | None] = {}

    def proxy_resolution(self, arch: Arch) -> int:
        return max(1, round(self.base_proxy_resolution * arch.resolution / self.base_resolution))

    def settings(self) -> dict[str, Any]:
        config = self.context.config
        return {field: getattr(config, field) for field in EVALUATION_FIELDS}

    def score(self, arch: Arch, label: str) -> float | None:
        """Proxy accuracy, or None when training failed (reported, not raised: the other candidates stand)."""
        resolution = self.proxy_resolution(arch)
        trainable = arch.replace(in_channels=self.context.in_channels, num_classes=self.context.num_classes)
        key = (trainable.arch_id, resolution)
        if key not in self.scores:
            self.scores[key] = self._train(trainable, resolution, label)
        return self.scores[key]

    def _train(self, arch: Arch, resolution: int, label: str) -> float | None:
        from nasscale.cost import cost
        from nasscale.errors import TrainingDiverged
        from nasscale.search import ATTR_ACCURACY, train_architecture

        config = dataclasses.replace(self.context.config, proxy_resolution=resolution)
        started = time.perf_counter()
        try:
            accuracy = train_architecture(arch, dataclasses.replace(self.context, config=config),
                                          seed=config.seed)[ATTR_ACCURACY]
        except (TrainingDiverged, MemoryError, RuntimeError) as error:
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
            self.report(f"{label}: failed to train ({reason}); left unscored")
            return None
        self.report(f"{label}: proxy accuracy {accuracy:.4f} ({format_count(cost(arch).macs)} MACs at "
                    f"{arch.resolution}, trained at {resolution} px, {time.perf_counter() - started:.1f} s)")
        return accuracy


def distinct_candidates(rows: Iterable[Any], make_arch: Callable[[Any], Arch], count: int) -> list[tuple[Any, Arch]]:
    """The first ``count`` rows with distinct architectures: grid points that round to the same model are
    trained once."""
    chosen, seen = [], set()
    for row in rows:
        arch = make_arch(row)
        if arch.arch_id not in seen:
            seen.add(arch.arch_id)
            chosen.append((row, arch))
            if len(chosen) == count:
                break
    return chosen


def evaluate_candidates(result: Any, candidates: list[tuple[Any, Arch]], evaluator: ProxyEvaluator,
                        label: str) -> Any:
    """``result`` (a SolverResult or AllocationResult) with the candidates' accuracies filled in and the best
    by accuracy as its winner (the library's ranking breaks ties)."""
    scored = {}
    for index, (row, arch) in enumerate(candidates, start=1):
        accuracy = evaluator.score(arch, f"{label} candidate {index}/{len(candidates)}")
        if accuracy is not None:
            scored[row] = dataclasses.replace(row, accuracy=accuracy)
    if not scored:
        raise ScalingError(f"{label}: none of the {len(candidates)} evaluated candidates trained; lower the learning "
                           "rate or evaluate more with --max-candidates")
    rows = tuple(scored.get(row, row) for row in result.rows)
    return dataclasses.replace(result, rows=rows, best=min(scored.values(), key=result.rank_key))


def evaluated_rows(result: Any) -> list[dict[str, Any]]:
    return [row.as_dict() for row in result.rows if row.accuracy is not None]


# ----------------------------------------------------------------------------------------------- scaling


@dataclass(frozen=True, slots=True)
class ScaledModel:
    """One ladder step, compound or non-uniform, with what was measured on it."""

    phi: int
    method: str  # compound | resolution | resolution+width (budget-exact fixes) | non-uniform
    coefficients: tuple[float, float, float] | None  # None for non-uniform
    profile: str | None  # the depth profile of a non-uniform step
    width: float
    stage_depths: tuple[float, ...]
    arch: Arch
    params: int
    macs: int
    target_macs: int
    accuracy: float | None = None
    proxy_resolution: int | None = None
    latency: dict[str, Any] | None = None

    @property
    def deviation(self) -> float:
        return self.macs / self.target_macs - 1

    @property
    def stage_layers(self) -> tuple[int, ...]:
        return tuple(stage.num_blocks for stage in self.arch.stages)

    def record(self) -> dict[str, Any]:
        from nasscale.arch import summary, to_dict

        return {"phi": self.phi, "method": self.method, "coefficients": self.coefficients, "profile": self.profile,
                "resolution": self.arch.resolution, "width": self.width, "stage_depths": self.stage_depths,
                "stage_layers": self.stage_layers, "stage_channels": tuple(s.out_channels for s in self.arch.stages),
                "params": self.params, "macs": self.macs, "target_macs": self.target_macs,
                "deviation": self.deviation, "accuracy": self.accuracy, "proxy_resolution": self.proxy_resolution,
                "latency": self.latency, "latency_ms": self.latency["median_ms"] if self.latency else None,
                "arch_id": self.arch.arch_id, "summary": summary(self.arch),
                "arch": to_dict(self.arch)}


@dataclass(frozen=True, slots=True)
class ScaleOutcome:
    baseline: Baseline
    scaling: str  # "compound" or "non-uniform"
    coefficients: tuple[float, float, float] | None
    coefficients_source: str | None  # given | efficientnet | solved | solved by proxy accuracy
    grid: Any | None  # SolverResult
    grid_note: str | None  # why a dry run has no grid
    allocations: tuple[tuple[int, Any], ...]  # (phi, AllocationResult) for non-uniform
    steps: tuple[ScaledModel, ...]
    released: dict[int, dict[str, Any]] | None  # EfficientNet's released B1-B7 by phi, for a B0 base
    evaluation: dict[str, Any] | None
    seconds: float


def compound_scaling(request: ScaleRequest, base: Arch, evaluator: ProxyEvaluator | None,
                     ) -> tuple[tuple[float, float, float], str, Any, str | None]:
    """(coefficients, where they came from, the solver grid or None, why a dry run shows no grid)."""
    from nasscale.scaling import EFFICIENTNET_COMPOUND, scale_arch, solve_coefficients

    grid, note = None, None
    if request.solving or request.dry_run:
        try:
            grid = solve_coefficients(base, step=request.step, tolerance=request.tolerance,
                                      max_coefficient=request.max_coefficient,
                                      resolution_multiple=request.resolution_multiple)
        except ScalingError as error:
            if request.solving:
                raise
            note = str(error)
    if not request.solving:
        source = "given" if request.coefficients is not None else "efficientnet"
        return request.coefficients or EFFICIENTNET_COMPOUND, source, grid, note
    if evaluator is None:
        return grid.best.coefficients, "solved", grid, None
    closest = sorted(grid.feasible(), key=lambda row: (abs(row.deviation), row.params))
    candidates = distinct_candidates(
        closest, lambda row: scale_arch(base, width=row.beta, depth=row.alpha, resolution=row.resolution),
        request.max_candidates)
    grid = evaluate_candidates(grid, candidates, evaluator, "grid")
    return grid.best.coefficients, "solved by proxy accuracy", grid, None


def compound_ladder(request: ScaleRequest, base: Arch, coefficients: Sequence[float]) -> list[ScaledModel]:
    from nasscale.scaling import scale_ladder

    steps = scale_ladder(base, request.phis, coefficients=coefficients, target_macs=request.target_macs,
                         budget_exact=request.budget_exact, resolution_multiple=request.resolution_multiple,
                         max_resolution=request.max_resolution)
    return [ScaledModel(step.phi, step.method, step.coefficients, None, step.width, (step.depth,) * len(base.stages),
                        step.arch, step.params, step.macs, step.target_macs) for step in steps]


def nonuniform_ladder(request: ScaleRequest, base: Arch, evaluator: ProxyEvaluator | None,
                      ) -> tuple[list[ScaledModel], list[tuple[int, Any]]]:
    """EfficientNetV2-style: per phi, every depth profile x width under the resolution cap; the lightest
    feasible one wins, or the most accurate of the ``max_candidates`` lightest when evaluating."""
    from nasscale.cost import cost
    from nasscale.scaling import V2_MAX_RESOLUTION, solve_stage_allocation

    cap = request.max_resolution or V2_MAX_RESOLUTION
    if cap < base.resolution:
        raise SpecError("--max-resolution", f"{cap} is below the base's resolution {base.resolution}; non-uniform "
                                            "scaling never lowers the resolution")
    base_macs = cost(base).macs
    steps, allocations = [], []
    for phi in request.phis:
        result = solve_stage_allocation(base, request.target_macs or base_macs * 2**phi, max_resolution=cap)
        if evaluator is not None:
            candidates = distinct_candidates(result.ranked(), lambda row, result=result: _allocation_arch(result, row),
                                             request.max_candidates)
            result = evaluate_candidates(result, candidates, evaluator, f"phi {phi}")
        arch, best = result.best_arch(), result.best
        total = cost(arch)
        steps.append(ScaledModel(phi, "non-uniform", None, best.profile, best.width, best.stage_depths, arch,
                                 total.params, total.macs, result.target_macs))
        allocations.append((phi, result))
    return steps, allocations


def _allocation_arch(result: Any, row: Any) -> Arch:
    from nasscale.scaling import scale_arch_nonuniform

    return scale_arch_nonuniform(result.base, row.width, row.stage_depths, row.resolution, result.max_resolution)


def evaluate_steps(steps: Sequence[ScaledModel], evaluator: ProxyEvaluator) -> list[ScaledModel]:
    return [dataclasses.replace(step, accuracy=evaluator.score(step.arch, f"phi {step.phi}"),
                                proxy_resolution=evaluator.proxy_resolution(step.arch)) for step in steps]


def measure_steps(steps: Sequence[ScaledModel], request: ScaleRequest, threads: int,
                  report: Callable[[str], None]) -> list[ScaledModel]:
    """Batch-1 CPU latency of each step at its own resolution, classes and channels."""
    from nasscale.build import build
    from nasscale.latency import measure_latency
    from nasscale.measure import example_input

    measured = []
    for step in steps:
        latency = measure_latency(build(step.arch), example_input(step.arch), repeats=request.latency_repeats,
                                  warmup=request.latency_warmup, threads=threads)
        report(f"phi {step.phi}: CPU latency {latency['median_ms']:.1f} ms median of {latency['repeats']} "
               f"({threads} thread{'s' if threads > 1 else ''})")
        measured.append(dataclasses.replace(step, latency=latency))
    return measured


def released_ladder(base: Arch) -> dict[int, dict[str, Any]] | None:
    """EfficientNet's released B1-B7 against B0 x 2^phi, when the base is B0 itself."""
    from nasscale.presets import efficientnet_b0
    from nasscale.scaling import efficientnet_released_ladder

    if base != efficientnet_b0():
        return None
    return {step.phi: {"released_name": step.name, "released_params": step.params, "released_macs": step.macs,
                       "released_deviation": step.deviation, "released_resolution": step.resolution}
            for step in efficientnet_released_ladder()}


def run_scale(request: ScaleRequest, baseline: Baseline, config: SearchConfig,
              report: Callable[[str], None]) -> ScaleOutcome:
    started = time.perf_counter()
    base = baseline.arch
    evaluator = ProxyEvaluator(config, base.resolution, report) if request.evaluate else None
    coefficients, source, grid, note, allocations = None, None, None, None, []
    if request.non_uniform:
        steps, allocations = nonuniform_ladder(request, base, evaluator)
    else:
        coefficients, source, grid, note = compound_scaling(request, base, evaluator)
        steps = compound_ladder(request, base, coefficients)
    if evaluator is not None:
        steps = evaluate_steps(steps, evaluator)
    if request.latency:
        steps = measure_steps(steps, request, config.threads, report)
    evaluation = None
    if evaluator is not None:
        evaluation = evaluator.settings() | {"max_candidates": request.max_candidates}
    return ScaleOutcome(baseline, "non-uniform" if request.non_uniform else "compound", coefficients, source, grid,
                        note, tuple(allocations), tuple(steps), released_ladder(base), evaluation,
                        time.perf_counter() - started)


# ---------------------------------------------------------------------------------------------- outputs


def step_records(outcome: ScaleOutcome) -> list[dict[str, Any]]:
    released = outcome.released or {}
    return [step.record() | released.get(step.phi, {}) for step in outcome.steps]


def solver_record(outcome: ScaleOutcome, request: ScaleRequest) -> dict[str, Any] | None:
    if outcome.grid is not None:
        record = outcome.grid.summary() | {"evaluated": evaluated_rows(outcome.grid)}
        if request.dry_run:
            record["feasible_rows"] = [row.as_dict() for row in outcome.grid.ranked()]
        return record
    if outcome.allocations:
        return {"allocations": [
            {"phi": phi, "target_macs": result.target_macs, "max_resolution": result.max_resolution,
             "tolerance": result.tolerance, "candidates": len(result.rows), "feasible": len(result.feasible()),
             "best": result.best.as_dict(), "evaluated": evaluated_rows(result), "seconds": result.seconds}
            | ({"feasible_rows": [row.as_dict() for row in result.ranked()]} if request.dry_run else {})
            for phi, result in outcome.allocations]}
    return None


def payload(outcome: ScaleOutcome, request: ScaleRequest) -> dict[str, Any]:
    """Everything the table shows, as plain data: the --json output, ladder.json and the study record."""
    return {
        "base": outcome.baseline.record(),
        "scaling": outcome.scaling,
        "phis": list(request.phis),
        "target": "--macs" if request.target_macs else "base MACs x 2^phi",
        "coefficients": outcome.coefficients,
        "coefficients_source": outcome.coefficients_source,
        "budget_exact": request.budget_exact if outcome.scaling == "compound" else None,
        "dry_run": request.dry_run,
        "evaluation": outcome.evaluation,
        "solver": solver_record(outcome, request),
        "grid_note": outcome.grid_note,
        "steps": step_records(outcome),
        "seconds": outcome.seconds,
    }


def grid_csv(outcome: ScaleOutcome) -> str | None:
    if outcome.grid is not None:
        return outcome.grid.table().to_csv(index=False)
    if outcome.allocations:
        import pandas

        frames = [result.table().assign(phi=phi) for phi, result in outcome.allocations]
        return pandas.concat(frames, ignore_index=True).to_csv(index=False)
    return None


def output_files(outcome: ScaleOutcome, data: dict[str, Any]) -> dict[str, str]:
    from nasscale.arch import to_yaml

    files = {f"phi{step.phi}.yaml": to_yaml(step.arch) for step in outcome.steps}
    files["ladder.json"] = json.dumps(data, indent=2)
    grid = grid_csv(outcome)
    if grid is not None:
        files["grid.csv"] = grid
    return files


def write_files(folder: Path, files: dict[str, str]) -> list[str]:
    """Each file is written beside its final name and renamed once all are written."""
    folder.mkdir(parents=True, exist_ok=True)
    pending = []
    for name, text in files.items():
        temporary = folder / f".{name}.partial"
        temporary.write_text(text)
        pending.append((temporary, folder / name))
    for temporary, final in pending:
        temporary.replace(final)
    return [str(final) for _, final in pending]


def record_in_study(request: ScaleRequest, baseline: Baseline, data: dict[str, Any]) -> dict[str, str]:
    """Store the ladder as a user attribute, so a dashboard draws scaling curves from the study alone."""
    import optuna

    name = request.record_target
    study = baseline.study
    if study is None or study.study_name != name:
        from nasscale.backends.optuna_backend import make_storage

        study = optuna.create_study(study_name=name, storage=make_storage(request.storage), load_if_exists=True)
    meta = {key: value for key, value in data.items() if key != "steps"}
    meta |= {"format": LADDER_FORMAT, "recorded_at": datetime.now(UTC).isoformat(timespec="seconds")}
    study.set_user_attr(LADDER_ATTR, data["steps"])
    study.set_user_attr(LADDER_META_ATTR, meta)
    return {"storage": request.storage, "study": name, "user_attrs": [LADDER_ATTR, LADDER_META_ATTR]}


# -------------------------------------------------------------------------------------------- rendering


def print_outcome(outcome: ScaleOutcome, request: ScaleRequest, console: Any) -> None:
    from nasscale.cost import cost

    base_cost = cost(outcome.baseline.arch)
    accuracy = f", proxy accuracy {outcome.baseline.accuracy:.4f}" if outcome.baseline.accuracy is not None else ""
    console.print(f"base {outcome.baseline.name}: {format_count(base_cost.params)} params, "
                  f"{format_count(base_cost.macs)} MACs at {outcome.baseline.arch.resolution}{accuracy}",
                  highlight=False)
    if outcome.coefficients is not None:
        console.print(f"coefficients (alpha, beta, gamma) = {_coefficients_text(outcome.coefficients)}: "
                      f"{outcome.coefficients_source}", highlight=False)
    if request.dry_run:
        print_grid(outcome, console)
    elif outcome.grid is not None and evaluated_rows(outcome.grid):
        print_evaluated(outcome.grid, console)
    print_ladder(outcome, request, console)


def print_grid(outcome: ScaleOutcome, console: Any) -> None:
    """The solver's feasible candidates, best first. A rich table rather than pandas: importing pandas alone
    would cost a B0 dry run a third of a second."""
    if outcome.grid_note:
        console.print(f"no solver grid: {outcome.grid_note}", highlight=False)
    if outcome.grid is not None:
        grid = outcome.grid
        feasible = grid.ranked()
        title = (f"Solver grid: {len(feasible)} of {len(grid.rows)} candidates within {grid.tolerance:.0%} of "
                 f"{grid.target_ratio:g}x the base's MACs (step {grid.step:g}), closest first")
        columns = ("alpha", "beta", "gamma", "a*b^2*g^2", "res", "layers per stage", "channels per stage", "params",
                   "MACs", "MAC ratio", "deviation")
        console.print(_grid_table(title, columns, [
            (f"{row.alpha:.2f}", f"{row.beta:.2f}", f"{row.gamma:.2f}", f"{row.ideal_product:.3f}", str(row.resolution),
             _joined(row.stage_layers), _joined(row.stage_channels), format_count(row.params),
             format_count(row.macs), f"{row.mac_ratio:.3f}", f"{row.deviation:+.2%}") for row in feasible]))
    for phi, result in outcome.allocations:
        feasible = result.ranked()
        title = (f"phi {phi}: {len(feasible)} of {len(result.rows)} profile x width candidates within "
                 f"{result.tolerance:.0%} of {format_count(result.target_macs)} MACs, lightest first")
        columns = ("profile", "width", "res", "layers per stage", "channels per stage", "params", "MACs", "deviation")
        console.print(_grid_table(title, columns, [
            (row.profile, f"{row.width:g}", str(row.resolution), _joined(row.stage_layers),
             _joined(row.stage_channels), format_count(row.params), format_count(row.macs), f"{row.deviation:+.2%}")
            for row in feasible]))


def _grid_table(title: str, columns: Sequence[str], rows: Iterable[Sequence[str]]) -> Any:
    from rich import box
    from rich.table import Table

    table = Table(title=title, box=box.SIMPLE_HEAD)
    for column in columns:
        table.add_column(column, justify="left" if column == "profile" else "right", no_wrap=True)
    for row in rows:
        table.add_row(*row)
    return table


def _joined(values: Iterable[int]) -> str:
    return ",".join(map(str, values))


def print_evaluated(grid: Any, console: Any) -> None:
    from rich.table import Table

    trained = sorted((row for row in grid.rows if row.accuracy is not None), key=grid.rank_key)
    table = Table(title=f"Solver: the {len(trained)} feasible candidates closest to {grid.target_ratio:g}x, trained "
                        "on the proxy task, most accurate first")
    for column in ("alpha, beta, gamma", "resolution", "MACs", "deviation", "proxy accuracy", ""):
        table.add_column(column, justify="left" if column.startswith("alpha") else "right")
    for row in trained:
        table.add_row(_coefficients_text(row.coefficients), str(row.resolution), format_count(row.macs),
                      f"{row.deviation:+.2%}", f"{row.accuracy:.4f}", "best" if row == grid.best else "")
    console.print(table)


def print_ladder(outcome: ScaleOutcome, request: ScaleRequest, console: Any) -> None:
    from rich.table import Table

    target = "--macs" if request.target_macs else "base MACs x 2^phi"
    kind = "non-uniform (EfficientNetV2)" if request.non_uniform else (
        "budget-exact" if request.budget_exact else "raw compound rule")
    table = Table(title=f"{kind} ladder of {outcome.baseline.name}, target {target}"
                        + (" (analytic, dry run)" if request.dry_run else ""))
    columns = ["phi", "profile" if request.non_uniform else "coefficients", "res", "width", "layers per stage",
               "params", "MACs", "target", "deviation", "method"]
    columns += ["proxy acc"] if outcome.evaluation else []
    columns += ["latency ms"] if request.latency else []
    columns += ["released", "rel. MACs", "rel. dev"] if outcome.released else []
    for column in columns:
        table.add_column(column, justify="left" if column in ("profile", "coefficients", "method") else "right",
                         no_wrap=True)
    for record in step_records(outcome):
        table.add_row(*_ladder_cells(record, request, outcome))
    console.print(table)
    if outcome.released:
        console.print("released: EfficientNet's B1-B7 at their resolution; rel. dev against B0 x 2^phi",
                      highlight=False)


def _ladder_cells(record: dict[str, Any], request: ScaleRequest, outcome: ScaleOutcome) -> list[str]:
    cells = [str(record["phi"]),
             record["profile"] if request.non_uniform else _coefficients_text(record["coefficients"]),
             str(record["resolution"]), f"{record['width']:.3f}", _joined(record["stage_layers"]),
             format_count(record["params"]), format_count(record["macs"]), format_count(record["target_macs"]),
             f"{record['deviation']:+.2%}", record["method"]]
    if outcome.evaluation:
        cells.append("failed" if record["accuracy"] is None else f"{record['accuracy']:.4f}")
    if request.latency:
        cells.append(f"{record['latency']['median_ms']:.1f}")
    if outcome.released:
        released = "released_name" in record
        name = record["released_name"].removeprefix("efficientnet_").upper() if released else ""
        cells += [f"{name} @{record['released_resolution']}" if released else "",
                  format_count(record["released_macs"]) if released else "",
                  f"{record['released_deviation']:+.1%}" if released else ""]
    return cells


def _coefficients_text(coefficients: Sequence[float]) -> str:
    return ",".join(f"{value:g}" for value in coefficients)


# ------------------------------------------------------------------------------------------------ command


def scale(
    base: Annotated[str | None, typer.Option(help="Baseline: a preset name or an architecture file.")] = None,
    study: Annotated[str | None, typer.Option(help="Baseline: a search study's best trial by proxy accuracy "
                                                   "(or --trial N).")] = None,
    trial: Annotated[int | None, typer.Option(help="With --study: scale this trial instead of the best.")] = None,
    storage: Annotated[str, typer.Option(help="Optuna storage URL of --study and --record-study.")] = DEFAULT_STORAGE,
    phi: Annotated[str, typer.Option(help="Scaling step: one value such as 3 or a range such as 1..7; step phi "
                                          "aims at base MACs x 2^phi.")] = "1",
    coefficients: Annotated[str | None, typer.Option(help="alpha,beta,gamma (depth, width, resolution), each at "
                                                          "least 1, e.g. 1.2,1.1,1.15.")] = None,
    solve: Annotated[bool, typer.Option("--solve", help="Solve alpha, beta, gamma on a grid (MACs within "
                                        "--tolerance of 2x the base). Default with --study; with --base the "
                                        "default is EfficientNet's 1.2,1.1,1.15.")] = False,
    macs: Annotated[str | None, typer.Option(help="Explicit MAC target of a single --phi, e.g. 1.8G.")] = None,
    budget_exact: Annotated[bool, typer.Option(help="Re-solve each step's resolution (and width if need be) to "
                                                    "land within 2% of its target; off: the raw compound "
                                                    "rule.")] = True,
    resolution_multiple: Annotated[int, typer.Option(min=1, help="Resolutions are multiples of this.")] = 1,
    step: Annotated[float, typer.Option(help="Solver grid step of alpha, beta, gamma.")] = 0.05,
    tolerance: Annotated[float, typer.Option(help="Solver feasibility: MACs within this fraction of 2x the "
                                                  "base.")] = 0.05,
    max_coefficient: Annotated[float, typer.Option(help="Largest alpha, beta, gamma on the solver grid.")] = 2.0,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Analytic only: list the solver's feasible grid and "
                                          "the ladder's costs; trains, measures and writes nothing.")] = False,
    non_uniform: Annotated[bool, typer.Option("--non-uniform", help="EfficientNetV2-style: each step picks a "
                                              "per-stage depth profile and a width under --max-resolution.")] = False,
    max_resolution: Annotated[int | None, typer.Option(min=1, help="Resolution cap: 480 with --non-uniform, none "
                                                               "otherwise.")] = None,
    out: Annotated[Path | None, typer.Option(help="Write DIR/phi<k>.yaml per step, DIR/ladder.json and "
                                                  "DIR/grid.csv (the solver's whole grid).")] = None,
    latency: Annotated[bool, typer.Option(help="Measure each step's CPU latency: batch 1, eval mode, median of "
                                               "--latency-repeats, --threads threads.")] = False,
    latency_repeats: Annotated[int, typer.Option(min=1, help="Timed runs per step.")] = 10,
    latency_warmup: Annotated[int, typer.Option(min=0, help="Untimed runs before them.")] = 2,
    record_study: Annotated[str | None, typer.Option(help="Record the ladder on this study of --storage "
                                                          "(created if missing) instead of --study's.")] = None,
    evaluate: Annotated[bool | None, typer.Option("--evaluate/--no-evaluate", help="Proxy-train the solver's "
                                                  "candidates and every step. Default: on with --study, off with "
                                                  "--base.")] = None,
    max_candidates: Annotated[int, typer.Option(min=1, help="Evaluate only the K feasible candidates closest to "
                                                            "the target (non-uniform: the K lightest).")] = 6,
    data: Annotated[str | None, typer.Option(help="Proxy data: digits, fashion-mnist:DIR, imagefolder:DIR, "
                                                  "cifar10:DIR. Default: the study's, else digits.")] = None,
    epochs: Annotated[int | None, typer.Option(min=1, help="Proxy epochs. Default: the study's, else 3.")] = None,
    proxy_resolution: Annotated[int | None, typer.Option(min=1, help="Proxy image size of the base; a candidate "
                                                         "trains at this x its resolution / the base's. Default: "
                                                         "the study's, else 32.")] = None,
    max_train_samples: Annotated[int | None, typer.Option(min=1, help="Train on at most this many images.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the split and of every candidate's training.")] = None,
    threads: Annotated[int | None, typer.Option(min=1, help="Torch threads for training and latency. Default: "
                                                            "the study's, else 1.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of a table.")] = False,
) -> None:
    """Scale a baseline into a ladder of bigger models: compound (EfficientNet) or per-stage (EfficientNetV2).

    Step phi aims at base MACs x 2^phi. With --study (or --evaluate), the solver's candidates are trained with
    the search's proxy evaluator and the most accurate wins; only the --max-candidates closest to the target are
    trained, so an evaluated grid takes minutes. With --study the ladder is stored on that study, replacing an
    earlier one: user attribute "nasscale_ladder" holds one row per step (architecture, MACs, params, accuracy,
    latency) and "nasscale_ladder_meta" the base, coefficients and solver, so dashboards draw scaling curves from
    the study alone; --record-study NAME stores them on study NAME instead. Nothing is recorded or written until
    everything is computed.
    """
    from nasscale.cli import console, error_console, print_json

    overrides = {"data": data, "epochs": epochs, "proxy_resolution": proxy_resolution,
                 "max_train_samples": max_train_samples, "seed": seed, "threads": threads}
    request = ScaleRequest(
        base=base, study=study, trial=trial, storage=storage, phis=parse_phis(phi),
        coefficients=parse_coefficients(coefficients) if coefficients is not None else None, solve=solve,
        target_macs=parse_count(macs, name="--macs") if macs is not None else None, budget_exact=budget_exact,
        resolution_multiple=resolution_multiple, step=step, tolerance=tolerance, max_coefficient=max_coefficient,
        dry_run=dry_run, non_uniform=non_uniform, max_resolution=max_resolution, out=out, latency=latency,
        latency_repeats=latency_repeats, latency_warmup=latency_warmup, record_study=record_study,
        evaluate=(study is not None if evaluate is None else evaluate) and not dry_run,
        max_candidates=max_candidates, evaluation_overrides=overrides, quiet=as_json)
    check_combinations(request, evaluate)
    baseline = load_baseline(request)
    config = evaluation_config(request, baseline)

    def report(line: str) -> None:
        if not request.quiet:
            error_console.print(line, highlight=False, soft_wrap=True)

    outcome = run_scale(request, baseline, config, report)
    data_out = payload(outcome, request)
    files = output_files(outcome, data_out) if request.out is not None else {}
    recorded = record_in_study(request, baseline, data_out) if request.record_target else None
    written = write_files(request.out, files) if files else []
    if as_json:
        print_json(data_out | {"recorded": recorded, "files": written})
        return
    print_outcome(outcome, request, console)
    if recorded:
        console.print(f"recorded the ladder on study {recorded['study']!r} ({recorded['storage']}) as user "
                      f"attributes {LADDER_ATTR} and {LADDER_META_ATTR}", highlight=False)
    if written:
        console.print(f"wrote {len(written)} files to {request.out}: " + ", ".join(Path(p).name for p in written),
                      highlight=False)
