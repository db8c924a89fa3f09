"""``nasscale weights import``, ``export`` and ``references``: torchvision's and timm's checkpoint files to and
from a run folder (weights.pt + arch.yaml, as ``nasscale train`` writes it) through ``nasscale.weights``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from nasscale.cli.output import JsonFlag, console, print_json
from nasscale.presets.registry import PRESETS

app = typer.Typer(help="Pretrained weights in and out: torchvision's and timm's checkpoints, name by name.",
                  no_args_is_help=True, rich_markup_mode=None)

SOURCE_HELP = "torchvision | timm"


@app.command("import")
def import_(
    checkpoint: Annotated[Path, typer.Argument(help="The reference's state dict: a torch.save file or .safetensors.")],
    source: Annotated[str, typer.Option("--from", help=SOURCE_HELP)],
    preset: Annotated[str, typer.Option(help="The preset the checkpoint is of (nasscale weights references).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder to write weights.pt and arch.yaml to.")],
    as_json: JsonFlag = False,
) -> None:
    """Load a torchvision or timm checkpoint into the preset, every tensor checked by name and shape, and write it
    as a run folder: nasscale train --init-from DIR fine-tunes it."""
    from nasscale.weights.files import import_checkpoint  # torch: not for --help

    arch = import_checkpoint(checkpoint, out, source=source, preset=preset)
    record = {"preset": preset, "source": source, "checkpoint": str(checkpoint), "arch_id": arch.arch_id,
              "num_classes": arch.num_classes, "out": str(out)}
    if as_json:
        print_json(record)
        return
    console.print(f"{source} {preset} ({arch.num_classes} classes, arch_id {arch.arch_id}) -> {out / 'weights.pt'}, "
                  f"{out / 'arch.yaml'}", highlight=False, soft_wrap=True)


@app.command("export")
def export(
    run: Annotated[Path, typer.Argument(help="A run folder with arch.yaml and weights.pt.")],
    target: Annotated[str, typer.Option("--to", help=SOURCE_HELP)],
    preset: Annotated[str, typer.Option(help="The preset whose reference model takes the weights.")],
    out: Annotated[Path, typer.Option("--out", "-o",
                                      help="The checkpoint file to write (.safetensors or a torch.save file).")],
    as_json: JsonFlag = False,
) -> None:
    """Write a run's weights under torchvision's or timm's names: their model of the preset loads the file with
    load_state_dict(strict=True)."""
    from nasscale.weights.files import export_checkpoint  # torch: not for --help

    count = export_checkpoint(run, out, target=target, preset=preset)
    if as_json:
        print_json({"preset": preset, "target": target, "run": str(run), "out": str(out), "tensors": count})
        return
    console.print(f"{run} -> {out} ({count} tensors under {target}'s {preset} names)", highlight=False, soft_wrap=True)


@app.command("references")
def references(as_json: JsonFlag = False) -> None:
    """Which torchvision and timm model each preset's weights map to, and why a preset has none."""
    from nasscale.weights.references import NO_COUNTERPART, REFERENCES, SOURCES  # torch: not for --help

    rows = [{"preset": name, **{source: REFERENCES[source][name].model if name in REFERENCES[source] else None
                                for source in SOURCES},
             "note": "; ".join(reference.note for source in SOURCES
                               if (reference := REFERENCES[source].get(name)) and reference.note)
             or NO_COUNTERPART.get(name, "")}
            for name in PRESETS]
    if as_json:
        print_json(rows)
        return
    table = Table("preset", *SOURCES, "note")
    for row in rows:
        table.add_row(row["preset"], *(row[source] or "-" for source in SOURCES), row["note"])
    console.print(table)
