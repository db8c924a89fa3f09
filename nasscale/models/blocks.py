"""PyTorch building blocks. Each one mirrors a cost rule in ``nasscale.spec.cost`` layer for layer.

Conventions follow torchvision: convolutions followed by a norm carry no bias; squeeze-excite uses
1x1 convolutions with bias on an adaptive-average-pooled map; drop path is per sample. Every norm is made by
``batch_norm``, ``layer_norm`` or ``layer_norm_2d`` from the network's ``Norm`` (torchvision's ``norm_layer``).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import overload

import torch
import torch.nn.functional as F
from torch import nn

from nasscale.spec.channels import same_padding
from nasscale.spec.norm import DEFAULT_NORM, Norm
from nasscale.spec.vocabulary import CONVNEXT_LAYER_SCALE_INIT, Activation, SqueezeExciteStyle

ACTIVATIONS: dict[Activation, type[nn.Module]] = {
    Activation.RELU: nn.ReLU,
    Activation.RELU6: nn.ReLU6,
    Activation.SILU: nn.SiLU,
    Activation.HARDSWISH: nn.Hardswish,
    Activation.GELU: nn.GELU,
}


def make_activation(activation: Activation) -> nn.Module:
    module_class = ACTIVATIONS[activation]
    return module_class() if module_class is nn.GELU else module_class(inplace=True)


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW tensor (ConvNeXt's stem and downsampling)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


def batch_norm(channels: int, norm: Norm) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=norm.batch_norm_eps, momentum=norm.batch_norm_momentum)


def layer_norm(channels: int, norm: Norm) -> nn.LayerNorm:
    """Over the last dimension (channels-last tensors: ConvNeXt's block, the norm head)."""
    return nn.LayerNorm(channels, eps=norm.layer_norm_eps)


def layer_norm_2d(channels: int, norm: Norm) -> LayerNorm2d:
    return LayerNorm2d(channels, eps=norm.layer_norm_eps)


class ConvNormAct(nn.Sequential):
    """Conv (no bias) + BatchNorm + optional activation, with 'same' padding for odd kernels."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1,
                 groups: int = 1, activation: Activation | None = None, norm: Norm):
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, same_padding(kernel_size),
                      groups=groups, bias=False),
            batch_norm(out_channels, norm),
        ]
        if activation is not None:
            layers.append(make_activation(activation))
        super().__init__(*layers)


class SqueezeExcite(nn.Module):
    """Channel gating: pool, 1x1 reduce, activation, 1x1 expand, sigmoid (hard sigmoid: MobileNetV3), multiply."""

    def __init__(self, channels: int, squeezed: int, activation: Activation, *, hard_gate: bool = False):
        super().__init__()
        # Adaptive pooling (not x.mean) so that fvcore sees the op and its handle can zero it.
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(channels, squeezed, 1)
        self.activation = make_activation(activation)
        self.expand = nn.Conv2d(squeezed, channels, 1)
        self.gate = nn.Hardsigmoid() if hard_gate else nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.expand(self.activation(self.reduce(self.pool(x)))))


@overload
def make_squeeze_excite(channels: int, squeezed: int, activation: Activation, style: SqueezeExciteStyle) -> nn.Module:
    ...


@overload
def make_squeeze_excite(channels: int, squeezed: None, activation: Activation, style: SqueezeExciteStyle) -> None:
    ...


@overload
def make_squeeze_excite(channels: int, squeezed: int | None, activation: Activation,
                        style: SqueezeExciteStyle) -> nn.Module | None:
    ...


def make_squeeze_excite(channels: int, squeezed: int | None, activation: Activation,
                        style: SqueezeExciteStyle) -> nn.Module | None:
    """The SE of mbconv, fused_mbconv, sepconv and bottleneck blocks in the network's style, or None."""
    if squeezed is None:
        return None
    if style is SqueezeExciteStyle.MOBILENET_V3:
        return SqueezeExcite(channels, squeezed, Activation.RELU, hard_gate=True)
    return SqueezeExcite(channels, squeezed, activation)


class DropPath(nn.Module):
    """Stochastic depth: drops the residual branch per sample while training."""

    def __init__(self, rate: float):
        super().__init__()
        self.rate = rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"rate={self.rate}"


class ResidualBlock(nn.Module):
    """Adds the input back to ``body(x)`` (through drop path) when ``use_residual`` is set."""

    def __init__(self, body: nn.Module, *, use_residual: bool, drop_path_rate: float):
        super().__init__()
        self.body = body
        self.use_residual = use_residual
        self.drop_path = DropPath(drop_path_rate) if use_residual else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return x + self.drop_path(out) if self.use_residual else out


def mbconv_body(in_channels: int, out_channels: int, *, kernel_size: int, stride: int, hidden: int,
                squeezed: int | None, activation: Activation, norm: Norm,
                se_style: SqueezeExciteStyle = SqueezeExciteStyle.EFFICIENTNET) -> nn.Sequential:
    """Inverted residual: 1x1 expand (skipped when the width does not change), kxk depthwise, SE,
    1x1 linear projection."""
    layers: dict[str, nn.Module] = {}
    if hidden != in_channels:
        layers["expand"] = ConvNormAct(in_channels, hidden, 1, activation=activation, norm=norm)
    layers["depthwise"] = ConvNormAct(hidden, hidden, kernel_size, stride=stride, groups=hidden,
                                      activation=activation, norm=norm)
    if squeezed is not None:
        layers["squeeze_excite"] = make_squeeze_excite(hidden, squeezed, activation, se_style)
    layers["project"] = ConvNormAct(hidden, out_channels, 1, norm=norm)
    return nn.Sequential(OrderedDict(layers))


def fused_mbconv_body(in_channels: int, out_channels: int, *, kernel_size: int, stride: int, hidden: int,
                      squeezed: int | None, activation: Activation, norm: Norm,
                      se_style: SqueezeExciteStyle = SqueezeExciteStyle.EFFICIENTNET) -> nn.Sequential:
    """Fused inverted residual: kxk expand conv, SE, 1x1 projection; a single kxk conv when the
    expansion leaves the width unchanged (EfficientNetV2's expansion-1 stages)."""
    layers: dict[str, nn.Module] = {}
    if hidden == in_channels:
        layers["conv"] = ConvNormAct(in_channels, out_channels, kernel_size, stride=stride, activation=activation,
                                     norm=norm)
        if squeezed is not None:
            layers["squeeze_excite"] = make_squeeze_excite(out_channels, squeezed, activation, se_style)
        return nn.Sequential(OrderedDict(layers))
    layers["expand"] = ConvNormAct(in_channels, hidden, kernel_size, stride=stride, activation=activation, norm=norm)
    if squeezed is not None:
        layers["squeeze_excite"] = make_squeeze_excite(hidden, squeezed, activation, se_style)
    layers["project"] = ConvNormAct(hidden, out_channels, 1, norm=norm)
    return nn.Sequential(OrderedDict(layers))


def sepconv_body(in_channels: int, out_channels: int, *, kernel_size: int, stride: int,
                 squeezed: int | None, activation: Activation, norm: Norm,
                 se_style: SqueezeExciteStyle = SqueezeExciteStyle.EFFICIENTNET) -> nn.Sequential:
    """Depthwise-separable conv (MnasNet, MobileNet): kxk depthwise, SE, 1x1 linear projection."""
    layers: dict[str, nn.Module] = {
        "depthwise": ConvNormAct(in_channels, in_channels, kernel_size, stride=stride, groups=in_channels,
                                 activation=activation, norm=norm),
    }
    if squeezed is not None:
        layers["squeeze_excite"] = make_squeeze_excite(in_channels, squeezed, activation, se_style)
    layers["project"] = ConvNormAct(in_channels, out_channels, 1, norm=norm)
    return nn.Sequential(OrderedDict(layers))


class ConvNeXtBlock(nn.Module):
    """dw kxk conv, LayerNorm, Linear(C, rC), activation, Linear(rC, C), layer scale, drop path."""

    def __init__(self, channels: int, *, kernel_size: int, hidden: int, activation: Activation,
                 use_residual: bool, drop_path_rate: float, norm: Norm):
        super().__init__()
        self.depthwise = nn.Conv2d(channels, channels, kernel_size, padding=same_padding(kernel_size),
                                   groups=channels)
        self.norm = layer_norm(channels, norm)
        self.expand = nn.Linear(channels, hidden)
        self.activation = make_activation(activation)
        self.project = nn.Linear(hidden, channels)
        self.layer_scale = nn.Parameter(torch.full((channels, 1, 1), CONVNEXT_LAYER_SCALE_INIT))
        self.use_residual = use_residual
        self.drop_path = DropPath(drop_path_rate) if use_residual else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.depthwise(x).permute(0, 2, 3, 1)
        out = self.project(self.activation(self.expand(self.norm(out))))
        out = self.layer_scale * out.permute(0, 3, 1, 2)
        return x + self.drop_path(out) if self.use_residual else out


def convnext_transition(in_channels: int, out_channels: int, stride: int, norm: Norm = DEFAULT_NORM) -> nn.Sequential:
    """ConvNeXt's downsampling layer: LayerNorm, then a stride x stride conv with stride ``stride``. ``norm`` has a
    default for latency tables, which time the layer alone (eps does not change its time)."""
    return nn.Sequential(
        layer_norm_2d(in_channels, norm),
        nn.Conv2d(in_channels, out_channels, stride, stride),
    )
