"""Building and checking a latency table: time every part a space can produce (``build_latency_table``),
calibrate the sum of parts on whole sampled networks, and validate the predictor on held-out architectures
with the machine's speed factor from the table's references (``validate_predictor``). Imports torch to time.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from typing import Any

from nasscale.errors import SpecError
from nasscale.evaluate.latency_table import (
    CALIBRATION_SEED,
    DEFAULT_CALIBRATION,
    DEFAULT_TABLE_REPEATS,
    DEFAULT_TABLE_WARMUP,
    DEFAULT_VALIDATION_REPEATS,
    MAX_DRAWS_PER_ARCHITECTURE,
    OVERHEAD_REPEATS,
    REFERENCES,
    TOLERANCE,
    LatencyTable,
    LatencyTableError,
    Part,
    arch_parts,
    logger,
    predict_latency,
    space_parts,
    sum_of_parts,
)
from nasscale.space.model import SearchSpace
from nasscale.space.sampling import RandomChooser, sample
from nasscale.spec.arch import (
    Arch,
)
from nasscale.spec.serialization import summary

# ---------------------------------------------------------------------------------------------------------------
# Building: time every part


def build_latency_table(space: SearchSpace, *, in_channels: int, num_classes: int, resolution: int | None = None,
                        batch_size: int = 1, threads: int = 1, repeats: int = DEFAULT_TABLE_REPEATS,
                        warmup: int = DEFAULT_TABLE_WARMUP, clock: str = "wall",
                        calibration: int = DEFAULT_CALIBRATION,
                        on_progress: Callable[[int, int, str], None] | None = None) -> LatencyTable:
    """Time every distinct part of ``space`` on the CPU (the fastest of ``repeats`` interleaved runs after
    ``warmup``), then fit the interaction factor on ``calibration`` sampled architectures measured whole (0: no
    fit, factor 1).

    ``resolution`` fixes the input size as ``sample(resolution=...)`` does; otherwise every resolution of the
    space is covered. ``clock`` is ``nasscale.evaluate.latency.CLOCKS``' wall or cpu (one thread; steadier on a shared
    machine). ``on_progress(done, total, what)`` counts timed runs, parts then calibration architectures."""
    import torch

    # torch: imported where needed, so this module loads without it
    from nasscale.evaluate.latency import (
        check_timing_options,
        random_input,
        steady_allocator,
        time_forward,
        time_interleaved,
    )

    _check_positive("batch_size", batch_size)
    if isinstance(calibration, bool) or not isinstance(calibration, int) or calibration < 0:
        raise SpecError("calibration", f"must be a whole number of architectures, got {calibration!r}")
    check_timing_options(clock=clock, threads=threads, repeats=repeats, warmup=warmup)
    allocator = steady_allocator()
    started = time.perf_counter()
    parts = space_parts(space, in_channels=in_channels, num_classes=num_classes, resolution=resolution)
    total = (len(parts) + max(calibration, REFERENCES)) * repeats
    logger.info("timing %d distinct parts of space %s, %d runs each", len(parts), space.name, repeats)

    def timed_parts(done: int, count: int) -> None:
        if on_progress is not None:
            on_progress(done, total, "parts")

    samples = time_interleaved([_part_maker(part, batch_size) for part in parts], rounds=repeats, warmup=warmup,
                               threads=threads, clock=clock, on_progress=timed_parts)
    entries = {part.key: min(runs) for part, runs in zip(parts, samples, strict=True)}
    empty = empty_network(space, in_channels=in_channels, num_classes=num_classes, resolution=resolution)
    overhead = time_forward(empty, random_input(batch_size, in_channels, 1), repeats=OVERHEAD_REPEATS,
                            warmup=warmup, threads=threads, clock=clock)["min_ms"]
    table = LatencyTable(space=space.name, in_channels=in_channels, num_classes=num_classes, resolution=resolution,
                         batch_size=batch_size, threads=threads, repeats=repeats, warmup=warmup, device="cpu",
                         clock=clock, torch_version=torch.__version__, allocator=allocator, overhead_ms=overhead,
                         interaction_factor=1.0, calibration_arch_ids=(), reference_arch_ids=(), reference_ms=(),
                         build_seconds=0.0, entries=entries)

    def calibrated(done: int, count: int, what: str) -> None:
        if on_progress is not None:
            on_progress(len(parts) * repeats + done, total, what)

    table = calibrate(table, space, calibration, on_progress=calibrated)
    return replace(table, build_seconds=time.perf_counter() - started)


def _part_maker(part: Part, batch_size: int) -> Callable[[], Any]:
    def make() -> Any:
        # torch: imported where needed, so this module loads without it
        from nasscale.evaluate.latency import random_input

        return part.build(), random_input(batch_size, part.channels, part.size)

    return make


def measure_networks(archs: list[Arch], *, batch_size: int, threads: int, repeats: int, warmup: int, clock: str,
                     on_progress: Callable[[int, int], None] | None = None) -> list[list[float]]:
    """Every run's milliseconds of each architecture built whole, timed the way the table times its parts."""
    # torch: imported where needed, so this module loads without it
    from nasscale.evaluate.latency import time_interleaved

    return time_interleaved([_network_maker(arch, batch_size) for arch in archs], rounds=repeats, warmup=warmup,
                            threads=threads, clock=clock, on_progress=on_progress)


def _network_maker(arch: Arch, batch_size: int) -> Callable[[], Any]:
    def make() -> Any:
        # torch: imported where needed, so this module loads without it
        # torch: imported where needed, so this module loads without it
        from nasscale.evaluate.latency import random_input
        from nasscale.models.build import build

        return build(arch), random_input(batch_size, arch.in_channels, arch.resolution)

    return make


def reference_archs(space: SearchSpace, *, in_channels: int, num_classes: int, resolution: int | None,
                    count: int = REFERENCES) -> list[Arch]:
    """The first ``count`` architectures of the calibration stream: its first ``REFERENCES`` are the table's
    references, which validations hold out with the calibration architectures."""
    chooser = RandomChooser(CALIBRATION_SEED)
    return [sample(space, chooser, in_channels=in_channels, num_classes=num_classes, resolution=resolution)
            for _ in range(count)]


def measure_with_reference(table: LatencyTable, space: SearchSpace, archs: list[Arch], *, repeats: int, warmup: int,
                           on_progress: Callable[[int, int], None] | None = None) -> tuple[list[list[float]], float]:
    """``measure_networks`` of ``archs`` with the table's settings and its references timed beside them. Returns
    the runs and the machine's speed factor: the median over the references of their fastest run now over their
    fastest at calibration (above 1: the machine is slower now than when the table was built)."""
    references = reference_archs(space, in_channels=table.in_channels, num_classes=table.num_classes,
                                 resolution=table.resolution)
    if tuple(arch.arch_id for arch in references) != table.reference_arch_ids:
        raise LatencyTableError(f"the latency table's reference architectures are not space {space.name!r}'s any "
                                "more (the space changed); rebuild the table")
    samples = measure_networks(archs + references, batch_size=table.batch_size, threads=table.threads,
                               repeats=repeats, warmup=warmup, clock=table.clock, on_progress=on_progress)
    ratios = [min(runs) / then for runs, then in zip(samples[len(archs):], table.reference_ms, strict=True)]
    return samples[:len(archs)], statistics.median(ratios)


def calibrate(table: LatencyTable, space: SearchSpace, count: int = DEFAULT_CALIBRATION, *,
              on_progress: Callable[[int, int, str], None] | None = None) -> LatencyTable:
    """The table with its interaction factor fitted on ``count`` sampled architectures measured whole (the median of
    (fastest run - overhead) / sum of parts, robust to the odd architecture whose runs were all disturbed; 1 when
    ``count`` is 0) and the fastest runs of its references, measured with them (the first architectures of the same
    sample, so at least ``REFERENCES`` are measured)."""
    measured_archs = reference_archs(space, in_channels=table.in_channels, num_classes=table.num_classes,
                                    resolution=table.resolution, count=max(count, REFERENCES))

    def measured(done: int, total: int) -> None:
        if on_progress is not None:
            on_progress(done, total, "calibration architectures")

    samples = measure_networks(measured_archs, batch_size=table.batch_size, threads=table.threads,
                               repeats=table.repeats, warmup=table.warmup, clock=table.clock, on_progress=measured)
    fastest = [min(runs) for runs in samples]
    archs = measured_archs[:count]
    ratios = [(run - table.overhead_ms) / sum_of_parts(table, arch)
              for arch, run in zip(archs, fastest[:count], strict=True)]
    factor = statistics.median(ratios) if ratios else 1.0
    if ratios:
        logger.info("interaction factor %.3f from %d architectures (ratios %.3f to %.3f)", factor, count,
                    min(ratios), max(ratios))
    return replace(table, interaction_factor=factor,
                   calibration_arch_ids=tuple(dict.fromkeys(arch.arch_id for arch in archs)),
                   reference_arch_ids=tuple(arch.arch_id for arch in measured_archs[:REFERENCES]),
                   reference_ms=tuple(fastest[:REFERENCES]))


def empty_network(space: SearchSpace, *, in_channels: int, num_classes: int, resolution: int | None = None) -> Any:
    """A network of the space with its stem, every stage layer and its head replaced by identities: what is left
    is the cost of the containers, which the parts' timings do not include."""
    from torch import nn

    # torch: imported where needed, so this module loads without it
    from nasscale.models.build import build
    arch = sample(space, RandomChooser(0), in_channels=in_channels, num_classes=num_classes, resolution=resolution)
    model = build(arch).eval()
    model.stem, model.head = nn.Identity(), nn.Identity()
    for stage in model.stages:
        assert isinstance(stage, nn.Sequential)  # as Network builds every stage
        for index in range(len(stage)):
            stage[index] = nn.Identity()
    return model


def _check_positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SpecError(name, f"must be an integer of at least 1, got {value!r}")


# ---------------------------------------------------------------------------------------------------------------
# Validation: predictions against end-to-end measurements of sampled architectures


@dataclass(frozen=True, slots=True)
class PredictionRow:
    """One sampled architecture: predicted (with and without the interaction factor) and measured milliseconds,
    the fastest of its runs (what the table predicts) and their median."""

    arch_id: str
    summary: str
    parts: int
    uncalibrated_ms: float
    predicted_ms: float
    measured_ms: float
    measured_median_ms: float

    def relative_error(self, *, calibrated: bool = True, against: str = "fastest", speed: float = 1.0) -> float:
        """(predicted x speed - measured) / measured: positive when the table overestimates. ``against`` the
        "fastest" run or the "median" one; ``speed`` the machine's speed factor to allow for (1: none)."""
        measured = {"fastest": self.measured_ms, "median": self.measured_median_ms}[against]
        return (self.predicted_ms if calibrated else self.uncalibrated_ms) * speed / measured - 1


@dataclass(frozen=True, slots=True)
class PredictorValidation:
    """Predictions against measurements. The errors are taken as measured, or allowing for the machine's speed
    factor (``speed``, from the table's references timed beside the networks): how far the parts' sum is off, once
    the machine running faster or slower than while the table was built is divided out."""

    space: str
    seed: int
    repeats: int
    interaction_factor: float
    speed: float  # the references' fastest runs now / at calibration (above 1: the machine is slower now)
    rows: tuple[PredictionRow, ...]
    seconds: float

    def errors(self, *, calibrated: bool = True, against: str = "fastest", for_speed: bool = False) -> list[float]:
        speed = self.speed if for_speed else 1.0
        return [row.relative_error(calibrated=calibrated, against=against, speed=speed) for row in self.rows]

    def share_within_tolerance(self, **options: Any) -> float:
        """The share of architectures predicted within +-10% of their measured latency."""
        errors = self.errors(**options)
        return sum(abs(error) <= TOLERANCE for error in errors) / len(errors)

    def median_absolute_error(self, **options: Any) -> float:
        return statistics.median(abs(error) for error in self.errors(**options))

    def median_signed_error(self, **options: Any) -> float:
        """Systematic bias: above zero when the table overestimates the typical architecture."""
        return statistics.median(self.errors(**options))

    def summary(self, **options: Any) -> dict[str, float]:
        """``errors``' options: calibrated (True), against ("fastest" or "median") and for_speed (False)."""
        return {"share_within_10_percent": self.share_within_tolerance(**options),
                "median_absolute_error": self.median_absolute_error(**options),
                "median_signed_error": self.median_signed_error(**options)}

    def to_dict(self) -> dict[str, Any]:
        return {"space": self.space, "seed": self.seed, "architectures": len(self.rows), "repeats": self.repeats,
                "seconds": self.seconds, "interaction_factor": self.interaction_factor, "speed": self.speed,
                "calibrated": self.summary(), "sum_of_parts": self.summary(calibrated=False),
                "calibrated_for_speed": self.summary(for_speed=True),
                "calibrated_against_median": self.summary(against="median"),
                "rows": [asdict(row) | {"relative_error": row.relative_error()} for row in self.rows]}


def validate_predictor(table: LatencyTable, space: SearchSpace, n: int = 50, *, seed: int = 0,
                       repeats: int = DEFAULT_VALIDATION_REPEATS, warmup: int = DEFAULT_TABLE_WARMUP,
                       on_progress: Callable[[int, int], None] | None = None) -> PredictorValidation:
    """Sample ``n`` architectures of ``space`` (seeded), predict each from the table and measure it end to end
    with the table's batch size, threads and clock, ``repeats`` runs each interleaved as the table's parts were.
    The table's calibration architectures are held out. ``on_progress(done, total)`` counts timed runs."""
    _check_positive("n", n)
    started = time.perf_counter()
    archs = list(_held_out_sample(table, space, n, seed))
    samples, speed = measure_with_reference(table, space, archs, repeats=repeats, warmup=warmup,
                                            on_progress=on_progress)
    rows = tuple(PredictionRow(arch.arch_id, summary(arch), len(arch_parts(arch)),
                               predict_latency(table, arch, calibrated=False), predict_latency(table, arch),
                               min(runs), statistics.median(runs))
                 for arch, runs in zip(archs, samples, strict=True))
    return PredictorValidation(space.name, seed, repeats, table.interaction_factor, speed, rows,
                               time.perf_counter() - started)


def _held_out_sample(table: LatencyTable, space: SearchSpace, n: int, seed: int) -> Iterator[Arch]:
    chooser = RandomChooser(seed)
    held_out = set(table.calibration_arch_ids) | set(table.reference_arch_ids)
    found = 0
    for _ in range(n * MAX_DRAWS_PER_ARCHITECTURE):
        arch = sample(space, chooser, in_channels=table.in_channels, num_classes=table.num_classes,
                      resolution=table.resolution)
        if arch.arch_id not in held_out:
            yield arch
            found += 1
            if found == n:
                return
    raise LatencyTableError(f"space {space.name!r} has too few architectures outside the table's calibration set "
                            "for this validation; ask for fewer")
