"""Named training recipes: the YAML files of ``recipes/`` (shipped as ``nasscale.recipes``) or a user's file.

A recipe is what a family was trained with in its paper, written once at the paper's scale (``reference_batch``,
``reference_epochs``) and resolved for a run (``resolve``): the learning rate scales linearly with the batch
size (Goyal et al. 2017), warm-up and exponential-decay periods with the number of epochs, dropout and
stochastic depth follow the model's size (``dropout_by_macs``, ``drop_path_by_macs``: rows of (MACs from,
rate)), and the test resolution is ``test_scale`` times the training one. Light: yaml, no torch.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import math
from dataclasses import dataclass, field
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import yaml

from nasscale.errors import SpecError, UnknownNameError, read_text_file
from nasscale.evaluate.settings import Progressive, TrainSettings
from nasscale.spec.arch import Arch
from nasscale.spec.cost import cost

DEFAULT_RECIPE = "fast-proxy"  # search trials and `nasscale train` without --recipe
RECIPE_KEYS = frozenset({"name", "source", "description", "reference_batch", "reference_epochs", "settings",
                         "dropout_by_macs", "drop_path_by_macs", "test_scale"})
# Settings a recipe may not fix: they belong to the run, not to the method.
RUN_FIELDS = frozenset({"epochs", "resolution", "threads", "seed", "max_train_samples", "device",
                        "test_resolution", "dropout", "drop_path_rate"})
SETTING_FIELDS = frozenset(item.name for item in dataclasses.fields(TrainSettings)) - RUN_FIELDS


@dataclass(frozen=True, slots=True)
class Recipe:
    name: str
    source: str  # the paper or released config the values come from
    description: str
    settings: dict[str, Any] = field(default_factory=dict)  # TrainSettings fields; the rest take its defaults
    reference_batch: int = TrainSettings().batch_size
    reference_epochs: float = TrainSettings().epochs
    dropout_by_macs: tuple[tuple[float, float], ...] = ()
    drop_path_by_macs: tuple[tuple[float, float], ...] = ()
    test_scale: float | None = None
    path: str = ""

    def resolve(self, *, epochs: int | None = None, batch_size: int | None = None,
                learning_rate: float | None = None, macs: int = 0, **run: Any) -> TrainSettings:
        """The settings of one run: ``epochs``, ``batch_size`` and ``learning_rate`` override the recipe's (an
        explicit learning rate is not rescaled), ``run`` holds the run's own fields (resolution, seed, ...)."""
        values = dict(self.settings)
        epochs = epochs or TrainSettings().epochs
        batch = batch_size or values.get("batch_size", TrainSettings().batch_size)
        scaled_rate = values.get("learning_rate", TrainSettings().learning_rate) * batch / self.reference_batch
        values.update(epochs=epochs, batch_size=batch, learning_rate=learning_rate or scaled_rate)
        stretch = epochs / self.reference_epochs
        if "warmup_epochs" in values:
            values["warmup_epochs"] = min(values["warmup_epochs"] * stretch, epochs)
        if "decay_epochs" in values:
            values["decay_epochs"] = values["decay_epochs"] * stretch
        if self.dropout_by_macs:
            values["dropout"] = rate_for(self.dropout_by_macs, macs)
        if self.drop_path_by_macs:
            values["drop_path_rate"] = rate_for(self.drop_path_by_macs, macs)
        resolution = run.get("resolution")
        if self.test_scale is not None and resolution:
            values["test_resolution"] = round(resolution * self.test_scale)
        values.update({name: value for name, value in run.items() if value is not None})
        try:
            return TrainSettings(**values)
        except SpecError as error:
            raise error.with_source(self.path or self.name) from None


def settings_for(recipe: Recipe, arch: Arch, *, resolution: int | None = None, **run: Any) -> TrainSettings:
    """``recipe`` resolved for training ``arch`` at ``resolution`` (default: its own): its size-dependent rates follow
    the MACs it has there."""
    resolution = resolution or arch.resolution
    return recipe.resolve(macs=cost(arch.replace(resolution=resolution)).macs, resolution=resolution, **run)


def rate_for(table: tuple[tuple[float, float], ...], macs: int) -> float:
    """The rate of the last row whose MACs threshold the model reaches (the first row's below all of them)."""
    rate = table[0][1]
    for threshold, row_rate in table:
        if macs >= threshold:
            rate = row_rate
    return rate


# ------------------------------------------------------------------------------------------------ loading


def builtin_recipe_names() -> list[str]:
    return sorted(entry.name.removesuffix(".yaml") for entry in _builtin_folder().iterdir()
                  if entry.name.endswith(".yaml"))


def load_recipe(name_or_path: str | Path) -> Recipe:
    """A shipped recipe by name (``efficientnet``) or a YAML file by path; a bad file is one SpecError naming it."""
    text_name = str(name_or_path)
    if text_name in builtin_recipe_names():
        entry = _builtin_folder() / f"{text_name}.yaml"
        return parse_recipe(entry.read_text(encoding="utf-8"), source=f"recipes/{text_name}.yaml")
    if not (text_name.endswith((".yaml", ".yml")) or Path(text_name).exists()):
        raise UnknownNameError(f"unknown recipe {text_name!r}; choose one of {', '.join(builtin_recipe_names())} "
                               f"(nasscale recipes lists them), or pass a YAML file's path")
    return parse_recipe(read_text_file(text_name, what="recipe file", hint="pass a recipe YAML file or a name"),
                        source=text_name)


def parse_recipe(text: str, *, source: str) -> Recipe:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise SpecError("", f"not valid YAML: {str(error).splitlines()[0]}", source=source) from None
    if not isinstance(data, dict):
        raise SpecError("", "a recipe is a mapping with name, source and settings", source=source)
    unknown = sorted(set(map(str, data)) - RECIPE_KEYS)
    if unknown:
        raise SpecError(unknown[0], f"unknown recipe key; use {', '.join(sorted(RECIPE_KEYS))}", source=source)
    for key in ("name", "source"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            raise SpecError(key, "is required: a non-empty text", source=source)
    recipe = Recipe(name=data["name"], source=" ".join(data["source"].split()),
                    description=" ".join(str(data.get("description", "")).split()),
                    settings=_settings(data.get("settings") or {}, source),
                    reference_batch=_positive(data, "reference_batch", TrainSettings().batch_size, source),
                    reference_epochs=_positive(data, "reference_epochs", TrainSettings().epochs, source),
                    dropout_by_macs=_rate_table(data, "dropout_by_macs", source),
                    drop_path_by_macs=_rate_table(data, "drop_path_by_macs", source),
                    test_scale=_positive(data, "test_scale", None, source), path=source)
    stages = recipe.settings["progressive"].stages if recipe.settings.get("progressive") else 1
    # Every value checked now, with the file's name, not at the first run.
    recipe.resolve(epochs=max(TrainSettings().epochs, stages), resolution=32)
    return recipe


def _settings(settings: object, source: str) -> dict[str, Any]:
    if not isinstance(settings, dict):
        raise SpecError("settings", "must be a mapping of training settings", source=source)
    for key in settings:
        if key not in SETTING_FIELDS:
            hint = ("it belongs to the run: pass it on the command line" if key in RUN_FIELDS
                    else f"use one of {', '.join(sorted(SETTING_FIELDS))}")
            raise SpecError(f"settings.{key}", f"not a recipe setting; {hint}", source=source)
    values = dict(settings)
    if isinstance(values.get("progressive"), dict):
        try:
            fields: dict[str, Any] = {key: tuple(value) if isinstance(value, list) else value
                                      for key, value in values["progressive"].items()}
            values["progressive"] = Progressive(**fields)
        except TypeError as error:
            raise SpecError("settings.progressive", f"{error}; use stages, size, magnitude, mixup, dropout",
                            source=source) from None
        except SpecError as error:
            raise error.with_source(source) from None
    return values


def _positive(data: dict, key: str, default: Any, source: str) -> Any:
    value = data.get(key, default)
    if value is default:
        return value
    if isinstance(value, bool) or not isinstance(value, int | float) or not (math.isfinite(value) and value > 0):
        raise SpecError(key, f"must be a positive number, got {value!r}", source=source)
    return value


def _rate_table(data: dict, key: str, source: str) -> tuple[tuple[float, float], ...]:
    rows = data.get(key) or []
    table = []
    for row in rows:
        if not (isinstance(row, list) and len(row) == 2 and all(isinstance(value, int | float) for value in row)
                and row[0] >= 0 and 0 <= row[1] < 1):
            raise SpecError(key, f"rows are [MACs from, rate in [0, 1)], got {row!r}", source=source)
        table.append((float(row[0]), float(row[1])))
    if [threshold for threshold, _ in table] != sorted(threshold for threshold, _ in table):
        raise SpecError(key, "rows must be in increasing order of MACs", source=source)
    return tuple(table)


def _builtin_folder() -> Traversable:
    try:
        return importlib.resources.files("nasscale.recipes")
    except ImportError:  # a source tree that was never installed: the folder sits next to the package
        return Path(__file__).resolve().parents[2] / "recipes"
