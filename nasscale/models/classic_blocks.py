"""PyTorch blocks of the classic families: ResNet (basic, bottleneck, SE, pre-activation), MobileNetV1,
ShuffleNetV2, DenseNet, GoogLeNet's inception, SqueezeNet's fire, plain VGG/AlexNet/LeNet convs and VAN.

Each mirrors a cost rule of ``nasscale.spec.cost`` layer for layer and follows torchvision's module (timm's for the
pre-activation ResNets and VAN, which torchvision lacks): convolutions followed by a norm carry no bias,
unnormalised ones (plain, fire, VAN) do.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from nasscale.models.blocks import ConvNormAct, DropPath, SqueezeExcite, batch_norm, layer_norm_2d, make_activation
from nasscale.spec.channels import same_padding
from nasscale.spec.geometry import needs_projection, shuffle_splits
from nasscale.spec.norm import Norm
from nasscale.spec.vocabulary import VAN_LAYER_SCALE_INIT, Activation, PoolLayout


def make_pool(layout: PoolLayout) -> nn.Module:
    if layout.average:
        return nn.AvgPool2d(layout.kernel_size, layout.stride, layout.padding, ceil_mode=layout.ceil_mode)
    return nn.MaxPool2d(layout.kernel_size, layout.stride, layout.padding, ceil_mode=layout.ceil_mode)


def norm_activation(channels: int, activation: Activation, norm: Norm) -> nn.Sequential:
    return nn.Sequential(batch_norm(channels, norm), make_activation(activation))


# ------------------------------------------------------------------------------------------------ ResNets


class ResNetBlock(nn.Module):
    """``activation(body(x) + shortcut(x))``: the shortcut is the identity, or a strided 1x1 conv + BN where
    the shape changes; with ``use_residual`` off the block is ``activation(body(x))`` (a plain network)."""

    def __init__(self, in_channels: int, out_channels: int, body: nn.Module, *, stride: int, activation: Activation,
                 use_residual: bool, drop_path_rate: float, norm: Norm):
        super().__init__()
        self.body = body
        self.use_residual = use_residual
        project = use_residual and needs_projection(in_channels, out_channels, stride)
        self.shortcut = ConvNormAct(in_channels, out_channels, 1, stride=stride, norm=norm) if project \
            else nn.Identity()
        self.drop_path = DropPath(drop_path_rate) if use_residual else nn.Identity()
        self.activation = make_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        if self.use_residual:
            out = self.drop_path(out) + self.shortcut(x)
        return self.activation(out)


def basic_body(in_channels: int, out_channels: int, *, kernel_size: int, stride: int, activation: Activation,
               norm: Norm) -> nn.Sequential:
    return nn.Sequential(
        ConvNormAct(in_channels, out_channels, kernel_size, stride=stride, activation=activation, norm=norm),
        ConvNormAct(out_channels, out_channels, kernel_size, norm=norm),
    )


def bottleneck_body(in_channels: int, out_channels: int, *, kernel_size: int, stride: int, hidden: int, groups: int,
                    activation: Activation, squeeze_excite: nn.Module | None,
                    output_squeeze_excite: nn.Module | None, norm: Norm) -> nn.Sequential:
    """1x1 reduce, grouped kxk (carrying the stride, as torchvision's v1.5), SE (RegNetY), 1x1 expand, and SE on
    the output (SE-ResNet)."""
    layers: dict[str, nn.Module] = {
        "reduce": ConvNormAct(in_channels, hidden, 1, activation=activation, norm=norm),
        "grouped": ConvNormAct(hidden, hidden, kernel_size, stride=stride, groups=groups, activation=activation,
                               norm=norm),
    }
    if squeeze_excite is not None:
        layers["squeeze_excite"] = squeeze_excite
    layers["expand"] = ConvNormAct(hidden, out_channels, 1, norm=norm)
    if output_squeeze_excite is not None:
        layers["output_squeeze_excite"] = output_squeeze_excite
    return nn.Sequential(OrderedDict(layers))


def se_resnet_excite(channels: int, squeezed: int) -> SqueezeExcite:
    return SqueezeExcite(channels, squeezed, Activation.RELU)


class PreActBlock(nn.Module):
    """Pre-activation (ResNetV2): ``x' = act(BN(x))``; out = convs(x') + shortcut, the shortcut a strided 1x1 conv
    of x' (no norm) where the shape changes, else x itself. No activation after the addition."""

    def __init__(self, in_channels: int, out_channels: int, convs: nn.Module, *, stride: int, activation: Activation,
                 use_residual: bool, drop_path_rate: float, norm: Norm):
        super().__init__()
        self.preact = norm_activation(in_channels, activation, norm)
        self.convs = convs
        self.use_residual = use_residual
        project = use_residual and needs_projection(in_channels, out_channels, stride)
        self.projection = nn.Conv2d(in_channels, out_channels, 1, stride, bias=False) if project else None
        self.drop_path = DropPath(drop_path_rate) if use_residual else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activated = self.preact(x)
        out = self.convs(activated)
        if not self.use_residual:
            return out
        shortcut = x if self.projection is None else self.projection(activated)
        return self.drop_path(out) + shortcut


def _conv(in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size, stride, same_padding(kernel_size), groups=groups,
                     bias=False)


def preact_basic_convs(in_channels: int, out_channels: int, *, kernel_size: int, stride: int,
                       activation: Activation, norm: Norm) -> nn.Sequential:
    return nn.Sequential(_conv(in_channels, out_channels, kernel_size, stride=stride),
                         norm_activation(out_channels, activation, norm),
                         _conv(out_channels, out_channels, kernel_size))


def preact_bottleneck_convs(in_channels: int, out_channels: int, *, kernel_size: int, stride: int, hidden: int,
                            groups: int, activation: Activation, norm: Norm) -> nn.Sequential:
    return nn.Sequential(_conv(in_channels, hidden, 1), norm_activation(hidden, activation, norm),
                         _conv(hidden, hidden, kernel_size, stride=stride, groups=groups),
                         norm_activation(hidden, activation, norm), _conv(hidden, out_channels, 1))


# -------------------------------------------------------------------------------------- MobileNetV1, ShuffleNet


def depthwise_separable(in_channels: int, out_channels: int, *, kernel_size: int, stride: int,
                        activation: Activation, norm: Norm) -> nn.Sequential:
    """MobileNetV1's layer: kxk depthwise + BN + activation, 1x1 pointwise + BN + activation."""
    return nn.Sequential(
        ConvNormAct(in_channels, in_channels, kernel_size, stride=stride, groups=in_channels, activation=activation,
                    norm=norm),
        ConvNormAct(in_channels, out_channels, 1, activation=activation, norm=norm),
    )


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    batch, channels, height, width = x.shape
    x = x.view(batch, groups, channels // groups, height, width).transpose(1, 2).contiguous()
    return x.view(batch, channels, height, width)


class ShuffleUnit(nn.Module):
    """ShuffleNetV2: a shape-keeping unit splits its input in halves and transforms one; a downsampling (or
    widening) unit runs a depthwise branch and the main branch on the whole input. Concatenate, shuffle."""

    def __init__(self, in_channels: int, out_channels: int, *, kernel_size: int, stride: int, activation: Activation,
                 norm: Norm):
        super().__init__()
        half = out_channels // 2
        self.splits = shuffle_splits(in_channels, out_channels, stride)
        self.shortcut_branch = None if self.splits else nn.Sequential(
            ConvNormAct(in_channels, in_channels, kernel_size, stride=stride, groups=in_channels, norm=norm),
            ConvNormAct(in_channels, half, 1, activation=activation, norm=norm),
        )
        main_in = half if self.splits else in_channels
        self.main_branch = nn.Sequential(
            ConvNormAct(main_in, half, 1, activation=activation, norm=norm),
            ConvNormAct(half, half, kernel_size, stride=stride, groups=half, norm=norm),
            ConvNormAct(half, half, 1, activation=activation, norm=norm),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.shortcut_branch is None:
            kept, transformed = x.chunk(2, dim=1)
            out = torch.cat((kept, self.main_branch(transformed)), dim=1)
        else:
            out = torch.cat((self.shortcut_branch(x), self.main_branch(x)), dim=1)
        return channel_shuffle(out, 2)


# ----------------------------------------------------------------------------------- DenseNet, GoogLeNet, fire


class DenseLayer(nn.Module):
    """DenseNet-BC: BN, act, 1x1 conv to ``hidden``, BN, act, kxk conv to ``growth``; the input is kept and the
    new features concatenated after it."""

    def __init__(self, in_channels: int, growth: int, hidden: int, *, kernel_size: int, activation: Activation,
                 norm: Norm):
        super().__init__()
        self.body = nn.Sequential(norm_activation(in_channels, activation, norm), _conv(in_channels, hidden, 1),
                                  norm_activation(hidden, activation, norm), _conv(hidden, growth, kernel_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((x, self.body(x)), dim=1)


def dense_transition(in_channels: int, out_channels: int, activation: Activation, pool: PoolLayout,
                     norm: Norm) -> nn.Sequential:
    return nn.Sequential(norm_activation(in_channels, activation, norm), _conv(in_channels, out_channels, 1),
                         make_pool(pool))


class Inception(nn.Module):
    """GoogLeNet's module: 1x1; 1x1 then 3x3; 1x1 then kxk (torchvision builds the paper's 5x5 as 3x3); a 3x3
    stride-1 max pool then 1x1. Each conv has BN and the activation; the branches are concatenated."""

    def __init__(self, in_channels: int, branches: tuple[int, ...], *, kernel_size: int, activation: Activation,
                 norm: Norm):
        super().__init__()
        one, three_reduce, three, second_reduce, second, projection = branches
        self.one = ConvNormAct(in_channels, one, 1, activation=activation, norm=norm)
        self.three = nn.Sequential(ConvNormAct(in_channels, three_reduce, 1, activation=activation, norm=norm),
                                   ConvNormAct(three_reduce, three, 3, activation=activation, norm=norm))
        self.second = nn.Sequential(ConvNormAct(in_channels, second_reduce, 1, activation=activation, norm=norm),
                                    ConvNormAct(second_reduce, second, kernel_size, activation=activation, norm=norm))
        self.pool = nn.Sequential(nn.MaxPool2d(3, 1, 1, ceil_mode=True),
                                  ConvNormAct(in_channels, projection, 1, activation=activation, norm=norm))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((self.one(x), self.three(x), self.second(x), self.pool(x)), dim=1)


class Fire(nn.Module):
    """SqueezeNet: 1x1 squeeze conv, then 1x1 and kxk expand convs concatenated; biases, activations, no norm."""

    def __init__(self, in_channels: int, out_channels: int, squeezed: int, *, kernel_size: int,
                 activation: Activation):
        super().__init__()
        one = out_channels // 2
        self.squeeze = nn.Sequential(nn.Conv2d(in_channels, squeezed, 1), make_activation(activation))
        self.expand_one = nn.Sequential(nn.Conv2d(squeezed, one, 1), make_activation(activation))
        self.expand_wide = nn.Sequential(
            nn.Conv2d(squeezed, out_channels - one, kernel_size, padding=same_padding(kernel_size)),
            make_activation(activation))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.squeeze(x)
        return torch.cat((self.expand_one(x), self.expand_wide(x)), dim=1)


def plain_conv(in_channels: int, out_channels: int, *, kernel_size: int, padding: int,
               activation: Activation) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding),
                         make_activation(activation))


# ------------------------------------------------------------------------------------------------------ VAN


class LargeKernelAttention(nn.Module):
    """VAN's LKA: 5x5 depthwise, 7x7 depthwise with dilation 3 (the paper's decomposition of a 21x21
    convolution), 1x1; the result is an attention map that multiplies the input."""

    def __init__(self, channels: int):
        super().__init__()
        self.local = nn.Conv2d(channels, channels, 5, padding=2, groups=channels)
        self.dilated = nn.Conv2d(channels, channels, 7, padding=9, dilation=3, groups=channels)
        self.pointwise = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.pointwise(self.dilated(self.local(x)))


class VANBlock(nn.Module):
    """x + scale1 * attention(BN(x)), then + scale2 * mlp(BN(x)); the attention has its own residual:
    1x1, activation, LKA, 1x1, plus its input. The MLP: 1x1, 3x3 depthwise, activation, 1x1."""

    def __init__(self, channels: int, hidden: int, *, activation: Activation, drop_path_rate: float, norm: Norm):
        super().__init__()
        self.attention_norm = batch_norm(channels, norm)
        self.attention = nn.Sequential(nn.Conv2d(channels, channels, 1), make_activation(activation),
                                       LargeKernelAttention(channels), nn.Conv2d(channels, channels, 1))
        self.mlp_norm = batch_norm(channels, norm)
        self.mlp = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden),
                                 make_activation(activation), nn.Conv2d(hidden, channels, 1))
        self.attention_scale = nn.Parameter(torch.full((channels, 1, 1), VAN_LAYER_SCALE_INIT))
        self.mlp_scale = nn.Parameter(torch.full((channels, 1, 1), VAN_LAYER_SCALE_INIT))
        self.drop_path = DropPath(drop_path_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normed = self.attention_norm(x)
        x = x + self.drop_path(self.attention_scale * (self.attention(normed) + normed))
        return x + self.drop_path(self.mlp_scale * self.mlp(self.mlp_norm(x)))


def van_transition(in_channels: int, out_channels: int, stride: int, norm: Norm) -> nn.Sequential:
    """VAN's overlapping patch embedding between stages: 3x3 conv with bias, BN."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, stride, 1), batch_norm(out_channels, norm))


def van_closing_norm(channels: int, norm: Norm) -> nn.Module:
    return layer_norm_2d(channels, norm)
