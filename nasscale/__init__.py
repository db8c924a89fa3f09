"""nasscale: neural architecture search and compound scaling for CNNs.

The curated public API, one function per arrow of the data flow (ARCHITECTURE.md):
``load_space(name) -> SearchSpace``, ``sample(space, chooser) -> Arch``, ``cost(arch) -> Cost`` (exact params
and MACs, no torch), ``build(arch) -> nn.Module`` (torch, imported on first use), ``scale_arch`` and
``scale_ladder`` / ``solve_coefficients`` for compound scaling, and the presets. Importing ``nasscale`` imports
no torch. Everything else lives in the stage packages (``nasscale.spec``, ``nasscale.space``, ...).
"""

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from nasscale.errors import NasscaleError, SpecError
from nasscale.presets.registry import PRESETS, get_preset, preset_arch, resolve_arch
from nasscale.scale.ladder import scale_ladder
from nasscale.scale.solver import solve_coefficients
from nasscale.space.model import SearchSpace
from nasscale.space.parsing import load_space
from nasscale.space.sampling import RandomChooser, sample
from nasscale.spec.arch import Arch, arch_id, to_dict
from nasscale.spec.cost import Cost, cost
from nasscale.spec.rescaling import scale_arch
from nasscale.spec.serialization import from_dict, from_yaml, load_arch_file, summary, to_yaml
from nasscale.spec.stage import Stage
from nasscale.spec.vocabulary import Activation, BlockType, HeadType, StemType

try:
    __version__ = version("nasscale")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = [
    "PRESETS", "Activation", "Arch", "BlockType", "Cost", "HeadType", "NasscaleError", "RandomChooser",
    "SearchSpace", "SpecError", "Stage", "StemType", "__version__", "arch_id", "build", "cost", "from_dict",
    "from_yaml", "get_preset", "load_arch_file", "load_space", "preset_arch", "resolve_arch", "sample",
    "scale_arch", "scale_ladder", "solve_coefficients", "summary", "to_dict", "to_yaml",
]


def __getattr__(name: str) -> Any:
    # build needs torch; importing it here on first use keeps ``import nasscale`` light.
    if name == "build":
        # torch: imported where needed, so this module loads without it
        from nasscale.models.build import build

        return build
    raise AttributeError(f"module 'nasscale' has no attribute {name!r}")
