"""Train a chosen architecture fully and save what deployment needs: the weights (a state dict that
loads back with ``weights_only=True``), an ONNX export, the architecture and the metrics. This is final
evaluation: the one place, with the scale ladder's final runs and the benchmarks, that reads the test set."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nasscale.evaluate.data import load_splits, load_test_set, split_record
from nasscale.evaluate.settings import DEFAULT_TEST_FRACTION, DEFAULT_VALIDATION_FRACTION, TrainSettings
from nasscale.spec.arch import Arch
from nasscale.spec.cost import cost
from nasscale.spec.serialization import to_yaml

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "weights.pt"
ONNX_FILE = "model.onnx"
ARCH_FILE = "arch.yaml"
METRICS_FILE = "metrics.json"


def train_and_save(arch: Arch, data: str, out_dir: str | Path, *, settings: TrainSettings, split_seed: int = 0,
                   validation_fraction: float = DEFAULT_VALIDATION_FRACTION,
                   test_fraction: float = DEFAULT_TEST_FRACTION, on_epoch: Callable | None = None) -> dict[str, Any]:
    """Train ``arch`` on ``data``'s training split with ``settings`` (a TrainSettings), follow it on the validation
    split, score it once on the test set, and write the four files to ``out_dir``.

    The model is deployed at ``settings.resolution`` (default: the architecture's own), and its MACs in the
    metrics are counted there: the resolution it trains and is tested at."""
    import torch

    # torch: imported where needed, so this module loads without it
    from nasscale.evaluate.training import evaluate_model, train_model
    from nasscale.models.build import build

    train, validation = load_splits(data, validation_fraction=validation_fraction, test_fraction=test_fraction,
                                    split_seed=split_seed, max_train_samples=settings.max_train_samples)
    resolution = settings.resolution or arch.resolution
    arch = arch.replace(in_channels=train.in_channels, num_classes=train.num_classes, resolution=resolution)
    settings = dataclasses.replace(settings, resolution=resolution)
    torch.manual_seed(settings.seed)
    model = build(arch)
    result = train_model(model, train, validation, settings, on_epoch=on_epoch)
    test = load_test_set(data, test_fraction=test_fraction, split_seed=split_seed)
    test_accuracy, test_loss = evaluate_model(model, test, settings)
    model.cpu()  # weights and the ONNX graph are saved device-free, whatever trained them
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out / WEIGHTS_FILE)
    export_onnx(model, arch, resolution, out / ONNX_FILE)
    (out / ARCH_FILE).write_text(to_yaml(arch))
    total = cost(arch)
    metrics = {
        "arch_id": arch.arch_id,
        "data": data,
        "validation_accuracy": result.validation_accuracy,
        "best_validation_accuracy": result.best_validation_accuracy,
        "test_accuracy": test_accuracy,
        "test_loss": test_loss,
        "test_images": len(test),
        "splits": split_record(data, train, validation, validation_fraction=validation_fraction,
                               test_fraction=test_fraction, split_seed=split_seed),
        "params": total.params,
        "macs": total.macs,
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
