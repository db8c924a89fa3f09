"""Pretrained weights in and out: torchvision's and timm's checkpoints loaded into our models and ours exported
under their names, through an explicit name mapping per family (``torchvision_rules``, ``timm_rules``, written in
``rules``), the table of which reference each preset pairs with (``references``), the checked transfer
(``transfer``) and the files and run folders (``files``).

May import: ``evaluate`` (the run folder's file names), ``models``, ``presets``, ``spec``, ``errors``. Imports torch
(``transfer``, ``files``); never torchvision or timm, and nothing here downloads.
"""

from nasscale.weights.files import export_checkpoint, import_checkpoint, read_state_dict, write_state_dict
from nasscale.weights.references import NO_COUNTERPART, REFERENCES, SOURCES, TIMM, TORCHVISION, reference_for
from nasscale.weights.transfer import export_weights, load_reference_weights

__all__ = ["NO_COUNTERPART", "REFERENCES", "SOURCES", "TIMM", "TORCHVISION", "export_checkpoint", "export_weights",
           "import_checkpoint", "load_reference_weights", "read_state_dict", "reference_for", "write_state_dict"]
