"""The ``nasscale`` command line. Each command parses its flags, calls one library function and prints
the result: a table for people, JSON with ``--json`` for scripts. Bad input is one line on stderr and
exit status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import click
import typer
from rich.console import Console
from rich.table import Table

from nasscale.errors import NasscaleError

app = typer.Typer(
    help="Neural architecture search and compound scaling for CNNs.\n\n"
    "MACs are multiply-adds of convolutions and linear layers at batch 1: the number the "
    "EfficientNet, MnasNet and ConvNeXt papers and torchvision call FLOPs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
# Pipes and CI logs get a wide fixed width so tables are not squeezed to 80 columns.
console = Console(width=None if sys.stdout.isatty() else 160)
error_console = Console(stderr=True)
state = {"debug": False}

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of a table.")]


@app.callback()
def _global_options(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks instead of one-line errors.")] = False,
) -> None:
    state["debug"] = debug


def print_json(data: Any) -> None:
    # Plain print, not rich: scripts parse this and must not get colour codes or wrapping.
    print(json.dumps(data, indent=2))


# --------------------------------------------------------------------------------------------- presets


@app.command()
def presets(
    as_json: JsonFlag = False,
    check: Annotated[bool, typer.Option("--check", help="Also build each model and count it with fvcore and "
                                                         "torch (slow for the large ones).")] = False,
) -> None:
    """List the reference architectures with their analytic cost next to the published figures."""
    from nasscale.presets import preset_rows

    rows = preset_rows(check=check)
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


@app.command()
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
    from nasscale.cost import cost_report
    from nasscale.presets import resolve_arch

    arch = resolve_arch(target, resolution=resolution, num_classes=num_classes, in_channels=in_channels)
    report = cost_report(arch, check=check)
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


# ------------------------------------------------------------------------------------------- entry point


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    try:
        app(args=args, prog_name="nasscale", standalone_mode=False)
    except click.exceptions.Exit as exit_request:
        sys.exit(exit_request.exit_code)
    except click.ClickException as usage_error:
        usage_error.show()
        sys.exit(usage_error.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt):
        error_console.print("nasscale: interrupted")
        sys.exit(130)
    except NasscaleError as error:
        if state["debug"]:
            raise
        print(f"nasscale: error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
