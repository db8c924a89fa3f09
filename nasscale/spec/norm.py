"""``Norm``: the normalization settings of an architecture, which its reference implementation fixes per family
(torchvision's ``norm_layer=partial(nn.BatchNorm2d, eps=1e-3)`` and the like): BatchNorm's eps and momentum,
LayerNorm's eps, and whether the last BatchNorm of each residual branch starts at zero.

They change a model's outputs and its training, never its cost (no norm adds or drops a parameter). The defaults are
what ``build`` did before these settings existed (torch's BatchNorm defaults; LayerNorm eps 1e-6, the value of
every LayerNorm in the vocabulary: ConvNeXt's and VAN's), so a spec without ``norm`` builds as it always did and
keeps its ``arch_id``. Unlike a stage field that does not apply, a setting is not refused on a network without such a
norm (BatchNorm eps on a VGG): a family's settings travel with every network scaled or searched from it, and some
of those may lack the layer. Light core: no torch.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from nasscale.errors import SpecError
from nasscale.spec.stage import check_bool, check_float


@dataclass(frozen=True, slots=True, kw_only=True)
class Norm:
    batch_norm_eps: float = 1e-5  # torch's default
    # torch's convention: the weight of the new batch statistic (TensorFlow's decay 0.99 is momentum 0.01).
    batch_norm_momentum: float = 0.1
    layer_norm_eps: float = 1e-6  # ConvNeXt's and VAN's
    # The last BatchNorm of each residual branch starts at weight 0, so the block starts as its shortcut
    # (Goyal et al. 2017; timm's ResNets do it by default, torchvision's only with zero_init_residual=True).
    zero_init_last_bn: bool = False

    def __post_init__(self) -> None:
        validate_norm(self, "norm")


NORM_FIELDS = tuple(field.name for field in dataclasses.fields(Norm))
NORM_FLOAT_FIELDS = ("batch_norm_eps", "batch_norm_momentum", "layer_norm_eps")


def validate_norm(norm: Norm, path: str) -> None:
    for name in NORM_FLOAT_FIELDS:
        value = getattr(norm, name)
        check_float(f"{path}.{name}", value, low=-math.inf, high=math.inf)  # a finite number
        # An eps of 0 can divide by zero; a momentum of 0 freezes the running statistics, which torch allows.
        open_at_zero = name.endswith("_eps")
        if value < 0 or value > 1 or (open_at_zero and value == 0):
            raise SpecError(f"{path}.{name}", f"must be in {'(' if open_at_zero else '['}0, 1], got {value:g}")
    check_bool(f"{path}.zero_init_last_bn", norm.zero_init_last_bn)


DEFAULT_NORM = Norm()


def norm_to_dict(norm: Norm) -> dict[str, Any]:
    """Only the settings that differ from the default: a setting added later leaves existing specs, their files
    and their arch_ids as they were."""
    return {name: getattr(norm, name) for name in NORM_FIELDS
            if getattr(norm, name) != getattr(DEFAULT_NORM, name)}
