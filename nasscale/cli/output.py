"""What every command prints through, set up once: the two consoles, ``--json``, progress bars, the options
shared by several commands."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

# Pipes and CI logs get a wide fixed width so tables are not squeezed to 80 columns.
console = Console(width=None if sys.stdout.isatty() else 160)
error_console = Console(stderr=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of a table.")]


def print_json(data: Any) -> None:
    # Plain print, not rich: scripts parse this and must not get colour codes or wrapping.
    print(json.dumps(data, indent=2))


def progress_bars(*, quiet: bool, transient: bool = True) -> Progress:
    """Bars on stderr (stdout stays clean for --json), off with ``quiet``."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=error_console, disable=quiet, transient=transient)


StudyOption = Annotated[str, typer.Option("--study", help="Study name.")]
StorageOption = Annotated[str, typer.Option(help="Optuna storage URL.")]
