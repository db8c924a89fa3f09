"""The named recipes: each trains, progressive learning follows its formula, mixed targets are distributions, FixRes
fits a second model, and a bad recipe is one line naming its file."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from nasscale.errors import SpecError, UnknownNameError
from nasscale.evaluate.augment import stage_augmentation
from nasscale.evaluate.data import load_splits
from nasscale.evaluate.optimization import TensorFlowRMSprop
from nasscale.evaluate.recipes import builtin_recipe_names, load_recipe, parse_recipe, rate_for, settings_for
from nasscale.evaluate.settings import Progressive, TrainSettings
from nasscale.evaluate.training import train_model
from nasscale.models.build import build
from nasscale.spec.arch import Arch

RECIPES = ("convnext", "efficientnet", "efficientnetv2-progressive", "fast-proxy", "rsb-a3")


@pytest.fixture(scope="module")
def digits():
    return load_splits("digits", split_seed=0)


@pytest.fixture()
def small(tiny_arch: Arch) -> Arch:
    return tiny_arch.replace(in_channels=1, num_classes=10, resolution=16)


def test_the_shipped_recipes_are_listed_and_cite_a_source() -> None:
    assert tuple(builtin_recipe_names()) == RECIPES
    for name in RECIPES:
        recipe = load_recipe(name)
        assert recipe.name == name and len(recipe.source) > 40 and recipe.description


@pytest.mark.parametrize("name", RECIPES)
def test_each_recipe_trains_a_short_run_on_digits(name: str, small: Arch, digits) -> None:
    recipe = load_recipe(name)
    epochs = 4 if recipe.settings.get("progressive") else 1  # progressive learning needs an epoch per stage
    settings = settings_for(recipe, small, epochs=epochs, resolution=16, max_train_samples=128, batch_size=32)
    torch.manual_seed(0)
    model = build(small)
    before = {key: value.clone() for key, value in model.state_dict().items()}
    result = train_model(model, *digits, settings)
    assert len(result.history) == epochs and 0 <= result.validation_accuracy <= 1
    assert any(not torch.equal(before[key], value) for key, value in model.state_dict().items())
    if settings.ema_decay is not None:  # the EMA is what is scored and deployed
        assert result.deployed is not model
    if recipe.test_scale is not None:
        assert settings.test_resolution == round(16 * recipe.test_scale)
        assert result.test_resolution_accuracy is not None and result.test_resolution_model is not None


def test_a_recipe_scales_with_the_run() -> None:
    recipe = load_recipe("convnext")  # 4e-3 at batch 4096, 20 of 300 epochs warm-up, drop path by MACs
    settings = recipe.resolve(epochs=30, batch_size=128, macs=int(9e9), resolution=32)
    assert settings.learning_rate == pytest.approx(4e-3 * 128 / 4096)
    assert settings.warmup_epochs == pytest.approx(2.0) and settings.drop_path_rate == 0.4
    assert recipe.resolve(epochs=30, learning_rate=0.01, macs=0).learning_rate == 0.01  # explicit: not rescaled
    assert rate_for(((0, 0.2), (1e9, 0.3), (4e9, 0.4)), int(2e9)) == 0.3


def test_progressive_stages_follow_the_formula(small: Arch, digits) -> None:
    progressive = Progressive(stages=4, size=(0.5, 1.0), magnitude=(5.0, 14.0), mixup=(0.0, 0.3), dropout=(0.1, 0.4))
    epochs = 8
    stages = [progressive.stage_of(epoch, epochs) for epoch in range(1, epochs + 1)]
    assert stages == [0, 0, 1, 1, 2, 2, 3, 3]
    for stage in range(4):  # linear from the first stage's value to the last's
        assert progressive.value("magnitude", stage) == pytest.approx(5 + 9 * stage / 3)
        assert progressive.value("mixup", stage) == pytest.approx(0.3 * stage / 3)
        assert progressive.size_at(stage, 24) == round(24 * (0.5 + 0.5 * stage / 3))
    settings = TrainSettings(epochs=epochs, resolution=24, max_train_samples=64, batch_size=32, augment="randaugment",
                             progressive=progressive)
    torch.manual_seed(0)
    model = build(small.replace(resolution=24))
    seen: list[int] = []
    model.stem.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].shape[-1])
                                     if module.training else None)
    result = train_model(model, *digits, settings)
    assert [record.train_size for record in result.history] == [12, 12, 16, 16, 20, 20, 24, 24]
    assert set(seen) == {12, 16, 20, 24}
    augmentations = [stage_augmentation(settings, 10, magnitude=progressive.value("magnitude", stage),
                                        mixup=progressive.value("mixup", stage)) for stage in range(4)]
    assert [augmentation.magnitude for augmentation in augmentations] == pytest.approx([5, 8, 11, 14])


@pytest.mark.parametrize("mixing", [{"mixup": 0.8}, {"cutmix": 1.0}, {"mixup": 0.8, "cutmix": 1.0}])
def test_mixed_targets_are_distributions_that_match_the_images(mixing: dict) -> None:
    settings = TrainSettings(label_smoothing=0.1, **mixing)
    augmentation = stage_augmentation(settings, 10, magnitude=0, mixup=settings.mixup)
    assert augmentation is not None
    torch.manual_seed(3)
    for _ in range(5):
        labels = torch.arange(16) % 10
        # Each image one constant value, its label's: a pixel's value tells which image it came from.
        images = (labels.float()[:, None, None, None] + 1).expand(16, 1, 12, 12).contiguous() / 16
        mixed, targets = augmentation(images, labels)
        assert targets.shape == (16, 10) and bool((targets >= 0).all())
        torch.testing.assert_close(targets.sum(1), torch.ones(16))
        # The weight of each image's own class minus smoothing is the share of it in the mixed image.
        own = targets[torch.arange(16), labels]
        share_of_own = (mixed.flatten(1) == images.flatten(1)).float().mean(1)
        if "mixup" not in mixing:
            torch.testing.assert_close(own, share_of_own * 0.9 + 0.01, atol=1e-5, rtol=0)


def test_fixres_fine_tunes_batch_norm_and_the_classifier_only(small: Arch, digits) -> None:
    settings = TrainSettings(epochs=1, resolution=16, test_resolution=24, fixres_epochs=1, max_train_samples=128,
                             batch_size=32)
    torch.manual_seed(0)
    model = build(small)
    result = train_model(model, *digits, settings)
    fitted = result.test_resolution_model
    assert fitted is not None and fitted is not model and result.test_resolution_accuracy is not None
    norms = [name for name, module in fitted.named_modules() if isinstance(module, torch.nn.BatchNorm2d)]
    classifier = [name for name, module in fitted.named_modules() if isinstance(module, torch.nn.Linear)][-1]
    learning = {f"{module}.{kind}" for module in [*norms, classifier] for kind in ("weight", "bias")}
    trained, tuned = dict(model.named_parameters()), dict(fitted.named_parameters())
    changed = {name for name in trained if not torch.equal(trained[name], tuned[name])}
    assert changed and changed <= learning and f"{classifier}.weight" in changed
    assert all(parameter.requires_grad for parameter in fitted.parameters())


@pytest.mark.parametrize(("setting", "value", "message"), [
    ("magnitude", -1, "magnitude: must be a number in"),
    ("optimizer", "adagrad", "unknown optimizer 'adagrad'"),
    ("mixup", -0.5, "mixup: must be a number in"),
])
def test_a_bad_recipe_value_is_one_line_naming_the_file(setting: str, value: object, message: str) -> None:
    text = f"name: bad\nsource: a test\nsettings:\n  {setting}: {value}\n"
    with pytest.raises(SpecError, match=message) as raised:
        parse_recipe(text, source="bad.yaml")
    assert "bad.yaml" in str(raised.value) and "\n" not in str(raised.value)


def test_stages_longer_than_the_run_and_unknown_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="4 stages do not fit in 2 epochs"):
        load_recipe("efficientnetv2-progressive").resolve(epochs=2, resolution=32)
    with pytest.raises(SpecError, match="progressive.magnitude: must be two numbers"):
        parse_recipe("name: p\nsource: s\nsettings:\n  progressive: {stages: 2, magnitude: [-1, 5]}\n", source="p")
    with pytest.raises(SpecError, match="settings.epochs: not a recipe setting; it belongs to the run"):
        parse_recipe("name: p\nsource: s\nsettings: {epochs: 3}\n", source="p")
    with pytest.raises(UnknownNameError, match="unknown recipe 'nope'"):
        load_recipe("nope")
    mine = tmp_path / "mine.yaml"
    mine.write_text("name: mine\nsource: my notes\nsettings: {optimizer: adamw, learning_rate: 1.0e-3}\n")
    assert load_recipe(mine).resolve(epochs=2).optimizer == "adamw"
    assert dataclasses.replace(load_recipe(mine).resolve(epochs=2), optimizer="sgd").optimizer == "sgd"


@pytest.mark.parametrize("augment", ["randaugment", "trivialaugment"])
@pytest.mark.parametrize("channels", [1, 3])
def test_augmentation_policies_take_grayscale_and_colour(augment: str, channels: int) -> None:
    augmentation = stage_augmentation(TrainSettings(augment=augment, augment_ops=3, random_erasing=0.5), 10,
                                      magnitude=10, mixup=0)
    assert augmentation is not None
    torch.manual_seed(0)
    for _ in range(30):  # every operation of the policy, many times over
        images = torch.rand(4, channels, 12, 12)
        augmented, labels = augmentation(images, torch.arange(4))
        assert augmented.shape == images.shape and float(augmented.min()) >= 0 and float(augmented.max()) <= 1
        assert torch.equal(labels, torch.arange(4))


def test_randaugment_draws_its_operations_per_group_not_per_batch() -> None:
    augmentation = stage_augmentation(TrainSettings(augment="randaugment", augment_ops=1), 10, magnitude=10, mixup=0)
    assert augmentation is not None
    torch.manual_seed(1)
    same = torch.rand(1, 1, 12, 12).expand(64, 1, 12, 12).contiguous()  # 64 copies of one image
    augmented, _ = augmentation(same, torch.zeros(64, dtype=torch.long))
    groups = augmented.split(8)
    # One draw for the whole batch would treat the 8 groups alike (up to their random magnitudes' sign).
    assert len({tuple(group[0].flatten().round(decimals=2).tolist()) for group in groups}) > 2


def test_tensorflow_rmsprop_starts_from_a_unit_mean_square() -> None:
    weight = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    optimizer = TensorFlowRMSprop([weight], lr=0.1, weight_decay=0.5)
    weight.grad = torch.tensor([0.2, 0.4])
    optimizer.step()
    gradient = torch.tensor([0.2, 0.4]) + 0.5 * torch.tensor([1.0, -2.0])  # L2 weight decay on the gradient
    square = 0.9 * 1.0 + 0.1 * gradient ** 2  # TF's accumulator starts at one
    expected = torch.tensor([1.0, -2.0]) - 0.1 * gradient / torch.sqrt(square + 1e-3)
    torch.testing.assert_close(weight.detach(), expected)


def test_the_test_resolution_follows_the_architecture_s_own_when_the_run_names_none(small: Arch) -> None:
    settings = settings_for(load_recipe("rsb-a3"), small.replace(resolution=20), epochs=1)
    assert settings.resolution == 20 and settings.test_resolution == 28  # 1.4 x 20
