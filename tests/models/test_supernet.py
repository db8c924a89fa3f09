"""The weight-sharing supernet: its sub-networks are exactly a space's architectures, each runs as its extracted plain
network does and costs what ``cost`` says, anything else is refused in one line, and sorting channels keeps the
full-width function."""

from __future__ import annotations

import dataclasses
import random

import pytest
import torch

from nasscale.errors import SpecError
from nasscale.evaluate.supernet_training import supernet_choices
from nasscale.models.counts import count_parameters, torch_macs
from nasscale.models.elastic import ElasticBatchNorm, ElasticConv, ElasticMBConv
from nasscale.models.supernet import Subnets, Supernet, extract, sort_channels
from nasscale.space.deployment import at_resolution
from nasscale.space.extent import space_size
from nasscale.space.parsing import load_space
from nasscale.space.sampling import RandomChooser, enumerate_space, sample
from nasscale.spec.arch import Arch
from nasscale.spec.cost import cost
from nasscale.spec.vocabulary import BlockType

# (space, deployed resolution or None for the space's own): tiny at its 24 and 32, mnas at two small sizes.
DEPLOYMENTS = [("tiny", None), ("mnas", 32), ("mnas", 64)]


@pytest.fixture(autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _space(name: str, resolution: int | None):
    space = load_space(name)
    return space if resolution is None else at_resolution(space, resolution)


def _supernet(name: str, resolution: int | None = None, *, seed: int = 0) -> Supernet:
    torch.manual_seed(seed)
    supernet = Supernet(supernet_choices(_space(name, resolution), in_channels=1, num_classes=10))
    _perturb(supernet)
    return supernet.eval()


def _perturb(supernet: Supernet) -> None:
    """Weights no initialisation gives, so that a misplaced tensor shows: learned kernel transformations, norms
    with statistics of their own."""
    with torch.no_grad():
        for module in supernet.modules():
            if isinstance(module, ElasticConv):
                for matrix in module.transforms.values():
                    matrix.normal_(0, 0.1)
                if module.bias is not None:
                    module.bias.normal_(0, 0.1)
            elif isinstance(module, ElasticBatchNorm):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.1)
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 1.5)


def _samples(name: str, resolution: int | None, count: int, seed: int = 0) -> list[Arch]:
    chooser = RandomChooser(seed)
    return [sample(_space(name, resolution), chooser, in_channels=1, num_classes=10) for _ in range(count)]


# ---------------------------------------------------------------------------------------------------------------
# Sub-networks are the space's architectures


def test_the_subnetworks_of_tiny_are_exactly_its_architectures():
    space = load_space("tiny")
    subnets = Subnets(supernet_choices(space, in_channels=1, num_classes=10))
    expected = {arch.arch_id for arch in enumerate_space(space, in_channels=1, num_classes=10)}
    assert {arch.arch_id for arch in subnets} == expected
    assert len(subnets) == len(expected) == space_size(space) == 2048


def test_each_stage_of_mnas_offers_exactly_what_the_space_does():
    space = load_space("mnas")
    subnets = Subnets(supernet_choices(space, in_channels=1, num_classes=10))
    for index, stage_space in enumerate(space.stages):
        alone = dataclasses.replace(space, stages=(stage_space,))  # a one-stage space lists that stage's choices
        offered = {arch.stages[0] for arch in enumerate_space(alone)}
        assert set(subnets.candidates[index]) == offered, index
    assert len(subnets) == space_size(space)
    for arch in _samples("mnas", None, 200):
        subnets.check(arch)


def test_elastic_layers_span_the_space_and_no_more():
    supernet = _supernet("tiny")
    sepconv, mbconv = (supernet.blocks_of(0, block)[0] for block in (BlockType.SEPCONV, BlockType.MBCONV))
    assert sepconv.depthwise.conv.kernel_sizes == mbconv.depthwise.conv.kernel_sizes == (5, 3)
    assert isinstance(mbconv, ElasticMBConv) and mbconv.expand.conv.weight.shape[0] == 48  # 16 channels x 3
    assert len(supernet.blocks_of(1, BlockType.CONV)) == len(supernet.blocks_of(1, BlockType.FUSED_MBCONV)) == 2
    assert supernet.widths == ((8, 16), (8, 16), (16, 32))
    assert supernet.head.classifier.weight.shape == (10, 128)
    largest, smallest = supernet.subnets.largest(), supernet.subnets.smallest()
    assert (largest.resolution, largest.stem_channels, largest.head_channels) == (32, 16, 128)
    assert [(stage.block, stage.num_blocks, stage.out_channels, stage.kernel_size) for stage in largest.stages] == [
        (BlockType.MBCONV, 1, 16, 5), (BlockType.FUSED_MBCONV, 2, 32, 5)]
    assert [(stage.block, stage.out_channels, stage.kernel_size) for stage in smallest.stages] == [
        (BlockType.SEPCONV, 8, 3), (BlockType.CONV, 16, 3)]
    assert cost(smallest).macs < cost(largest).macs


@pytest.mark.parametrize(("change", "field"), [
    (lambda arch: _stage(arch, 0, kernel_size=7), "stages[0].kernel_size"),
    (lambda arch: _stage(arch, 1, out_channels=24), "stages[1].out_channels"),
    (lambda arch: _stage(arch, 1, num_blocks=3), "stages[1].num_blocks"),
    (lambda arch: _stage(arch, 1, block=BlockType.MBCONV), "stages[1].block"),
    (lambda arch: _stage(arch, 0, expand_ratio=6), "stages[0].expand_ratio"),
    (lambda arch: _stage(arch, 1, se_ratio=0.25), "stages[1].se_ratio"),
    (lambda arch: arch.replace(resolution=28), "resolution"),
    (lambda arch: arch.replace(stem_channels=12), "stem_channels"),
    (lambda arch: arch.replace(num_classes=5), "num_classes"),
    (lambda arch: arch.replace(stages=arch.stages[:1]), "stages"),
])
def test_an_arch_outside_the_space_is_refused_naming_the_field(change, field):
    supernet = _supernet("tiny")
    outside = change(supernet.subnets.largest())
    for refuse in (supernet.set_active, lambda arch: extract(supernet, arch), supernet.subnets.check):
        with pytest.raises(SpecError) as caught:
            refuse(outside)
        assert caught.value.path == field and "\n" not in str(caught.value)
    assert supernet.active == supernet.subnets.largest()


def _stage(arch: Arch, index: int, **changes) -> Arch:
    stages = list(arch.stages)
    stages[index] = dataclasses.replace(stages[index], **changes)
    return arch.replace(stages=tuple(stages))


def test_a_space_without_elastic_blocks_is_refused_in_one_line():
    with pytest.raises(SpecError) as caught:
        supernet_choices(load_space("resnet"))
    assert caught.value.path.endswith(".block") and "no elastic form" in str(caught.value)


# ---------------------------------------------------------------------------------------------------------------
# Sub-networks run as their extracted networks, which cost what cost() says


@pytest.mark.parametrize(("name", "resolution"), DEPLOYMENTS)
def test_a_subnetwork_computes_what_its_extracted_network_does(name, resolution):
    supernet = _supernet(name, resolution)
    archs = [supernet.subnets.largest(), supernet.subnets.smallest(), *_samples(name, resolution, 4)]
    assert len({arch.resolution for arch in archs}) == (2 if name == "tiny" else 1)
    torch.manual_seed(1)
    for arch in archs:
        images = torch.randn(2, 1, arch.resolution, arch.resolution)
        network = extract(supernet, arch).eval()
        with torch.no_grad(), supernet.activated(arch):
            expected = supernet(images)
        with torch.no_grad():
            torch.testing.assert_close(network(images), expected, rtol=0, atol=1e-5)
        total = cost(arch)
        assert count_parameters(network) == total.params
        assert torch_macs(network, images[:1]) == total.macs
    assert supernet.active == supernet.subnets.largest()  # activated() put the largest back


def test_extraction_copies_so_the_supernet_keeps_its_weights():
    supernet = _supernet("tiny")
    arch = supernet.subnets.smallest()
    network = extract(supernet, arch)
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.add_(1.0)
    assert torch.equal(extract(supernet, arch).state_dict()["stem.0.weight"], supernet.stem.conv.weight[:8])


def test_a_smaller_kernel_starts_as_the_centre_and_learns_its_own_transformation():
    conv = ElasticConv(4, 6, (3, 5, 7))
    centre = conv.weight[:, :, 2:5, 2:5]
    assert torch.equal(conv.kernel(6, 4, 3), centre) and conv.kernel(2, 3, 7).shape == (2, 3, 7, 7)
    with torch.no_grad():
        conv.transforms["to5"].normal_(0, 0.1)  # 7 -> 5 feeds 5 -> 3: OFA's chain
    assert not torch.equal(conv.kernel(6, 4, 3), centre)
    with pytest.raises(ValueError):
        conv.kernel(6, 4, 1)


def test_a_sub_network_trains_its_slices_and_its_kernel_transformation():
    supernet = _supernet("tiny").train()
    arch = _stage(supernet.subnets.smallest(), 0, kernel_size=3)
    with supernet.activated(arch):
        supernet(torch.randn(4, 1, arch.resolution, arch.resolution)).sum().backward()
    depthwise = supernet.blocks_of(0, BlockType.SEPCONV)[0].depthwise.conv
    assert depthwise.transforms["to3"].grad.abs().sum() > 0
    assert depthwise.weight.grad[:8].abs().sum() > 0 and depthwise.weight.grad[8:].abs().sum() == 0
    assert supernet.blocks_of(0, BlockType.MBCONV)[0].expand.conv.weight.grad is None  # another block type's


# ---------------------------------------------------------------------------------------------------------------
# Sorting channels


def _full_width(subnets: Subnets, rng: random.Random) -> Arch:
    """A random sub-network that uses every channel of the layers it runs: widest stem, stages, head and
    expansion; any kernel, depth, block type, squeeze-excite and resolution."""
    largest = subnets.largest()
    stages = []
    for candidates in subnets.candidates:
        widest = max(stage.out_channels for stage in candidates)
        expansion = {stage.block: max(other.expand_ratio for other in candidates if other.block is stage.block)
                     for stage in candidates}
        stages.append(rng.choice([stage for stage in candidates if stage.out_channels == widest
                                  and stage.expand_ratio == expansion[stage.block]]))
    return largest.replace(stages=tuple(stages), resolution=rng.choice(subnets.choices.resolution))


@pytest.mark.parametrize(("name", "resolution"), [("tiny", None), ("mnas", 32)])
def test_sort_channels_keeps_the_full_width_function(name, resolution):
    supernet = _supernet(name, resolution)
    rng = random.Random(0)
    archs = [supernet.subnets.largest(), *(_full_width(supernet.subnets, rng) for _ in range(6))]
    torch.manual_seed(2)
    inputs = [torch.randn(2, 1, arch.resolution, arch.resolution) for arch in archs]
    before = [_output(supernet, arch, images) for arch, images in zip(archs, inputs, strict=True)]
    weights = {name: tensor.clone() for name, tensor in supernet.state_dict().items()}
    sort_channels(supernet)
    for arch, images, expected in zip(archs, inputs, before, strict=True):
        torch.testing.assert_close(_output(supernet, arch, images), expected, rtol=1e-4, atol=1e-5)
    changed = [name for name, tensor in supernet.state_dict().items() if not torch.equal(tensor, weights[name])]
    assert any("stem" in name for name in changed) and any("project" in name for name in changed)


def _output(supernet: Supernet, arch: Arch, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad(), supernet.activated(arch):
        return supernet(images)


def test_sorted_channels_put_the_most_important_first():
    supernet = _supernet("tiny")
    sort_channels(supernet)
    block = supernet.blocks_of(1, BlockType.FUSED_MBCONV)[0]
    importance = block.project.conv.input_importance()  # what reads each expanded channel
    assert torch.all(importance[:-1] >= importance[1:])
    head = supernet.head.classifier.weight.abs().sum(0)
    assert torch.all(head[:-1] >= head[1:])
