"""Train a chosen architecture fully and save what deployment needs: the weights (a state dict that
loads back with ``weights_only=True``), an ONNX export, the architecture and the metrics. This is final
evaluation: the one place, with the scale ladder's final runs and the benchmarks, that reads the test set."""

from __future__ import annotations

import dataclasses
import json
import logging
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nasscale.errors import SpecError, first_line
from nasscale.evaluate.data import load_splits, load_test_set, parse_data_source, split_record
from nasscale.evaluate.settings import DEFAULT_TEST_FRACTION, DEFAULT_VALIDATION_FRACTION, TrainSettings
from nasscale.spec.arch import Arch
from nasscale.spec.cost import cost
from nasscale.spec.serialization import load_arch_file, to_yaml

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "weights.pt"
ONNX_FILE = "model.onnx"
ARCH_FILE = "arch.yaml"
METRICS_FILE = "metrics.json"


def train_and_save(arch: Arch, data: str, out_dir: str | Path, *, settings: TrainSettings, split_seed: int = 0,
                   validation_fraction: float = DEFAULT_VALIDATION_FRACTION,
                   test_fraction: float = DEFAULT_TEST_FRACTION, on_epoch: Callable | None = None,
                   stream: bool = False, workers: int = 0, init_from: str | Path | None = None) -> dict[str, Any]:
    """Train ``arch`` on ``data``'s training split with ``settings`` (a TrainSettings), follow it on the validation
    split, score it once on the test set, and write the four files to ``out_dir``.

    The model is deployed at ``settings.resolution`` (default: the architecture's own), and its MACs in the
    metrics are counted there: the resolution it trains and is tested at. With ``settings.test_resolution``
    (FixRes) it is also scored there, as a second model with its own weights file and MACs. A checkpoint in
    ``out_dir`` is written after every epoch; run again, the same call resumes from it. ``stream`` reads an image
    folder image by image in ``workers`` processes rather than into memory. Under torchrun only rank 0 writes.
    ``init_from`` fine-tunes: the weights of a run folder (``nasscale weights import`` or an earlier run) of the
    same architecture start the training, the classifier re-initialised where the class count differs."""
    import torch

    # torch: imported where needed, so this module loads without it
    from nasscale.evaluate.checkpoint import Checkpoint
    from nasscale.evaluate.training import evaluate_model, train_model
    from nasscale.models.build import build

    settings = _join_torchrun(settings)
    train, validation = _splits(data, stream, validation_fraction=validation_fraction, test_fraction=test_fraction,
                                split_seed=split_seed, max_train_samples=settings.max_train_samples)
    resolution = settings.resolution or arch.resolution
    arch = _trained_arch(arch, settings, in_channels=train.in_channels, num_classes=train.num_classes,
                         resolution=resolution)
    settings = dataclasses.replace(settings, resolution=resolution)
    torch.manual_seed(settings.seed)
    model = build(arch)
    initialized = initialize_from(model, arch, init_from) if init_from is not None else None
    checkpoint = Checkpoint.for_run(out_dir, arch_id=arch.arch_id, data=data, settings=settings,
                                    split_seed=split_seed)
    result = train_model(model, train, validation, settings, on_epoch=on_epoch, checkpoint=checkpoint,
                         workers=workers)
    deployed = result.deployed if result.deployed is not None else model
    test = _test_set(data, stream, test_fraction=test_fraction, split_seed=split_seed)
    test_accuracy, test_loss = evaluate_model(deployed, test, settings, workers=workers)
    files = [WEIGHTS_FILE, ONNX_FILE, ARCH_FILE, METRICS_FILE]
    total = cost(arch)
    metrics: dict[str, Any] = {
        "arch_id": arch.arch_id,
        "data": data,
        "recipe": settings_record(settings),
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
        "resumed_epochs": result.resumed_epochs,
        "input_resolution": resolution,
        "init_from": initialized,
        "history": [[record.epoch, record.train_loss, record.validation_accuracy, record.train_size]
                    for record in result.history],
        "files": files,
    }
    if not _writes_files():
        return metrics
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if result.test_resolution_model is not None and settings.test_resolution is not None:
        size = settings.test_resolution
        fitted = result.test_resolution_model
        accuracy, loss = evaluate_model(fitted, test, settings, resolution=size, workers=workers)
        metrics["test_resolution"] = {
            "input_resolution": size, "validation_accuracy": result.test_resolution_accuracy,
            "test_accuracy": accuracy, "test_loss": loss, "macs": cost(arch.replace(resolution=size)).macs,
            "fine_tune_epochs": settings.fixres_epochs, "weights": test_resolution_weights(size)}
        torch.save(fitted.cpu().state_dict(), out / test_resolution_weights(size))
        files.append(test_resolution_weights(size))
    deployed.cpu()  # weights and the ONNX graph are saved device-free, whatever trained them
    torch.save(deployed.state_dict(), out / WEIGHTS_FILE)
    export_onnx(deployed, arch, resolution, out / ONNX_FILE)
    (out / ARCH_FILE).write_text(to_yaml(arch))
    (out / METRICS_FILE).write_text(json.dumps(metrics, indent=2))
    return metrics


def test_resolution_weights(size: int) -> str:
    return f"weights-{size}px.pt"


def settings_record(settings: TrainSettings) -> dict[str, Any]:
    """The settings a run trained with, as JSON: what a reader needs to repeat it."""
    return json.loads(json.dumps(dataclasses.asdict(settings), default=str))


def _trained_arch(arch: Arch, settings: TrainSettings, **fields: Any) -> Arch:
    # The recipe's dropout and stochastic depth (by model size) are the architecture's own fields.
    regularization = {name: getattr(settings, name) for name in ("dropout", "drop_path_rate")
                      if getattr(settings, name) is not None}
    return arch.replace(**fields, **regularization)


def _splits(data: str, stream: bool, **options: Any) -> tuple[Any, Any]:
    if not stream:
        return load_splits(data, **options)
    from nasscale.evaluate.streaming import streaming_splits  # torch: only a streamed run needs it

    return streaming_splits(parse_data_source(data), **options)


def _test_set(data: str, stream: bool, *, test_fraction: float, split_seed: int) -> Any:
    if not stream:
        return load_test_set(data, test_fraction=test_fraction, split_seed=split_seed)
    from nasscale.evaluate.streaming import streaming_test_set  # torch: only a streamed run needs it

    return streaming_test_set(parse_data_source(data), test_fraction=test_fraction, split_seed=split_seed)


def _join_torchrun(settings: TrainSettings) -> TrainSettings:
    """Under ``torchrun`` (WORLD_SIZE > 1 in the environment), join its process group, once: gloo on CPU, nccl on
    GPUs, each process on the GPU of its LOCAL_RANK. The settings, with that GPU."""
    import os

    import torch.distributed  # torch: imported where needed, so this module loads without it

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or torch.distributed.is_initialized():
        return settings
    on_gpu = settings.device.startswith("cuda")
    torch.distributed.init_process_group(backend="nccl" if on_gpu else "gloo")
    if not on_gpu:
        return settings
    device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    torch.cuda.set_device(device)
    return dataclasses.replace(settings, device=device)


def _writes_files() -> bool:
    """Rank 0 of torchrun, or a run of one process."""
    import torch.distributed  # torch: imported where needed, so this module loads without it

    return not (torch.distributed.is_available() and torch.distributed.is_initialized()) or \
        torch.distributed.get_rank() == 0


def export_onnx(model, arch: Arch, resolution: int, path: Path) -> None:
    import torch

    model.eval()
    example = torch.zeros(1, arch.in_channels, resolution, resolution)
    # The torch.export-based exporter, torch's default since 2.9 (the TorchScript one is deprecated).
    torch.onnx.export(model, (example,), str(path), dynamo=True, input_names=["images"], output_names=["logits"],
                      verbose=False)


def initialize_from(model, arch: Arch, run_dir: str | Path) -> dict[str, Any]:
    """Start ``model`` (``build(arch)``) from the weights of the run folder ``run_dir``: its arch.yaml must be
    ``arch`` up to the class count, resolution, dropout and drop-path rate (which change no tensor); where the
    class count differs, the classifier keeps ``model``'s fresh initialisation: the tensors whose shapes differ
    are exactly the classifier's, as nothing else depends on the class count. Returns what was loaded, for
    metrics.json."""
    import torch  # torch: imported where needed, so this module loads without it

    folder = Path(run_dir)
    saved = load_arch_file(str(folder / ARCH_FILE))
    neutral = {"resolution": arch.resolution, "dropout": arch.dropout, "drop_path_rate": arch.drop_path_rate,
               "num_classes": arch.num_classes}
    if saved.replace(**neutral) != arch:
        raise SpecError("--init-from", f"{folder / ARCH_FILE} holds another architecture ({saved.arch_id}) than the "
                                       f"one trained ({arch.arch_id}), beyond class count, resolution and dropout; "
                                       f"pass --arch {folder / ARCH_FILE} (and data with {saved.in_channels} channels)")
    try:
        state = torch.load(folder / WEIGHTS_FILE, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise SpecError("", "no such weights file; --init-from takes a run folder with arch.yaml and weights.pt",
                        source=str(folder / WEIGHTS_FILE)) from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as error:
        raise SpecError("", f"is truncated or not a state dict ({first_line(error)})",
                        source=str(folder / WEIGHTS_FILE)) from None
    own = model.state_dict()
    if not isinstance(state, dict) or set(state) != set(own):
        raise SpecError("", f"does not hold the tensors of the {ARCH_FILE} beside it",
                        source=str(folder / WEIGHTS_FILE))
    kept = {name: tensor for name, tensor in state.items() if tensor.shape == own[name].shape}
    if saved.num_classes == arch.num_classes and len(kept) != len(own):
        raise SpecError("", f"has tensors of other shapes than the {ARCH_FILE} beside it",
                        source=str(folder / WEIGHTS_FILE))
    model.load_state_dict(kept, strict=False)
    logger.info("initialised from %s: %d of %d tensors (%s)", folder, len(kept), len(own),
                "classifier re-initialised" if len(kept) < len(own) else "all")
    return {"run": str(folder), "arch_id": saved.arch_id, "tensors_loaded": len(kept), "tensors": len(own),
            "classifier_reinitialized": len(kept) < len(own)}


def load_weights(arch: Arch, weights_path: str | Path):
    """Rebuild ``arch`` and load saved weights safely (``weights_only=True``: no pickled code runs)."""
    import torch

    # torch: imported where needed, so this module loads without it
    from nasscale.models.build import build

    model = build(arch)
    model.load_state_dict(torch.load(weights_path, weights_only=True))
    return model.eval()
