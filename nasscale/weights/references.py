"""Which reference model each preset's weights come from and go to: a table per source (``TORCHVISION``,
``TIMM``) from preset name to the reference's builder name and the family's rules; ``reference_for`` looks one up
and ``match_preset`` finds the preset a model was built from.

A preset missing from a table has no model there whose outputs ours reproduce; ``NO_COUNTERPART`` says why
for each such case, and ``nasscale weights references`` lists both. No torch in this module.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from nasscale.errors import UnknownNameError
from nasscale.presets.registry import PRESETS, get_preset
from nasscale.spec.arch import Arch
from nasscale.spec.norm import DEFAULT_NORM
from nasscale.spec.vocabulary import Activation
from nasscale.weights import timm_rules, torchvision_rules
from nasscale.weights.rules import Rule

SOURCES = ("torchvision", "timm")


@dataclass(frozen=True, slots=True)
class Reference:
    source: str  # one of SOURCES
    model: str  # torchvision.models.get_model(model) / timm.create_model(model)
    rules: Callable[[Arch], list[Rule]]
    # Prefixes of tensors in the reference's checkpoints that we do not build (GoogLeNet's auxiliary classifiers,
    # which torchvision's checkpoint keeps and its eval model drops): skipped on import, absent on export.
    ignored: tuple[str, ...] = ()
    # The version its top module records in a state dict's metadata, where its load_state_dict insists on one.
    state_dict_version: int | None = None
    note: str = ""


def _table(source: str, rows: dict[str, tuple[str, Callable[[Arch], list[Rule]]]]) -> dict[str, Reference]:
    return {preset: Reference(source, model, rules) for preset, (model, rules) in rows.items()}


_TORCHVISION_EFFICIENTNETS = {f"efficientnet_b{index}": (f"efficientnet_b{index}", torchvision_rules.efficientnet)
                              for index in range(8)}
TORCHVISION: dict[str, Reference] = _table("torchvision", {
    **_TORCHVISION_EFFICIENTNETS,
    "efficientnetv2_s": ("efficientnet_v2_s", torchvision_rules.efficientnet),
    "efficientnetv2_m": ("efficientnet_v2_m", torchvision_rules.efficientnet),
    "efficientnetv2_l": ("efficientnet_v2_l", torchvision_rules.efficientnet),
    "mobilenet_v2": ("mobilenet_v2", torchvision_rules.mobilenet_v2),
    "mobilenet_v3_large": ("mobilenet_v3_large", torchvision_rules.mobilenet_v3),
    "mobilenet_v3_small": ("mobilenet_v3_small", torchvision_rules.mobilenet_v3),
    "resnet18": ("resnet18", torchvision_rules.resnet),
    "resnet34": ("resnet34", torchvision_rules.resnet),
    "resnet50": ("resnet50", torchvision_rules.resnet),
    "resnet101": ("resnet101", torchvision_rules.resnet),
    "resnet152": ("resnet152", torchvision_rules.resnet),
    "resnext50_32x4d": ("resnext50_32x4d", torchvision_rules.resnet),
    "regnet_x_400mf": ("regnet_x_400mf", torchvision_rules.regnet),
    "regnet_y_400mf": ("regnet_y_400mf", torchvision_rules.regnet),
    "regnet_y_800mf": ("regnet_y_800mf", torchvision_rules.regnet),
    "regnet_y_1_6gf": ("regnet_y_1_6gf", torchvision_rules.regnet),
    "convnext_tiny": ("convnext_tiny", torchvision_rules.convnext),
    "convnext_small": ("convnext_small", torchvision_rules.convnext),
    "convnext_base": ("convnext_base", torchvision_rules.convnext),
    "convnext_large": ("convnext_large", torchvision_rules.convnext),
    "densenet121": ("densenet121", torchvision_rules.densenet),
    "shufflenet_v2_x1_0": ("shufflenet_v2_x1_0", torchvision_rules.shufflenet),
    "squeezenet1_0": ("squeezenet1_0", torchvision_rules.squeezenet),
    "squeezenet1_1": ("squeezenet1_1", torchvision_rules.squeezenet),
    "vgg16": ("vgg16", torchvision_rules.vgg),
    "alexnet": ("alexnet", torchvision_rules.alexnet),
    "vit_b_16": ("vit_b_16", torchvision_rules.vision_transformer),
    "vit_b_32": ("vit_b_32", torchvision_rules.vision_transformer),
    "vit_l_16": ("vit_l_16", torchvision_rules.vision_transformer),
}) | {
    # torchvision's MNASNet raises on a state dict whose metadata lacks its version (2: models/mnasnet.py _version).
    "mnasnet_b1": Reference("torchvision", "mnasnet1_0", torchvision_rules.mnasnet, state_dict_version=2),
    "googlenet": Reference("torchvision", "googlenet", torchvision_rules.googlenet, ignored=("aux1.", "aux2."),
                           note="the auxiliary classifiers aux1/aux2 of its checkpoint are skipped"),
    "inception_v3": Reference(
        "torchvision", "inception_v3", torchvision_rules.inception_v3, ignored=("AuxLogits.",),
        note="the auxiliary classifier AuxLogits of its checkpoint is skipped; torchvision's pretrained model maps "
             "ImageNet-normalised inputs to [-1, 1] first (transform_input=True), ours takes them as they are"),
}

TIMM: dict[str, Reference] = _table("timm", {
    # timm's efficientnet_b5-b7 keep BatchNorm's eps 1e-5; ours (torchvision's) use 1e-3: see NO_COUNTERPART.
    **{f"efficientnet_b{index}": (f"efficientnet_b{index}", timm_rules.efficientnet) for index in range(5)},
    "mnasnet_a1": ("semnasnet_100", timm_rules.efficientnet),
    "mobilenet_v2": ("mobilenetv2_100", timm_rules.efficientnet),
    "resnet18": ("resnet18", timm_rules.resnet),
    "resnet34": ("resnet34", timm_rules.resnet),
    "resnet50": ("resnet50", timm_rules.resnet),
    "resnet101": ("resnet101", timm_rules.resnet),
    "resnet152": ("resnet152", timm_rules.resnet),
    "resnext50_32x4d": ("resnext50_32x4d", timm_rules.resnet),
    "se_resnet50": ("seresnet50", timm_rules.resnet),
    "resnetv2_50": ("resnetv2_50", timm_rules.resnetv2),
    "convnext_tiny": ("convnext_tiny", timm_rules.convnext),
    "convnext_small": ("convnext_small", timm_rules.convnext),
    "convnext_base": ("convnext_base", timm_rules.convnext),
    "convnext_large": ("convnext_large", timm_rules.convnext),
    "inception_resnet_v2": ("inception_resnet_v2", timm_rules.inception_resnet_v2),
    "vit_b_16": ("vit_base_patch16_224", timm_rules.vision_transformer),
    "vit_b_32": ("vit_base_patch32_224", timm_rules.vision_transformer),
    "vit_l_16": ("vit_large_patch16_224", timm_rules.vision_transformer),
}) | {"mobilenet_v1": Reference(
    "timm", "mobilenetv1_100", timm_rules.efficientnet,
    note="every tensor maps, but timm's mobilenetv1_100 uses ReLU6 where the preset (the paper's table) uses ReLU: "
         "outputs differ unless the stages' activation is set to relu6")}

REFERENCES: dict[str, dict[str, Reference]] = {"torchvision": TORCHVISION, "timm": TIMM}

# Presets with no reference model whose outputs ours reproduce, and why.
NO_COUNTERPART: dict[str, str] = {
    "lenet5": "neither library has LeNet-5",
    "van_b0": "VAN is in neither library (its authors' repository only)",
    "efficientnet_b5": "timm's efficientnet_b5 keeps BatchNorm eps 1e-5 where torchvision's (the preset's) has 1e-3",
    "efficientnet_b6": "as efficientnet_b5",
    "efficientnet_b7": "as efficientnet_b5",
}


def reference_for(preset: str, source: str) -> Reference:
    """The reference ``preset``'s weights come from in ``source``; one line naming what exists when there is none."""
    if source not in REFERENCES:
        raise UnknownNameError(f"unknown weights source {source!r}; one of {', '.join(SOURCES)}")
    name = get_preset(preset).name
    table = REFERENCES[source]
    if name not in table:
        others = [other for other in SOURCES if name in REFERENCES[other]]
        where = f"; {name} maps to {' and '.join(others)}" if others else f" ({NO_COUNTERPART.get(name, 'no model')})"
        raise UnknownNameError(f"{source} has no counterpart of preset {name}{where}; "
                               "'nasscale weights references' lists them")
    return table[name]


def _structure(arch: Arch) -> Arch:
    """What decides the tensors' names and shapes, but the class count: the resolution, dropout and stochastic depth
    a run trains with, the activations and the norm settings change no tensor (but for a ViT's position embedding,
    whose length the resolution sets: a checkpoint of another resolution is refused on that tensor's shape)."""
    stages = tuple(dataclasses.replace(stage, activation=Activation.RELU) for stage in arch.stages)
    return arch.replace(num_classes=1, resolution=224, dropout=0.0, drop_path_rate=0.0, activation=Activation.RELU,
                        norm=DEFAULT_NORM, stages=stages)


def match_preset(arch: Arch) -> str | None:
    """The preset ``arch`` was built from (with any class count, resolution, dropout, drop-path rate, activation or
    norm settings), or None."""
    wanted = _structure(arch)
    for name, preset in PRESETS.items():
        if name in TORCHVISION or name in TIMM:
            candidate = preset.arch()
            if _structure(candidate.replace(in_channels=arch.in_channels)) == wanted:
                return name
    return None


def same_structure(first: Arch, second: Arch) -> bool:
    return _structure(first) == _structure(second)
