"""The name mappings without torchvision: every preset of the reference tables maps tensor for tensor, our own
export loads back bit for bit, and a checkpoint of another architecture, class count or layout is refused with one
line naming the first tensor that does not fit, the model left as it was."""

from __future__ import annotations

import collections

import pytest
import torch

from nasscale.errors import InterchangeError, UnknownNameError
from nasscale.models.build import build
from nasscale.presets.registry import PRESETS, preset_arch
from nasscale.space.parsing import load_space
from nasscale.space.sampling import RandomChooser, sample
from nasscale.weights import NO_COUNTERPART, REFERENCES, export_weights, load_reference_weights, reference_for
from nasscale.weights.references import match_preset
from nasscale.weights.transfer import checkpoint_classes, tensor_pairs

PAIRINGS = [(preset, source) for source, table in REFERENCES.items() for preset in table]


def meta_model(preset: str, **changes):
    """The preset's model without memory: names and shapes are all a mapping needs."""
    with torch.device("meta"):
        return build(preset_arch(preset).replace(**changes))


def small(preset: str, seed: int = 0, **changes):
    torch.manual_seed(seed)
    return build(preset_arch(preset).replace(**changes)).eval()


@pytest.mark.parametrize(("preset", "source"), PAIRINGS, ids=[f"{source}-{preset}" for preset, source in PAIRINGS])
def test_every_tensor_of_every_referenced_preset_has_exactly_one_counterpart(preset, source):
    model = meta_model(preset)
    reference = reference_for(preset, source)
    pairs = tensor_pairs(model, reference.rules(model.arch), what=preset)
    assert sorted(pair.ours for pair in pairs) == sorted(model.state_dict())
    theirs = [pair.theirs for pair in pairs]
    assert len(set(theirs)) == len(theirs)  # no two of ours onto one of theirs
    assert not any(name.startswith(reference.ignored) for name in theirs if reference.ignored)


def test_every_preset_has_a_reference_or_a_reason():
    # A new preset needs a row in nasscale/weights/references.py: its reference model, or why it has none.
    unmapped = [name for name in PRESETS
                if not any(name in table for table in REFERENCES.values()) and name not in NO_COUNTERPART]
    assert not unmapped, f"presets with neither a reference nor a reason: {unmapped}"
    assert set(NO_COUNTERPART) <= set(PRESETS)


# One of each kind of rule: renamed, reshaped (flat, pointwise), versioned, with skipped tensors, of one tensor (a
# ViT's class token). The vision tests round-trip every pairing through the reference models themselves.
ROUND_TRIPS = [("resnet18", "torchvision"), ("efficientnet_b0", "torchvision"), ("mnasnet_b1", "torchvision"),
               ("googlenet", "torchvision"), ("convnext_tiny", "timm"), ("resnetv2_50", "timm"),
               ("mobilenet_v1", "timm"), ("vit_b_32", "torchvision"), ("inception_v3", "torchvision"),
               ("inception_resnet_v2", "timm")]


@pytest.mark.parametrize(("preset", "source"), ROUND_TRIPS,
                         ids=[f"{source}-{preset}" for preset, source in ROUND_TRIPS])
def test_our_export_loads_back_bit_for_bit(preset, source):
    original = small(preset, seed=1)
    exported = export_weights(original, target=source, preset=preset)
    copy = load_reference_weights(small(preset, seed=2), exported, source=source)  # the preset found from the arch
    for name, tensor in original.state_dict().items():
        assert torch.equal(copy.state_dict()[name], tensor), name
        assert copy.state_dict()[name].dtype == tensor.dtype
    assert all(tensor.data_ptr() != copy.state_dict()[name].data_ptr() for name, tensor in
               original.state_dict().items() if tensor.numel())  # copies, not views


def test_layouts_that_differ_are_reshaped_both_ways():
    model = small("convnext_tiny")
    exported = export_weights(model, target="timm")
    assert exported["stages.0.blocks.0.gamma"].shape == (96,)  # timm's layer scale; ours is (96, 1, 1)
    assert model.state_dict()["stages.0.0.layer_scale"].shape == (96, 1, 1)
    exported = export_weights(small("resnetv2_50"), target="timm")
    assert exported["head.fc.weight"].shape == (1000, 2048, 1, 1) and exported["head.fc.bias"].shape == (1000,)


def test_mnasnet_exports_the_version_torchvision_checks():
    exported = export_weights(small("mnasnet_b1"), target="torchvision")
    assert isinstance(exported, collections.OrderedDict) and exported._metadata == {"": {"version": 2}}


def test_googlenet_skips_the_auxiliary_heads_of_a_training_checkpoint():
    exported = export_weights(small("googlenet"), target="torchvision")
    exported["aux1.conv.conv.weight"] = torch.zeros(128, 512, 1, 1)
    exported["aux2.fc2.bias"] = torch.zeros(1000)
    load_reference_weights(small("googlenet", seed=3), exported, source="torchvision")


def test_inception_v3_skips_the_auxiliary_classifier_of_a_training_checkpoint():
    exported = export_weights(small("inception_v3"), target="torchvision")
    assert not any(name.startswith("AuxLogits.") for name in exported)
    exported["AuxLogits.conv0.conv.weight"] = torch.zeros(128, 768, 1, 1)
    exported["AuxLogits.fc.bias"] = torch.zeros(1000)
    load_reference_weights(small("inception_v3", seed=3), exported, source="torchvision")


def test_a_vit_exports_its_top_level_tensors_in_the_references_order():
    """Our patch embedding holds the class token and the position embedding, which torchvision keeps on its top
    module and on its encoder, with conv_proj between them; timm keeps both on its top module, before
    patch_embed. Rules of one tensor put each where the reference's state dict has it."""
    model = meta_model("vit_b_32")
    assert list(export_weights(model, target="torchvision"))[:4] == [
        "class_token", "conv_proj.weight", "conv_proj.bias", "encoder.pos_embedding"]
    assert list(export_weights(model, target="timm"))[:4] == [
        "cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias"]
    exported = export_weights(model, target="torchvision")
    assert exported["encoder.layers.encoder_layer_11.self_attention.in_proj_weight"].shape == (3 * 768, 768)
    assert list(exported)[-4:] == ["encoder.ln.weight", "encoder.ln.bias", "heads.head.weight", "heads.head.bias"]


def test_a_vit_checkpoint_of_another_resolution_is_refused_on_its_position_embedding():
    exported = export_weights(meta_model("vit_b_32", resolution=384), target="torchvision")
    exported = {name: torch.zeros(tensor.shape) for name, tensor in exported.items()}
    message = _refusal(small("vit_b_32"), exported, source="torchvision")
    assert "tensor encoder.pos_embedding has shape (1, 145, 768) where this network has (1, 50, 768)" in message


def _refusal(model, state_dict, **options) -> str:
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    with pytest.raises(InterchangeError) as raised:
        load_reference_weights(model, state_dict, **options)
    message = str(raised.value)
    assert "\n" not in message
    assert all(torch.equal(before[name], tensor) for name, tensor in model.state_dict().items())  # untouched
    return message


def test_a_checkpoint_of_another_family_is_refused():
    resnet = export_weights(small("resnet18"), target="torchvision")
    message = _refusal(small("efficientnet_b0"), resnet, source="torchvision")
    assert "efficientnet_b0 <-> torchvision efficientnet_b0: not a checkpoint of this network" in message
    assert "features.0.0.weight" in message


def test_a_deeper_or_shallower_sibling_is_refused_naming_the_first_tensor():
    resnet34 = export_weights(small("resnet34"), target="torchvision")
    message = _refusal(small("resnet18"), resnet34, source="torchvision")
    assert "unexpected tensor layer1.2.conv1.weight" in message
    resnet18 = export_weights(small("resnet18"), target="torchvision")
    message = _refusal(small("resnet34"), resnet18, source="torchvision")
    assert "tensor layer1.2.conv1.weight is missing (our stages.0.2.body.0.0.weight)" in message


def test_a_wider_sibling_is_refused_on_the_first_shape():
    b2 = export_weights(small("efficientnet_b2"), target="timm")
    message = _refusal(small("efficientnet_b1"), b2, source="timm")
    assert "tensor conv_stem.weight has shape (32, 3, 3, 3)" not in message  # the stems agree
    assert "has shape" in message and "where this network has" in message


def test_a_checkpoint_of_another_class_count_is_refused_on_the_classifier():
    exported = export_weights(small("resnet18", num_classes=10), target="torchvision")
    message = _refusal(small("resnet18"), exported, source="torchvision")
    assert "tensor fc.weight has shape (10, 512) where this network has (1000, 512) (our head.classifier.weight)" \
        in message
    assert checkpoint_classes(exported, preset_arch("resnet18"), source="torchvision", preset="resnet18") == 10


def test_one_missing_extra_or_reshaped_tensor_is_named():
    exported = export_weights(small("mobilenet_v3_small"), target="torchvision")
    missing = dict(exported)
    del missing["features.3.block.1.1.running_var"]
    assert "tensor features.3.block.1.1.running_var is missing" in \
        _refusal(small("mobilenet_v3_small"), missing, source="torchvision")
    extra = dict(exported) | {"features.99.weight": torch.zeros(1)}
    assert "unexpected tensor features.99.weight (1 in all)" in \
        _refusal(small("mobilenet_v3_small"), extra, source="torchvision")
    reshaped = dict(exported) | {"features.0.0.weight": torch.zeros(16, 3, 5, 5)}
    assert "tensor features.0.0.weight has shape (16, 3, 5, 5) where this network has (16, 3, 3, 3)" in \
        _refusal(small("mobilenet_v3_small"), reshaped, source="torchvision")


def test_a_network_of_another_layout_is_refused():
    arch = sample(load_space("mnas"), RandomChooser(0), num_classes=10, resolution=64)
    assert match_preset(arch) is None
    model = build(arch)
    with pytest.raises(InterchangeError, match="is no referenced preset's layout"):
        export_weights(model, target="torchvision")
    exported = export_weights(small("efficientnet_b0"), target="torchvision")
    message = _refusal(model, exported, source="torchvision", preset="efficientnet_b0")
    assert f"the model (arch {arch.arch_id}) is not efficientnet_b0's layout" in message
    message = _refusal(small("efficientnet_b1"), exported, source="torchvision", preset="efficientnet_b0")
    assert "is not efficientnet_b0's layout" in message


def test_the_preset_is_found_whatever_the_class_count_resolution_and_dropout():
    assert match_preset(preset_arch("resnet50").replace(num_classes=7, resolution=160, dropout=0.3)) == "resnet50"
    assert match_preset(preset_arch("efficientnet_b3")) == "efficientnet_b3"
    assert match_preset(preset_arch("mobilenet_v2")) == "mobilenet_v2"


def test_unknown_sources_and_missing_counterparts_say_what_exists():
    with pytest.raises(UnknownNameError, match="unknown weights source 'keras'; one of torchvision, timm"):
        reference_for("resnet18", "keras")
    with pytest.raises(UnknownNameError, match="torchvision has no counterpart of preset resnetv2_50; resnetv2_50 "
                                               "maps to timm"):
        reference_for("resnetv2_50", "torchvision")
    with pytest.raises(UnknownNameError, match=r"timm has no counterpart of preset lenet5 \(neither library"):
        reference_for("lenet5", "timm")
    with pytest.raises(UnknownNameError, match="unknown preset 'resnet9'"):
        reference_for("resnet9", "timm")
    with pytest.raises(InterchangeError, match="must be built by nasscale.build"):
        load_reference_weights(torch.nn.Linear(2, 2), {}, source="timm")
