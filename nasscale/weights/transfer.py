"""Moving tensors between our model and a reference's state dict along a family's rules: ``load_reference_weights``
(theirs into ours) and ``export_weights`` (ours under their names), checked tensor by tensor.

``tensor_pairs`` turns the rules into one (our tensor, their tensor) pair per tensor of our model. A tensor of ours
that no rule names, a rule that names no module of ours, a tensor of theirs that is missing, has another shape or
is left over: each is one ``InterchangeError`` naming the first such tensor, before anything is copied.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from nasscale.errors import InterchangeError
from nasscale.models.build import Network
from nasscale.presets.registry import get_preset
from nasscale.spec.arch import Arch
from nasscale.weights.references import Reference, match_preset, reference_for, same_structure
from nasscale.weights.rules import Rule, TensorLayout, classifier_module


@dataclass(frozen=True, slots=True)
class TensorPair:
    ours: str
    theirs: str
    layout: TensorLayout = TensorLayout.SAME


def tensor_pairs(model: nn.Module, rules: Iterable[Rule], *, what: str) -> list[TensorPair]:
    """One pair per tensor of our state dict, in the order of the rules (which follow the reference's modules: an
    export lists its tensors as the reference's state dict does). ``what`` names the mapping in errors."""
    by_module: dict[str, Rule] = {}  # by our module's path, or by our tensor's for a rule of one tensor
    rank: dict[str, int] = {}
    for rule in rules:
        if rule.ours in by_module:
            raise InterchangeError(f"{what}: two rules for our module {rule.ours}")
        by_module[rule.ours] = rule
        rank[rule.ours] = len(rank)
    pairs, used = [], set()
    for name in model.state_dict():
        if name in by_module:  # a rule of this one tensor (a ViT's class token): theirs names their tensor
            used.add(name)
            pairs.append(TensorPair(name, by_module[name].theirs, by_module[name].layout))
            continue
        module, _, leaf = name.rpartition(".")
        if module not in by_module:
            raise InterchangeError(f"{what}: our tensor {name} has no counterpart; the model's layout is not the "
                                   "reference's (a searched or edited architecture?)")
        used.add(module)
        owner = by_module[module]
        pairs.append(TensorPair(name, f"{owner.theirs}.{dict(owner.renames).get(leaf, leaf)}", owner.layout))
    unused = [rule.ours for rule in by_module.values() if rule.ours not in used]
    if unused:
        raise InterchangeError(f"{what}: the model has no module {unused[0]}; the model's layout is not the "
                               "reference's (a searched or edited architecture?)")
    # By the rule of the tensor, else of its module; stable: a module's tensors keep their order.
    return sorted(pairs, key=lambda pair: rank[pair.ours] if pair.ours in rank else rank[pair.ours.rpartition(".")[0]])


def _shape(shape: torch.Size | tuple[int, ...]) -> str:
    return "(" + ", ".join(str(size) for size in shape) + ")"


def load_pairs(model: nn.Module, state_dict: Mapping[str, torch.Tensor], pairs: list[TensorPair], *, what: str,
               ignored: tuple[str, ...] = ()) -> None:
    """Copy ``state_dict`` (theirs) into ``model`` along ``pairs``; every tensor of theirs must be used, but those
    under an ``ignored`` prefix (parts of the reference we do not build, such as GoogLeNet's auxiliary heads)."""
    ours = model.state_dict()
    missing = [pair for pair in pairs if pair.theirs not in state_dict]
    if missing:
        first = missing[0]
        if len(missing) * 2 > len(pairs):  # most of it: another network altogether
            raise InterchangeError(f"{what}: not a checkpoint of this network: {len(missing)} of its {len(pairs)} "
                                   f"tensors are missing, the first {first.theirs}")
        raise InterchangeError(f"{what}: tensor {first.theirs} is missing (our {first.ours})")
    loaded: dict[str, torch.Tensor] = {}
    for pair in pairs:
        tensor, expected = state_dict[pair.theirs], ours[pair.ours]
        if pair.layout is not TensorLayout.SAME and tensor.numel() == expected.numel():
            tensor = tensor.reshape(expected.shape)
        if tensor.shape != expected.shape:
            raise InterchangeError(f"{what}: tensor {pair.theirs} has shape {_shape(tensor.shape)} where this "
                                   f"network has {_shape(expected.shape)} (our {pair.ours}); a checkpoint of another "
                                   "architecture or class count?")
        loaded[pair.ours] = tensor
    used = {pair.theirs for pair in pairs}
    unexpected = [name for name in state_dict if name not in used and not name.startswith(ignored)]
    if unexpected:
        raise InterchangeError(f"{what}: unexpected tensor {unexpected[0]} ({len(unexpected)} in all): a checkpoint "
                               "of another architecture?")
    model.load_state_dict(loaded, strict=True)


def _their_layout(tensor: torch.Tensor, layout: TensorLayout) -> torch.Tensor:
    if layout is TensorLayout.FLAT:
        return tensor.flatten()
    if layout is TensorLayout.POINTWISE and tensor.dim() == 2:  # the weight; the bias is 1-D in both
        return tensor.reshape(*tensor.shape, 1, 1)
    return tensor


def export_pairs(model: nn.Module, pairs: list[TensorPair]) -> dict[str, torch.Tensor]:
    """Our tensors under their names: a state dict the reference model loads with ``strict=True``."""
    ours = model.state_dict()
    return {pair.theirs: _their_layout(ours[pair.ours], pair.layout).detach().clone() for pair in pairs}


def _reference(model: nn.Module, source: str, preset: str | None) -> tuple[Reference, Arch, str]:
    """The reference, our model's architecture and the text naming the mapping in errors."""
    if not isinstance(model, Network):
        raise InterchangeError(f"the model must be built by nasscale.build, got {type(model).__name__}")
    arch = model.arch
    name = get_preset(preset).name if preset is not None else match_preset(arch)
    if name is None:
        raise InterchangeError(f"the model (arch {arch.arch_id}) is no referenced preset's layout (at any class "
                               "count); only a preset's tensors have a reference's names")
    reference = reference_for(name, source)
    if not same_structure(arch, get_preset(name).arch().replace(in_channels=arch.in_channels)):
        raise InterchangeError(f"the model (arch {arch.arch_id}) is not {name}'s layout (at any class count, "
                               "resolution, dropout or activation); build the preset")
    return reference, arch, f"{name} <-> {source} {reference.model}"


def load_reference_weights(model: nn.Module, state_dict: Mapping[str, torch.Tensor], *, source: str = "torchvision",
                           preset: str | None = None) -> nn.Module:
    """Load a reference model's ``state_dict`` (torchvision's or timm's names) into ``model`` (built by
    ``nasscale.build``) and return it. ``preset`` names the family's mapping (default: the preset ``model.arch``
    was built from, whatever its class count). Every tensor must map: one missing, of another shape or left over is
    an ``InterchangeError`` naming it, and the model is left as it was."""
    reference, arch, what = _reference(model, source, preset)
    pairs = tensor_pairs(model, reference.rules(arch), what=what)
    load_pairs(model, state_dict, pairs, what=what, ignored=reference.ignored)
    return model


def export_weights(model: nn.Module, *, target: str = "torchvision",
                   preset: str | None = None) -> dict[str, torch.Tensor]:
    """``model``'s tensors under the names of ``target``'s model of ``preset``: a state dict that
    ``torchvision.models.get_model(name).load_state_dict`` (or timm's) takes with ``strict=True``."""
    reference, arch, what = _reference(model, target, preset)
    exported = export_pairs(model, tensor_pairs(model, reference.rules(arch), what=what))
    if reference.state_dict_version is None:
        return exported
    # What nn.Module.state_dict() records and torchvision's MNASNet checks on load (it refuses a state dict
    # without it); torch.save keeps it and torch.load(weights_only=True) restores it.
    versioned: OrderedDict[str, torch.Tensor] = OrderedDict(exported)
    versioned._metadata = {"": {"version": reference.state_dict_version}}  # type: ignore[attr-defined]
    return versioned


def checkpoint_classes(state_dict: Mapping[str, torch.Tensor], arch: Arch, *, source: str, preset: str) -> int:
    """The class count of a reference checkpoint: the output width of its classifier (torchvision's ``fc``,
    ``classifier.1`` ...), read through the family's rules. ``arch.num_classes`` when the tensor is not there (the
    load then names what is missing)."""
    reference = reference_for(preset, source)
    ours = classifier_module(arch)
    theirs = next((rule.theirs for rule in reference.rules(arch) if rule.ours == ours), None)
    tensor = state_dict.get(f"{theirs}.weight") if theirs is not None else None
    return int(tensor.shape[0]) if isinstance(tensor, torch.Tensor) and tensor.dim() >= 1 else arch.num_classes
