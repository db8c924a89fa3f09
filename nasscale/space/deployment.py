"""A space deployed at a study's resolution.

A space is written for the resolution its paper used (224 for ``mnas``); a study deploys at the resolution of
its data (28 for Fashion-MNIST). ``at_resolution`` maps the space's resolution choices in proportion, so that
the largest becomes the deployment resolution and a smaller choice keeps its ratio to it (``tiny``'s [24, 32]
deployed at 28 offers [21, 28]). Every architecture sampled from the deployed space is then trained, evaluated
and costed at one and the same resolution: its own.
"""

from __future__ import annotations

import dataclasses

from nasscale.errors import SpecError
from nasscale.space.domains import Categorical, Domain, Fixed, distinct_integer_values
from nasscale.space.model import SearchSpace


def at_resolution(space: SearchSpace, resolution: int) -> SearchSpace:
    """``space`` with its resolution choices scaled so that the largest is ``resolution``."""
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
        raise SpecError("resolution", f"must be a positive number of pixels, got {resolution!r}")
    choices = distinct_integer_values(space.resolution)
    largest = max(choices)
    if largest == resolution:
        return space
    mapped = sorted({max(1, round(choice * resolution / largest)) for choice in choices})
    domain: Domain = Fixed(value=mapped[0]) if len(mapped) == 1 else Categorical(choices=tuple(mapped))
    return dataclasses.replace(space, resolution=domain)


def resolution_mapping(space: SearchSpace, resolution: int) -> str:
    """How the space's resolutions map to the deployed ones, for the README's 'what is counted' and the study."""
    written = distinct_integer_values(space.resolution)
    deployed = distinct_integer_values(at_resolution(space, resolution).resolution)
    if written == deployed:
        return f"{_listed(written)} px as written"
    return f"{_listed(written)} px as written -> {_listed(deployed)} px deployed"


def _listed(values: tuple[int, ...]) -> str:
    return "/".join(str(value) for value in values)
