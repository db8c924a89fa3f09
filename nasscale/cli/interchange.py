"""``nasscale timm`` and ``nasscale from-timm``: architectures to and from timm's EfficientNet block strings
(``nasscale.spec.interchange``). The strings print with plain print: rich markup would swallow their brackets.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from nasscale.cli.output import console
from nasscale.errors import InterchangeError
from nasscale.presets.registry import resolve_arch
from nasscale.spec.arch import to_dict
from nasscale.spec.cost import cost
from nasscale.spec.interchange import arch_def_from_text, arch_from_timm, arch_to_timm, timm_model_kwargs
from nasscale.spec.serialization import summary, to_json, to_yaml
from nasscale.spec.vocabulary import Activation, SqueezeExciteStyle
from nasscale.units import format_count

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of text.")]


def timm(
    target: Annotated[str, typer.Argument(help="A preset name or an architecture file (.yaml/.json).")],
    as_json: JsonFlag = False,
) -> None:
    """Print an architecture's stages as timm block strings (arch_def), and the arguments of timm's EfficientNet
    class where its stem and head are timm's too. mbconv e1 prints as ds and conv as cn: the same layers."""
    arch = resolve_arch(target)
    arch_def = arch_to_timm(arch)
    try:
        model_kwargs, note = timm_model_kwargs(arch), None
    except InterchangeError as error:
        model_kwargs, note = None, str(error)
    if as_json:
        print(json.dumps({"target": target, "arch_id": arch.arch_id, "arch_def": arch_def,
                          "efficientnet_kwargs": model_kwargs, "note": note}, indent=2))
        return
    print(f"# {target} (arch_id {arch.arch_id}) as timm block strings")
    print("arch_def = [")
    for stage in arch_def:
        print(f"    {stage!r},")
    print("]")
    if model_kwargs is None:
        print(f"# {note}")
        return
    arguments = ", ".join(f"{name}={value!r}" for name, value in model_kwargs.items())
    print(f"# timm.models.efficientnet.EfficientNet(decode_arch_def(arch_def), {arguments})")


def from_timm(
    arch_def: Annotated[str, typer.Argument(help="timm block strings: a list of lists as in timm's source, or "
                                                 "stages separated by spaces, a stage's strings by commas.")],
    stem_channels: Annotated[int, typer.Option(min=1, help="timm's stem_size.")] = 32,
    head_channels: Annotated[int, typer.Option(min=1, help="timm's num_features.")] = 1280,
    resolution: Annotated[int, typer.Option(min=1, help="Input resolution.")] = 224,
    activation: Annotated[Activation, typer.Option(help="timm's act_layer: silu (EfficientNet), relu (MnasNet), "
                                                        "hardswish (MobileNetV3).")] = Activation.SILU,
    se_style: Annotated[SqueezeExciteStyle, typer.Option(help="efficientnet (timm's EfficientNet class) or "
                                                              "mobilenet_v3 (its MobileNetV3 class).")]
    = SqueezeExciteStyle.EFFICIENTNET,
    num_classes: Annotated[int, typer.Option(min=1)] = 1000,
    in_channels: Annotated[int, typer.Option(min=1)] = 3,
    out: Annotated[Path | None, typer.Option(help="Write the architecture file (.yaml or .json) for the other "
                                                  "commands.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Read timm block strings into an architecture with a conv stem and head; print its cost."""
    arch = arch_from_timm(arch_def_from_text(arch_def), stem_channels=stem_channels, head_channels=head_channels,
                          resolution=resolution, activation=activation, se_style=se_style, num_classes=num_classes,
                          in_channels=in_channels)
    total = cost(arch)
    if out is not None:
        out.write_text(to_json(arch) if out.suffix.lower() == ".json" else to_yaml(arch))
    if as_json:
        print(json.dumps({"arch_id": arch.arch_id, "params": total.params, "macs": total.macs,
                          "summary": summary(arch), "arch": to_dict(arch)}, indent=2))
        return
    console.print(f"{summary(arch)}\narch_id {arch.arch_id}: {format_count(total.params)} params, "
                  f"{format_count(total.macs)} MACs" + (f"; wrote {out}" if out else ""), highlight=False,
                  markup=False)
