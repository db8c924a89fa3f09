"""``nasscale presets``, ``cost``, ``spaces`` and ``sample``: the analytic commands (no torch unless ``--check``)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from nasscale.cli.output import JsonFlag, console, print_json
from nasscale.presets.registry import preset_arch, preset_rows, resolve_arch
from nasscale.space.extent import describe_space
from nasscale.space.parsing import builtin_space_names, load_space
from nasscale.space.sampling import RandomChooser
from nasscale.space.sampling import sample as sample_arch
from nasscale.spec.arch import to_dict
from nasscale.spec.cost import cost as analytic_cost
from nasscale.spec.cost import cost_report
from nasscale.spec.serialization import summary
from nasscale.units import format_count

# --------------------------------------------------------------------------------------------- presets


def presets(
    as_json: JsonFlag = False,
    check: Annotated[bool, typer.Option("--check", help="Also build each model and count it with fvcore and "
                                                         "torch (slow for the large ones).")] = False,
) -> None:
    """List the reference architectures with their analytic cost next to the published figures."""
    rows = preset_rows()
    if check:
        from nasscale.models.counts import count_agreement  # torch and fvcore: only with --check

        rows = [row | count_agreement(preset_arch(row["name"]), analytic_cost(preset_arch(row["name"])))
                for row in rows]
    if as_json:
        print_json(rows)
        return
    table = Table(title="Presets: analytic cost at the reference resolution, 1000 classes")
    for column in ("preset", "family", "res", "params", "reference", "MACs", "reference MACs", "match"):
        table.add_column(column, justify="left" if column in ("preset", "family") else "right")
    if check:
        table.add_column("built = fvcore = torch", justify="center")
    for row in rows:
        cells = [row["name"], row["family"], str(row["resolution"]), f"{row['params']:,}",
                 f"{row['reference_params']:,}", f"{row['macs']:,}", f"{row['reference_macs']:,}",
                 "[green]yes[/]" if row["matches_reference"] else "[red]NO[/]"]
        if check:
            cells.append("[green]yes[/]" if row["counts_agree"] else "[red]NO[/]")
        table.add_row(*cells)
    console.print(table)
    console.print("Rounded references (e.g. 4.4555 GMACs) match within half their last digit; "
                  "mnasnet_a1 within 1% of the paper.")


# ------------------------------------------------------------------------------------------------ cost


def cost(
    target: Annotated[str, typer.Argument(help="A preset name or an architecture file (.yaml/.json).")],
    resolution: Annotated[int | None, typer.Option(help="Override the input resolution.")] = None,
    num_classes: Annotated[int | None, typer.Option(help="Override the number of classes.")] = None,
    in_channels: Annotated[int | None, typer.Option(help="Override the input channels (1 = grayscale).")] = None,
    check: Annotated[bool, typer.Option("--check", help="Also build the model and count it with fvcore and "
                                                         "torch's FlopCounterMode.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Parameters and MACs of an architecture, from its spec alone (no model is built)."""
    arch = resolve_arch(target, resolution=resolution, num_classes=num_classes, in_channels=in_channels)
    report = cost_report(arch)
    if check:
        from nasscale.models.counts import count_agreement  # torch and fvcore: only with --check

        report |= count_agreement(arch, analytic_cost(arch))
    if as_json:
        print_json(report)
        return
    console.print(f"{target}: arch_id {report['arch_id']}, {arch.resolution}x{arch.resolution}, "
                  f"{arch.in_channels} in, {arch.num_classes} classes", highlight=False)
    table = Table()
    for column in ("part", "params", "MACs"):
        table.add_column(column, justify="left" if column == "part" else "right")
    for part in report["parts"]:
        table.add_row(part["name"], f"{part['params']:,}", f"{part['macs']:,}")
    table.add_row("[bold]total[/]", f"[bold]{report['params']:,}[/]", f"[bold]{report['macs']:,}[/]")
    console.print(table)
    if check:
        agree = report["counts_agree"]
        console.print(f"built params {report['params_built']:,}, fvcore MACs {report['macs_fvcore']:,}, "
                      f"torch MACs {report['macs_torch']:,}: "
                      + ("[green]all four counts agree[/]" if agree else "[red]counts DISAGREE[/]"))


# ---------------------------------------------------------------------------------------------- spaces


def spaces(as_json: JsonFlag = False) -> None:
    """List the built-in search spaces with their size and MAC range at their default resolution."""
    rows = [describe_space(load_space(name)) for name in builtin_space_names()]
    if as_json:
        print_json(rows)
        return
    table = Table(title="Built-in search spaces (MACs at 3 input channels, 1000 classes)")
    for column in ("space", "stages", "resolution", "architectures", "MACs min", "MACs max", "description"):
        table.add_column(column, justify="left" if column in ("space", "description") else "right")
    for row in rows:
        table.add_row(row["name"], str(row["stages"]), str(row["resolution"]), f"{row['size']:.3g}",
                      format_count(row["macs_min"]), format_count(row["macs_max"]), row["description"])
    console.print(table)


def sample(
    space: Annotated[str, typer.Option(help="A built-in space name or a space YAML file.")] = "mnas",
    count: Annotated[int, typer.Option("-n", "--count", min=1, help="How many architectures.")] = 5,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same architectures.")] = 0,
    in_channels: Annotated[int, typer.Option(min=1)] = 3,
    num_classes: Annotated[int, typer.Option(min=1)] = 1000,
    as_json: JsonFlag = False,
) -> None:
    """Sample architectures from a space and print them with their cost. Each JSON item's "arch" is a
    file that 'nasscale cost' accepts."""
    search_space = load_space(space)
    chooser = RandomChooser(seed)
    archs = [sample_arch(search_space, chooser, in_channels=in_channels, num_classes=num_classes)
             for _ in range(count)]
    items: list[dict[str, Any]] = []
    for arch in archs:
        arch_cost = analytic_cost(arch)
        items.append({"arch_id": arch.arch_id, "params": arch_cost.params, "macs": arch_cost.macs,
                      "summary": summary(arch), "arch": to_dict(arch)})
    if as_json:
        print_json(items)
        return
    table = Table(title=f"{count} samples of {space} (seed {seed})")
    for column in ("arch_id", "params", "MACs", "architecture"):
        table.add_column(column, justify="right" if column in ("params", "MACs") else "left")
    for item in items:
        table.add_row(item["arch_id"], format_count(item["params"]), format_count(item["macs"]), item["summary"])
    console.print(table)
