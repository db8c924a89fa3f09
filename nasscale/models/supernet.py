"""A weight-sharing supernet in the manner of Once-for-All (Cai et al. 2020): one module holds the weights of every
sub-network of a space of MBConv, Fused-MBConv, sepconv and conv stages, and runs the one ``set_active`` picks.

What it is made of (``SupernetChoices``): per stage, its stride and block choices, each a block type with the values
every field may take, which is what a search space says once its domains are listed (``nasscale.evaluate.
supernet_training.supernet_choices`` lists them); the resolutions, stem and head widths; and the Arch fields every
sub-network shares. ``Subnets`` are the architectures those choices make, exactly: ``check`` refuses any other in
one line naming the field, and they are the space's own architectures.

How weights are shared (the layers are ``nasscale.models.elastic``'s):
  * kernel: OFA's kernel transformation matrices on the centre of the largest kernel (see ``elastic``);
  * expansion, width, squeeze-excite, stem and head widths: the first channels; ``sort_channels`` puts the most
    important first (L1 norm of the weights that read each channel, as OFA), keeping the full-width function;
  * depth: the first blocks of each stage;
  * resolution: any, the layers are convolutional;
  * block type: not nested in OFA, so each block type a stage offers has weights of its own at each position
    (mbconv e3 and e6 share one mbconv, as its expansions do): a single-path supernet across types.

The largest architecture (``Subnets.largest``) is the max of each choice: widest, then deepest, then the most MACs
(the largest kernel, expansion and squeeze ratio, and the block type that costs most); the smallest mirrors it.
``extract(supernet, arch)`` is ``build(arch)`` holding the active weights, so its counts are ``cost(arch)``'s.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from itertools import product
from typing import Any, cast

import torch
from torch import nn

from nasscale.errors import SpecError
from nasscale.models.build import Network, build, initialize_weights
from nasscale.models.elastic import (
    ElasticBlock,
    ElasticConvBlock,
    ElasticHead,
    ElasticMBConv,
    ElasticSepConv,
    ElasticStem,
    State,
)
from nasscale.spec.arch import ARCH_FIELDS, Arch, iter_stages, last_channels, stage_blocks, total_blocks
from nasscale.spec.channels import expanded_channels, squeeze_channels
from nasscale.spec.cost import stage_cost
from nasscale.spec.geometry import has_residual
from nasscale.spec.stage import STAGE_FIELDS, Stage
from nasscale.spec.vocabulary import STEM_LAYOUTS, BlockType, HeadType, SqueezeExciteStyle, StemNorm, StemType

STAGE_CHOICE_FIELDS = ("num_blocks", "out_channels", "kernel_size", "expand_ratio", "se_ratio", "skip", "activation")
GLOBAL_CHOICE_FIELDS = ("resolution", "stem_channels", "head_channels")
# Everything a sub-network may vary: ``Subnets`` methods take the elastic subset (the rest stay the largest's).
ELASTIC_FIELDS = (*GLOBAL_CHOICE_FIELDS, "block", *STAGE_CHOICE_FIELDS)
ELASTIC_BLOCKS = (BlockType.MBCONV, BlockType.FUSED_MBCONV, BlockType.SEPCONV, BlockType.CONV)
SHARED_FIELDS = tuple(name for name in ARCH_FIELDS if name not in ("stages", *GLOBAL_CHOICE_FIELDS))


@dataclass(frozen=True, slots=True, kw_only=True)
class VariantChoices:
    """One block choice of a stage: its type and the values each field may take (a field left out keeps its
    Stage default)."""

    block: BlockType
    values: tuple[tuple[str, tuple[Any, ...]], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class StageChoices:
    stride: int
    variants: tuple[VariantChoices, ...]

    def candidates(self) -> tuple[Stage, ...]:
        """Every stage these choices make, once each, in the order the choices list them."""
        stages: dict[Stage, None] = {}
        for variant in self.variants:
            names = [name for name, _ in variant.values]
            for combination in product(*(values for _, values in variant.values)):
                fields = dict(zip(names, combination, strict=True))
                stages[Stage(block=variant.block, stride=self.stride, **fields)] = None
        return tuple(stages)


@dataclass(frozen=True, slots=True, kw_only=True)
class SupernetChoices:
    stages: tuple[StageChoices, ...]
    resolution: tuple[int, ...]
    stem_channels: tuple[int, ...]
    head_channels: tuple[int, ...]
    shared: tuple[tuple[str, Any], ...]  # every other Arch field (SHARED_FIELDS), the same in each sub-network

    def __post_init__(self) -> None:
        _check_choices(self)

    @property
    def identity(self) -> str:
        """A stable 12-hex-digit id of the choices, for checkpoints (reprs of frozen specs are deterministic)."""
        return hashlib.sha256(repr(self).encode()).hexdigest()[:12]


def _check_choices(choices: SupernetChoices) -> None:
    if not choices.stages:
        raise SpecError("stages", "a supernet needs at least one stage")
    for name in GLOBAL_CHOICE_FIELDS:
        if not getattr(choices, name):
            raise SpecError(name, "lists no value")
    shared = dict(choices.shared)
    if set(shared) != set(SHARED_FIELDS):
        raise SpecError("shared", f"must give exactly the fields {', '.join(SHARED_FIELDS)}")
    _check_stem_and_head(shared)
    for index, stage in enumerate(choices.stages):
        if not stage.variants:
            raise SpecError(f"stages[{index}].block", "lists no block choice")
        for variant in stage.variants:
            _check_variant(f"stages[{index}]", variant)


def _check_stem_and_head(shared: dict[str, Any]) -> None:
    stem, head = shared["stem"], shared["head"]
    if stem is not StemType.NONE and (stem not in STEM_LAYOUTS or STEM_LAYOUTS[stem].norm is StemNorm.LAYER):
        raise SpecError("stem", f"a supernet has conv stems (with BatchNorm or no norm) or none, got {stem.value!r}")
    if head not in (HeadType.CONV, HeadType.POOL) or shared["classifier_hidden"] or shared["head_pool_size"] != 1:
        raise SpecError("head", f"a supernet has a conv or pool head with one linear layer, got {head.value!r}")


def _check_variant(path: str, variant: VariantChoices) -> None:
    if variant.block not in ELASTIC_BLOCKS:
        offered = ", ".join(block.value for block in ELASTIC_BLOCKS)
        raise SpecError(f"{path}.block", f"{variant.block.value} blocks have no elastic form; a supernet takes "
                                         f"{offered}")
    names = [name for name, _ in variant.values]
    for name, values in variant.values:
        if name not in STAGE_FIELDS or name in ("block", "stride"):
            raise SpecError(f"{path}.{name}", "is not a stage field a block choice can set")
        if not values:
            raise SpecError(f"{path}.{name}", "lists no value")
        if len(values) > 1 and name not in STAGE_CHOICE_FIELDS:
            raise SpecError(f"{path}.{name}", f"a supernet cannot vary it; fix one value, got {list(values)}")
    for name in ("num_blocks", "out_channels"):
        if name not in names:
            raise SpecError(f"{path}.{name}", "every block choice must list its values")


def _shown(value: Any) -> str:
    if isinstance(value, Enum):
        return str(value.value)
    return f"{value:g}" if isinstance(value, float) else str(value)


class Subnets:
    """The architectures a supernet's choices make: the largest, the smallest, random ones, every one, and the
    check that refuses any other. The methods take ``elastic``, the fields allowed to vary (``ELASTIC_FIELDS``
    names them); the others keep the largest architecture's values (progressive shrinking's phases)."""

    def __init__(self, choices: SupernetChoices) -> None:
        self.choices = choices
        self.candidates = tuple(stage.candidates() for stage in choices.stages)
        self._members = tuple(frozenset(candidates) for candidates in self.candidates)
        self._extremes: dict[tuple[tuple[str, ...], bool], Arch] = {}
        self.reference = self.largest()  # whose values the fields that do not vary keep

    def arch(self, stages: Sequence[Stage], resolution: int, stem_channels: int, head_channels: int) -> Arch:
        return Arch(stages=tuple(stages), resolution=resolution, stem_channels=stem_channels,
                    head_channels=head_channels, **dict(self.choices.shared))

    def allowed(self, index: int, elastic: Sequence[str] = ELASTIC_FIELDS) -> tuple[Stage, ...]:
        """Stage ``index``'s candidates that agree with the largest architecture on every field not elastic."""
        fixed = [name for name in ("block", *STAGE_CHOICE_FIELDS) if name not in elastic]
        if not fixed:
            return self.candidates[index]
        reference = self.reference.stages[index]
        return tuple(stage for stage in self.candidates[index]
                     if all(getattr(stage, name) == getattr(reference, name) for name in fixed))

    def largest(self, elastic: Sequence[str] = ELASTIC_FIELDS) -> Arch:
        return self._extreme(tuple(sorted(elastic)), largest=True)

    def smallest(self, elastic: Sequence[str] = ELASTIC_FIELDS) -> Arch:
        return self._extreme(tuple(sorted(elastic)), largest=False)

    def random(self, rng: random.Random, elastic: Sequence[str] = ELASTIC_FIELDS) -> Arch:
        """Each global choice and each stage drawn uniformly from those ``elastic`` allows."""
        values = [rng.choice(self._global_values(name, elastic)) for name in GLOBAL_CHOICE_FIELDS]
        stages = [rng.choice(self.allowed(index, elastic)) for index in range(len(self.candidates))]
        return self.arch(stages, *values)

    def _global_values(self, name: str, elastic: Sequence[str]) -> tuple[int, ...]:
        values: tuple[int, ...] = getattr(self.choices, name)
        return values if name in elastic else (max(values),)

    def _extreme(self, elastic: tuple[str, ...], *, largest: bool) -> Arch:
        """Greedy stage by stage (a stage's choice changes no earlier stage's cost): the widest, then deepest,
        then costliest stage (the narrowest, shallowest, cheapest for the smallest)."""
        key = (elastic, largest)
        if key not in self._extremes:
            pick: Callable[..., Any] = max if largest else min
            values = [pick(self._global_values(name, elastic)) for name in GLOBAL_CHOICE_FIELDS]
            options = [self.allowed(index, elastic) for index in range(len(self.candidates))]
            stages = [allowed[0] for allowed in options]
            for index, allowed in enumerate(options):
                placement = list(iter_stages(self.arch(stages, *values)))[index]
                stages[index] = pick(allowed, key=lambda stage: _size_key(placement._replace(stage=stage)))
            self._extremes[key] = self.arch(stages, *values)
        return self._extremes[key]

    def check(self, arch: Arch) -> None:
        """Nothing when ``arch`` is a sub-network; else one ``SpecError`` naming the first field that is not."""
        for name, value in self.choices.shared:
            if getattr(arch, name) != value:
                raise SpecError(name, f"must be {_shown(value)} in every sub-network of this supernet, got "
                                      f"{_shown(getattr(arch, name))}")
        for name in GLOBAL_CHOICE_FIELDS:
            if getattr(arch, name) not in getattr(self.choices, name):
                offered = ", ".join(map(str, getattr(self.choices, name)))
                raise SpecError(name, f"{getattr(arch, name)} is not a choice of this supernet ({offered})")
        if len(arch.stages) != len(self.candidates):
            raise SpecError("stages", f"this supernet has {len(self.candidates)} stages, got {len(arch.stages)}")
        for index, stage in enumerate(arch.stages):
            if stage not in self._members[index]:
                self._refuse_stage(index, stage)

    def _refuse_stage(self, index: int, stage: Stage) -> None:
        remaining = self.candidates[index]
        for name in STAGE_FIELDS:  # block first: the first field no candidate left shares is the one to fix
            value = getattr(stage, name)
            matching = tuple(candidate for candidate in remaining if getattr(candidate, name) == value)
            if not matching:
                offered = ", ".join(dict.fromkeys(_shown(getattr(candidate, name)) for candidate in remaining))
                raise SpecError(f"stages[{index}].{name}", f"{_shown(value)} is not a choice of this supernet "
                                                           f"(with the stage's earlier fields it offers {offered})")
            remaining = matching

    def __iter__(self) -> Iterator[Arch]:
        choices = self.choices
        for resolution, stem, head, stages in product(choices.resolution, choices.stem_channels,
                                                      choices.head_channels, product(*self.candidates)):
            yield self.arch(stages, resolution, stem, head)

    def __len__(self) -> int:
        count = len(self.choices.resolution) * len(self.choices.stem_channels) * len(self.choices.head_channels)
        for candidates in self.candidates:
            count *= len(candidates)
        return count


def _size_key(placement: Any) -> tuple[int, int, int, int]:
    total = stage_cost(placement)
    return placement.stage.out_channels, placement.stage.num_blocks, total.macs, total.params


def stream_widths(subnets: Subnets) -> tuple[tuple[int, ...], ...]:
    """The widths each stream of channels may have: the stem's output (stream 0), then each stage's."""
    choices = subnets.choices
    first = (subnets.reference.in_channels,) if subnets.reference.stem is StemType.NONE else choices.stem_channels
    stages = [tuple(sorted({stage.out_channels for stage in candidates})) for candidates in subnets.candidates]
    return (tuple(sorted(first)), *stages)


class Supernet(nn.Module):
    """The weight-sharing network of ``choices``; ``forward`` runs the active sub-network (the largest at first)."""

    def __init__(self, choices: SupernetChoices) -> None:
        super().__init__()
        self.choices = choices
        self.subnets = Subnets(choices)
        largest = self.subnets.reference
        self.widths = stream_widths(self.subnets)
        self.stem = None if largest.stem is StemType.NONE else ElasticStem(
            STEM_LAYOUTS[largest.stem], largest.in_channels, max(choices.stem_channels), largest.norm)
        self.active = largest  # the norm settings every block takes, and the sub-network forward runs
        self.stages = nn.ModuleList(self._stage(index) for index in range(len(choices.stages)))
        head_channels = max(choices.head_channels) if largest.head is HeadType.CONV else 0
        self.head = ElasticHead(max(self.widths[-1]), head_channels, largest.num_classes, largest.norm)
        initialize_weights(self)  # build's for the classifier and the norms; elastic convs initialise themselves

    def _stage(self, index: int) -> nn.ModuleDict:
        candidates = self.subnets.candidates[index]
        modules = nn.ModuleDict()
        for block in dict.fromkeys(stage.block for stage in candidates):
            of_type = [stage for stage in candidates if stage.block is block]
            depth = max(stage.num_blocks for stage in of_type)
            modules[block.value] = nn.ModuleList(self._block(index, position, of_type) for position in range(depth))
        return modules

    def _block(self, index: int, position: int, stages: list[Stage]) -> ElasticBlock:
        """One block position of one type, as wide as its widest sub-network asks (maxima over every input width
        and choice, so no rounding rule need be monotonic)."""
        inputs = self.widths[index] if position == 0 else self.widths[index + 1]
        in_channels, out_channels = max(inputs), max(self.widths[index + 1])
        kernels, block, norm = sorted({stage.kernel_size for stage in stages}), stages[0].block, self.active.norm
        if block is BlockType.CONV:
            return ElasticConvBlock(in_channels, out_channels, kernels, norm)
        style = self.subnets.reference.se_style
        if block is BlockType.SEPCONV:
            squeezed = max(_squeeze(width, stage, width, style) for width in inputs for stage in stages)
            return ElasticSepConv(in_channels, out_channels, squeezed, kernels, norm)
        for width in inputs:
            for stage in stages:
                if expanded_channels(width, stage.expand_ratio) == width:
                    raise SpecError(f"stages[{index}].expand_ratio", f"{stage.expand_ratio:g} leaves a {width}-channel "
                                    f"input's width unchanged, so the block has no expansion to share; offer sepconv "
                                    f"or conv for that instead")
        hidden = max(expanded_channels(width, stage.expand_ratio) for width in inputs for stage in stages)
        squeezed = max(_squeeze(width, stage, expanded_channels(width, stage.expand_ratio), style)
                       for width in inputs for stage in stages)
        return ElasticMBConv(in_channels, out_channels, hidden, squeezed, kernels, norm,
                             fused=block is BlockType.FUSED_MBCONV)

    def blocks_of(self, index: int, block: BlockType) -> list[ElasticBlock]:
        """Stage ``index``'s block positions of type ``block``, in order."""
        positions = cast(nn.ModuleList, cast(nn.ModuleDict, self.stages[index])[block.value])
        return [cast(ElasticBlock, module) for module in positions]

    def set_active(self, arch: Arch) -> None:
        """Run ``arch`` from now on; a ``SpecError`` naming the field when it is not a sub-network."""
        self.subnets.check(arch)
        self.active = arch

    @contextmanager
    def activated(self, arch: Arch) -> Iterator[Supernet]:
        previous = self.active
        self.set_active(arch)
        try:
            yield self
        finally:
            self.active = previous

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        arch = self.active
        if self.stem is not None:
            x = self.stem(x, arch.stem_channels, arch.activation)
        blocks = total_blocks(arch)
        for placement in iter_stages(arch):
            modules = self.blocks_of(placement.index, placement.stage.block)
            for position, block in enumerate(stage_blocks(placement)):
                out = modules[position](x, block)
                if has_residual(block.stage, block.in_channels, block.stride):
                    # Stochastic depth grows with depth, as Network's blocks take it.
                    out = x + _drop_path(out, arch.drop_path_rate * block.block_index / blocks, self.training)
                x = out
        return self.head(x, arch.head_channels, arch.activation, arch.dropout)

    def subnet_state(self, arch: Arch) -> State:
        """The tensors of ``arch``'s sub-network, named as ``build(arch)``'s state dict names them."""
        self.subnets.check(arch)
        state: State = {} if self.stem is None else self.stem.state("stem.", arch.stem_channels, arch.in_channels)
        for placement in iter_stages(arch):
            modules = self.blocks_of(placement.index, placement.stage.block)
            for position, block in enumerate(stage_blocks(placement)):
                state |= modules[position].state(f"stages.{placement.index}.{position}.body.", block)
        return state | self.head.state("head.", last_channels(arch), arch.head_channels)


def _squeeze(width: int, stage: Stage, gated: int, style: SqueezeExciteStyle) -> int:
    return squeeze_channels(width, stage.se_ratio, gated, style) if stage.se_ratio > 0 else 0


def _drop_path(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """DropPath's arithmetic: drop the branch per sample, scale the kept ones."""
    if not training or rate == 0.0:
        return x
    keep = 1.0 - rate
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    return x * mask / keep


def extract(supernet: Supernet, arch: Arch) -> Network:
    """``build(arch)`` holding the supernet's weights for ``arch`` (copies: training one leaves the other alone).
    Built under a forked random state, so that extracting (to score, say) changes no training's randomness."""
    state = supernet.subnet_state(arch)
    with torch.random.fork_rng(devices=[]):
        network = build(arch)
    network.load_state_dict(state)  # strict: every tensor of the plain model comes from the supernet
    return network.to(next(supernet.parameters()).device)


# ---------------------------------------------------------------------------------------------------
# Channel sorting


def sort_channels(supernet: Supernet) -> None:
    """Reorder channels so the most important come first (the L1 norm of the weights that read each one, OFA's
    rule), leaving the function of every full-width sub-network unchanged: each block's expansion and squeeze,
    the head's width, and each stream of channels between stages (with its producers and readers).

    A residual adds a stage's input to its output when a sub-network gives them one width, so streams that can
    meet so are sorted together; where their largest widths differ no common order exists and they stay as they
    are (as does the input image's stream, with no stem)."""
    with torch.no_grad():
        for module in supernet.modules():
            if isinstance(module, ElasticBlock):
                module.sort_hidden()
        supernet.head.sort_hidden()
        for group in _stream_groups(supernet):
            importance = sum(reader.input_importance() for stream in group for reader in _readers(supernet, stream))
            order = torch.argsort(torch.as_tensor(importance), descending=True, stable=True)
            for stream in group:
                for producer in _producers(supernet, stream):
                    producer.permute_output(order)
                for reader in _readers(supernet, stream):
                    reader.permute_input(order)


def _blocks(supernet: Supernet, index: int, positions: slice) -> list[ElasticBlock]:
    kinds = dict.fromkeys(stage.block for stage in supernet.subnets.candidates[index])
    return [block for kind in kinds for block in supernet.blocks_of(index, kind)[positions]]


def _producers(supernet: Supernet, stream: int) -> list[Any]:
    if stream == 0:
        return [supernet.stem]
    return _blocks(supernet, stream - 1, slice(None))


def _readers(supernet: Supernet, stream: int) -> list[Any]:
    readers: list[Any] = []
    if stream < len(supernet.stages):
        readers += _blocks(supernet, stream, slice(0, 1))
    if stream > 0:
        readers += _blocks(supernet, stream - 1, slice(1, None))
    return readers + ([supernet.head] if stream == len(supernet.stages) else [])


def _stream_groups(supernet: Supernet) -> list[list[int]]:
    """Streams joined where a residual can add one to the next, keeping the groups that can be sorted."""
    widths, groups = supernet.widths, [[0]]
    for index, stage_choices in enumerate(supernet.choices.stages):
        joined = any(has_residual(stage, stage.out_channels, stage_choices.stride) and stage.out_channels in
                     widths[index] for stage in supernet.subnets.candidates[index])
        if joined:
            groups[-1].append(index + 1)
        else:
            groups.append([index + 1])
    no_stem = supernet.stem is None
    return [group for group in groups if len({max(widths[stream]) for stream in group}) == 1
            and not (no_stem and 0 in group)]
