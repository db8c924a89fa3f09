"""The analytic cost equals, to the unit, the built model's parameter count, fvcore's MACs and torch's
FlopCounterMode / 2, on 200 seeded random architectures."""

import random

import pytest
import torch

from nasscale.spec.cost import cost, cost_breakdown
from nasscale.spec.random_arch import random_arch
from nasscale.spec.vocabulary import BlockType
from tests.spec.oracles import assert_cost_matches_oracles

SEEDS = range(200)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These models are tiny: on a busy machine one thread is several times faster than two fighting."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("seed", SEEDS)
def test_analytic_cost_equals_built_model_and_both_oracles(seed):
    arch = random_arch(random.Random(seed), scalable=False)
    assert_cost_matches_oracles(arch)


def test_breakdown_sums_to_total():
    arch = random_arch(random.Random(7), scalable=False)
    parts = cost_breakdown(arch)
    assert [part.name for part in parts][0] == "stem" and parts[-1].name == "head"
    assert sum(part.params for part in parts) == cost(arch).params
    assert sum(part.macs for part in parts) == cost(arch).macs


def test_random_architectures_cover_every_block_type_and_option():
    archs = [random_arch(random.Random(seed), scalable=False) for seed in SEEDS]
    stages = [stage for arch in archs for stage in arch.stages]
    assert {stage.block for stage in stages} == set(BlockType)
    assert {stage.stride for stage in stages} == {1, 2}
    assert any(stage.se_ratio > 0 for stage in stages) and any(stage.se_ratio == 0 for stage in stages)
    assert {arch.in_channels for arch in archs} == {1, 3}
    assert any(arch.resolution % 2 == 1 for arch in archs)


def test_random_architectures_cover_every_stem_head_pool_and_option():
    from nasscale.spec.vocabulary import APPLICABLE_FIELDS, HeadType, Pool, SqueezeExciteStyle, StemType

    archs = [random_arch(random.Random(seed), scalable=False) for seed in SEEDS]
    stages = [stage for arch in archs for stage in arch.stages]
    assert {arch.stem for arch in archs} == set(StemType)
    assert {arch.head for arch in archs} == set(HeadType)
    assert {arch.se_style for arch in archs} == set(SqueezeExciteStyle)
    assert {stage.pool for stage in stages if stage.stride == 2 and "pool" in APPLICABLE_FIELDS[stage.block]} == \
        set(Pool)
    assert any(not stage.same_padding for stage in stages) and any(stage.groups > 1 for stage in stages)
    assert any(len(arch.classifier_hidden) == 2 for arch in archs) and any(arch.head_pool_size > 1 for arch in archs)
    assert any(not stage.skip for stage in stages if stage.block.value.startswith(("basic", "bottleneck")))
