"""``nasscale train``: train one architecture fully with a named recipe and save its weights, ONNX file and metrics;
``nasscale recipes``: the recipes it knows."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from nasscale.cli.output import JsonFlag, console, error_console, print_json
from nasscale.evaluate.recipes import DEFAULT_RECIPE, builtin_recipe_names, load_recipe, settings_for
from nasscale.presets.registry import resolve_arch


def train(
    arch: Annotated[str, typer.Option(help="Architecture file or preset name.")],
    out: Annotated[Path, typer.Option(help="Folder for weights.pt, model.onnx, arch.yaml, metrics.json and the "
                                           "checkpoint a rerun resumes from.")],
    data: Annotated[str, typer.Option(help="digits | fashion-mnist[:DIR] | imagefolder:DIR | cifar10:DIR")] = "digits",
    recipe: Annotated[str, typer.Option(help="Recipe name (nasscale recipes lists them) or YAML file.")] = \
        DEFAULT_RECIPE,
    epochs: Annotated[int, typer.Option(min=1)] = 10,
    resolution: Annotated[int | None, typer.Option(help="Deployment resolution: trained, tested and costed at "
                                                         "this size [the architecture's own].")] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help="[the recipe's]")] = None,
    learning_rate: Annotated[float | None, typer.Option(min=0.0, help="[the recipe's, scaled linearly with the "
                                                                      "batch size]")] = None,
    seed: int = 0,
    split_seed: Annotated[int, typer.Option(help="Seed of the validation (and held-out test) split; use the "
                                                 "study's to keep its test set unseen.")] = 0,
    threads: Annotated[int, typer.Option(min=1)] = 1,
    max_train_samples: int | None = None,
    device: Annotated[str, typer.Option(help="cpu | cuda | cuda:N.")] = "cpu",
    stream: Annotated[bool, typer.Option(help="Read an imagefolder image by image instead of into memory.")] = False,
    workers: Annotated[int, typer.Option(min=0, help="Processes decoding a streamed folder (0: this one).")] = 0,
    init_from: Annotated[Path | None, typer.Option(help="Fine-tune: start from the weights of a run folder of the "
                                                        "same architecture (nasscale weights import writes one); "
                                                        "the classifier is re-initialised if the class count "
                                                        "differs.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Train an architecture fully and save its weights (state dict) and an ONNX export; a rerun resumes."""
    from nasscale.evaluate.final import train_and_save  # torch: not for --help

    chosen = resolve_arch(arch)
    settings = settings_for(load_recipe(recipe), chosen, epochs=epochs, batch_size=batch_size,
                            learning_rate=learning_rate, resolution=resolution, threads=threads, seed=seed,
                            max_train_samples=max_train_samples, device=device)

    def on_epoch(record) -> None:
        if not as_json:
            error_console.print(f"epoch {record.epoch}/{epochs} at {record.train_size} px: loss "
                                f"{record.train_loss:.4f}, validation accuracy {record.validation_accuracy:.4f}",
                                highlight=False)

    metrics = train_and_save(chosen, data, out, settings=settings, split_seed=split_seed, on_epoch=on_epoch,
                             stream=stream, workers=workers, init_from=init_from)
    if as_json:
        print_json(metrics)
        return
    if metrics["resumed_epochs"]:
        error_console.print(f"resumed after epoch {metrics['resumed_epochs']} from {out / 'checkpoint.pt'}",
                            highlight=False)
    console.print(f"validation accuracy {metrics['validation_accuracy']:.4f}, test accuracy "
                  f"{metrics['test_accuracy']:.4f} ({metrics['test_images']} test images, read once) at "
                  f"{metrics['input_resolution']} px", highlight=False)
    if "test_resolution" in metrics:
        fixres = metrics["test_resolution"]
        console.print(f"at the test resolution {fixres['input_resolution']} px: validation accuracy "
                      f"{fixres['validation_accuracy']:.4f}, test accuracy {fixres['test_accuracy']:.4f}",
                      highlight=False)
    console.print("wrote " + ", ".join(str(out / name) for name in metrics["files"]), highlight=False)


def recipes(as_json: JsonFlag = False) -> None:
    """List the training recipes shipped with nasscale, with their sources."""
    loaded = [load_recipe(name) for name in builtin_recipe_names()]
    if as_json:
        print_json([{"name": item.name, "description": item.description, "source": item.source,
                     "reference_batch": item.reference_batch, "reference_epochs": item.reference_epochs,
                     "settings": {key: str(value) for key, value in item.settings.items()}} for item in loaded])
        return
    table = Table("recipe", "what it does", "source")
    for item in loaded:
        table.add_row(item.name, item.description, item.source)
    console.print(table)
    console.print(f"default: {DEFAULT_RECIPE}; pass --recipe NAME or a YAML file of your own to nasscale train")
