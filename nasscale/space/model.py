"""The space model: ``BlockVariant``, ``StageSpace`` and ``SearchSpace``, frozen and checked on construction.

The checks try every value a sample can draw where ``Stage`` and ``Arch`` validate it, so a space that
constructs only yields valid architectures; every problem is collected (``Problems``) and raised at once as one
``SpaceError``, a line each. They live beside the dataclasses because constructing a space runs them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import product
from typing import Any

from nasscale.errors import SpaceError, SpecError
from nasscale.space.domains import (
    DOMAIN_FORMS,
    MAPPING_FORMS,
    Categorical,
    Deltas,
    Domain,
    Fixed,
    IntRange,
    Multipliers,
    Scalar,
    distinct_values,
    explained_values,
    form_misplaced,
    is_number,
)
from nasscale.space.regnet import RegNetSpace, check_regnet
from nasscale.spec.arch import Arch, final_feature_size
from nasscale.spec.norm import DEFAULT_NORM, Norm, norm_to_dict
from nasscale.spec.stage import STAGE_DEFAULTS, STAGE_FIELDS, Stage
from nasscale.spec.vocabulary import (
    ACTIVATION_ALIASES,
    APPLICABLE_FIELDS,
    DEFAULT_ACTIVATION,
    HEADS_WITH_CHANNELS,
    Activation,
    BlockType,
    HeadType,
    StemType,
)

SEARCHABLE_STAGE_FIELDS = ("kernel_size", "expand_ratio", "se_ratio", "activation", "skip", "groups",
                           "bottleneck_ratio", "num_heads", "patch_size", "class_token", "position_embedding")

# Short tags that make a variant's label readable: {block: mbconv, expand_ratio: 6, kernel_size: 5} -> mbconv_k5_e6.
LABEL_TAGS = {"kernel_size": "k", "expand_ratio": "e", "se_ratio": "se", "groups": "g", "bottleneck_ratio": "b",
              "num_heads": "h", "patch_size": "p"}
# The tags of switches, (on, off): {block: transformer, class_token: true} -> transformer_cls.
SWITCH_TAGS = {"skip": ("skip", "noskip"), "class_token": ("cls", "nocls"), "position_embedding": ("pos", "nopos")}


@dataclass(frozen=True, slots=True, kw_only=True)
class BlockVariant:
    """One block choice: a block type, optionally with some of its fields fixed (MnasNet's "mbconv e3")."""

    block: BlockType
    fixed: tuple[tuple[str, Scalar], ...] = ()  # (field, value), kept in Stage field order

    def __post_init__(self) -> None:
        if not isinstance(self.block, BlockType):
            raise SpecError("block", f"must be a BlockType, got {self.block!r}")
        for name, _ in self.fixed:
            if name not in SEARCHABLE_STAGE_FIELDS:
                raise SpecError(name, f"unknown key; valid keys are block, {', '.join(SEARCHABLE_STAGE_FIELDS)}")
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
    if name in SWITCH_TAGS:
        on, off = SWITCH_TAGS[name]
        return on if value else off
    shown = f"{value:g}" if is_number(value) else str(value)
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
    num_heads: Domain | None = None
    patch_size: Domain | None = None
    class_token: Domain | None = None
    position_embedding: Domain | None = None

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
        for name in SEARCHABLE_STAGE_FIELDS:
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
        for name in SEARCHABLE_STAGE_FIELDS:
            if getattr(self, name) is not None:
                data[name] = getattr(self, name).to_data()
        return data


def build_stage(block: BlockType, stride: int, values: Mapping[str, Any]) -> Stage:
    """A Stage from chosen field values (activation given by name); Stage validates itself."""
    values = dict(values)
    if "activation" in values:
        values["activation"] = Activation(canonical_activation(values["activation"]))
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
    norm: Norm = DEFAULT_NORM  # every sample's (a family's reference settings, e.g. EfficientNetV2's eps 1e-3)
    source: str = field(default="<SearchSpace>", compare=False, repr=False)  # names the file in problems

    def __post_init__(self) -> None:
        problems = Problems(self.source)
        _check_space(self, problems)
        problems.raise_if_any()

    def arch_fields(self) -> dict[str, Any]:
        """The Arch fields that are the same for every architecture of the space."""
        fields = {"stem": self.stem, "head": self.head, "dropout": self.dropout, "drop_path_rate": self.drop_path_rate,
                  "norm": self.norm}
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
        if self.norm != DEFAULT_NORM:  # written only when set, so existing spaces' records stay as they are
            data["norm"] = norm_to_dict(self.norm)
        return data


def canonical_activation(value: Any) -> str:
    """An activation's canonical name ("swish" -> "silu"), so choices are plain strings Optuna can store."""
    if isinstance(value, str):
        key = value.strip().lower()
        key = str(ACTIVATION_ALIASES.get(key, key))
        if key in {member.value for member in Activation}:
            return key
    raise SpecError("", f"must be one of {', '.join(member.value for member in Activation)}, got {value!r}")


# ---------------------------------------------------------------------------------------------------
# Checks of a built space: every value a sample can draw, tried where Stage and Arch validate it


class Problems:
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
PROBE_CLASS_TOKEN_STAGE = Stage(block=BlockType.TRANSFORMER, num_blocks=1, out_channels=8, stride=1, class_token=True)
PROBE_RESOLUTION = 224
SEARCHABLE_GLOBALS = ("resolution", "stem_channels", "head_channels")


def _check_space(space: SearchSpace, problems: Problems) -> None:
    if space.regnet is not None:
        _check_regnet_space(space, problems)
        return
    _check_structure(space, problems)
    if problems:  # the checks below rely on the structure
        return
    for index, stage in enumerate(space.stages):
        check_stage(index, stage, space.activation, problems)
    _check_class_tokens(space, problems)
    _check_globals(space, problems)
    if not problems:
        _check_spatial_sizes(space, problems)


def _check_regnet_space(space: SearchSpace, problems: Problems) -> None:
    """A generated space: its parameters, each value on its own (any combination then makes valid stages), and
    its global fields."""
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


def _check_structure(space: SearchSpace, problems: Problems) -> None:
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
        for name in ("num_blocks", "out_channels", *SEARCHABLE_STAGE_FIELDS):
            if getattr(stage, name) is not None:
                _check_domain_type(name, getattr(stage, name), f"{path}.{name}", problems)


def _check_domain_type(name: str, domain: Any, path: str, problems: Problems) -> None:
    if not isinstance(domain, Fixed | Categorical | IntRange | Multipliers | Deltas):
        problems.add(path, f"must be a Fixed, Categorical, IntRange, Multipliers or Deltas, got {domain!r}")
        return
    form = DOMAIN_FORMS.get(type(domain))
    if form and form not in MAPPING_FORMS[name]:
        problems.add(path, form_misplaced(form))


def check_stage(index: int, stage: StageSpace, activation: Activation | None, problems: Problems) -> None:
    path = f"stages[{index}]"
    if not stage.block:
        problems.add(f"{path}.block", "empty list of choices")
        return
    for label in dict.fromkeys(label for label in stage.labels if stage.labels.count(label) > 1):
        problems.add(f"{path}.block", f"lists {label} more than once")
    for name in SEARCHABLE_STAGE_FIELDS:
        if getattr(stage, name) is not None:
            _check_field_used(path, name, stage, problems)
    check_stage_values(path, stage, activation, problems)


def _check_field_used(path: str, name: str, stage: StageSpace, problems: Problems) -> None:
    applies = [variant for variant in stage.block if name in APPLICABLE_FIELDS[variant.block]]
    if not applies:
        blocks = ", ".join(dict.fromkeys(variant.block.value for variant in stage.block))
        problems.add(f"{path}.{name}", f"does not apply to {blocks} blocks; leave it out")
    elif all(name in dict(variant.fixed) for variant in applies):
        problems.add(f"{path}.{name}", "every block choice fixes it; leave it out")


# groups must divide the bottleneck width, out_channels x bottleneck_ratio, and num_heads the width: these are tried
# together.
COUPLED_FIELDS = ("out_channels", "bottleneck_ratio", "groups", "num_heads")
DIVIDING_FIELDS = ("groups", "num_heads")
# A transformer stage's patch size depends on its stride (patch_size 1 at stride 2): tried at the stage's stride.
STRIDE_COUPLED_FIELDS = ("patch_size",)


def check_stage_values(path: str, stage: StageSpace, activation: Activation | None, problems: Problems) -> None:
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
            if name in DIVIDING_FIELDS:
                continue
            field_path = f"{variant_path}.{name}" if name in fixed else f"{path}.{name}"
            stride = stage.stride if name in STRIDE_COUPLED_FIELDS else 1
            for value, note in explained_values(domain):
                _try_stage(variant.block, stride, base | {name: value}, field_path, note, problems)
        if any(name in domains for name in DIVIDING_FIELDS) and len(problems) == before:
            _check_coupled_values(variant, base, domains, (path, variant_path), problems)


def _check_coupled_values(variant: BlockVariant, base: dict[str, Any], domains: dict[str, Domain],
                          paths: tuple[str, str], problems: Problems) -> None:
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
    values: dict[str, Any] = {"num_blocks": 1, "out_channels": 8}
    values |= {name: STAGE_DEFAULTS[name] for name in SEARCHABLE_STAGE_FIELDS if name in APPLICABLE_FIELDS[block]}
    if "activation" in values:
        values["activation"] = DEFAULT_ACTIVATION[block].value
    return values


def _try_stage(block: BlockType, stride: int, values: dict[str, Any], path: str, note: str,
               problems: Problems) -> None:
    try:
        build_stage(block, stride, values)
    except SpecError as error:
        problems.add(path, error.message + note)


def probe_arch_fields(space: SearchSpace) -> dict[str, Any]:
    stage = PROBE_CLASS_TOKEN_STAGE if space.head is HeadType.CLASS_TOKEN else PROBE_STAGE
    return space.arch_fields() | {"stages": (stage,), "resolution": PROBE_RESOLUTION,
                                  "stem_channels": 0 if space.stem is StemType.NONE else 8,
                                  "head_channels": 8 if space.head in HEADS_WITH_CHANNELS else 0}


def _check_globals(space: SearchSpace, problems: Problems) -> None:
    base = probe_arch_fields(space) | {"dropout": 0.0, "drop_path_rate": 0.0}
    trials: list[tuple[str, Any, str]] = [("dropout", space.dropout, ""), ("drop_path_rate", space.drop_path_rate, "")]
    for name in SEARCHABLE_GLOBALS:
        trials += [(name, value, note) for value, note in explained_values(getattr(space, name))]
    for name, value, note in trials:
        try:
            Arch(**base | {name: value})
        except SpecError as error:
            problems.add(error.path, error.message + note)


def _check_class_tokens(space: SearchSpace, problems: Problems) -> None:
    """What Arch checks of class tokens, for every sample: only the last stage has one, and it has one exactly
    when the head is class_token (which reads it)."""
    last = len(space.stages) - 1
    for index, stage in enumerate(space.stages):
        for variant in stage.block:
            domain = stage.field_domains(variant, space.activation).get("class_token")
            values = set(domain.values()) if domain is not None else {False}
            if index < last and True in values:
                problems.add(f"stages[{index}].class_token", "only the last stage may have a class token")
            elif index == last and space.head is HeadType.CLASS_TOKEN and values != {True}:
                problems.add(f"stages[{index}]", f"the class_token head reads the last stage's class token: every "
                                                 f"choice must be a transformer with class_token true, got "
                                                 f"{variant.label}")
            elif index == last and space.head is not HeadType.CLASS_TOKEN and True in values:
                problems.add("head", f"must be class_token: the last stage may have a class token, got "
                                     f"{space.head.value!r}")


def _size_probes(stage: StageSpace, activation: Activation | None) -> dict[tuple[BlockType, int], None]:
    """(block type, patch size) pairs: sizes depend on a transformer stage's patch size."""
    probes: dict[tuple[BlockType, int], None] = {}
    for variant in stage.block:
        domain = stage.field_domains(variant, activation).get("patch_size")
        for patch in domain.values() if domain is not None else (1,):
            probes[variant.block, int(patch)] = None
    return probes


def _check_spatial_sizes(space: SearchSpace, problems: Problems) -> None:
    """Sizes depend only on the resolution, the stem, the strides, which stages are ConvNeXt (their
    downsampling floors, a strided conv rounds up) and transformer stages' patch sizes, so one probe stage per
    block type and patch size reaches every size a sample can; the smallest resolution is the tightest."""
    fields = probe_arch_fields(space) | {"resolution": min(space.resolution.values())}
    if space.head is HeadType.CLASS_TOKEN:  # sizes do not depend on the head; the probes have no class token
        fields |= {"head": HeadType.NORM}
    frontier: dict[int | None, tuple[Stage, ...]] = {None: ()}  # a size reached -> one prefix that reaches it
    for stage in space.stages:
        reached: dict[int | None, tuple[Stage, ...]] = {}
        for prefix in frontier.values():
            for block, patch in _size_probes(stage, space.activation):
                probe = Stage(block=block, num_blocks=1, out_channels=8, stride=stage.stride, patch_size=patch)
                stages = (*prefix, probe)
                try:
                    arch = Arch(**fields | {"stages": stages})
                except SpecError as error:
                    problems.add(error.path, error.message)
                    continue
                reached.setdefault(final_feature_size(arch), stages)
        frontier = reached
