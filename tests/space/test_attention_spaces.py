"""The vit and hybrid spaces: what they hold, the DSL's checks of transformer stages (heads that divide the width,
class tokens, patch sizes at a stride), samples that build, count and train a step on digits, and two-trial
searches end to end."""

import copy
import json

import optuna
import pytest
import torch
import torch.nn.functional as F
import yaml

from nasscale.errors import SpaceError
from nasscale.evaluate.data import load_dataset
from nasscale.models.build import build
from nasscale.models.counts import measure_counts
from nasscale.presets.registry import preset_arch
from nasscale.search.record import ATTR_TRAINED
from nasscale.search.results import trial_arch
from nasscale.space.deployment import at_resolution
from nasscale.space.extent import cost_range
from nasscale.space.parsing import _builtin_folder, load_space, space_from_dict
from nasscale.space.sampling import FixedChooser, RandomChooser, sample
from nasscale.spec.cost import cost
from nasscale.spec.vocabulary import BlockType, HeadType
from tests.cli.test_cli_foundation import run_cli

DIGITS = {"in_channels": 1, "num_classes": 10}


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def vit_params(*, depth: int, patch: int) -> dict[str, int]:
    stage = "stages.0"
    return {f"{stage}.num_blocks": depth, f"{stage}.out_channels": 768, f"{stage}.num_heads": 12,
            f"{stage}.expand_ratio": 4, f"{stage}.patch_size": patch}


@pytest.mark.parametrize(("name", "patch"), [("vit_b_16", 16), ("vit_b_32", 32)])
def test_vit_space_holds_vit_b(name, patch):
    arch = sample(load_space("vit"), FixedChooser(vit_params(depth=12, patch=patch)))
    assert arch.arch_id == preset_arch(name).arch_id


def test_hybrid_space_mixes_convolution_and_attention_stages():
    space = load_space("hybrid")
    kinds = set()
    chooser = RandomChooser(0)
    for _ in range(200):
        arch = sample(space, chooser)
        kinds.add(tuple(stage.block for stage in arch.stages))
        for stage in arch.stages:
            if stage.block is BlockType.TRANSFORMER:
                assert stage.out_channels // stage.num_heads in (24, 32) and stage.stride == 2 and not stage.class_token
    assert {kind[2] for kind in kinds} == {kind[3] for kind in kinds} == {BlockType.MBCONV, BlockType.CONVNEXT,
                                                                            BlockType.TRANSFORMER}
    assert (BlockType.MBCONV, BlockType.MBCONV, BlockType.TRANSFORMER, BlockType.TRANSFORMER) in kinds  # C-C-T-T


def base_vit_data() -> dict:
    return yaml.safe_load((_builtin_folder() / "vit.yaml").read_text())


def problems_of(change) -> list[str]:
    data = copy.deepcopy(base_vit_data())
    change(data)
    with pytest.raises(SpaceError) as error:
        space_from_dict(data, source="bad.yaml")
    return error.value.problems


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda data: data["stages"][0].update(num_heads=[3, 5]),
         "bad.yaml: stages[0].num_heads: must divide out_channels 192 (each head is as wide), got 5"),
        (lambda data: data["stages"][0].update(stride=2),
         "bad.yaml: stages[0].patch_size: applies at stride 1 only (a stride-2 transformer stage embeds 2x2 patches), "
         "got 14"),
        (lambda data: data["stages"][0].update(class_token=[False, True]),
         "bad.yaml: stages[0]: the class_token head reads the last stage's class token: every choice must be a "
         "transformer with class_token true, got transformer"),
        (lambda data: data.update(head="norm"),
         "bad.yaml: head: must be class_token: the last stage may have a class token, got 'norm'"),
        (lambda data: data["stages"].insert(0, dict(data["stages"][0])),
         "bad.yaml: stages[0].class_token: only the last stage may have a class token"),
        (lambda data: data["stages"][0].update(block=[{"block": "transformer", "num_heads": 5}]),
         "bad.yaml: stages[0].block.num_heads: must divide out_channels 192 (each head is as wide), got 5"),
    ],
)
def test_space_problems_name_the_field(change, expected):
    assert expected in problems_of(change)


def test_heads_are_checked_against_every_width():
    problems = problems_of(lambda data: data["stages"][0].update(out_channels=[192, 200]))
    assert problems == [f"bad.yaml: stages[0].num_heads: must divide out_channels 200 (each head is as wide), got "
                        f"{heads}" for heads in (3, 6, 12)]


def test_patch_sizes_bound_the_sizes_a_space_reaches():
    space = load_space("vit")
    low = cost_range(space, resolution=224)
    assert low.macs_min == cost(sample(space, FixedChooser(
        {"stages.0.num_blocks": 4, "stages.0.out_channels": 192, "stages.0.num_heads": 3, "stages.0.expand_ratio": 2,
         "stages.0.patch_size": 32}))).macs


def digits_batch(size: int, count: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    dataset = load_dataset("digits", max_samples=count)
    images = F.interpolate(torch.from_numpy(dataset.images), size=(size, size), mode="bilinear", align_corners=False)
    return images, torch.from_numpy(dataset.labels)


@pytest.mark.parametrize(("name", "train_size"), [("vit", 16), ("hybrid", 32)])
@pytest.mark.parametrize("seed", range(3))
def test_samples_build_count_and_train_a_step_on_digits(name, train_size, seed):
    """Deployed at digits' 32 px and trained at a proxy 16 px (vit: the position embedding resampled); the
    hybrid trains at 32 px, as ConvNeXt's 2x2 downsampling needs a 2 x 2 map in its last stage."""
    arch = sample(at_resolution(load_space(name), 32), RandomChooser(seed), **DIGITS)
    counts, analytic = measure_counts(arch), cost(arch)
    assert (counts.params_built, counts.macs_fvcore, counts.macs_torch) == (analytic.params, analytic.macs,
                                                                             analytic.macs)
    model = build(arch).train()
    images, labels = digits_batch(train_size)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    before = [parameter.detach().clone() for parameter in model.parameters()]
    loss = F.cross_entropy(model(images), labels)
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    assert any(not torch.equal(old, new) for old, new in zip(before, model.parameters(), strict=True))


@pytest.mark.parametrize(("space", "extra"), [("vit", ["--proxy-resolution", "16", "--max-params", "3M"]),
                                              ("hybrid", ["--max-params", "8M"])])
def test_two_trial_search_of_the_space(capsys, tmp_path, space, extra):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    # Parameter budgets keep the ViT-B- and CoAtNet-sized corners out of a one-minute test (pruned untrained).
    code, out, err = run_cli(capsys, "search", "--space", space, "--data", "digits", "--epochs", "1",
                             "--batch-size", "128", "--max-train-samples", "256", *extra, "--trials", "2",
                             "--sampler", "random", "--storage", storage, "--study", space, "--json")
    assert code == 0, err
    assert json.loads(out)["study"] == space
    study = optuna.load_study(study_name=space, storage=storage)
    trained = [trial for trial in study.trials if trial.user_attrs.get(ATTR_TRAINED)]
    assert len(trained) == 2 and all(trial.state is optuna.trial.TrialState.COMPLETE for trial in trained)
    for trial in trained:
        arch = trial_arch(trial)
        assert cost(arch).macs == trial.user_attrs["macs"] and 0.0 <= trial.user_attrs["accuracy"] <= 1.0
        if space == "vit":
            assert arch.head is HeadType.CLASS_TOKEN and arch.stages[0].class_token
