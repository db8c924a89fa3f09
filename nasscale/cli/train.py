"""``nasscale train``: train one architecture fully and save its weights, ONNX file and metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from nasscale.cli.output import JsonFlag, console, error_console, print_json
from nasscale.evaluate.settings import RECIPE_DEFAULTS, TrainSettings
from nasscale.presets.registry import resolve_arch


def train(
    arch: Annotated[str, typer.Option(help="Architecture file or preset name.")],
    out: Annotated[Path, typer.Option(help="Folder for weights.pt, model.onnx, arch.yaml, metrics.json.")],
    data: Annotated[str, typer.Option(help="digits | fashion-mnist[:DIR] | imagefolder:DIR | cifar10:DIR")] = "digits",
    epochs: Annotated[int, typer.Option(min=1)] = 10,
    resolution: Annotated[int | None, typer.Option(help="Deployment resolution: trained, tested and costed at "
                                                         "this size [the architecture's own].")] = None,
    batch_size: Annotated[int, typer.Option(min=1)] = RECIPE_DEFAULTS.batch_size,
    learning_rate: Annotated[float, typer.Option(min=0.0)] = RECIPE_DEFAULTS.learning_rate,
    seed: int = 0,
    split_seed: Annotated[int, typer.Option(help="Seed of the validation (and held-out test) split; use the "
                                                 "study's to keep its test set unseen.")] = 0,
    threads: Annotated[int, typer.Option(min=1)] = 1,
    max_train_samples: int | None = None,
    device: Annotated[str, typer.Option(help="cpu | cuda | cuda:N.")] = "cpu",
    as_json: JsonFlag = False,
) -> None:
    """Train an architecture fully and save its weights (state dict) and an ONNX export."""
    from nasscale.evaluate.final import train_and_save  # torch: not for --help

    settings = TrainSettings(epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                             resolution=resolution, threads=threads, seed=seed, max_train_samples=max_train_samples,
                             device=device)

    def on_epoch(record) -> None:
        if not as_json:
            error_console.print(f"epoch {record.epoch}/{epochs}: loss {record.train_loss:.4f}, "
                                f"validation accuracy {record.validation_accuracy:.4f}", highlight=False)

    metrics = train_and_save(resolve_arch(arch), data, out, settings=settings, split_seed=split_seed,
                             on_epoch=on_epoch)
    if as_json:
        print_json(metrics)
        return
    console.print(f"validation accuracy {metrics['validation_accuracy']:.4f}, test accuracy "
                  f"{metrics['test_accuracy']:.4f} ({metrics['test_images']} test images, read once) at "
                  f"{metrics['input_resolution']} px; wrote "
                  + ", ".join(str(out / name) for name in metrics["files"]), highlight=False)
