"""A latency lookup table for a search space, as in MnasNet, ProxylessNAS and FBNet: every distinct part a
space can produce (stem, each block configuration at its input size, ConvNeXt downsampling, head) is timed
once on its own, and an architecture's latency is predicted as the sum of its parts, without building it.

A part's key names everything that changes its work: for a block, its type, input and output widths, stride,
kernel, expansion, squeeze-excite ratio, activation, whether its residual is taken, and its input size. A
stage's first block differs from its repeats (width, stride, residual), so both are listed. The possible input
widths of a stage are the output widths the previous stage can choose; the sizes follow from the resolution
and the strides alone.

How the parts are timed decides how well they add up. Each part's entry is its fastest of ``repeats`` runs,
timed in rounds over all the parts (``nasscale.evaluate.latency.time_interleaved``): each part then runs after a
different one, with its weights out of cache as inside a network, and its runs are spread over the whole build, so a
burst of other jobs on a shared machine spoils one of them, not all. Timed back to back instead (the first version of
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

Predicting and loading are light (no torch); building the table (``nasscale.evaluate.latency_calibration``)
imports torch.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from itertools import product
from os import PathLike
from pathlib import Path
from typing import Any

from nasscale.errors import NasscaleError, SpecError, read_text_file
from nasscale.space.domains import distinct_integer_values, distinct_values
from nasscale.space.model import SearchSpace, StageSpace, build_stage
from nasscale.spec.arch import (
    Arch,
    BlockPlacement,
    StagePlacement,
    final_feature_size,
    iter_stages,
    last_channels,
    stage_blocks,
    stem_output_size,
)
from nasscale.spec.geometry import has_residual, stage_output_size
from nasscale.spec.inception import MIXED_BLOCKS
from nasscale.spec.stage import Stage
from nasscale.spec.vocabulary import HEADS_WITH_CHANNELS, BlockType, StemType

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
    clock: str  # nasscale.evaluate.latency.CLOCKS: wall or the thread's cpu time
    torch_version: str
    allocator: str  # nasscale.evaluate.latency.steady_allocator's mode while timing
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
    try:
        text = read_text_file(path, what="latency table", hint="build one with 'nasscale latency-table --space "
                              "NAME --out FILE'")
    except SpecError as error:  # the table's own error type, as every other problem with it
        raise LatencyTableError(str(error)) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
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
    resolutions = (table.resolution,) if table.resolution is not None else distinct_integer_values(space.resolution)
    bounds = [_latency_bounds_at(table, space, resolution) for resolution in resolutions]
    low, high = min(low for low, _ in bounds), max(high for _, high in bounds)
    return (table.interaction_factor * low + table.overhead_ms, table.interaction_factor * high + table.overhead_ms)


def _latency_bounds_at(table: LatencyTable, space: SearchSpace, resolution: int) -> tuple[float, float]:
    states: dict[tuple[int, int], tuple[float, float]] = {}  # (width, size) -> (fastest, slowest) so far
    for stem_channels in distinct_integer_values(space.stem_channels):
        probe = _probe_arch(space, stem_channels=stem_channels, features=stem_channels, head_channels=None,
                            in_channels=table.in_channels, num_classes=table.num_classes, resolution=resolution)
        stem = _entry(table, stem_key(probe))
        states[(stem_channels, stem_output_size(probe))] = (stem, stem)
    for index, stage_space in enumerate(space.stages):
        depths = distinct_integer_values(stage_space.num_blocks)
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
    head_widths = distinct_integer_values(space.head_channels)
    for ((features, size), (low, high)), head_channels in product(states.items(), head_widths):
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
    resolutions = (resolution,) if resolution is not None else distinct_integer_values(space.resolution)
    parts: dict[str, Part] = {}
    for size in resolutions:
        for part in _space_parts_at(space, in_channels=in_channels, num_classes=num_classes, resolution=size):
            parts.setdefault(part.key, part)
    return list(parts.values())


# Blocks whose parts are not timed on (N, C, H, W) feature maps: a transformer's tokens, Inception's branches.
UNTIMED_BLOCKS = frozenset({BlockType.TRANSFORMER}) | MIXED_BLOCKS


def require_listed_stages(space: SearchSpace) -> None:
    if space.regnet is not None:
        raise LatencyTableError(f"space {space.name!r} generates its stages by RegNet's rule, which a latency table "
                                "does not enumerate; measure its architectures instead (nasscale latency)")
    untimed = sorted({variant.block.value for stage in space.stages for variant in stage.block} & UNTIMED_BLOCKS)
    if untimed or space.stem is StemType.INCEPTION:
        raise LatencyTableError(f"space {space.name!r} has {', '.join(untimed) or 'an inception'} "
                                f"{'blocks' if untimed else 'stem'}, which a latency table does not time (it times "
                                "parts on feature maps, not tokens or Inception's branches); measure its "
                                "architectures instead (nasscale latency)")


def _space_parts_at(space: SearchSpace, *, in_channels: int, num_classes: int, resolution: int) -> Iterator[Part]:
    states: set[tuple[int, int]] = set()  # (width, size) a stage's input can have
    for stem_channels in distinct_integer_values(space.stem_channels):
        probe = _probe_arch(space, stem_channels=stem_channels, features=stem_channels, head_channels=None,
                            in_channels=in_channels, num_classes=num_classes, resolution=resolution)
        yield _stem_part(probe)
        states.add((stem_channels, stem_output_size(probe)))
    for index, stage_space in enumerate(space.stages):
        reached: set[tuple[int, int]] = set()
        repeats = max(distinct_integer_values(stage_space.num_blocks)) >= 2
        for stage in _stage_configurations(stage_space, space, repeats=repeats):
            for channels, size in sorted(states):
                placement = StagePlacement(index, stage, channels, size, 0)
                yield from _stage_parts(placement)
                reached.add((stage.out_channels, stage_output_size(stage, channels, size)))
        states = reached
    for (features, size), head_channels in product(sorted(states), distinct_integer_values(space.head_channels)):
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
        # torch: imported where needed, so this module loads without it
        from nasscale.models.build import build_stem

        return build_stem(probe)

    return Part(stem_key(probe), "stem", make, probe.in_channels, probe.resolution)


def _head_part(probe: Arch, size: int) -> Part:
    def make() -> Any:
        # torch: imported where needed, so this module loads without it
        from nasscale.models.build import Head

        return Head(probe)

    # The probe's own final size is not the real one; the head module does not depend on it.
    return Part(head_key(probe, size), "head", make, last_channels(probe), size)


def _stage_parts(placement: StagePlacement) -> Iterator[Part]:
    stage = placement.stage
    if placement.has_transition:
        def make_transition() -> Any:
            # torch: imported where needed, so this module loads without it
            from nasscale.models.blocks import convnext_transition

            return convnext_transition(placement.in_channels, stage.out_channels, stage.stride)

        yield Part(transition_key(placement), "transition", make_transition, placement.in_channels,
                   placement.input_size)
    for block in stage_blocks(placement):
        yield Part(block_key(block), "block", _block_maker(block), block.in_channels, block.input_size)


def _block_maker(block: BlockPlacement) -> Callable[[], Any]:
    def make() -> Any:
        # torch: imported where needed, so this module loads without it
        from nasscale.models.build import build_block

        return build_block(block, 0.0)

    return make
