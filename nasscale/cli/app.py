"""The ``nasscale`` application: the command table, the global ``--debug`` flag and the entry point.

Each command module of this package defines plain functions; this module registers them, in the order
``nasscale --help`` lists them, so the command table is in one place. ``main`` turns every error into one
line on stderr and exit status 2 (``--debug`` shows the traceback instead) and Ctrl-C or SIGTERM into 130.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from nasscale.cli import architecture, bench, distributed, hardware, interchange, report, scale, search, train
from nasscale.cli import weights as weights_commands
from nasscale.errors import NasscaleError, first_line

app = typer.Typer(
    help="Neural architecture search and compound scaling for CNNs.\n\n"
    "MACs are multiply-adds of convolutions and linear layers at batch 1: the number the "
    "EfficientNet, MnasNet and ConvNeXt papers and torchvision call FLOPs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,  # help texts show defaults as [mnas]; rich markup would swallow the brackets
)
state = {"debug": False}


@app.callback()
def _global_options(
    context: typer.Context,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks instead of one-line errors.")] = False,
) -> None:
    state["debug"] = debug
    if context.invoked_subcommand in STUDY_COMMANDS:
        # Importing optuna costs 0.3 s that --help and the analytic commands do not need.
        from nasscale.search.storage import quiet_optuna

        quiet_optuna()


# ------------------------------------------------------------------------------------------ command table

# (name, function, whether it opens Optuna studies)
COMMANDS = (
    ("presets", architecture.presets, False),
    ("cost", architecture.cost, False),
    ("spaces", architecture.spaces, False),
    ("sample", architecture.sample, False),
    ("search", search.search, True),
    ("best", search.best, True),
    ("export", search.export, True),
    ("train", train.train, False),
    ("recipes", train.recipes, False),
    ("scale", scale.scale, True),
    ("report", report.report, True),
    ("dashboard", report.dashboard, True),
    ("rerun", distributed.rerun, True),
    ("latency", hardware.latency, False),
    ("latency-table", hardware.latency_table, False),
    ("proxies", hardware.proxies, False),
    ("timm", interchange.timm, False),
    ("from-timm", interchange.from_timm, False),
)
# (name, sub-application): commands with sub-commands, ``nasscale bench build``
GROUPS = (
    ("bench", bench.app),
    ("weights", weights_commands.app),
)
for name, command, _ in COMMANDS:
    app.command(name=name)(command)
for name, group in GROUPS:
    app.add_typer(group, name=name)
STUDY_COMMANDS = frozenset(name for name, _, opens_studies in COMMANDS if opens_studies)


# ------------------------------------------------------------------------------------------- entry point


INTERRUPTED = 130  # the shell's status for a process ended by SIGINT
STOP_GRACE_SECONDS = 20.0  # how long a stop may take before the process ends without cleaning up
STOPPED = "nasscale: interrupted; finished trials are kept, run the same command to resume"
_stop_requested: list[int] = []  # a list, so that the handler records the first signal without a global statement
_redelivering: list[bool] = []
REDELIVERY_DELAY_SECONDS = 0.05


def _stop_on_signal(signal_number: int, frame: object) -> None:
    """The first signal unwinds the command (the running trial is marked failed); a second one, or a stop
    that hangs, ends the process at once. The KeyboardInterrupt lands wherever the main thread is, possibly
    inside a library holding a lock that the heartbeat thread then waits for forever: the watchdog bounds
    that. Ending without cleanup loses nothing finished: every finished trial is already committed, and the
    heartbeat marks the running one stale, so the same command retries it."""
    if _redelivering:  # the first signal again, after a callback swallowed its KeyboardInterrupt
        _redelivering.clear()
        raise KeyboardInterrupt(f"signal {signal_number}")
    if _stop_requested:
        _end_now("stopped again")
    _stop_requested.append(signal_number)
    import threading

    watchdog = threading.Timer(STOP_GRACE_SECONDS, _end_now, args=(f"did not stop within {STOP_GRACE_SECONDS:.0f} s",))
    watchdog.daemon = True
    watchdog.start()
    raise KeyboardInterrupt(f"signal {signal_number}")


def _redeliver_swallowed_stop(unraisable: Any) -> None:
    """A KeyboardInterrupt raised while Python ran code whose exceptions it ignores (a weakref or garbage
    collection callback, such as SQLAlchemy's, or a ``__del__``) would be printed with its traceback and lost,
    leaving the command running until the watchdog: deliver it again to the main thread instead."""
    if isinstance(unraisable.exc_value, KeyboardInterrupt) and _stop_requested:
        import os
        import threading

        # A real signal, from another thread a moment later: raised now it would land in this hook and be
        # ignored again, and a simulated one would not wake a main thread blocked in a system call.
        _redelivering.append(True)
        threading.Timer(REDELIVERY_DELAY_SECONDS, os.kill, args=(os.getpid(), _stop_requested[0])).start()
        return
    sys.__unraisablehook__(unraisable)


def _end_now(reason: str) -> None:
    import os

    print(f"{STOPPED} ({reason}; the running trial is retried on resume)", file=sys.stderr, flush=True)
    os._exit(INTERRUPTED)


def _install_stop_signals() -> None:
    """SIGINT and SIGTERM stop the command the way Ctrl-C does: the running trial is marked failed and
    every finished one is already stored. Set explicitly, because a process started in the background by
    a shell inherits SIGINT ignored."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _stop_on_signal)
        signal.signal(signal.SIGTERM, _stop_on_signal)
        sys.unraisablehook = _redeliver_swallowed_stop


# Typer 0.29 bundles its own click (typer._click) whose exceptions are not click's, and older releases raise
# click's: the classes are read from what this typer raises, so both work.
USAGE_ERROR: type[Exception] = next(base for base in typer.BadParameter.__mro__ if base.__name__ == "ClickException")
# Plain "nasscale": the help, as no_args_is_help promises (an empty tuple, which catches nothing, before click 8.2).
NO_ARGUMENTS: type[Exception] | tuple[()] = getattr(sys.modules[USAGE_ERROR.__module__], "NoArgsIsHelpError", ())
USAGE_STATUS = 2  # every error, nasscale's own and the parser's


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if argv is None:  # only as the console script: in-process callers (tests) keep their own handlers
        _install_stop_signals()
    try:
        status = app(args=args, prog_name="nasscale", standalone_mode=False)
        if status == INTERRUPTED:  # Typer turns Ctrl-C into this return value when not standalone
            raise KeyboardInterrupt
        if isinstance(status, int) and status:
            sys.exit(status)
    except typer.Exit as exit_request:
        sys.exit(exit_request.exit_code)
    except NO_ARGUMENTS as help_request:
        print(getattr(help_request, "format_message", help_request.__str__)())
        sys.exit(USAGE_STATUS)
    except (typer.Abort, KeyboardInterrupt):
        print(STOPPED, file=sys.stderr)
        sys.exit(INTERRUPTED)
    except (NasscaleError, USAGE_ERROR, OSError) as error:
        if state["debug"]:
            raise
        for line in error_lines(error):
            print(f"nasscale: error: {line}", file=sys.stderr)
        sys.exit(USAGE_STATUS)


def error_lines(error: Exception) -> list[str]:
    """What the user reads: nasscale's message (a space file may have several problems, one line each), the
    parser's with the command and where its help is, or the file and the system's reason."""
    if isinstance(error, NasscaleError):
        return str(error).splitlines()
    if isinstance(error, OSError):  # a file a command was asked to read or write
        where = f"{error.filename}: " if error.filename else ""
        return [f"{where}{error.strerror or first_line(error)}; check the path"]
    context = getattr(error, "ctx", None)
    command = context.command_path if context is not None else "nasscale"
    message = getattr(error, "format_message", error.__str__)().strip().splitlines()[0].rstrip(".")
    return [f"{command}: {message}; see '{command} --help'"]


if __name__ == "__main__":
    main()
