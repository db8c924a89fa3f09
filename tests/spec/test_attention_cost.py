"""Transformer stages: the analytic cost equals the built model's parameters, fvcore's MACs and FlopCounterMode / 2 on
random ViT-like and hybrid architectures at odd resolutions; the ViT presets have torchvision's counts; attention is
counted as its two matrix products; the spec refuses what cannot be built or has two forms."""

import dataclasses
import random

import pytest
import torch

from nasscale.errors import SpecError
from nasscale.models.counts import measure_counts
from nasscale.presets.registry import get_preset, preset_arch
from nasscale.spec.arch import Arch, iter_stages
from nasscale.spec.attention_cost import attention_products
from nasscale.spec.cost import cost, stage_cost
from nasscale.spec.rescaling import scale_arch
from nasscale.spec.stage import Stage
from nasscale.spec.vocabulary import Activation, BlockType, HeadType, StemType
from tests.spec.oracles import assert_cost_matches_oracles

ODD_RESOLUTIONS = (17, 23, 29, 33, 41, 47)
CONV_BLOCKS = (BlockType.MBCONV, BlockType.FUSED_MBCONV, BlockType.CONVNEXT, BlockType.BASIC)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def transformer_stage(rng: random.Random, *, stride: int, class_token: bool = False) -> Stage:
    width = rng.choice([6, 8, 12, 16, 24])
    patch = rng.choice([1, 3, 4, 5, 7]) if stride == 1 else 1
    return Stage(block=BlockType.TRANSFORMER, num_blocks=rng.randint(1, 2), out_channels=width, stride=stride,
                 expand_ratio=rng.choice([1, 2, 2.5, 4]), activation=rng.choice([Activation.GELU, Activation.RELU]),
                 num_heads=rng.choice([heads for heads in (1, 2, 3, 4) if width % heads == 0]), patch_size=patch,
                 class_token=class_token, position_embedding=rng.random() < 0.6)


def conv_stage(rng: random.Random) -> Stage:
    block = rng.choice(CONV_BLOCKS)
    fields = {"expand_ratio": rng.choice([1, 4])} if block is not BlockType.BASIC else {}
    return Stage(block=block, num_blocks=rng.randint(1, 2), out_channels=rng.choice([8, 16]),
                 stride=rng.choice([1, 2]), **fields)


def random_attention_arch(rng: random.Random) -> Arch:
    """A ViT (no stem, one transformer stage cutting the image into patches) or a hybrid (convolution stages and
    transformer stages over the map in any order), at an odd resolution; a class token and its head half the time."""
    class_token = rng.random() < 0.5
    if rng.random() < 0.4:
        stages = (transformer_stage(rng, stride=1, class_token=class_token),)
        stem, stem_channels = StemType.NONE, 0
    else:
        stages = tuple(transformer_stage(rng, stride=rng.choice([1, 2])) if rng.random() < 0.5 else conv_stage(rng)
                       for _ in range(rng.randint(1, 3)))
        stages += (transformer_stage(rng, stride=rng.choice([1, 2]), class_token=class_token),)
        stem, stem_channels = StemType.CONV, rng.choice([8, 16])
    head = HeadType.CLASS_TOKEN if class_token else rng.choice([HeadType.NORM, HeadType.CONV, HeadType.POOL])
    return Arch(stages=stages, stem=stem, stem_channels=stem_channels, head=head,
                head_channels=32 if head is HeadType.CONV else 0, resolution=rng.choice(ODD_RESOLUTIONS),
                in_channels=rng.choice([1, 3]), num_classes=rng.choice([2, 10]), dropout=0.0,
                classifier_hidden=rng.choice([(), (12,)]))


@pytest.mark.parametrize("seed", range(40))
def test_analytic_cost_equals_built_model_and_both_oracles(seed):
    arch = random_attention_arch(random.Random(seed))
    assert_cost_matches_oracles(arch)


def test_the_random_architectures_cover_every_option():
    archs = [random_attention_arch(random.Random(seed)) for seed in range(40)]
    stages = [stage for arch in archs for stage in arch.stages if stage.block is BlockType.TRANSFORMER]
    assert {stage.stride for stage in stages} == {1, 2} and {stage.class_token for stage in stages} == {False, True}
    assert {stage.position_embedding for stage in stages} == {False, True}
    assert {stage.patch_size for stage in stages} == {1, 3, 4, 5, 7} and max(stage.num_heads for stage in stages) > 1
    assert {arch.stem for arch in archs} == {StemType.NONE, StemType.CONV}
    assert all(arch.resolution % 2 for arch in archs)


# ------------------------------------------------------------------------------------------------ the presets

VIT = {  # torchvision's num_params and GFLOPS (multiply-adds) at 224 px, 1000 classes
    "vit_b_16": (86_567_656, 17.564e9),
    "vit_b_32": (88_224_232, 4.409e9),
    "vit_l_16": (304_326_632, 61.555e9),
}


@pytest.mark.parametrize("name", sorted(VIT))
def test_vit_presets_have_torchvisions_counts(name):
    params, macs = VIT[name]
    counted = cost(preset_arch(name))
    assert counted.params == params
    assert abs(counted.macs - macs) <= 0.0005e9  # published to 3 decimals
    assert get_preset(name).matches(*counted)


def test_vit_b_16_counted_by_hand():
    """torchvision's layers: conv_proj 768x3x16x16 + 768; class token 768; pos_embedding 197 x 768; per encoder layer
    two LayerNorms, in_proj 768 -> 2304, out_proj, the MLP 768 -> 3072 -> 768; the final LayerNorm; the head."""
    layer = 2 * 1536 + (768 * 2304 + 2304) + (768 * 768 + 768) + (768 * 3072 + 3072) + (3072 * 768 + 768)
    params = (768 * 3 * 256 + 768) + 768 + 197 * 768 + 12 * layer + 1536 + (768 * 1000 + 1000)
    tokens = 197
    layer_macs = tokens * 768 * 2304 + 2 * tokens * tokens * 768 + tokens * 768 * 768 + 2 * tokens * 768 * 3072
    macs = 768 * 3 * 256 * 196 + 12 * layer_macs + 768 * 1000
    assert cost(preset_arch("vit_b_16")) == (params, macs) == (86_567_656, 17_563_828_224)


@pytest.mark.parametrize("name", ["vit_b_16", "vit_b_32"])
def test_vit_presets_layers_agree_with_both_oracles(name):
    """One encoder layer at the preset's width, patch and resolution (the others repeat it exactly)."""
    arch = preset_arch(name)
    shallow = arch.replace(stages=(dataclasses.replace(arch.stages[0], num_blocks=1),))
    counts, analytic = measure_counts(shallow), cost(shallow)
    assert (counts.params_built, counts.macs_fvcore, counts.macs_torch) == (analytic.params, analytic.macs,
                                                                             analytic.macs)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(VIT))
def test_vit_presets_whole_agree_with_both_oracles(name):
    counts, analytic = measure_counts(preset_arch(name)), cost(preset_arch(name))
    assert (counts.params_built, counts.macs_fvcore, counts.macs_torch) == (analytic.params, analytic.macs,
                                                                             analytic.macs)


# ------------------------------------------------------------------------------------------------ the convention


def test_attention_is_two_matrix_products_whatever_the_heads():
    stage = Stage(block=BlockType.TRANSFORMER, num_blocks=1, out_channels=24, stride=1, patch_size=4, class_token=True)
    arch = Arch(stages=(stage,), stem=StemType.NONE, stem_channels=0, head=HeadType.CLASS_TOKEN, head_channels=0,
                resolution=32)
    tokens = 8 * 8 + 1
    costs = {heads: cost(arch.replace(stages=(dataclasses.replace(stage, num_heads=heads),))) for heads in (1, 2, 3, 6)}
    assert len(set(costs.values())) == 1
    assert attention_products(tokens, 24).macs == 2 * tokens * tokens * 24
    without_attention = 24 * 72 * tokens + 24 * 24 * tokens + 2 * 24 * 24 * tokens  # qkv, projection, MLP
    (placement,) = iter_stages(arch)
    patch = 24 * 3 * 16 * 64
    assert stage_cost(placement).macs == patch + without_attention + 2 * tokens * tokens * 24


def test_images_are_padded_to_whole_patches():
    """ceil(size / patch) patches a side: 30 px in 16 px patches is 2 x 2, as 32 px is."""
    vit = preset_arch("vit_b_16")
    assert cost(vit.replace(resolution=30)) == cost(vit.replace(resolution=32))
    assert cost(vit.replace(resolution=33)).macs > cost(vit.replace(resolution=32)).macs
    assert cost(vit.replace(resolution=1)).params == cost(vit.replace(resolution=16)).params


def test_scaling_keeps_the_head_width_and_adds_heads():
    base = preset_arch("vit_b_16")
    wider = scale_arch(base, width=1.1, depth=1.0, resolution=256)
    stage = wider.stages[0]
    assert (stage.out_channels, stage.num_heads) == (896, 14)  # round_filters(844.8) = 848 -> next multiple of 64
    assert stage.out_channels // stage.num_heads == 64
    assert scale_arch(base, width=1024 / 768).stages[0].num_heads == 16  # ViT-L's width and heads


# ------------------------------------------------------------------------------------------------ the spec's rules


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"num_heads": 5}, "stage.num_heads: must divide out_channels 24 (each head is as wide), got 5"),
        ({"stride": 2, "patch_size": 4}, "stage.patch_size: applies at stride 1 only"),
        ({"patch_size": 2}, "stage.patch_size: 2x2 patches are a stride-2 transformer stage"),
        ({"patch_size": 65}, "stage.patch_size: must be at most 64, got 65"),
        ({"kernel_size": 5}, "stage.kernel_size: does not apply to transformer blocks"),
    ],
)
def test_transformer_stage_rules(changes, message):
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Stage(**{"block": BlockType.TRANSFORMER, "num_blocks": 1, "out_channels": 24, "stride": 1} | changes)


def test_class_tokens_belong_to_the_last_stage_and_its_head():
    token = Stage(block=BlockType.TRANSFORMER, num_blocks=1, out_channels=8, stride=1, class_token=True)
    plain = Stage(block=BlockType.TRANSFORMER, num_blocks=1, out_channels=8, stride=1)
    fields = {"stem": StemType.NONE, "stem_channels": 0, "head_channels": 0, "resolution": 8}
    Arch(stages=(plain, token), head=HeadType.CLASS_TOKEN, **fields)
    with pytest.raises(SpecError, match=r"stages\[0\].class_token: only the last stage may have a class token"):
        Arch(stages=(token, token), head=HeadType.CLASS_TOKEN, **fields)
    with pytest.raises(SpecError, match="head: must be class_token: the last stage has a class token, got 'norm'"):
        Arch(stages=(token,), head=HeadType.NORM, **fields)
    with pytest.raises(SpecError, match=r"head: class_token reads the last stage's class token; stages\[0\]"):
        Arch(stages=(plain,), head=HeadType.CLASS_TOKEN, **fields)
