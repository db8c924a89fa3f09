"""The search-space DSL: which architectures a search may try, as frozen dataclasses loaded from YAML.

A space holds the ``Arch`` global fields and a list of stages whose fields are the ``Stage`` fields.
Every searchable field holds a *domain*:

    stride: 2                                        Fixed        one value (a stage's stride is always fixed)
    kernel_size: [3, 5]                              Categorical  one of a list
    num_blocks: {low: 1, high: 4, step: 1}           IntRange     low..high in steps (step defaults to 1)
    out_channels: {base: 24, multipliers: [0.75, 1]} Multipliers  round_filters(base, multiplier)
    num_blocks: {base: 2, deltas: [-1, 0, 1]}        Deltas       base + delta
    block: [conv, {block: mbconv, expand_ratio: 6}]  block variants, labelled conv and mbconv_e6

A field that does not apply to the chosen block type (``arch.APPLICABLE_FIELDS``) is neither sampled nor
set, so every sampled ``Arch`` is canonical. A stage without ``activation`` takes the space's
``activation``, else the block type's default. Loading checks every value a sample could draw, so a loaded
space only yields valid architectures; all problems come at once as one ``SpaceError``.

Light core: no torch, no numpy.
"""

from __future__ import annotations

import difflib
import functools
import importlib.resources
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.resources.abc import Traversable
from itertools import combinations, product
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nasscale import cost as cost_model
from nasscale.arch import (
    ACTIVATION_ALIASES,
    APPLICABLE_FIELDS,
    DEFAULT_ACTIVATION,
    HEADS_WITH_CHANNELS,
    STAGE_DEFAULTS,
    STAGE_FIELDS,
    Activation,
    Arch,
    BlockType,
    HeadType,
    Stage,
    StagePlacement,
    StemType,
    final_feature_size,
    stage_output_size,
    stem_output_size,
)
from nasscale.errors import SpaceError, SpecError, UnknownNameError
from nasscale.scaling import round_filters

if TYPE_CHECKING:
    from nasscale.families.regnet_space import RegNetSpace

Scalar = str | int | float | bool

# ---------------------------------------------------------------------------------------------------
# Domains: the values one field may take


@dataclass(frozen=True, slots=True, kw_only=True)
class Fixed:
    value: Scalar

    def values(self) -> tuple[Scalar, ...]:
        return (self.value,)

    def to_data(self) -> Any:
        return self.value


@dataclass(frozen=True, slots=True, kw_only=True)
class Categorical:
    choices: tuple[Scalar, ...]

    def __post_init__(self) -> None:
        if not self.choices:
            raise SpecError("", "empty list of choices")
        _check_unique(self.choices, "choice")

    def values(self) -> tuple[Scalar, ...]:
        return self.choices

    def to_data(self) -> Any:
        return list(self.choices)


@dataclass(frozen=True, slots=True, kw_only=True)
class IntRange:
    low: int
    high: int
    step: int = 1

    def __post_init__(self) -> None:
        for name in ("low", "high", "step"):
            if not _is_int(getattr(self, name)):
                raise SpecError("", f"range {name} must be an integer, got {getattr(self, name)!r}")
        if self.step < 1:
            raise SpecError("", f"range step must be at least 1, got {self.step}")
        if self.low > self.high:
            raise SpecError("", f"range low {self.low} is greater than high {self.high}")
        if (self.high - self.low) % self.step:
            # Optuna would silently move high; say so instead.
            raise SpecError("", f"range high - low ({self.high - self.low}) is not a multiple of step {self.step}")

    def values(self) -> tuple[int, ...]:
        return tuple(range(self.low, self.high + 1, self.step))

    def to_data(self) -> Any:
        return {"low": self.low, "high": self.high, "step": self.step}


@dataclass(frozen=True, slots=True, kw_only=True)
class Multipliers:
    """Channels relative to a backbone width, MnasNet style, rounded by EfficientNet's rule."""

    base: int
    multipliers: tuple[float, ...]

    def __post_init__(self) -> None:
        if not _is_int(self.base) or self.base < 1:
            raise SpecError("", f"base must be a positive integer, got {self.base!r}")
        if not self.multipliers:
            raise SpecError("", "empty list of multipliers")
        for multiplier in self.multipliers:
            if not _is_number(multiplier) or multiplier <= 0:
                raise SpecError("", f"multipliers must be positive numbers, got {multiplier!r}")
        _check_unique(self.multipliers, "multiplier")

    def resolve(self, multiplier: float) -> int:
        return round_filters(self.base, multiplier)

    def values(self) -> tuple[int, ...]:
        return tuple(self.resolve(multiplier) for multiplier in self.multipliers)

    def to_data(self) -> Any:
        return {"base": self.base, "multipliers": list(self.multipliers)}


@dataclass(frozen=True, slots=True, kw_only=True)
class Deltas:
    """Layers relative to a backbone depth, MnasNet style."""

    base: int
    deltas: tuple[int, ...]

    def __post_init__(self) -> None:
        if not _is_int(self.base):
            raise SpecError("", f"base must be an integer, got {self.base!r}")
        if not self.deltas:
            raise SpecError("", "empty list of deltas")
        for delta in self.deltas:
            if not _is_int(delta):
                raise SpecError("", f"deltas must be integers, got {delta!r}")
        _check_unique(self.deltas, "delta")

    def resolve(self, delta: int) -> int:
        return self.base + delta

    def values(self) -> tuple[int, ...]:
        return tuple(self.resolve(delta) for delta in self.deltas)

    def to_data(self) -> Any:
        return {"base": self.base, "deltas": list(self.deltas)}


Domain = Fixed | Categorical | IntRange | Multipliers | Deltas


def distinct_values(domain: Domain) -> tuple[Scalar, ...]:
    """The values a domain can produce, once each (two multipliers may round to the same width)."""
    return tuple(dict.fromkeys(domain.values()))


def _explained_values(domain: Domain) -> list[tuple[Scalar, str]]:
    """Each value with how a relative domain got it, so a problem line can say where it came from."""
    match domain:
        case Multipliers(base=base, multipliers=multipliers):
            return [(domain.resolve(m), f" (round_filters({base}, {m:g}))") for m in multipliers]
        case Deltas(base=base, deltas=deltas):
            return [(domain.resolve(d), f" (base {base}, delta {d:+d})") for d in deltas]
    return [(value, "") for value in domain.values()]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_unique(values: tuple[Any, ...], what: str) -> None:
    seen: list[Any] = []
    for value in values:
        # A list scan rather than a set: 1 == True and 3 == 3.0 must count as repeats, [] must not crash.
        if value in seen:
            raise SpecError("", f"lists the {what} {value!r} more than once")
        seen.append(value)


# ---------------------------------------------------------------------------------------------------
# Stages and the space

# The optional Stage fields: what a block variant may fix and what APPLICABLE_FIELDS filters.
OPTIONAL_STAGE_FIELDS = ("kernel_size", "expand_ratio", "se_ratio", "activation", "skip", "groups", "bottleneck_ratio")

# Short tags that make a variant's label readable: {block: mbconv, expand_ratio: 6, kernel_size: 5} -> mbconv_k5_e6.
LABEL_TAGS = {"kernel_size": "k", "expand_ratio": "e", "se_ratio": "se", "groups": "g", "bottleneck_ratio": "b"}


@dataclass(frozen=True, slots=True, kw_only=True)
class BlockVariant:
    """One block choice: a block type, optionally with some of its fields fixed (MnasNet's "mbconv e3")."""

    block: BlockType
    fixed: tuple[tuple[str, Scalar], ...] = ()  # (field, value), kept in Stage field order

    def __post_init__(self) -> None:
        if not isinstance(self.block, BlockType):
            raise SpecError("block", f"must be a BlockType, got {self.block!r}")
        for name, _ in self.fixed:
            if name not in OPTIONAL_STAGE_FIELDS:
                raise SpecError(name, f"unknown key; valid keys are block, {', '.join(OPTIONAL_STAGE_FIELDS)}")
            if name not in APPLICABLE_FIELDS[self.block]:
                raise SpecError(name, f"does not apply to {self.block.value} blocks")
        names = [name for name, _ in self.fixed]
        if len(set(names)) != len(names):
            raise SpecError("", f"fixes a field twice: {names}")
        # Normalised so that the same variant written in any key order has one label and compares equal.
        object.__setattr__(self, "fixed", tuple(sorted(self.fixed, key=lambda item: STAGE_FIELDS.index(item[0]))))

    @property
    def label(self) -> str:
        return "_".join([self.block.value, *(_label_tag(name, value) for name, value in self.fixed)])

    def to_data(self) -> Any:
        return {"block": self.block.value, **dict(self.fixed)} if self.fixed else self.block.value


def _label_tag(name: str, value: Scalar) -> str:
    if name == "skip":
        return "skip" if value else "noskip"
    shown = f"{value:g}" if _is_number(value) else str(value)
    return LABEL_TAGS.get(name, "") + shown


@dataclass(frozen=True, slots=True, kw_only=True)
class StageSpace:
    block: tuple[BlockVariant, ...]
    num_blocks: Domain
    out_channels: Domain
    stride: int
    kernel_size: Domain | None = None  # None: not given, the Stage default
    expand_ratio: Domain | None = None
    se_ratio: Domain | None = None
    activation: Domain | None = None  # None: the space's activation, else the block type's default
    skip: Domain | None = None
    groups: Domain | None = None
    bottleneck_ratio: Domain | None = None

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(variant.label for variant in self.block)

    def variant(self, label: str) -> BlockVariant:
        for variant in self.block:
            if variant.label == label:
                return variant
        raise SpecError("block", f"unknown block choice {label!r}; the choices are {', '.join(self.labels)}")

    def field_domains(self, variant: BlockVariant, activation: Activation | None) -> dict[str, Domain]:
        """The domain of every field that ``variant`` uses (block and stride aside), in Stage field order.
        Fields the block type ignores are left out, so they keep their Stage defaults."""
        applicable = APPLICABLE_FIELDS[variant.block]
        fixed = dict(variant.fixed)
        domains: dict[str, Domain] = {"num_blocks": self.num_blocks, "out_channels": self.out_channels}
        for name in OPTIONAL_STAGE_FIELDS:
            if name not in applicable:
                continue
            if name in fixed:
                domains[name] = Fixed(value=fixed[name])
            elif getattr(self, name) is not None:
                domains[name] = getattr(self, name)
            elif name == "activation":
                domains[name] = Fixed(value=(activation or DEFAULT_ACTIVATION[variant.block]).value)
            else:
                domains[name] = Fixed(value=STAGE_DEFAULTS[name])
        return domains

    def to_data(self) -> dict[str, Any]:
        blocks = [variant.to_data() for variant in self.block]
        data: dict[str, Any] = {"block": blocks[0] if len(blocks) == 1 else blocks,
                                "num_blocks": self.num_blocks.to_data(),
                                "out_channels": self.out_channels.to_data(), "stride": self.stride}
        for name in OPTIONAL_STAGE_FIELDS:
            if getattr(self, name) is not None:
                data[name] = getattr(self, name).to_data()
        return data


def build_stage(block: BlockType, stride: int, values: Mapping[str, Any]) -> Stage:
    """A Stage from chosen field values (activation given by name); Stage validates itself."""
    values = dict(values)
    if "activation" in values:
        values["activation"] = Activation(_canonical_activation(values["activation"]))
    return Stage(block=block, stride=stride, **values)


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchSpace:
    name: str
    stages: tuple[StageSpace, ...]
    resolution: Domain
    stem_channels: Domain
    head_channels: Domain  # Fixed(value=0) with a norm head
    description: str = ""
    stem: StemType = StemType.CONV
    head: HeadType = HeadType.CONV
    activation: Activation | None = None  # of the stem and head, and of stages that do not name one
    dropout: float = 0.2
    drop_path_rate: float = 0.0
    regnet: RegNetSpace | None = None  # stages generated by RegNet's rule (then ``stages`` is empty)
    source: str = field(default="<SearchSpace>", compare=False, repr=False)  # names the file in problems

    def __post_init__(self) -> None:
        problems = _Problems(self.source)
        _check_space(self, problems)
        problems.raise_if_any()

    def arch_fields(self) -> dict[str, Any]:
        """The Arch fields that are the same for every architecture of the space."""
        fields = {"stem": self.stem, "head": self.head, "dropout": self.dropout, "drop_path_rate": self.drop_path_rate}
        return fields | ({"activation": self.activation} if self.activation else {})

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "description": self.description,
                                "resolution": self.resolution.to_data(), "stem": self.stem.value,
                                "stem_channels": self.stem_channels.to_data(), "head": self.head.value,
                                "head_channels": self.head_channels.to_data()}
        if self.activation:
            data["activation"] = self.activation.value
        stages = {"regnet": self.regnet.to_data()} if self.regnet else [stage.to_data() for stage in self.stages]
        data |= {"dropout": self.dropout, "drop_path_rate": self.drop_path_rate, "stages": stages}
        return data


# ---------------------------------------------------------------------------------------------------
# Checks of a built space: every value a sample can draw, tried where arch.py validates it


class _Problems:
    """Problem lines in order, each once."""

    def __init__(self, source: str):
        self.source = source
        self.lines: dict[str, None] = {}

    def add(self, path: str, message: str) -> None:
        self.lines[f"{self.source}: {path}: {message}" if path else f"{self.source}: {message}"] = None

    def extend(self, lines: list[str]) -> None:
        self.lines |= dict.fromkeys(lines)

    def __len__(self) -> int:
        return len(self.lines)

    def raise_if_any(self) -> None:
        if self.lines:
            raise SpaceError(list(self.lines))


# A stage every stem, head and resolution accepts, for checking the global fields one at a time.
PROBE_STAGE = Stage(block=BlockType.CONV, num_blocks=1, out_channels=8, stride=1)
PROBE_RESOLUTION = 224
SEARCHABLE_GLOBALS = ("resolution", "stem_channels", "head_channels")


def _check_space(space: SearchSpace, problems: _Problems) -> None:
    if space.regnet is not None:
        _check_regnet_space(space, problems)
        return
    _check_structure(space, problems)
    if problems:  # the checks below rely on the structure
        return
    for index, stage in enumerate(space.stages):
        _check_stage(index, stage, space.activation, problems)
    _check_globals(space, problems)
    if not problems:
        _check_spatial_sizes(space, problems)


def _check_regnet_space(space: SearchSpace, problems: _Problems) -> None:
    """A generated space: its parameters, each value on its own (any combination then makes valid stages), and
    its global fields."""
    from nasscale.families.regnet_space import RegNetSpace, check_regnet

    if not isinstance(space.regnet, RegNetSpace) or space.stages:
        problems.add("stages", f"a RegNet space has no stage list, got regnet={space.regnet!r}, "
                               f"stages={space.stages!r}")
        return
    for name in SEARCHABLE_GLOBALS:
        _check_domain_type(name, getattr(space, name), name, problems)
    for path, message in check_regnet(space.regnet) if not problems else ():
        problems.add(path, message)
    if not problems:
        _check_globals(space, problems)


def _check_structure(space: SearchSpace, problems: _Problems) -> None:
    """Types the parser guarantees but the Python API does not."""
    if not isinstance(space.stages, tuple) or not space.stages:
        problems.add("stages", f"must be a non-empty tuple of StageSpace, got {space.stages!r}")
        return
    for name in SEARCHABLE_GLOBALS:
        _check_domain_type(name, getattr(space, name), name, problems)
    for index, stage in enumerate(space.stages):
        path = f"stages[{index}]"
        if not isinstance(stage, StageSpace):
            problems.add(path, f"must be a StageSpace, got {type(stage).__name__}")
            continue
        if not isinstance(stage.block, tuple) or not all(isinstance(item, BlockVariant) for item in stage.block):
            problems.add(f"{path}.block", f"must be a tuple of BlockVariant, got {stage.block!r}")
        for name in ("num_blocks", "out_channels", *OPTIONAL_STAGE_FIELDS):
            if getattr(stage, name) is not None:
                _check_domain_type(name, getattr(stage, name), f"{path}.{name}", problems)


def _check_domain_type(name: str, domain: Any, path: str, problems: _Problems) -> None:
    if not isinstance(domain, Fixed | Categorical | IntRange | Multipliers | Deltas):
        problems.add(path, f"must be a Fixed, Categorical, IntRange, Multipliers or Deltas, got {domain!r}")
        return
    form = DOMAIN_FORMS.get(type(domain))
    if form and form not in MAPPING_FORMS[name]:
        problems.add(path, _form_misplaced(form))


def _check_stage(index: int, stage: StageSpace, activation: Activation | None, problems: _Problems) -> None:
    path = f"stages[{index}]"
    if not stage.block:
        problems.add(f"{path}.block", "empty list of choices")
        return
    for label in dict.fromkeys(label for label in stage.labels if stage.labels.count(label) > 1):
        problems.add(f"{path}.block", f"lists {label} more than once")
    for name in OPTIONAL_STAGE_FIELDS:
        if getattr(stage, name) is not None:
            _check_field_used(path, name, stage, problems)
    _check_stage_values(path, stage, activation, problems)


def _check_field_used(path: str, name: str, stage: StageSpace, problems: _Problems) -> None:
    applies = [variant for variant in stage.block if name in APPLICABLE_FIELDS[variant.block]]
    if not applies:
        blocks = ", ".join(dict.fromkeys(variant.block.value for variant in stage.block))
        problems.add(f"{path}.{name}", f"does not apply to {blocks} blocks; leave it out")
    elif all(name in dict(variant.fixed) for variant in applies):
        problems.add(f"{path}.{name}", "every block choice fixes it; leave it out")


# groups must divide the bottleneck width, out_channels x bottleneck_ratio: these are tried together.
COUPLED_FIELDS = ("out_channels", "bottleneck_ratio", "groups")


def _check_stage_values(path: str, stage: StageSpace, activation: Activation | None, problems: _Problems) -> None:
    # validate_stage checks each field on its own (but COUPLED_FIELDS), so trying every value once against a
    # known-good stage finds every bad value without enumerating the product of all fields.
    for variant_index, variant in enumerate(stage.block):
        base = _probe_stage_values(variant.block)
        fixed = dict(variant.fixed)
        variant_path = f"{path}.block" if len(stage.block) == 1 else f"{path}.block[{variant_index}]"
        _try_stage(variant.block, stage.stride, base, f"{path}.stride", "", problems)
        domains = stage.field_domains(variant, activation)
        before = len(problems)
        for name, domain in domains.items():
            if name == "groups":
                continue
            field_path = f"{variant_path}.{name}" if name in fixed else f"{path}.{name}"
            for value, note in _explained_values(domain):
                _try_stage(variant.block, 1, base | {name: value}, field_path, note, problems)
        if "groups" in domains and len(problems) == before:
            _check_coupled_values(variant, base, domains, (path, variant_path), problems)


def _check_coupled_values(variant: BlockVariant, base: dict[str, Any], domains: dict[str, Domain],
                          paths: tuple[str, str], problems: _Problems) -> None:
    """Every combination of widths, bottleneck ratios and groups a sample can draw."""
    path, variant_path = paths
    names = [name for name in COUPLED_FIELDS if name in domains]
    for values in product(*(distinct_values(domains[name]) for name in names)):
        try:
            build_stage(variant.block, 1, base | dict(zip(names, values, strict=True)))
        except SpecError as error:
            name = error.path.rpartition(".")[2]
            problems.add(f"{variant_path}.{name}" if name in dict(variant.fixed) else f"{path}.{name}", error.message)


def _probe_stage_values(block: BlockType) -> dict[str, Any]:
    values = {"num_blocks": 1, "out_channels": 8}
    values |= {name: STAGE_DEFAULTS[name] for name in OPTIONAL_STAGE_FIELDS if name in APPLICABLE_FIELDS[block]}
    if "activation" in values:
        values["activation"] = DEFAULT_ACTIVATION[block].value
    return values


def _try_stage(block: BlockType, stride: int, values: dict[str, Any], path: str, note: str,
               problems: _Problems) -> None:
    try:
        build_stage(block, stride, values)
    except SpecError as error:
        problems.add(path, error.message + note)


def _probe_arch_fields(space: SearchSpace) -> dict[str, Any]:
    return space.arch_fields() | {"stages": (PROBE_STAGE,), "resolution": PROBE_RESOLUTION,
                                  "stem_channels": 0 if space.stem is StemType.NONE else 8,
                                  "head_channels": 8 if space.head in HEADS_WITH_CHANNELS else 0}


def _check_globals(space: SearchSpace, problems: _Problems) -> None:
    base = _probe_arch_fields(space) | {"dropout": 0.0, "drop_path_rate": 0.0}
    trials = [("dropout", space.dropout, ""), ("drop_path_rate", space.drop_path_rate, "")]
    for name in SEARCHABLE_GLOBALS:
        trials += [(name, value, note) for value, note in _explained_values(getattr(space, name))]
    for name, value, note in trials:
        try:
            Arch(**base | {name: value})
        except SpecError as error:
            problems.add(error.path, error.message + note)


def _check_spatial_sizes(space: SearchSpace, problems: _Problems) -> None:
    """Sizes depend only on the resolution, the stem, the strides and which stages are ConvNeXt (their
    downsampling floors, a strided conv rounds up), so one probe stage per block type reaches every size a
    sample can; the smallest resolution is the tightest."""
    fields = _probe_arch_fields(space) | {"resolution": min(space.resolution.values())}
    frontier: dict[int | None, tuple[Stage, ...]] = {None: ()}  # a size reached -> one prefix that reaches it
    for stage in space.stages:
        reached: dict[int | None, tuple[Stage, ...]] = {}
        for prefix in frontier.values():
            for block in dict.fromkeys(variant.block for variant in stage.block):
                stages = (*prefix, Stage(block=block, num_blocks=1, out_channels=8, stride=stage.stride))
                try:
                    arch = Arch(**fields | {"stages": stages})
                except SpecError as error:
                    problems.add(error.path, error.message)
                    continue
                reached.setdefault(final_feature_size(arch), stages)
        frontier = reached


# ---------------------------------------------------------------------------------------------------
# Size and cost range


def space_size(space: SearchSpace) -> int:
    """How many distinct architectures the space holds (not how many parameter combinations)."""
    total = math.prod(len(distinct_values(getattr(space, name))) for name in SEARCHABLE_GLOBALS)
    if space.regnet is not None:
        from nasscale.families.regnet_space import distinct_stage_lists

        return total * len(distinct_stage_lists(space.regnet))
    for stage in space.stages:
        total *= _stage_size(stage, space.activation)
    return total


def _stage_size(stage: StageSpace, activation: Activation | None) -> int:
    # Each variant spans a box (a product of per-field value sets). Boxes of different block types are
    # disjoint; those of one type may overlap (mbconv with expand_ratio [3, 6] next to mbconv_e3), so
    # their union is counted by inclusion-exclusion.
    boxes: dict[BlockType, list[dict[str, frozenset[Scalar]]]] = {}
    for variant in stage.block:
        domains = stage.field_domains(variant, activation)
        box = {name: frozenset(domain.values()) for name, domain in domains.items()}
        boxes.setdefault(variant.block, []).append(box)
    total = 0
    for same_type in boxes.values():
        for count in range(1, len(same_type) + 1):
            for subset in combinations(same_type, count):
                volume = math.prod(len(frozenset.intersection(*(box[name] for box in subset))) for name in subset[0])
                total += volume if count % 2 else -volume
    return total


@dataclass(frozen=True, slots=True)
class CostRange:
    macs_min: int
    macs_max: int
    params_min: int
    params_max: int

    @classmethod
    def of(cls, cost: cost_model.Cost) -> CostRange:
        return cls(cost.macs, cost.macs, cost.params, cost.params)

    def plus(self, cost: cost_model.Cost) -> CostRange:
        return CostRange(self.macs_min + cost.macs, self.macs_max + cost.macs,
                         self.params_min + cost.params, self.params_max + cost.params)

    def union(self, other: CostRange | None) -> CostRange:
        if other is None:  # the first bound to reach a state
            return self
        return CostRange(min(self.macs_min, other.macs_min), max(self.macs_max, other.macs_max),
                         min(self.params_min, other.params_min), max(self.params_max, other.params_max))


# Stage fields that change a stage's cost; activation and skip do not.
COST_FIELDS = ("num_blocks", "out_channels", "kernel_size", "expand_ratio", "se_ratio", "groups", "bottleneck_ratio")


def cost_range(space: SearchSpace, *, in_channels: int = 3, num_classes: int = 1000,
               resolution: int | None = None) -> CostRange:
    """Exact smallest and largest MACs and params over every architecture of the space (each bound on its own).

    A stage's cost depends only on its input width, its input size and its own fields, and sizes do not
    depend on widths, so a dynamic program over stages whose state is (width, size) is exact.
    ``resolution`` fixes the resolution as ``sample(resolution=...)`` does."""
    resolutions = (resolution,) if resolution is not None else distinct_values(space.resolution)
    if space.regnet is not None:
        return _generated_cost_range(space, in_channels, num_classes, resolutions)
    states: dict[tuple[int, int], CostRange] = {}
    for size in resolutions:
        for channels in distinct_values(space.stem_channels):
            probe = Arch(**_probe_arch_fields(space) | {"resolution": size, "stem_channels": channels,
                                                        "in_channels": in_channels})
            key = (channels, stem_output_size(probe))
            states[key] = CostRange.of(cost_model.stem_cost(probe)).union(states.get(key))
    for index, stage in enumerate(space.stages):
        configurations = _cost_configurations(stage, space.activation)
        reached: dict[tuple[int, int], CostRange] = {}
        for (channels, size), bounds in states.items():
            for configuration in configurations:
                part = cost_model.stage_cost(StagePlacement(index, configuration, channels, size, 0))
                key = (configuration.out_channels, stage_output_size(configuration, channels, size))
                reached[key] = bounds.plus(part).union(reached.get(key))
        states = reached
    totals = [bounds.plus(_head_cost(space.head, channels, head_channels, size, num_classes))
              for (channels, size), bounds in states.items() for head_channels in distinct_values(space.head_channels)]
    return functools.reduce(CostRange.union, totals)


def _generated_cost_range(space: SearchSpace, in_channels: int, num_classes: int,
                          resolutions: tuple[Scalar, ...]) -> CostRange:
    """Every generated stage list at every resolution, stem and head width: exact, by enumeration."""
    from nasscale.families.regnet_space import distinct_stage_lists

    bounds: CostRange | None = None
    for stages, size, stem, head in product(distinct_stage_lists(space.regnet), resolutions,
                                            distinct_values(space.stem_channels), distinct_values(space.head_channels)):
        arch = Arch(stages=stages, resolution=size, stem_channels=stem, head_channels=head, in_channels=in_channels,
                    num_classes=num_classes, **space.arch_fields())
        bounds = CostRange.of(cost_model.cost(arch)).union(bounds)
    return bounds


def _cost_configurations(stage: StageSpace, activation: Activation | None) -> list[Stage]:
    """One Stage per distinct combination of the fields that change the cost."""
    seen: dict[tuple[Any, ...], Stage] = {}
    for variant in stage.block:
        domains = stage.field_domains(variant, activation)
        names = [name for name in COST_FIELDS if name in domains]
        for combination in product(*(distinct_values(domains[name]) for name in names)):
            key = (variant.block, *combination)
            if key not in seen:
                seen[key] = build_stage(variant.block, stage.stride, dict(zip(names, combination, strict=True)))
    return list(seen.values())


def _head_cost(head: HeadType, features: int, head_channels: int, size: int, num_classes: int) -> cost_model.Cost:
    # cost.head_cost for a head fed `features` channels at `size`; the brute-force test pins the two together.
    return cost_model.head_part_cost(head, features, size, num_classes, head_channels=head_channels)


def mac_range(space: SearchSpace, *, in_channels: int = 3, num_classes: int = 1000,
              resolution: int | None = None) -> tuple[int, int]:
    """Exact (smallest, largest) MACs over the space, every resolution choice included unless ``resolution``
    fixes it."""
    bounds = cost_range(space, in_channels=in_channels, num_classes=num_classes, resolution=resolution)
    return bounds.macs_min, bounds.macs_max


def stage_count(space: SearchSpace) -> int:
    """The number of stages; for a generated space, the most any of its architectures has."""
    if space.regnet is None:
        return len(space.stages)
    from nasscale.families.regnet_space import distinct_stage_lists

    return max(len(stages) for stages in distinct_stage_lists(space.regnet))


def describe_space(space: SearchSpace, *, in_channels: int = 3, num_classes: int = 1000) -> dict[str, Any]:
    """A summary row for ``nasscale spaces``; ``resolution`` is the space's resolution as written."""
    bounds = cost_range(space, in_channels=in_channels, num_classes=num_classes)
    return {"name": space.name, "description": space.description, "stages": stage_count(space),
            "size": space_size(space), "macs_min": bounds.macs_min, "macs_max": bounds.macs_max,
            "params_min": bounds.params_min, "params_max": bounds.params_max,
            "resolution": space.resolution.to_data()}


# ---------------------------------------------------------------------------------------------------
# Parsing plain data (from YAML): every problem is collected, none stops the others

SPACE_KEYS = ("name", "description", "resolution", "stem", "stem_channels", "head", "head_channels",
              "activation", "dropout", "drop_path_rate", "stages")
SPACE_REQUIRED = ("resolution", "stem_channels", "stages")
STAGE_REQUIRED = ("block", "num_blocks", "out_channels", "stride")

# The mapping forms each searchable field accepts besides one value and a list of values.
MAPPING_FORMS: dict[str, frozenset[str]] = {
    "num_blocks": frozenset({"range", "deltas"}),
    "out_channels": frozenset({"range", "multipliers"}),
    "kernel_size": frozenset({"range"}),
    "expand_ratio": frozenset(),
    "se_ratio": frozenset(),
    "activation": frozenset(),
    "skip": frozenset(),
    "groups": frozenset(),
    "bottleneck_ratio": frozenset(),
    "resolution": frozenset({"range"}),
    "stem_channels": frozenset({"range", "multipliers"}),
    "head_channels": frozenset({"range", "multipliers"}),
}
FORM_KEYS = {"range": ("low", "high", "step"), "multipliers": ("base", "multipliers"), "deltas": ("base", "deltas")}
FORM_REQUIRED = {"range": ("low", "high"), "multipliers": ("base", "multipliers"), "deltas": ("base", "deltas")}
FORM_SYNTAX = {"range": "{low, high, step}", "multipliers": "{base, multipliers}", "deltas": "{base, deltas}"}
DOMAIN_FORMS: dict[type, str] = {IntRange: "range", Multipliers: "multipliers", Deltas: "deltas"}


def _form_misplaced(form: str) -> str:
    fields = ", ".join(field for field, field_forms in MAPPING_FORMS.items() if form in field_forms)
    return f"{FORM_SYNTAX[form]} is only for {fields}"


def space_from_dict(data: Mapping[str, Any], *, source: str = "<dict>") -> SearchSpace:
    """Parse and check a space given as plain data; raises SpaceError listing every problem."""
    problems = _Problems(source)
    if not isinstance(data, Mapping):
        problems.add("", f"a search space must be a mapping of fields, got {type(data).__name__}")
        problems.raise_if_any()
    _check_keys(data, SPACE_KEYS, SPACE_REQUIRED, "", problems)
    # Unknown keys do not stop the checks of the known fields; a missing or bad field does.
    before = len(problems)
    values = _parse_globals(data, source, problems)
    complete = len(problems) == before and all(key in data for key in SPACE_REQUIRED)
    if isinstance(data.get("stages"), Mapping):
        return _generated_space(data["stages"], values, complete, problems)
    stages = _parse_stages(data["stages"], values.get("activation"), problems) if "stages" in data else []
    if complete and stages and None not in stages:
        try:
            space = SearchSpace(**values, stages=tuple(stages))
        except SpaceError as error:
            problems.extend(error.problems)
        if not problems:
            return space
    else:
        for index, stage in enumerate(stages):
            if stage is not None:
                _check_stage(index, stage, values.get("activation"), problems)
    raise SpaceError(list(problems.lines))  # an incomplete space always has a problem line


def _generated_space(data: Mapping[Any, Any], values: dict[str, Any], complete: bool,
                     problems: _Problems) -> SearchSpace:
    """``stages: {regnet: {...}}``: stages generated by RegNet's rule (nasscale.families.regnet_space)."""
    from nasscale.families.regnet_space import parse_regnet

    if set(data) != {"regnet"}:
        problems.add("stages", f"a mapping here must be {{regnet: {{...}}}} (RegNet's generated stages), got keys "
                               f"{', '.join(map(str, data))}")
        problems.raise_if_any()
    regnet, lines = parse_regnet(data["regnet"], "stages.regnet")
    for path, message in lines:
        problems.add(path, message)
    if complete and regnet is not None:
        try:
            space = SearchSpace(**values, stages=(), regnet=regnet)
        except SpaceError as error:
            problems.extend(error.problems)
        if not problems:
            return space
    raise SpaceError(list(problems.lines))  # an incomplete space always has a problem line


def _parse_globals(data: Mapping[str, Any], source: str, problems: _Problems) -> dict[str, Any]:
    values: dict[str, Any] = {"source": source}
    for name in ("name", "description"):
        if name in data:
            if isinstance(data[name], str):
                values[name] = data[name]
            else:
                problems.add(name, f"must be a string, got {data[name]!r}")
    values.setdefault("name", _default_name(source))
    for name, enum in (("stem", StemType), ("head", HeadType), ("activation", Activation)):
        if name in data:
            values[name] = _parse_enum(data[name], enum, name, problems, what=name)
    for name in ("dropout", "drop_path_rate"):
        if name in data:
            values[name] = _parse_fixed(data[name], name, problems)
    for name in SEARCHABLE_GLOBALS:
        if name in data:
            values[name] = _parse_domain(data[name], name, name, problems)
    if values.get("head", HeadType.CONV) not in HEADS_WITH_CHANNELS:
        values.setdefault("head_channels", Fixed(value=0))
    elif "head_channels" not in data:
        problems.add("head_channels", "is required with a conv head")
    return values


def _default_name(source: str) -> str:
    return Path(source).stem if source.endswith((".yaml", ".yml")) else "space"


def _check_keys(data: Mapping[Any, Any], allowed: tuple[str, ...], required: tuple[str, ...], path: str,
                problems: _Problems) -> None:
    for key in data:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            problems.add(_join(path, str(key)), f"unknown key; valid keys are {', '.join(allowed)}{hint}")
    for key in required:
        if key not in data:
            problems.add(_join(path, key), "is required")


def _join(path: str, child: str) -> str:
    return f"{path}.{child}" if path and child else path or child


def _parse_stages(data: Any, activation: Activation | None, problems: _Problems) -> list[StageSpace | None]:
    if not isinstance(data, list) or not data:
        problems.add("stages", f"must be a non-empty list of stages, got {data!r}")
        return []
    return [_parse_stage(item, f"stages[{index}]", activation, problems) for index, item in enumerate(data)]


# What a stage with a bad or missing field is checked with in its place.
STAND_INS = {"num_blocks": Fixed(value=1), "out_channels": Fixed(value=8), "stride": 1}


def _parse_stage(data: Any, path: str, activation: Activation | None, problems: _Problems) -> StageSpace | None:
    if not isinstance(data, Mapping):
        problems.add(path, f"must be a mapping of stage fields, got {data!r}")
        return None
    _check_keys(data, STAGE_FIELDS, STAGE_REQUIRED, path, problems)
    # An unknown key does not stop the checks of the known ones; a missing or bad field does.
    before = len(problems)
    values: dict[str, Any] = {}
    for name, value in data.items():
        field_path = f"{path}.{name}"
        count = len(problems)
        if name == "block":
            parsed = _parse_blocks(value, field_path, problems)
        elif name == "stride":
            parsed = value
            if isinstance(value, list | Mapping):
                problems.add(field_path, f"must be one fixed value (strides come from the backbone and are not "
                                         f"searched), got {value!r}")
        elif name in MAPPING_FORMS:
            parsed = _parse_domain(value, name, field_path, problems)
        else:
            if name in STAGE_FIELDS:  # a Stage field the DSL does not search (pool, same_padding, branches)
                problems.add(field_path, "cannot be set in a search space; it keeps its default")
            continue
        if len(problems) == count or name == "block":  # the block choices that parsed are still worth checking
            values[name] = parsed
    if len(problems) == before and all(key in data for key in STAGE_REQUIRED):
        return StageSpace(**values)
    if values.get("block"):
        # Check the values that parsed against stand-ins for the rest, so one run reports everything.
        _check_stage_values(path, StageSpace(**STAND_INS | values), activation, problems)
    return None


def _parse_blocks(data: Any, path: str, problems: _Problems) -> tuple[BlockVariant, ...]:
    """The block choices that parse; each one that does not is a problem line."""
    if not isinstance(data, list):
        variants = [_parse_variant(data, path, problems)]
    elif not data:
        problems.add(path, "empty list of choices")
        variants = []
    else:
        variants = [_parse_variant(item, f"{path}[{index}]", problems) for index, item in enumerate(data)]
    return tuple(variant for variant in variants if variant is not None)


def _parse_variant(data: Any, path: str, problems: _Problems) -> BlockVariant | None:
    if isinstance(data, str):
        block = _parse_enum(data, BlockType, path, problems, what="block type")
        return None if block is None else BlockVariant(block=block)
    if not isinstance(data, Mapping):
        problems.add(path, f"must be a block type or a mapping {{block: ..., field: value}}, got {data!r}")
        return None
    before = len(problems)
    _check_keys(data, ("block", *OPTIONAL_STAGE_FIELDS), ("block",), path, problems)
    block = _parse_enum(data["block"], BlockType, f"{path}.block", problems, what="block type") \
        if "block" in data else None
    fixed = []
    for name, value in data.items():
        if name in OPTIONAL_STAGE_FIELDS:
            fixed.append((name, _parse_fixed(value, f"{path}.{name}", problems, activation=name == "activation")))
    if len(problems) > before:
        return None
    try:
        return BlockVariant(block=block, fixed=tuple(fixed))
    except SpecError as error:
        problems.add(_join(path, error.path), error.message)
        return None


def _parse_enum(value: Any, enum: type, path: str, problems: _Problems, what: str = "value") -> Any:
    try:
        if enum is Activation:
            return Activation(_canonical_activation(value))
        if isinstance(value, str):
            return enum(value.strip().lower())
    except (SpecError, ValueError):
        pass
    problems.add(path, f"unknown {what} {value!r}; valid {what}s are {', '.join(member.value for member in enum)}")
    return None


def _canonical_activation(value: Any) -> str:
    """An activation's canonical name ("swish" -> "silu"), so choices are plain strings Optuna can store."""
    if isinstance(value, str):
        key = value.strip().lower()
        key = str(ACTIVATION_ALIASES.get(key, key))
        if key in {member.value for member in Activation}:
            return key
    raise SpecError("", f"must be one of {', '.join(member.value for member in Activation)}, got {value!r}")


def _parse_fixed(value: Any, path: str, problems: _Problems, *, activation: bool = False) -> Any:
    if isinstance(value, list | Mapping):
        problems.add(path, f"must be one value here, got {value!r}")
        return None
    if activation:
        try:
            return _canonical_activation(value)
        except SpecError as error:
            problems.add(path, error.message)
    return value


def _parse_domain(data: Any, name: str, path: str, problems: _Problems) -> Domain | None:
    try:
        if isinstance(data, Mapping):
            return _parse_mapping_domain(data, name)
        if isinstance(data, list):
            choices = tuple(_parse_choice(item, name) for item in data)
            return Fixed(value=choices[0]) if len(choices) == 1 else Categorical(choices=choices)
        return Fixed(value=_parse_choice(data, name))
    except SpecError as error:
        problems.add(_join(path, error.path), error.message)
        return None


def _parse_choice(value: Any, name: str) -> Scalar:
    if name == "activation":
        return _canonical_activation(value)
    if not isinstance(value, str | int | float | bool):
        raise SpecError("", f"must be a value, a list of values or a range, got {value!r}")
    return value


def _parse_mapping_domain(data: Mapping[Any, Any], name: str) -> Domain:
    forms = MAPPING_FORMS[name]
    keys = set(data)
    form = "range" if keys & {"low", "high", "step"} else "multipliers" if "multipliers" in keys else \
        "deltas" if "deltas" in keys else None
    if form is None:
        if not forms:
            raise SpecError("", f"must be a value or a list of values, got {dict(data)!r}")
        allowed = " or ".join(FORM_SYNTAX[allowed_form] for allowed_form in sorted(forms))
        raise SpecError("", f"a mapping here must be {allowed}, got keys {', '.join(map(str, data))}")
    if form not in forms:
        raise SpecError("", _form_misplaced(form))
    for key in data:
        if key not in FORM_KEYS[form]:
            raise SpecError(str(key), f"unknown key; valid keys are {', '.join(FORM_KEYS[form])}")
    for key in FORM_REQUIRED[form]:
        if key not in data:
            raise SpecError(key, "is required")
    if form == "range":
        return IntRange(low=data["low"], high=data["high"], step=data.get("step", 1))
    listed = data[form]
    if not isinstance(listed, list):
        raise SpecError(form, f"must be a list, got {listed!r}")
    if form == "multipliers":
        return Multipliers(base=data["base"], multipliers=tuple(listed))
    return Deltas(base=data["base"], deltas=tuple(listed))


# ---------------------------------------------------------------------------------------------------
# Loading: YAML text, files, built-in names


def space_from_yaml(text: str, *, source: str = "<yaml>") -> SearchSpace:
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise SpaceError([f"{source}: not valid YAML: {_yaml_problem(error)}"]) from None
    return space_from_dict(data, source=source)


def _yaml_problem(error: Exception) -> str:
    problem = getattr(error, "problem", None)
    mark = getattr(error, "problem_mark", None)
    if problem and mark is not None:
        return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
    return str(error).splitlines()[0] if str(error) else "parse error"


def _builtin_folder() -> Traversable:
    try:
        return importlib.resources.files("nasscale.search_spaces")
    except ImportError:  # a source tree that was never installed: the folder sits next to the package
        import nasscale

        return Path(nasscale.__file__).parent.parent / "search_spaces"


def builtin_space_names() -> list[str]:
    return sorted(entry.name.removesuffix(".yaml") for entry in _builtin_folder().iterdir()
                  if entry.name.endswith(".yaml"))


def load_space(name_or_path: str | PathLike[str]) -> SearchSpace:
    """A built-in space by name ("mnas") or a space from a .yaml file."""
    text = str(name_or_path).strip()
    if text.endswith((".yaml", ".yml")) or "/" in text or "\\" in text:
        path = Path(text)
        if not path.is_file():
            raise SpaceError([f"{text}: no such search-space file"])
        return space_from_yaml(path.read_text(), source=text)
    key = text.lower().replace("-", "_")
    names = builtin_space_names()
    if key not in names:
        raise UnknownNameError(f"unknown search space {name_or_path!r}; the built-in spaces are {', '.join(names)} "
                               "(or give a .yaml file)")
    return space_from_yaml((_builtin_folder() / f"{key}.yaml").read_text(), source=f"{key}.yaml")
