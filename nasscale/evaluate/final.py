"""Train a chosen architecture fully and save what deployment needs: the weights (a state dict that
loads back with ``weights_only=True``), an ONNX export, the architecture and the metrics."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nasscale.evaluate.data import load_splits
from nasscale.spec.arch import Arch
from nasscale.spec.serialization import to_yaml

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "weights.pt"
ONNX_FILE = "model.onnx"
ARCH_FILE = "arch.yaml"
METRICS_FILE = "metrics.json"


def train_and_save(arch: Arch, data: str, out_dir: str | Path, *, settings, seed: int = 0,
                   validation_fraction: float = 0.2, on_epoch: Callable | None = None) -> dict[str, Any]:
    """Train ``arch`` on ``data`` with ``settings`` (a TrainSettings) and write the four files to ``out_dir``."""
    import torch

    # torch: imported where needed, so this module loads without it
    # torch: imported where needed, so this module loads without it
    from nasscale.evaluate.training import train_model
    from nasscale.models.build import build

    train, validation = load_splits(data, validation_fraction=validation_fraction, seed=seed,
                                    max_train_samples=settings.max_train_samples)
    arch = arch.replace(in_channels=train.in_channels, num_classes=train.num_classes)
    torch.manual_seed(seed)
    model = build(arch)
    result = train_model(model, train, validation, settings, on_epoch=on_epoch)
    model.cpu()  # weights and the ONNX graph are saved device-free, whatever trained them
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out / WEIGHTS_FILE)
    resolution = settings.resolution or arch.resolution
    export_onnx(model, arch, resolution, out / ONNX_FILE)
    (out / ARCH_FILE).write_text(to_yaml(arch))
    metrics = {
        "arch_id": arch.arch_id,
        "data": data,
        "validation_accuracy": result.validation_accuracy,
        "best_validation_accuracy": result.best_validation_accuracy,
        "train_seconds": result.train_seconds,
        "train_images_per_second": result.train_images_per_second,
        "input_resolution": resolution,
        "history": [[record.epoch, record.train_loss, record.validation_accuracy] for record in result.history],
        "files": [WEIGHTS_FILE, ONNX_FILE, ARCH_FILE, METRICS_FILE],
    }
    (out / METRICS_FILE).write_text(json.dumps(metrics, indent=2))
    return metrics


def export_onnx(model, arch: Arch, resolution: int, path: Path) -> None:
    import torch

    model.eval()
    example = torch.zeros(1, arch.in_channels, resolution, resolution)
    # The torch.export-based exporter, torch's default since 2.9 (the TorchScript one is deprecated).
    torch.onnx.export(model, (example,), str(path), dynamo=True, input_names=["images"], output_names=["logits"],
                      verbose=False)


def load_weights(arch: Arch, weights_path: str | Path):
    """Rebuild ``arch`` and load saved weights safely (``weights_only=True``: no pickled code runs)."""
    import torch

    # torch: imported where needed, so this module loads without it
    from nasscale.models.build import build

    model = build(arch)
    model.load_state_dict(torch.load(weights_path, weights_only=True))
    return model.eval()
