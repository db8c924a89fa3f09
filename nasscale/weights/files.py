"""Checkpoint files in and out: ``read_state_dict`` (``torch.load(weights_only=True)``, or safetensors for a
``.safetensors`` file: no pickled code runs either way), ``write_state_dict``, and the two conversions behind
``nasscale weights``: ``import_checkpoint`` (a reference checkpoint into a run folder in the format ``nasscale
train`` writes: weights.pt and arch.yaml) and ``export_checkpoint`` (a run folder into a reference checkpoint).

A missing, truncated or foreign file, or a pickle that is not a state dict, is one ``SpecError`` naming the file;
nothing is written until every tensor has been checked.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from nasscale.errors import SpecError, first_line
from nasscale.evaluate.final import ARCH_FILE, WEIGHTS_FILE
from nasscale.models.build import build
from nasscale.presets.registry import get_preset
from nasscale.spec.arch import Arch
from nasscale.spec.serialization import load_arch_file, to_yaml
from nasscale.weights.references import reference_for
from nasscale.weights.transfer import checkpoint_classes, export_weights, load_reference_weights

SAFETENSORS_SUFFIX = ".safetensors"
# Where training scripts nest the state dict in a fuller checkpoint: timm's train.py ("state_dict"), torchvision's
# references ("model").
WRAPPER_KEYS = ("state_dict", "model")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file, on the CPU. A state dict nested under ``state_dict`` or ``model`` is
    unwrapped, and a ``module.`` prefix on every name (a model saved under DistributedDataParallel) dropped."""
    source = str(path)
    file = Path(path)
    if file.is_dir():
        raise SpecError("", "is a folder where a checkpoint file should be; check the path", source=source)
    if not file.is_file():
        raise SpecError("", "no such checkpoint file; check the path", source=source)
    loaded = _read_safetensors(file) if file.suffix == SAFETENSORS_SUFFIX else _read_torch(file)
    return _state_dict(loaded, source)


def _read_torch(file: Path) -> Any:
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:  # weights_only refused an object, or the bytes are not a pickle
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        if found is None:
            raise SpecError("", "is truncated or not a torch checkpoint (not a pickle torch.load can read)",
                            source=str(file)) from None
        raise SpecError("", f"holds objects other than tensors ({found.group(1)}); save the model's state_dict() "
                            "with torch.save", source=str(file)) from None
    except (RuntimeError, EOFError, ValueError) as error:  # a zip cut short, an empty or corrupt file
        raise SpecError("", f"is truncated or not a torch checkpoint ({first_line(error)})",
                        source=str(file)) from None


def _read_safetensors(file: Path) -> Any:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(file, device="cpu")
    except (SafetensorError, OSError, ValueError) as error:
        raise SpecError("", f"is truncated or not a safetensors file ({first_line(error)})",
                        source=str(file)) from None


def _state_dict(loaded: Any, source: str) -> dict[str, torch.Tensor]:
    if isinstance(loaded, Mapping):
        for key in WRAPPER_KEYS:
            if isinstance(loaded.get(key), Mapping):
                loaded = loaded[key]
                break
    if not isinstance(loaded, Mapping) or not loaded:
        what = "an empty mapping" if isinstance(loaded, Mapping) else f"a {type(loaded).__name__}"
        raise SpecError("", f"is not a state dict (name -> tensor): it holds {what}", source=source)
    for name, value in loaded.items():
        if not isinstance(name, str) or not isinstance(value, torch.Tensor):
            raise SpecError("", f"is not a state dict (name -> tensor): {name!r} holds a {type(value).__name__}",
                            source=source)
    names = list(loaded)
    if all(name.startswith("module.") for name in names):
        return {name.removeprefix("module."): loaded[name] for name in names}
    return dict(loaded)


def write_state_dict(state_dict: Mapping[str, torch.Tensor], path: str | Path) -> None:
    """``torch.save`` (keeping a state dict's metadata), or safetensors for a ``.safetensors`` path (which has no
    room for it: torchvision's MNASNet then needs its version set by hand)."""
    if Path(path).suffix == SAFETENSORS_SUFFIX:
        from safetensors.torch import save_file  # imported where used: only .safetensors paths need it

        save_file({name: tensor.contiguous() for name, tensor in state_dict.items()}, str(path))
        return
    torch.save(state_dict, path)


def _folder_for_output(out_dir: str | Path) -> Path:
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise SpecError("", "is a file; give a folder for weights.pt and arch.yaml", source=str(out))
    return out


def import_checkpoint(checkpoint: str | Path, out_dir: str | Path, *, source: str, preset: str) -> Arch:
    """Read a ``source`` checkpoint of ``preset``, load it into our model (with the checkpoint's class count) and
    write weights.pt and arch.yaml to ``out_dir``; the architecture written. ``nasscale train --init-from out_dir``
    fine-tunes from it; ``nasscale.evaluate.final.load_weights`` reads it back."""
    name = get_preset(preset).name
    reference_for(name, source)  # an unknown pairing fails before the file is read
    out = _folder_for_output(out_dir)
    state_dict = read_state_dict(checkpoint)
    arch = get_preset(name).arch()
    arch = arch.replace(num_classes=checkpoint_classes(state_dict, arch, source=source, preset=name))
    model = load_reference_weights(build(arch), state_dict, source=source, preset=name)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out / WEIGHTS_FILE)
    (out / ARCH_FILE).write_text(to_yaml(arch))
    return arch


def load_run_weights(arch: Arch, weights: Path) -> torch.nn.Module:
    """``build(arch)`` with a run's weights.pt, as ``nasscale.evaluate.final.load_weights`` reads it, but a file that
    does not fit the architecture is one line naming the first tensor that does not."""
    state_dict = read_state_dict(weights)
    model = build(arch)
    own = model.state_dict()
    for name, tensor in own.items():
        if name not in state_dict:
            raise SpecError("", f"lacks tensor {name} of the {ARCH_FILE} beside it", source=str(weights))
        if state_dict[name].shape != tensor.shape:
            raise SpecError("", f"tensor {name} has shape {tuple(state_dict[name].shape)} where the {ARCH_FILE} beside "
                                f"it has {tuple(tensor.shape)}", source=str(weights))
    extra = [name for name in state_dict if name not in own]
    if extra:
        raise SpecError("", f"has tensor {extra[0]}, which the {ARCH_FILE} beside it lacks", source=str(weights))
    model.load_state_dict(state_dict)
    return model.eval()


def export_checkpoint(run_dir: str | Path, out_file: str | Path, *, target: str, preset: str) -> int:
    """Read a run folder (arch.yaml and weights.pt, as ``nasscale train`` or ``import_checkpoint`` wrote them) and
    write its weights under ``target``'s names for ``preset`` to ``out_file``; the number of tensors written."""
    run = Path(run_dir)
    if not run.is_dir():
        raise SpecError("", "no such run folder (one with arch.yaml and weights.pt); check the path", source=str(run))
    arch = load_arch_file(str(run / ARCH_FILE))
    out = Path(out_file)
    if out.is_dir():
        raise SpecError("", "is a folder; give the checkpoint file to write", source=str(out))
    model = load_run_weights(arch, run / WEIGHTS_FILE)
    state_dict = export_weights(model, target=target, preset=preset)
    write_state_dict(state_dict, out)
    return len(state_dict)
