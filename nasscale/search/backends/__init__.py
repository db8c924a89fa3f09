"""Search backends behind one contract: ``run_search(config, progress=...) -> optuna.Study``.

Backends import heavy dependencies, so this table maps names to import functions and a missing
extra becomes one line saying what to install (as Ray Tune does for its searchers).
"""

from __future__ import annotations

from collections.abc import Callable

from nasscale.errors import NasscaleError


def _optuna() -> Callable:
    from nasscale.search.backends.optuna_backend import run_search  # imports torch: only once a search runs

    return run_search


def _ray() -> Callable:
    import ray  # noqa: F401  (a missing Ray is reported here, by name, before any work starts)

    from nasscale.search.backends.ray_backend import run_search  # imports torch and ray: only for a Ray search

    return run_search


BACKENDS: dict[str, Callable[[], Callable]] = {
    "optuna": _optuna,
    "ray": _ray,
}


def get_backend(name: str) -> Callable:
    if name not in BACKENDS:
        raise NasscaleError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}")
    try:
        return BACKENDS[name]()
    except ImportError as error:
        raise NasscaleError(f"backend {name!r} needs {error.name}: pip install 'nasscale' with its "
                            "dependencies (see README)") from None
