"""Backbones: ``build(arch, features_only=True)`` returns the maps at the end of the chosen stages with their
channels and strides listed (timm's feature_info); a classifier's weights load into it; a U-Net on a searched
encoder trains a step of segmentation; out-of-range indices are one line. The detector test (marked vision)
puts a backbone under torchvision's FasterRCNN."""

from __future__ import annotations

import pytest
import torch

from nasscale.errors import SpecError
from nasscale.models.build import Network, build
from nasscale.models.features import FeatureNetwork, default_out_indices
from nasscale.models.unet import UNet, unet
from nasscale.presets.registry import preset_arch
from nasscale.space.parsing import load_space
from nasscale.space.sampling import RandomChooser, sample

SIZE = 64


@pytest.mark.parametrize(("preset", "indices", "channels", "strides"), [
    ("resnet18", None, [64, 128, 256, 512], [4, 8, 16, 32]),
    ("efficientnet_b0", None, [16, 24, 40, 112, 320], [2, 4, 8, 16, 32]),
    ("convnext_tiny", (1, -1), [192, 768], [8, 32]),
    ("mobilenet_v3_small", (0, 2, 5, 6), [16, 24, 48, 96], [4, 8, 16, 32]),
    ("densenet121", None, [256, 512, 1024, 1024], [4, 8, 16, 32]),
    ("vgg16", (2, 4), [256, 512], [8, 32]),
])
def test_feature_maps_have_the_listed_channels_and_strides(preset, indices, channels, strides):
    torch.manual_seed(0)
    backbone = build(preset_arch(preset).replace(resolution=SIZE), features_only=True, out_indices=indices).eval()
    assert isinstance(backbone, FeatureNetwork)
    assert backbone.out_channels == channels and backbone.strides == strides
    assert [info.module for info in backbone.feature_info] == [f"stages.{info.stage}" for info in backbone.feature_info]
    with torch.no_grad():
        maps = backbone(torch.randn(2, 3, SIZE, SIZE))
    assert [tuple(tensor.shape) for tensor in maps] == [(2, width, SIZE // stride, SIZE // stride)
                                                        for width, stride in zip(channels, strides, strict=True)]


def test_a_backbone_keeps_the_stages_it_needs_under_the_classifiers_names():
    torch.manual_seed(0)
    classifier = build(preset_arch("resnet18"))
    backbone = FeatureNetwork(classifier, out_indices=(0, 1))
    assert len(backbone.stages) == 2  # stages 2 and 3 feed no output, so they are not kept
    kept = backbone.state_dict()
    assert set(kept) <= set(classifier.state_dict())
    assert all(torch.equal(tensor, classifier.state_dict()[name]) for name, tensor in kept.items())
    fresh = build(preset_arch("resnet18"), features_only=True, out_indices=(0, 1))
    missing, unexpected = fresh.load_state_dict(classifier.state_dict(), strict=False)
    assert not missing and all(name.startswith(("stages.2", "stages.3", "head.")) for name in unexpected)
    assert isinstance(build(preset_arch("resnet18")), Network)


def test_the_default_outputs_are_the_last_stage_at_each_stride():
    assert default_out_indices(preset_arch("efficientnet_b0")) == (0, 1, 2, 4, 6)
    assert default_out_indices(preset_arch("resnet50")) == (0, 1, 2, 3)


@pytest.mark.parametrize(("indices", "message"), [
    ((4,), "out_indices: 4 is out of range: the network has 4 stages (0 to 3, or -4 to -1 from the end)"),
    ((-5,), "out_indices: -5 is out of range"),
    ((1, -3), "out_indices: names a stage twice: [1, -3]"),
    ((), "out_indices: must be a non-empty list of stage numbers, got ()"),
    (("1",), "out_indices: must hold integers, got '1'"),
])
def test_bad_out_indices_are_one_line(indices, message):
    with pytest.raises(SpecError) as raised:
        build(preset_arch("resnet18"), features_only=True, out_indices=indices)
    assert str(raised.value) == message or str(raised.value).startswith(message)


def _segmentation_step(model: torch.nn.Module, images: torch.Tensor, masks: torch.Tensor) -> tuple[float, float]:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    losses = []
    for _ in range(2):
        logits = model(images)
        assert logits.shape == (images.shape[0], 3, *images.shape[-2:])
        loss = torch.nn.functional.cross_entropy(logits, masks)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses[0], losses[1]


def synthetic_masks(count: int = 4, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Images with a bright square (class 1) and a dark one (class 2) on noise (class 0)."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(count, 3, size, size, generator=generator) * 0.1
    masks = torch.zeros(count, size, size, dtype=torch.long)
    for index in range(count):
        top, left = 2 + 3 * index, 4 + 2 * index
        images[index, :, top:top + 10, left:left + 10] += 2.0
        masks[index, top:top + 10, left:left + 10] = 1
        images[index, :, 20:28, 20:28] -= 2.0
        masks[index, 20:28, 20:28] = 2
    return images, masks


def test_a_unet_on_a_searched_encoder_trains_a_segmentation_step():
    torch.manual_seed(0)
    encoder_arch = sample(load_space("mnas"), RandomChooser(3), resolution=32)
    model = unet(encoder_arch, 3, decoder_channels=None)
    images, masks = synthetic_masks()
    first, second = _segmentation_step(model, images, masks)
    assert torch.isfinite(torch.tensor([first, second])).all() and second < first
    assert all(parameter.grad is not None for parameter in model.decoder.parameters())


def test_a_unet_on_a_preset_encoder_with_its_own_widths():
    torch.manual_seed(0)
    encoder = build(preset_arch("resnet18").replace(resolution=32), features_only=True, out_indices=(0, 1, 2))
    model = UNet(encoder, 3, decoder_channels=(32, 16))
    images, masks = synthetic_masks()
    first, second = _segmentation_step(model, images, masks)
    assert second < first
    with pytest.raises(SpecError, match=r"decoder_channels: must be 2 positive widths .* got \[32\]"):
        UNet(encoder, 3, decoder_channels=(32,))
    with pytest.raises(SpecError, match="num_classes: must be a positive integer, got 0"):
        UNet(encoder, 0)


@pytest.mark.vision
def test_a_backbone_under_torchvision_faster_rcnn_trains_a_step():
    from torchvision.models.detection import FasterRCNN  # the vision environment's; the main one has none
    from torchvision.models.detection.anchor_utils import AnchorGenerator

    from nasscale.models.features import pyramid_backbone

    torch.manual_seed(0)
    arch = preset_arch("mobilenet_v3_small").replace(resolution=128)
    backbone = pyramid_backbone(build(arch, features_only=True, out_indices=(2, 5, 6)), out_channels=64)
    levels = len(backbone.body.feature_info) + 1  # the pyramid's extra pooled level
    anchors = AnchorGenerator(sizes=((16,), (32,), (64,), (128,))[:levels], aspect_ratios=((0.5, 1.0, 2.0),) * levels)
    detector = FasterRCNN(backbone, num_classes=3, min_size=128, max_size=128, rpn_anchor_generator=anchors)
    images = [torch.rand(3, 128, 128), torch.rand(3, 128, 128)]
    targets = [{"boxes": torch.tensor([[10.0, 20.0, 70.0, 90.0]]), "labels": torch.tensor([1])},
               {"boxes": torch.tensor([[30.0, 30.0, 100.0, 120.0], [5.0, 5.0, 40.0, 40.0]]),
                "labels": torch.tensor([2, 1])}]
    optimizer = torch.optim.SGD(detector.parameters(), lr=0.01, momentum=0.9)
    detector.train()
    losses = detector(images, targets)
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
    total = sum(losses.values())
    assert torch.isfinite(total)
    optimizer.zero_grad()
    total.backward()
    stem = backbone.body.stem[0].weight
    assert stem.grad is not None and stem.grad.abs().sum() > 0  # the loss reaches our backbone
    optimizer.step()
    detector.eval()
    with torch.no_grad():
        detections = detector(images)
    assert len(detections) == 2 and set(detections[0]) == {"boxes", "labels", "scores"}
