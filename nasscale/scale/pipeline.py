"""The scale pipeline behind ``nasscale scale``: compound or non-uniform scaling of a preset, an architecture file
or a search's best trial, optionally proxy-evaluated and timed, recorded in the study and written to files.
``nasscale.cli.scale`` parses the flags into a ``ScaleRequest`` and prints the outcome; everything else is here.

Order of work: check every flag and open the baseline first (bad input costs nothing); then compute everything
(solver grid, proxy training, ladder, latency) and render every output; only then record the ladder in the study
storage and write the files, so an error leaves nothing half-written.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nasscale.errors import ScalingError, SpecError, UnknownNameError

if TYPE_CHECKING:
    from nasscale.search.config import SearchConfig
    from nasscale.spec.arch import Arch
from nasscale.presets.efficientnet import efficientnet_b0
from nasscale.presets.registry import resolve_arch
from nasscale.scale.allocation import solve_stage_allocation
from nasscale.scale.checks import MAX_PHI
from nasscale.scale.evaluation import ProxyEvaluator, distinct_candidates, evaluate_candidates, evaluated_rows
from nasscale.scale.ladder import efficientnet_released_ladder, scale_ladder
from nasscale.scale.solver import EFFICIENTNET_COMPOUND, solve_coefficients
from nasscale.search.config import PROXY_SETTING_FIELDS, make_config
from nasscale.search.record import (
    ATTR_ACCURACY,
    ATTR_ARCH,
    ATTR_MACS,
    LADDER_ATTR,
    LADDER_FORMAT,
    LADDER_META_ATTR,
    STUDY_ATTR_CONFIG,
    STUDY_ATTR_RESOLUTION,
)
from nasscale.search.results import get_trial, open_study, trial_arch
from nasscale.search.storage import make_storage, require_existing_storage
from nasscale.spec.arch import to_dict
from nasscale.spec.cost import cost
from nasscale.spec.rescaling import V2_MAX_RESOLUTION, scale_arch, scale_arch_nonuniform
from nasscale.spec.serialization import summary, to_yaml

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
        total = cost(self.arch)
        study_name = self.study.study_name if self.study is not None else None
        return {"name": self.name, "study": study_name, "trial": self.trial, "arch_id": self.arch.arch_id,
                "params": total.params, "macs": total.macs, "resolution": self.arch.resolution,
                "accuracy": self.accuracy, "arch": to_dict(self.arch)}


def load_baseline(request: ScaleRequest) -> Baseline:
    if request.base is not None:
        return Baseline(resolve_arch(request.base), request.base, None, None, None, None)
    assert request.study is not None  # check_combinations: --base or --study, one of them
    require_existing_storage(request.storage)
    study = open_study(request.study, request.storage)
    if request.evaluate and study.user_attrs.get(STUDY_ATTR_RESOLUTION) is None:
        raise UnknownNameError(f"study {study.study_name!r} predates the evaluation protocol (it records no "
                               "deployment resolution or validation split, so its accuracies may be test-set ones); "
                               "scale it with --no-evaluate, or search again into a new --study")
    trial = get_trial(study, request.trial) if request.trial is not None else best_trial_by_accuracy(study)
    return Baseline(trial_arch(trial), f"study {study.study_name} trial {trial.number}", study, trial.number,
                    trial.user_attrs.get(ATTR_ACCURACY), study.user_attrs.get(STUDY_ATTR_CONFIG))


def best_trial_by_accuracy(study: Any) -> Any:
    """The completed trial with the highest proxy accuracy (fewer MACs breaks ties)."""
    import optuna

    scored = [trial for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
              if trial.user_attrs.get(ATTR_ACCURACY) is not None and ATTR_ARCH in trial.user_attrs]
    if not scored:
        raise UnknownNameError(f"study {study.study_name!r} has no completed trial to scale yet; run nasscale search "
                               "first or pick one with --trial N")
    return max(scored, key=lambda trial: (trial.user_attrs[ATTR_ACCURACY], -(trial.user_attrs.get(ATTR_MACS) or 0)))


def evaluation_config(request: ScaleRequest, baseline: Baseline) -> SearchConfig:
    """Proxy settings: the flags, else the baseline study's search settings, else the search defaults."""
    inherited = {key: value for key, value in (baseline.search_config or {}).items() if key in PROXY_SETTING_FIELDS}
    return make_config(inherited, request.evaluation_overrides)


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
    accuracy: float | None = None  # on the validation split
    test_accuracy: float | None = None  # final evaluation, read once after the ladder is chosen
    proxy_resolution: int | None = None
    latency: dict[str, Any] | None = None

    @property
    def deviation(self) -> float:
        return self.macs / self.target_macs - 1

    @property
    def stage_layers(self) -> tuple[int, ...]:
        return tuple(stage.num_blocks for stage in self.arch.stages)

    def record(self) -> dict[str, Any]:
        return {"phi": self.phi, "method": self.method, "coefficients": self.coefficients, "profile": self.profile,
                "resolution": self.arch.resolution, "width": self.width, "stage_depths": self.stage_depths,
                "stage_layers": self.stage_layers, "stage_channels": tuple(s.out_channels for s in self.arch.stages),
                "params": self.params, "macs": self.macs, "target_macs": self.target_macs,
                "deviation": self.deviation, "accuracy": self.accuracy, "test_accuracy": self.test_accuracy,
                "proxy_resolution": self.proxy_resolution,
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

    def step_records(self) -> list[dict[str, Any]]:
        """Each step's record with its released EfficientNet counterpart, if any."""
        released = self.released or {}
        return [step.record() | released.get(step.phi, {}) for step in self.steps]


def compound_scaling(request: ScaleRequest, base: Arch, evaluator: ProxyEvaluator | None,
                     ) -> tuple[tuple[float, float, float], str, Any, str | None]:
    """(coefficients, where they came from, the solver grid or None, why a dry run shows no grid)."""
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
    assert grid is not None  # solving: the solver either gave a grid or raised
    if evaluator is None:
        return grid.best.coefficients, "solved", grid, None
    closest = sorted(grid.feasible(), key=lambda row: (abs(row.deviation), row.params))
    candidates = distinct_candidates(
        closest, lambda row: scale_arch(base, width=row.beta, depth=row.alpha, resolution=row.resolution),
        request.max_candidates)
    grid = evaluate_candidates(grid, candidates, evaluator, "grid")
    return grid.best.coefficients, "solved by proxy accuracy", grid, None


def compound_ladder(request: ScaleRequest, base: Arch, coefficients: Sequence[float]) -> list[ScaledModel]:
    steps = scale_ladder(base, request.phis, coefficients=coefficients, target_macs=request.target_macs,
                         budget_exact=request.budget_exact, resolution_multiple=request.resolution_multiple,
                         max_resolution=request.max_resolution)
    return [ScaledModel(step.phi, step.method, step.coefficients, None, step.width, (step.depth,) * len(base.stages),
                        step.arch, step.params, step.macs, step.target_macs) for step in steps]


def nonuniform_ladder(request: ScaleRequest, base: Arch, evaluator: ProxyEvaluator | None,
                      ) -> tuple[list[ScaledModel], list[tuple[int, Any]]]:
    """EfficientNetV2-style: per phi, every depth profile x width under the resolution cap; the lightest
    feasible one wins, or the most accurate of the ``max_candidates`` lightest when evaluating."""
    cap = request.max_resolution or V2_MAX_RESOLUTION
    if cap < base.resolution:
        raise SpecError("--max-resolution", f"{cap} is below the base's resolution {base.resolution}; non-uniform "
                                            "scaling never lowers the resolution")
    base_macs = cost(base).macs
    steps, allocations = [], []
    for phi in request.phis:
        result = solve_stage_allocation(base, request.target_macs or base_macs * 2**phi, max_resolution=cap)
        if evaluator is not None:
            candidates = distinct_candidates(result.ranked(), functools.partial(_allocation_arch, result),
                                             request.max_candidates)
            result = evaluate_candidates(result, candidates, evaluator, f"phi {phi}")
        arch, best = result.best_arch(), result.best
        total = cost(arch)
        steps.append(ScaledModel(phi, "non-uniform", None, best.profile, best.width, best.stage_depths, arch,
                                 total.params, total.macs, result.target_macs))
        allocations.append((phi, result))
    return steps, allocations


def _allocation_arch(result: Any, row: Any) -> Arch:
    return scale_arch_nonuniform(result.base, row.width, row.stage_depths, row.resolution, result.max_resolution)


def evaluate_steps(steps: Sequence[ScaledModel], evaluator: ProxyEvaluator) -> list[ScaledModel]:
    """The ladder's final runs: each step's validation accuracy and, read once, its test accuracy."""
    evaluated = []
    for step in steps:
        validation, test = evaluator.final(step.arch, f"phi {step.phi}")
        evaluated.append(dataclasses.replace(step, accuracy=validation, test_accuracy=test,
                                             proxy_resolution=evaluator.proxy_resolution(step.arch)))
    return evaluated


def measure_steps(steps: Sequence[ScaledModel], request: ScaleRequest, threads: int,
                  report: Callable[[str], None]) -> list[ScaledModel]:
    """Batch-1 CPU latency of each step at its own resolution, classes and channels."""
    # torch: imported where needed, so this module loads without it
    # torch: imported where needed, so this module loads without it
    from nasscale.evaluate.latency import measure_latency
    from nasscale.models.build import build
    from nasscale.models.counts import example_input

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
    if base != efficientnet_b0():
        return None
    return {step.phi: {"released_name": step.name, "released_params": step.params, "released_macs": step.macs,
                       "released_deviation": step.deviation, "released_resolution": step.resolution}
            for step in efficientnet_released_ladder()}


def run_scale(request: ScaleRequest, baseline: Baseline, config: SearchConfig,
              report: Callable[[str], None]) -> ScaleOutcome:
    started = time.perf_counter()
    base = baseline.arch
    evaluator = None
    if request.evaluate:
        evaluator = ProxyEvaluator(config, base.resolution, report)
        base = evaluator.deploy(base, baseline.name, from_study=baseline.study is not None)
    allocations: list[tuple[int, Any]]
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
        "steps": outcome.step_records(),
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


def record_in_study(request: ScaleRequest, baseline: Baseline, data: dict[str, Any]) -> dict[str, Any]:
    """Store the ladder as a user attribute, so a dashboard draws scaling curves from the study alone."""
    import optuna

    name = request.record_target
    study = baseline.study
    if study is None or study.study_name != name:
        study = optuna.create_study(study_name=name, storage=make_storage(request.storage), load_if_exists=True)
    meta = {key: value for key, value in data.items() if key != "steps"}
    meta |= {"format": LADDER_FORMAT, "recorded_at": datetime.now(UTC).isoformat(timespec="seconds")}
    study.set_user_attr(LADDER_ATTR, data["steps"])
    study.set_user_attr(LADDER_META_ATTR, meta)
    return {"storage": request.storage, "study": name, "user_attrs": [LADDER_ATTR, LADDER_META_ATTR]}
