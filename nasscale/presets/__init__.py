"""Reference architectures by name, with their published parameter and MAC counts: the registry
(``registry``: get / list / resolve, as torchvision's ``models/_api.py``) and the tables they are built from,
one module per family or group of families (``efficientnet``, ``convnext``, ``mobile``, ``classic``,
``transformer``, ``inception``).

May import: ``spec``, ``errors``, ``units``. Light: no torch.
"""

from nasscale.presets.registry import PRESETS, Preset, get_preset, preset_arch, preset_rows, resolve_arch

__all__ = ["PRESETS", "Preset", "get_preset", "preset_arch", "preset_rows", "resolve_arch"]
