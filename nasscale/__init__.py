"""nasscale: neural architecture search and compound scaling for CNNs.

The names below are the light core (no torch import): the architecture spec, the presets and the
errors. The functions live in their stage modules, one per step of the data flow:
``nasscale.cost.cost(arch)``, ``nasscale.build.build(arch)`` (torch), ``nasscale.space.load_space(name)``,
``nasscale.sampling.sample(space, chooser)``, ``nasscale.scaling.scale_ladder(arch, phis)``.
(Re-exporting those functions here would shadow the modules of the same name.)
"""

from importlib.metadata import PackageNotFoundError, version

from nasscale.arch import Activation, Arch, BlockType, HeadType, Stage, StemType, arch_id, from_dict, to_dict
from nasscale.errors import NasscaleError, SpecError
from nasscale.presets import PRESETS, preset_arch

try:
    __version__ = version("nasscale")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = [
    "PRESETS", "Activation", "Arch", "BlockType", "HeadType", "NasscaleError", "SpecError", "Stage", "StemType",
    "__version__", "arch_id", "from_dict", "preset_arch", "to_dict",
]
