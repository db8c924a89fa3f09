"""``nasscale report`` (one self-contained HTML page) and ``nasscale dashboard`` (optuna-dashboard)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer

from nasscale.cli.output import console
from nasscale.errors import NasscaleError
from nasscale.search.config import DEFAULT_STORAGE

logger = logging.getLogger(__name__)


def report(
    study: Annotated[list[str], typer.Option("--study", help="Study name; repeat it to compare several studies "
                                                             "on one page.")],
    storage: Annotated[str, typer.Option(help="Optuna storage URL.")] = DEFAULT_STORAGE,
    out: Annotated[Path, typer.Option(help="The HTML file to write.")] = Path("report.html"),
    csv: Annotated[Path | None, typer.Option("--csv", help="Also write every trial as a CSV table.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of a sentence.")] = False,
) -> None:
    """Write one self-contained HTML page (opens offline) on one or more studies: Pareto fronts, hypervolume or
    best-so-far, how each choice matters, the top architectures, scaling ladders and the study's settings."""
    # optuna: imported where needed, so this module loads without it
    from nasscale.report.data import load_study_data  # optuna, plotly: not for --help
    from nasscale.report.page import render_report

    studies = [load_study_data(name, storage) for name in dict.fromkeys(study)]
    path = render_report(studies, out, csv_path=csv)
    if as_json:
        summary = {"path": str(path), "csv": str(csv) if csv else None,
                   "studies": [{"study": item.name, **item.counts} for item in studies]}
        print(json.dumps(summary, indent=2))  # plain print: scripts parse this
        return
    counts = "; ".join(f"{item.name}: {item.counts['trials']} trials, {item.counts['trained']} trained"
                       for item in studies)
    console.print(f"wrote {path} ({counts})" + (f" and {csv}" if csv else ""), highlight=False)


def dashboard(
    storage: Annotated[str, typer.Option(help="Optuna storage URL.")] = DEFAULT_STORAGE,
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on (0 picks a free one).")] = 8080,
    host: Annotated[str, typer.Option(help="Address to bind; 0.0.0.0 exposes the dashboard to the network.")]
    = "127.0.0.1",
) -> None:
    """Serve optuna-dashboard on the study storage (live plots of every study in it). Ctrl-C stops it."""
    from nasscale.search.storage import make_storage, require_existing_storage  # optuna: not for --help

    require_existing_storage(storage)
    try:
        import optuna_dashboard
    except ImportError:
        raise NasscaleError("optuna-dashboard is not installed: pip install optuna-dashboard") from None
    server = _make_server(host, port, optuna_dashboard.wsgi(make_storage(storage)))
    bound_port = server.server_address[1]
    console.print(f"optuna-dashboard for {storage} on http://{host}:{bound_port}/ (Ctrl-C stops it)",
                  highlight=False, soft_wrap=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        console.print("dashboard stopped", highlight=False)
    finally:
        server.server_close()


def _make_server(host: str, port: int, application):
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server


    class ThreadingServer(ThreadingMixIn, WSGIServer):
        daemon_threads = True  # the browser polls several endpoints at once; Ctrl-C must not wait for them

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, format, *args):  # noqa: A002  wsgiref's signature
            logger.debug("dashboard: " + format, *args)

    try:
        return make_server(host, port, application, server_class=ThreadingServer, handler_class=QuietHandler)
    except OSError as error:
        raise NasscaleError(f"cannot listen on {host}:{port}: {error.strerror or error}; pick another --port") from None
