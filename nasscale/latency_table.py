"""A latency lookup table for a search space, as in MnasNet, ProxylessNAS and FBNet: every distinct part a
space can produce (stem, each block configuration at its input size, ConvNeXt downsampling, head) is timed
once on its own, and an architecture's latency is predicted as the sum of its parts, without building it.

A part's key names everything that changes its work: for a block, its type, input and output widths, stride,
kernel, expansion, squeeze-excite ratio, activation, whether its residual is taken, and its input size. A
stage's first block differs from its repeats (width, stride, residual), so both are listed. The possible input
widths of a stage are the output widths the previous stage can choose; the sizes follow from the resolution
and the strides alone.

How the parts are timed decides how well they add up. Each part's entry is its fastest of ``repeats`` runs,
timed in rounds over all the parts (``nasscale.latency.time_interleaved``): each part then runs after a different
one, with its weights out of cache as inside a network, and its runs are spread over the whole build, so a burst
of other jobs on a shared machine spoils one of them, not all. Timed back to back instead (the first version of
this table), a part ran 15-30% faster than inside a network, and by how much varied with the part, which no single
factor could correct: 74-82% of mnas networks were predicted within +-10%, against 72-96% now (README).

Two small corrections remain. A whole network pays for its containers (the network, the stage sequences), which
no part's timing includes: ``overhead_ms`` is measured on the space's empty network (a sampled architecture with
every timed part replaced by an identity) and added once. And ``interaction_factor``, the median ratio of
(measured - overhead) to the sum of parts over a few sampled calibration architectures (timed the same way), takes
up what is left of the difference (0.96-1.07 on mnas); the table keeps their ids so that a validation can hold them out.

A shared machine also changes speed for minutes at a time (another job on the host): the same networks measured a
few seconds apart differed by up to 35% here. So the table keeps the fastest runs of a few fixed architectures of the
space, its references, timed with the calibration architectures (``reference_ms``); a validation times them again
beside its networks, and the median ratio of now to then is the machine's speed factor, reported beside the
errors: how far the prediction is off once the machine running slower or faster than at calibration is allowed
for.

Predicting and loading are light (no torch); building the table imports torch.
"""

from __future__ import annotations

import json
import logging
import math
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from itertools import product
from os import PathLike
from pathlib import Path
from typing import Any

from nasscale.arch import (
    HEADS_WITH_CHANNELS,
    Arch,
    BlockPlacement,
    BlockType,
    Stage,
    StagePlacement,
    final_feature_size,
    has_residual,
    iter_stages,
    last_channels,
    stage_blocks,
    stage_output_size,
    stem_output_size,
    summary,
)
from nasscale.errors import NasscaleError, SpecError
from nasscale.space import SearchSpace, StageSpace, build_stage, distinct_values

logger = logging.getLogger(__name__)

# Bump when keys or entries change meaning, so an old file is rejected rather than silently misread. Format 2:
# entries are the fastest of interleaved runs (format 1: medians of runs back to back).
TABLE_FORMAT = 2
DEFAULT_TABLE_REPEATS = 25  # runs of each part and each calibration network
DEFAULT_TABLE_WARMUP = 3
DEFAULT_VALIDATION_REPEATS = 25
TOLERANCE = 0.10  # the share of predictions within +-10% of the measurement
DEFAULT_CALIBRATION = 40
CALIBRATION_SEED = 7_919  # a stream of its own: validations sample with small seeds
OVERHEAD_REPEATS = 200  # the empty network takes microseconds: many repeats for a steady median
REFERENCES = 5  # architectures timed beside calibration and validation networks: the machine's speed
MAX_DRAWS_PER_ARCHITECTURE = 100  # a validation resamples calibration architectures; small spaces run out
DEPTH_FIELD = "num_blocks"  # depth changes how many repeats, not what one costs


class LatencyTableError(NasscaleError):
    """A latency table that is missing, unreadable, or does not cover an architecture."""


# ---------------------------------------------------------------------------------------------------------------
# Keys: one readable string per distinct part


def block_key(block: BlockPlacement) -> str:
    stage = block.stage
    residual = "residual" if has_residual(stage, block.in_channels, block.stride) else "plain"
    return (f"block {stage.block.value} in{block.in_channels} out{stage.out_channels} s{block.stride} "
            f"k{stage.kernel_size} e{stage.expand_ratio:g} se{stage.se_ratio:g} {stage.activation.value} "
            f"{residual} @{block.input_size}")


def transition_key(placement: StagePlacement) -> str:
    stage = placement.stage
    return f"transition in{placement.in_channels} out{stage.out_channels} s{stage.stride} @{placement.input_size}"


def stem_key(arch: Arch) -> str:
    return (f"stem {arch.stem.value} in{arch.in_channels} out{arch.stem_channels} {arch.activation.value} "
            f"@{arch.resolution}")


def head_key(arch: Arch, size: int | None = None) -> str:
    """The head's key; ``size`` (of its input) defaults to ``arch``'s final feature size."""
    size = final_feature_size(arch) if size is None else size
    return (f"head {arch.head.value} in{last_channels(arch)} out{arch.head_channels} classes{arch.num_classes} "
            f"{arch.activation.value} @{size}")


def arch_parts(arch: Arch) -> list[str]:
    """The keys of every part of ``arch`` in forward order, one per block (repeats included)."""
    keys = [stem_key(arch)]
    for placement in iter_stages(arch):
        if placement.has_transition:
            keys.append(transition_key(placement))
        keys.extend(block_key(block) for block in stage_blocks(placement))
    keys.append(head_key(arch))
    return keys


# ---------------------------------------------------------------------------------------------------------------
# The table


@dataclass(frozen=True, slots=True, kw_only=True)
class LatencyTable:
    """Milliseconds of each part of a space at one batch size and thread count: the fastest of ``repeats`` runs,
    interleaved with the other parts' runs."""

    space: str
    in_channels: int
    num_classes: int
    resolution: int | None  # None: every resolution the space offers
    batch_size: int
    threads: int
    repeats: int
    warmup: int
    device: str
    clock: str  # nasscale.latency.CLOCKS: wall or the thread's cpu time
    torch_version: str
    allocator: str  # nasscale.latency.steady_allocator's mode while timing
    overhead_ms: float  # the empty network's fastest run: containers a whole network pays once
    interaction_factor: float  # network / sum of parts, fitted on the calibration architectures; 1 without
    calibration_arch_ids: tuple[str, ...]
    # Fixed architectures of the space timed with the calibration ones, and their fastest runs: the machine's speed.
    reference_arch_ids: tuple[str, ...]
    reference_ms: tuple[float, ...]
    build_seconds: float
    entries: dict[str, float] = field(default_factory=dict)  # part key -> fastest milliseconds

    def to_dict(self) -> dict[str, Any]:
        return {"format": TABLE_FORMAT, **asdict(self), "calibration_arch_ids": list(self.calibration_arch_ids),
                "reference_arch_ids": list(self.reference_arch_ids), "reference_ms": list(self.reference_ms)}

    def save(self, path: str | PathLike[str]) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))


TABLE_FIELDS = tuple(LatencyTable.__dataclass_fields__)


def load_latency_table(path: str | PathLike[str]) -> LatencyTable:
    """Read a table written by ``LatencyTable.save``; a missing or damaged file is one clear line."""
    file = Path(path)
    if not file.is_file():
        raise LatencyTableError(f"{path}: no such latency table; build one with "
                                "'nasscale latency-table --space NAME --out FILE'")
    try:
        data = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise LatencyTableError(f"{path}: not a latency table (invalid JSON: {error}); rebuild it") from None
    if not isinstance(data, dict) or data.get("format") != TABLE_FORMAT:
        found = data.get("format") if isinstance(data, dict) else None
        raise LatencyTableError(f"{path}: not a latency table of format {TABLE_FORMAT} (got format {found!r}); "
                                "rebuild it with 'nasscale latency-table'")
    missing = [name for name in TABLE_FIELDS if name not in data]
    entries = data.get("entries")
    if missing or not isinstance(entries, dict) or not all(map(_is_time, entries.values())):
        problem = f"missing {', '.join(missing)}" if missing else "entries must map part keys to milliseconds"
        raise LatencyTableError(f"{path}: damaged latency table ({problem}); rebuild it")
    values = {name: data[name] for name in TABLE_FIELDS}
    for name in ("calibration_arch_ids", "reference_arch_ids", "reference_ms"):
        values[name] = tuple(values[name])
    return LatencyTable(**values)


def _is_time(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def sum_of_parts(table: LatencyTable, arch: Arch) -> float:
    """The plain sum of the entries of ``arch``'s parts. A part the table lacks is an error naming it."""
    return sum(_entry(table, key, arch) for key in arch_parts(arch))


def _entry(table: LatencyTable, key: str, arch: Arch | None = None) -> float:
    if key not in table.entries:
        owner = f" of architecture {arch.arch_id}" if arch is not None else ""
        shape = arch or table
        raise LatencyTableError(
            f"the latency table of space {table.space!r} ({table.in_channels} input channels, "
            f"{table.num_classes} classes) has no entry for '{key}'{owner}; rebuild the table for this space with "
            f"'nasscale latency-table --space SPACE --in-channels {shape.in_channels} --num-classes "
            f"{shape.num_classes}'")
    return table.entries[key]


def predict_latency(table: LatencyTable, arch: Arch, *, calibrated: bool = True) -> float:
    """Predicted milliseconds of one forward pass of ``arch``, without building it: the sum of its parts times
    the table's interaction factor, plus the empty network's overhead (``calibrated=False``: factor 1)."""
    factor = table.interaction_factor if calibrated else 1.0
    return factor * sum_of_parts(table, arch) + table.overhead_ms


def latency_range(table: LatencyTable, space: SearchSpace) -> tuple[float, float]:
    """The smallest and largest predicted latency over every architecture of ``space`` (at the table's
    resolution, or every resolution), exact: a stage's latency depends only on its input width and size and its
    own fields, so a dynamic program over (width, size) states bounds it, as ``space.cost_range`` bounds MACs.
    For checking a latency budget is reachable before a search starts."""
    require_listed_stages(space)
    resolutions = (table.resolution,) if table.resolution is not None else distinct_values(space.resolution)
    bounds = [_latency_bounds_at(table, space, resolution) for resolution in resolutions]
    low, high = min(low for low, _ in bounds), max(high for _, high in bounds)
    return (table.interaction_factor * low + table.overhead_ms, table.interaction_factor * high + table.overhead_ms)


def _latency_bounds_at(table: LatencyTable, space: SearchSpace, resolution: int) -> tuple[float, float]:
    states: dict[tuple[int, int], tuple[float, float]] = {}  # (width, size) -> (fastest, slowest) so far
    for stem_channels in distinct_values(space.stem_channels):
        probe = _probe_arch(space, stem_channels=stem_channels, features=stem_channels, head_channels=None,
                            in_channels=table.in_channels, num_classes=table.num_classes, resolution=resolution)
        stem = _entry(table, stem_key(probe))
        states[(stem_channels, stem_output_size(probe))] = (stem, stem)
    for index, stage_space in enumerate(space.stages):
        depths = distinct_values(stage_space.num_blocks)
        reached: dict[tuple[int, int], tuple[float, float]] = {}
        for stage in _stage_configurations(stage_space, space, repeats=max(depths) >= 2):
            for (channels, size), (low, high) in states.items():
                placement = StagePlacement(index, stage, channels, size, 0)
                fixed, repeat = _stage_latency(table, placement)
                key = (stage.out_channels, stage_output_size(stage, channels, size))
                previous = reached.get(key, (math.inf, -math.inf))
                reached[key] = (min(previous[0], low + fixed + (min(depths) - 1) * repeat),
                                max(previous[1], high + fixed + (max(depths) - 1) * repeat))
        states = reached
    totals = []
    for ((features, size), (low, high)), head_channels in product(states.items(), distinct_values(space.head_channels)):
        probe = _probe_arch(space, stem_channels=features, features=features, head_channels=head_channels,
                            in_channels=table.in_channels, num_classes=table.num_classes, resolution=resolution)
        head = _entry(table, head_key(probe, size))
        totals.append((low + head, high + head))
    return min(low for low, _ in totals), max(high for _, high in totals)


def _stage_latency(table: LatencyTable, placement: StagePlacement) -> tuple[float, float]:
    """A stage's latency as (transition + first block, one repeat block): depth d costs fixed + (d - 1) x repeat."""
    fixed = _entry(table, transition_key(placement)) if placement.has_transition else 0.0
    blocks = [_entry(table, block_key(block)) for block in stage_blocks(placement)]
    return fixed + blocks[0], blocks[1] if len(blocks) > 1 else 0.0


# ---------------------------------------------------------------------------------------------------------------
# Enumerating the parts of a space


@dataclass(frozen=True, slots=True)
class Part:
    """One distinct part to time: its key, how to build it, and its input's channels and size."""

    key: str
    kind: str  # stem, block, transition, head
    build: Callable[[], Any]  # -> nn.Module; built only when timed
    channels: int
    size: int


def space_parts(space: SearchSpace, *, in_channels: int, num_classes: int,
                resolution: int | None = None) -> list[Part]:
    """Every distinct part that ``sample(space, ..., resolution=resolution)`` can produce, once each."""
    require_listed_stages(space)
    resolutions = (resolution,) if resolution is not None else distinct_values(space.resolution)
    parts: dict[str, Part] = {}
    for size in resolutions:
        for part in _space_parts_at(space, in_channels=in_channels, num_classes=num_classes, resolution=size):
            parts.setdefault(part.key, part)
    return list(parts.values())


def require_listed_stages(space: SearchSpace) -> None:
    if space.regnet is not None:
        raise LatencyTableError(f"space {space.name!r} generates its stages by RegNet's rule, which a latency table "
                                "does not enumerate; measure its architectures instead (nasscale latency)")


def _space_parts_at(space: SearchSpace, *, in_channels: int, num_classes: int, resolution: int) -> Iterator[Part]:
    states: set[tuple[int, int]] = set()  # (width, size) a stage's input can have
    for stem_channels in distinct_values(space.stem_channels):
        probe = _probe_arch(space, stem_channels=stem_channels, features=stem_channels, head_channels=None,
                            in_channels=in_channels, num_classes=num_classes, resolution=resolution)
        yield _stem_part(probe)
        states.add((stem_channels, stem_output_size(probe)))
    for index, stage_space in enumerate(space.stages):
        reached: set[tuple[int, int]] = set()
        repeats = max(distinct_values(stage_space.num_blocks)) >= 2
        for stage in _stage_configurations(stage_space, space, repeats=repeats):
            for channels, size in sorted(states):
                placement = StagePlacement(index, stage, channels, size, 0)
                yield from _stage_parts(placement)
                reached.add((stage.out_channels, stage_output_size(stage, channels, size)))
        states = reached
    for (features, size), head_channels in product(sorted(states), distinct_values(space.head_channels)):
        probe = _probe_arch(space, stem_channels=features, features=features, head_channels=head_channels,
                            in_channels=in_channels, num_classes=num_classes, resolution=resolution)
        yield _head_part(probe, size)


def _stage_configurations(stage_space: StageSpace, space: SearchSpace, *, repeats: bool) -> Iterator[Stage]:
    """One Stage per combination of the fields that change a block's work, with one repeat where depth allows."""
    for variant in stage_space.block:
        domains = stage_space.field_domains(variant, space.activation)
        names = [name for name in domains if name != DEPTH_FIELD]
        for combination in product(*(distinct_values(domains[name]) for name in names)):
            values = dict(zip(names, combination, strict=True)) | {DEPTH_FIELD: 2 if repeats else 1}
            yield build_stage(variant.block, stage_space.stride, values)


def _probe_arch(space: SearchSpace, *, stem_channels: int, features: int, head_channels: int | None,
                in_channels: int, num_classes: int, resolution: int) -> Arch:
    """An architecture whose stem (or head) is the one wanted; its single stage is a stand-in of the right width."""
    if head_channels is None:  # the stem's probe: any head the space accepts
        head_channels = 1 if space.head in HEADS_WITH_CHANNELS else 0
    stand_in = Stage(block=BlockType.CONV, num_blocks=1, out_channels=features, stride=1)
    return Arch(stages=(stand_in,), stem_channels=stem_channels, head_channels=head_channels, resolution=resolution,
                in_channels=in_channels, num_classes=num_classes, **space.arch_fields())


def _stem_part(probe: Arch) -> Part:
    def make() -> Any:
        from nasscale.build import build_stem

        return build_stem(probe)

    return Part(stem_key(probe), "stem", make, probe.in_channels, probe.resolution)


def _head_part(probe: Arch, size: int) -> Part:
    def make() -> Any:
        from nasscale.build import Head

        return Head(probe)

    # The probe's own final size is not the real one; the head module does not depend on it.
    return Part(head_key(probe, size), "head", make, last_channels(probe), size)


def _stage_parts(placement: StagePlacement) -> Iterator[Part]:
    stage = placement.stage
    if placement.has_transition:
        def make_transition() -> Any:
            from nasscale.blocks import convnext_transition

            return convnext_transition(placement.in_channels, stage.out_channels, stage.stride)

        yield Part(transition_key(placement), "transition", make_transition, placement.in_channels,
                   placement.input_size)
    for block in stage_blocks(placement):
        yield Part(block_key(block), "block", _block_maker(block), block.in_channels, block.input_size)


def _block_maker(block: BlockPlacement) -> Callable[[], Any]:
    def make() -> Any:
        from nasscale.build import build_block

        return build_block(block, 0.0)

    return make


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
    space is covered. ``clock`` is ``nasscale.latency.CLOCKS``' wall or cpu (one thread; steadier on a shared
    machine). ``on_progress(done, total, what)`` counts timed runs, parts then calibration architectures."""
    import torch

    from nasscale.latency import check_timing_options, random_input, steady_allocator, time_forward, time_interleaved

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
        from nasscale.latency import random_input

        return part.build(), random_input(batch_size, part.channels, part.size)

    return make


def measure_networks(archs: list[Arch], *, batch_size: int, threads: int, repeats: int, warmup: int, clock: str,
                     on_progress: Callable[[int, int], None] | None = None) -> list[list[float]]:
    """Every run's milliseconds of each architecture built whole, timed the way the table times its parts."""
    from nasscale.latency import time_interleaved

    return time_interleaved([_network_maker(arch, batch_size) for arch in archs], rounds=repeats, warmup=warmup,
                            threads=threads, clock=clock, on_progress=on_progress)


def _network_maker(arch: Arch, batch_size: int) -> Callable[[], Any]:
    def make() -> Any:
        from nasscale.build import build
        from nasscale.latency import random_input

        return build(arch), random_input(batch_size, arch.in_channels, arch.resolution)

    return make


def reference_archs(space: SearchSpace, *, in_channels: int, num_classes: int, resolution: int | None,
                    count: int = REFERENCES) -> list[Arch]:
    """The first ``count`` architectures of the calibration stream: its first ``REFERENCES`` are the table's
    references, which validations hold out with the calibration architectures."""
    from nasscale.sampling import RandomChooser, sample

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

    from nasscale.build import build
    from nasscale.sampling import RandomChooser, sample

    arch = sample(space, RandomChooser(0), in_channels=in_channels, num_classes=num_classes, resolution=resolution)
    model = build(arch).eval()
    model.stem, model.head = nn.Identity(), nn.Identity()
    for stage in model.stages:
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
    from nasscale.sampling import RandomChooser, sample

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
