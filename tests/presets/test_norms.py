"""Every preset carries its reference's normalization, and its built model's norm modules use it.

The table is the reference's own value, read from the source: torchvision 0.29.1 (``torchvision/models/...``),
timm 1.0.31 (``timm/models/...``) where torchvision lacks the model, and the authors' code for VAN. A preset missing
from the table, or a norm module built with other settings, fails."""

import pytest
import torch
from torch import nn

from nasscale.models.build import build
from nasscale.models.counts import count_parameters
from nasscale.presets.registry import PRESETS, preset_arch
from nasscale.spec.cost import cost
from nasscale.spec.norm import DEFAULT_NORM

TORCH = (1e-5, 0.1)  # nn.BatchNorm2d's defaults
NO_NORM_LAYERS = "none"

# name: ((BatchNorm eps, momentum), LayerNorm eps, zero-init of the last BN of each residual branch), or NO_NORM_LAYERS.
REFERENCE_NORMS = {
    # efficientnet.py:266 nn.BatchNorm2d, which the B0-B4 builders (771, 802, 833, 864, 900) do not override.
    **dict.fromkeys([f"efficientnet_b{index}" for index in range(5)], (TORCH, 1e-6, False)),
    # efficientnet.py:942, 979, 1016: partial(nn.BatchNorm2d, eps=0.001, momentum=0.01) (weights from TensorFlow).
    **dict.fromkeys([f"efficientnet_b{index}" for index in (5, 6, 7)], ((1e-3, 0.01), 1e-6, False)),
    # efficientnet.py:1054, 1092, 1130: partial(nn.BatchNorm2d, eps=1e-03).
    **dict.fromkeys(["efficientnetv2_s", "efficientnetv2_m", "efficientnetv2_l"], ((1e-3, 0.1), 1e-6, False)),
    # convnext.py:49 partial(nn.LayerNorm, eps=1e-6) in blocks; 114 partial(LayerNorm2d, eps=1e-6) elsewhere.
    **dict.fromkeys(["convnext_tiny", "convnext_small", "convnext_base", "convnext_large"], (TORCH, 1e-6, False)),
    # timm efficientnet.py:540 (_gen_mnasnet_a1, semnasnet_100): partial(nn.BatchNorm2d, **resolve_bn_args({})).
    "mnasnet_a1": (TORCH, 1e-6, False),
    # mnasnet.py:31 _BN_MOMENTUM = 1 - 0.9997, on every BatchNorm2d (123-140; 48-56 through _stack).
    "mnasnet_b1": ((1e-5, 1 - 0.9997), 1e-6, False),
    # mobilenetv2.py:99 norm_layer = nn.BatchNorm2d.
    "mobilenet_v2": (TORCH, 1e-6, False),
    # resnet.py:181 nn.BatchNorm2d; zero_init_residual defaults to False (172), so no zero-init (218-223).
    **dict.fromkeys(["resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d"],
                    (TORCH, 1e-6, False)),
    # timm resnet.py:1926 seresnet50 (stride in the 3x3, as ours); ResNet(zero_init_last=True) at 507 zeroes bn3 of
    # each Bottleneck (254-257), the BN before its SE.
    "se_resnet50": (TORCH, 1e-6, True),
    # timm resnetv2.py:1115 BatchNormAct2d (layers/norm_act.py:67-68: eps 1e-5, momentum 0.1); zero_init_last=False
    # (549).
    "resnetv2_50": (TORCH, 1e-6, False),
    # regnet.py:396 partial(nn.BatchNorm2d, eps=1e-05, momentum=0.1).
    **dict.fromkeys(["regnet_x_400mf", "regnet_y_400mf", "regnet_y_800mf", "regnet_y_1_6gf"], (TORCH, 1e-6, False)),
    # mobilenetv3.py:155 partial(nn.BatchNorm2d, eps=0.001, momentum=0.01).
    **dict.fromkeys(["mobilenet_v3_large", "mobilenet_v3_small"], ((1e-3, 0.01), 1e-6, False)),
    # timm efficientnet.py:640 (_gen_mobilenet_v1, mobilenetv1_100): nn.BatchNorm2d's defaults.
    "mobilenet_v1": (TORCH, 1e-6, False),
    # shufflenetv2.py:60-147 nn.BatchNorm2d(c).
    "shufflenet_v2_x1_0": (TORCH, 1e-6, False),
    # densenet.py:36, 40, 130, 171, 197 nn.BatchNorm2d(c).
    "densenet121": (TORCH, 1e-6, False),
    # googlenet.py:270 BasicConv2d: nn.BatchNorm2d(out_channels, eps=0.001), every conv but the classifier.
    "googlenet": ((1e-3, 0.1), 1e-6, False),
    # Visual-Attention-Network/VAN-Classification models/van.py: Block and OverlapPatchEmbed nn.BatchNorm2d(dim);
    # van_tiny (B0) norm_layer=partial(nn.LayerNorm, eps=1e-6) after each stage.
    "van_b0": (TORCH, 1e-6, False),
    # squeezenet.py, vgg.py (vgg16: batch_norm=False, so no nn.BatchNorm2d of line 83), alexnet.py; LeNet-5.
    **dict.fromkeys(["squeezenet1_0", "squeezenet1_1", "vgg16", "alexnet", "lenet5"], NO_NORM_LAYERS),
    # vision_transformer.py: norm_layer=partial(nn.LayerNorm, eps=1e-6), the default of EncoderBlock, Encoder and
    # VisionTransformer; no BatchNorm.
    **dict.fromkeys(["vit_b_16", "vit_b_32", "vit_l_16"], (TORCH, 1e-6, False)),
    # inception.py BasicConv2d: nn.BatchNorm2d(out_channels, eps=0.001); timm inception_resnet_v2.py BasicConv2d:
    # nn.BatchNorm2d(out_planes, eps=.001).
    **dict.fromkeys(["inception_v3", "inception_resnet_v2"], ((1e-3, 0.1), 1e-6, False)),
}


def test_every_preset_has_a_reference_norm():
    assert set(REFERENCE_NORMS) == set(PRESETS)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_carries_its_reference_norm_and_builds_every_norm_with_it(name):
    arch = preset_arch(name)
    with torch.device("meta"):  # shapes and settings only: the big presets build in a moment
        model = build(arch)
    batch_norms = [module for module in model.modules() if isinstance(module, nn.modules.batchnorm._BatchNorm)]
    layer_norms = [module for module in model.modules() if isinstance(module, nn.LayerNorm | nn.GroupNorm)]
    reference = REFERENCE_NORMS[name]
    if reference == NO_NORM_LAYERS:
        assert not batch_norms and not layer_norms and arch.norm == DEFAULT_NORM
        return
    (batch_eps, momentum), layer_eps, zero_init = reference
    assert (arch.norm.batch_norm_eps, arch.norm.batch_norm_momentum) == (batch_eps, momentum)
    assert (arch.norm.layer_norm_eps, arch.norm.zero_init_last_bn) == (layer_eps, zero_init)
    assert batch_norms or layer_norms
    assert all(type(module) is nn.BatchNorm2d for module in batch_norms)
    assert {(module.eps, module.momentum) for module in batch_norms} <= {(batch_eps, momentum)}
    assert {module.eps for module in layer_norms} <= {layer_eps}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_norm_settings_leave_params_and_macs_as_published(name):
    arch = preset_arch(name)
    plain = arch.replace(norm=DEFAULT_NORM)
    assert cost(arch) == cost(plain)
    with torch.device("meta"):
        assert count_parameters(build(arch)) == count_parameters(build(plain)) == cost(arch).params
    assert PRESETS[name].matches(*cost(arch))
