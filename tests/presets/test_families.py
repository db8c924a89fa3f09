"""The classic families: the resnet and regnet spaces sample, build and count exactly; the branching and
concatenating blocks have the papers' structure; tiny searches run on both spaces."""

import json

import optuna
import pytest
import torch
from torch import nn

from nasscale.models.build import build
from nasscale.models.classic_blocks import Fire, Inception, LargeKernelAttention, ShuffleUnit, VANBlock
from nasscale.models.counts import measure_counts
from nasscale.presets.registry import preset_arch
from nasscale.search.record import ATTR_TRAINED
from nasscale.search.results import trial_arch
from nasscale.space.extent import mac_range
from nasscale.space.parsing import load_space
from nasscale.space.sampling import RandomChooser, sample
from nasscale.spec.cost import cost
from nasscale.spec.vocabulary import BlockType, HeadType, StemType
from tests.cli.test_cli_foundation import run_cli

SMALL = {"in_channels": 1, "num_classes": 10, "resolution": 32}  # small enough to build and trace in a moment
RESNET_BLOCKS = {BlockType.BASIC, BlockType.BOTTLENECK, BlockType.PREACT_BOTTLENECK, BlockType.SE_BOTTLENECK}


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the machine is shared; small models gain nothing from more
    yield
    torch.set_num_threads(threads)


def convs(module: nn.Module) -> list[nn.Conv2d]:
    return [layer for layer in module.modules() if isinstance(layer, nn.Conv2d)]


def conv_shape(conv: nn.Conv2d) -> tuple[int, int, int]:
    return conv.in_channels, conv.out_channels, conv.kernel_size[0]


# --------------------------------------------------------------------------------------- resnet and regnet


def test_resnet_space_samples_are_resnets_of_every_block():
    space = load_space("resnet")
    low, high = mac_range(space)
    chooser = RandomChooser(0)
    seen = set()
    for _ in range(300):
        arch = sample(space, chooser)
        assert (arch.stem, arch.head, len(arch.stages)) == (StemType.RESNET, HeadType.POOL, 4)
        assert [stage.stride for stage in arch.stages] == [1, 2, 2, 2]
        assert low <= cost(arch).macs <= high
        seen |= {(stage.block, stage.groups) for stage in arch.stages}
    assert seen == {(block, 1) for block in RESNET_BLOCKS} | {(BlockType.BOTTLENECK, 32)}


def test_regnet_space_samples_are_regnets_x_and_y():
    space = load_space("regnet")
    low, high = mac_range(space)
    chooser = RandomChooser(0)
    squeeze = set()
    for _ in range(300):
        arch = sample(space, chooser)
        assert all(stage.block is BlockType.BOTTLENECK and stage.stride == 2 for stage in arch.stages)
        widths = [stage.out_channels for stage in arch.stages]
        assert widths == sorted(widths) and all(width % 8 == 0 for width in widths)
        assert all(stage.out_channels * stage.bottleneck_ratio % stage.groups == 0 for stage in arch.stages)
        assert low <= cost(arch).macs <= high
        squeeze |= {stage.se_ratio for stage in arch.stages}
    assert squeeze == {0.0, 0.25}  # RegNetX and RegNetY


@pytest.mark.parametrize("name", ["resnet", "regnet"])
@pytest.mark.parametrize("seed", range(8))
def test_sampled_family_cost_equals_built_params_and_fvcore_macs(name, seed):
    arch = sample(load_space(name), RandomChooser(seed), **SMALL)
    analytic = cost(arch)
    counts = measure_counts(arch)
    assert (analytic.params, analytic.macs) == (counts.params_built, counts.macs_fvcore) == \
        (counts.params_built, counts.macs_torch)


# ---------------------------------------------------------------------------- blocks against the papers


def test_densenet121_layer_and_transition_widths_and_concatenation():
    """Huang et al. Table 1 (DenseNet-BC, k = 32, bn_size 4): each layer is BN-ReLU-1x1 conv to 4k, BN-ReLU-3x3
    conv to k; each transition halves the width with a 1x1 conv and a 2x2 average pool."""
    model = build(preset_arch("densenet121")).eval()
    growth, layers, start = 32, (6, 12, 24, 16), 64
    for index, (stage, count) in enumerate(zip(model.stages, layers, strict=True)):
        blocks = list(stage)
        if index > 0:
            transition = blocks.pop(0)
            assert [conv_shape(conv) for conv in convs(transition)] == [(start * 2, start, 1)]
            pool = transition[-1]
            assert isinstance(pool, nn.AvgPool2d) and (pool.kernel_size, pool.stride) == (2, 2)
        assert len(blocks) == count
        for layer_index, layer in enumerate(blocks):
            width = start + growth * layer_index
            assert [conv_shape(conv) for conv in convs(layer)] == [(width, 4 * growth, 1), (4 * growth, growth, 3)]
            assert not any(conv.bias is not None for conv in convs(layer))
        start = (start + growth * count) // 2
    assert [stage.out_channels for stage in preset_arch("densenet121").stages] == [256, 512, 1024, 1024]
    layer = model.stages[1][3]  # its input: 128 + 2 x 32
    features = torch.randn(2, 192, 7, 7)
    with torch.no_grad():
        out = layer(features)
    assert out.shape == (2, 224, 7, 7)
    assert torch.equal(out[:, :192], features)  # the input is kept, the new features come after it


# Szegedy et al. Table 1: #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj, and each module's input width.
GOOGLENET_TABLE = {
    "3a": (192, (64, 96, 128, 16, 32, 32)),
    "3b": (256, (128, 128, 192, 32, 96, 64)),
    "4a": (480, (192, 96, 208, 16, 48, 64)),
    "4b": (512, (160, 112, 224, 24, 64, 64)),
    "4c": (512, (128, 128, 256, 24, 64, 64)),
    "4d": (512, (112, 144, 288, 32, 64, 64)),
    "4e": (528, (256, 160, 320, 32, 128, 128)),
    "5a": (832, (256, 160, 320, 32, 128, 128)),
    "5b": (832, (384, 192, 384, 48, 128, 128)),
}


def test_googlenet_inception_branch_widths_and_concatenation():
    model = build(preset_arch("googlenet")).eval()
    modules = [module for module in model.modules() if isinstance(module, Inception)]
    assert len(modules) == len(GOOGLENET_TABLE)
    for module, (in_channels, widths) in zip(modules, GOOGLENET_TABLE.values(), strict=True):
        one, three_reduce, three, five_reduce, five, projection = widths
        assert conv_shape(module.one[0]) == (in_channels, one, 1)
        assert [conv_shape(conv) for conv in convs(module.three)] == [(in_channels, three_reduce, 1),
                                                                      (three_reduce, three, 3)]
        # The paper's 5x5 branch is a 3x3 conv in torchvision's GoogLeNet, whose counts the preset reproduces.
        assert [conv_shape(conv) for conv in convs(module.second)] == [(in_channels, five_reduce, 1),
                                                                       (five_reduce, five, 3)]
        pool = module.pool[0]
        assert isinstance(pool, nn.MaxPool2d) and (pool.kernel_size, pool.stride, pool.padding) == (3, 1, 1)
        assert conv_shape(module.pool[1][0]) == (in_channels, projection, 1)
    module = modules[0]
    features = torch.randn(1, 192, 7, 7)
    with torch.no_grad():
        out = module(features)
        parts = [module.one(features), module.three(features), module.second(features), module.pool(features)]
    assert out.shape == (1, 256, 7, 7) and torch.equal(out, torch.cat(parts, dim=1))


# Iandola et al. Table 1 (SqueezeNet 1.0): fire2..fire9 as input width, squeeze 1x1, expand 1x1, expand 3x3.
SQUEEZENET_FIRES = ((96, 16, 64, 64), (128, 16, 64, 64), (128, 32, 128, 128), (256, 32, 128, 128),
                    (256, 48, 192, 192), (384, 48, 192, 192), (384, 64, 256, 256), (512, 64, 256, 256))


def test_squeezenet_fire_modules_and_pools():
    model = build(preset_arch("squeezenet1_0")).eval()
    layers = [layer for stage in model.stages for layer in stage]
    fires = [layer for layer in layers if isinstance(layer, Fire)]
    assert len(fires) == len(SQUEEZENET_FIRES)
    for fire, (in_channels, squeezed, one, three) in zip(fires, SQUEEZENET_FIRES, strict=True):
        assert conv_shape(fire.squeeze[0]) == (in_channels, squeezed, 1)
        assert conv_shape(fire.expand_one[0]) == (squeezed, one, 1)
        assert conv_shape(fire.expand_wide[0]) == (squeezed, three, 3) and fire.expand_wide[0].padding == (1, 1)
        assert all(conv.bias is not None for conv in convs(fire))
    # Max pools (3x3, stride 2, ceil mode) after conv1 (the stem), fire4 and fire8.
    pools = [index for index, layer in enumerate(layers) if isinstance(layer, nn.MaxPool2d)]
    assert [sum(isinstance(layer, Fire) for layer in layers[:index]) for index in pools] == [3, 7]
    assert all((layers[index].kernel_size, layers[index].stride, layers[index].ceil_mode) == (3, 2, True)
               for index in pools)
    assert isinstance(model.stem[-1], nn.MaxPool2d)
    assert not any(isinstance(layer, nn.BatchNorm2d) for layer in model.modules())
    fire = fires[0]
    features = torch.randn(1, 96, 9, 9)
    with torch.no_grad():
        out = fire(features)
        squeezed = fire.squeeze(features)
    assert out.shape == (1, 128, 9, 9) and torch.equal(out[:, :64], fire.expand_one(squeezed))


def test_shufflenet_v2_split_concatenate_and_shuffle():
    """Ma et al. Figure 3: a stride-1 unit splits the channels in halves, transforms one (1x1, 3x3 depthwise,
    1x1), concatenates and shuffles; a stride-2 unit runs a depthwise branch and the main branch on the whole
    input. Stage widths 116, 232, 464 with 4, 8, 4 units (Table 5, 1x)."""
    model = build(preset_arch("shufflenet_v2_x1_0")).eval()
    for stage, (width, count, in_channels) in zip(model.stages, ((116, 4, 24), (232, 8, 116), (464, 4, 232)),
                                                  strict=True):
        units = list(stage)
        assert len(units) == count and all(isinstance(unit, ShuffleUnit) for unit in units)
        first, rest = units[0], units[1:]
        half = width // 2
        assert [(conv_shape(conv), conv.stride[0], conv.groups) for conv in convs(first.shortcut_branch)] == [
            ((in_channels, in_channels, 3), 2, in_channels), ((in_channels, half, 1), 1, 1)]
        assert [(conv_shape(conv), conv.stride[0], conv.groups) for conv in convs(first.main_branch)] == [
            ((in_channels, half, 1), 1, 1), ((half, half, 3), 2, half), ((half, half, 1), 1, 1)]
        for unit in rest:
            assert unit.shortcut_branch is None
            assert [conv_shape(conv) for conv in convs(unit.main_branch)] == [(half, half, 1), (half, half, 3),
                                                                              (half, half, 1)]
    unit = model.stages[0][1]
    features = torch.randn(1, 116, 6, 6)
    with torch.no_grad():
        out = unit(features)
        transformed = unit.main_branch(features[:, 58:])
    # The channel shuffle (2 groups) interleaves the halves: the kept half lands on the even channels.
    assert torch.equal(out[:, 0::2], features[:, :58]) and torch.equal(out[:, 1::2], transformed)


def test_van_large_kernel_attention():
    """Guo et al. Section 3.2: a 5x5 depthwise conv, a 7x7 depthwise conv with dilation 3, a 1x1 conv; the result
    multiplies the input. VAN-B0 has 3, 3, 5, 2 blocks of widths 32, 64, 160, 256."""
    model = build(preset_arch("van_b0")).eval()
    blocks = [module for module in model.modules() if isinstance(module, VANBlock)]
    assert [block.attention_norm.num_features for block in blocks] == [32] * 3 + [64] * 3 + [160] * 5 + [256] * 2
    for block in blocks:
        attention = block.attention
        assert isinstance(attention[2], LargeKernelAttention) and isinstance(attention[1], nn.GELU)
        channels = block.attention_norm.num_features
        assert [conv_shape(attention[0]), conv_shape(attention[3])] == [(channels, channels, 1)] * 2
        lka = attention[2]
        assert (conv_shape(lka.local), lka.local.groups, lka.local.padding) == ((channels, channels, 5), channels,
                                                                                 (2, 2))
        assert (conv_shape(lka.dilated), lka.dilated.groups, lka.dilated.dilation, lka.dilated.padding) == (
            (channels, channels, 7), channels, (3, 3), (9, 9))
        assert (conv_shape(lka.pointwise), lka.pointwise.groups) == ((channels, channels, 1), 1)
    lka = blocks[0].attention[2]
    features = torch.randn(1, 32, 12, 12)
    with torch.no_grad():
        out = lka(features)
        attention_map = lka.pointwise(lka.dilated(lka.local(features)))
    assert out.shape == features.shape and torch.allclose(out, features * attention_map)


# ------------------------------------------------------------------------------------------ tiny searches


@pytest.mark.parametrize("space", ["regnet", "resnet"])
def test_tiny_search_on_the_family_space_and_best_reads_it(capsys, tmp_path, space):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    # A parameter budget keeps ResNet's 200M-parameter corners out of a one-minute test (they are pruned untrained).
    code, out, err = run_cli(capsys, "search", "--space", space, "--data", "digits", "--epochs", "1",
                             "--proxy-resolution", "16", "--batch-size", "128", "--max-train-samples", "256",
                             "--max-params", "3M", "--trials", "2", "--sampler", "random", "--storage", storage,
                             "--study", space, "--json")
    assert code == 0, err
    assert json.loads(out)["study"] == space
    study = optuna.load_study(study_name=space, storage=storage)
    trained = [trial for trial in study.trials if trial.user_attrs.get(ATTR_TRAINED)]
    assert len(trained) == 2 and all(trial.state is optuna.trial.TrialState.COMPLETE for trial in trained)
    for trial in trained:
        arch = trial_arch(trial)
        assert cost(arch).macs == trial.user_attrs["macs"] and trial.user_attrs["params"] <= 3_000_000
        assert 0.0 <= trial.user_attrs["accuracy"] <= 1.0
        expected_stem = StemType.RESNET if space == "resnet" else StemType.CONV
        assert arch.stem is expected_stem and all(stage.block in RESNET_BLOCKS for stage in arch.stages)
    code, out, err = run_cli(capsys, "best", "--study", space, "--storage", storage, "--json")
    assert code == 0, err
    rows = json.loads(out)
    assert rows and {row["trial"] for row in rows} <= {trial.number for trial in trained}
