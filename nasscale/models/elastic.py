"""Elastic layers of a weight-sharing supernet (``nasscale.models.supernet``): each holds the weights of its largest
form and runs, or hands out for extraction, any smaller form the active sub-network asks for.

Width (channels, expansion, squeeze-excite): the first channels, as Once-for-All (Cai et al. 2020, section 3.3).
Kernel: OFA's kernel transformation. A smaller kernel is the centre of the next larger one (after its own
transformation) passed through a learned (k^2 x k^2) matrix shared by every channel of the layer, so the small
kernel need not be exactly the large one's centre, whose statistics differ. The matrix is stored as its difference
from the identity: it starts as a plain centre crop, and weight decay pulls it back toward one rather than toward
zero, which would erase the small kernels. The matrices are supernet-only: an extracted network holds the
transformed kernels, so its parameters are exactly ``cost(arch)``'s.

Each layer's ``state(prefix, ...)`` names its tensors as ``nasscale.models.blocks`` names the plain layer's
(``0.weight`` for a conv-norm's conv, ``1.running_mean`` for its norm), so that an extracted ``build(arch)`` loads
them strictly. ``permute_*`` reorder channels in place (``sort_channels``); ``*_importance`` are the L1 norms of the
weights that read each channel, OFA's criterion.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nasscale.models.classic_blocks import make_pool
from nasscale.spec.arch import BlockPlacement
from nasscale.spec.channels import expanded_channels, same_padding
from nasscale.spec.norm import Norm
from nasscale.spec.vocabulary import Activation, SqueezeExciteStyle, StemLayout, StemNorm

Tensor = torch.Tensor
State = dict[str, Tensor]

# Functional forms of nasscale.models.blocks.ACTIVATIONS: the same arithmetic, chosen per forward.
ACTIVATION_FUNCTIONS: dict[Activation, Callable[[Tensor], Tensor]] = {
    Activation.RELU: F.relu,
    Activation.RELU6: F.relu6,
    Activation.SILU: F.silu,
    Activation.HARDSWISH: F.hardswish,
    Activation.GELU: F.gelu,
}


def activate(x: Tensor, activation: Activation | None) -> Tensor:
    return x if activation is None else ACTIVATION_FUNCTIONS[activation](x)


def _transform_name(kernel_size: int) -> str:
    return f"to{kernel_size}"


def _centre(weight: Tensor, kernel_size: int) -> Tensor:
    start = (weight.shape[-1] - kernel_size) // 2
    return weight[..., start:start + kernel_size, start:start + kernel_size]


def _transformed(weight: Tensor, difference: Tensor) -> Tensor:
    """Each k x k kernel times (identity + difference), as OFA's F.linear over the flattened kernels."""
    flat = weight.reshape(-1, difference.shape[0])
    return (flat + F.linear(flat, difference)).reshape(weight.shape)


class ElasticConv(nn.Module):
    """A convolution of at most ``in_channels`` -> ``out_channels`` with kernels ``kernel_sizes``; depthwise when
    ``depthwise`` (then its channels are its output channels)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_sizes: Sequence[int] = (1,), *,
                 depthwise: bool = False, bias: bool = False) -> None:
        super().__init__()
        self.kernel_sizes = tuple(sorted(set(kernel_sizes), reverse=True))
        self.depthwise = depthwise
        largest = self.kernel_sizes[0]
        self.weight = nn.Parameter(torch.empty(out_channels, 1 if depthwise else in_channels, largest, largest))
        nn.init.kaiming_normal_(self.weight, mode="fan_out")  # build's initialisation of a conv this size
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.transforms = nn.ParameterDict({_transform_name(size): nn.Parameter(torch.zeros(size * size, size * size))
                                            for size in self.kernel_sizes[1:]})

    def kernel(self, out_channels: int, in_channels: int, kernel_size: int) -> Tensor:
        """The weight of the (out, in, k) form: the first channels, transformed down to ``kernel_size``."""
        if kernel_size not in self.kernel_sizes:
            raise ValueError(f"kernel {kernel_size} is not one of this layer's {self.kernel_sizes}")
        weight = self.weight[:out_channels, :1 if self.depthwise else in_channels]
        for size in self.kernel_sizes[1:]:
            if size < kernel_size:
                break
            weight = _transformed(_centre(weight, size), self.transforms[_transform_name(size)])
        return weight

    def forward(self, x: Tensor, out_channels: int, kernel_size: int, stride: int = 1,
                padding: int | None = None) -> Tensor:
        in_channels = x.shape[1]
        if self.depthwise:
            out_channels = in_channels
        bias = None if self.bias is None else self.bias[:out_channels]
        padding = same_padding(kernel_size) if padding is None else padding
        return F.conv2d(x, self.kernel(out_channels, in_channels, kernel_size), bias, stride, padding,
                        groups=in_channels if self.depthwise else 1)

    def state(self, prefix: str, out_channels: int, in_channels: int, kernel_size: int) -> State:
        state = {f"{prefix}weight": self.kernel(out_channels, in_channels, kernel_size)}
        if self.bias is not None:
            state[f"{prefix}bias"] = self.bias[:out_channels]
        return state

    def permute_output(self, order: Tensor) -> None:
        self.weight.copy_(self.weight[order])
        if self.bias is not None:
            self.bias.copy_(self.bias[order])

    def permute_input(self, order: Tensor) -> None:
        self.weight.copy_(self.weight[:, order])

    def input_importance(self) -> Tensor:
        """Per channel read: the L1 norm of the weights that read it."""
        return self.weight.abs().sum(dim=(1, 2, 3) if self.depthwise else (0, 2, 3))


class ElasticBatchNorm(nn.BatchNorm2d):
    """BatchNorm over the first channels of its input. The running statistics are sliced views, so a sub-network's
    batches update the shared statistics in place, as OFA's DynamicBatchNorm2d does; evaluation recalibrates them
    per sub-network anyway."""

    def forward(self, x: Tensor) -> Tensor:
        channels = x.shape[1]
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # a cumulative average, as nn.BatchNorm2d computes it
                factor = 1.0 / float(self.num_batches_tracked)
        running_mean = None if self.running_mean is None else self.running_mean[:channels]
        running_var = None if self.running_var is None else self.running_var[:channels]
        use_batch = self.training or running_mean is None
        return F.batch_norm(x, running_mean, running_var, self.weight[:channels], self.bias[:channels], use_batch,
                            factor, self.eps)

    def state(self, prefix: str, channels: int) -> State:
        names = ("weight", "bias", "running_mean", "running_var")
        state = {f"{prefix}{name}": getattr(self, name)[:channels] for name in names}
        return state | {f"{prefix}num_batches_tracked": self.num_batches_tracked}

    def permute(self, order: Tensor) -> None:
        for tensor in (self.weight, self.bias, self.running_mean, self.running_var):
            if tensor is not None:
                tensor.copy_(tensor[order])


def batch_norm(channels: int, norm: Norm) -> ElasticBatchNorm:
    return ElasticBatchNorm(channels, eps=norm.batch_norm_eps, momentum=norm.batch_norm_momentum)


class ElasticConvNorm(nn.Module):
    """``ConvNormAct``'s elastic form: conv (no bias), BatchNorm, the activation the sub-network asks for."""

    def __init__(self, in_channels: int, out_channels: int, kernel_sizes: Sequence[int], norm: Norm, *,
                 depthwise: bool = False) -> None:
        super().__init__()
        self.conv = ElasticConv(in_channels, out_channels, kernel_sizes, depthwise=depthwise)
        self.norm = batch_norm(out_channels, norm)

    def forward(self, x: Tensor, out_channels: int, kernel_size: int = 1, stride: int = 1,
                activation: Activation | None = None) -> Tensor:
        return activate(self.norm(self.conv(x, out_channels, kernel_size, stride)), activation)

    def state(self, prefix: str, out_channels: int, in_channels: int, kernel_size: int = 1) -> State:
        channels = in_channels if self.conv.depthwise else out_channels
        return self.conv.state(f"{prefix}0.", channels, in_channels, kernel_size) | self.norm.state(f"{prefix}1.",
                                                                                                   channels)

    def permute_output(self, order: Tensor) -> None:
        self.conv.permute_output(order)
        self.norm.permute(order)


class ElasticSqueezeExcite(nn.Module):
    """``SqueezeExcite`` over the first ``channels`` with the first ``squeezed`` squeeze channels."""

    def __init__(self, channels: int, squeezed: int) -> None:
        super().__init__()
        self.reduce = ElasticConv(channels, squeezed, bias=True)
        self.expand = ElasticConv(squeezed, channels, bias=True)

    def forward(self, x: Tensor, squeezed: int, activation: Activation, style: SqueezeExciteStyle) -> Tensor:
        hard = style is SqueezeExciteStyle.MOBILENET_V3  # make_squeeze_excite: ReLU and a hard sigmoid gate
        pooled = F.adaptive_avg_pool2d(x, 1)
        middle = activate(self.reduce(pooled, squeezed, 1), Activation.RELU if hard else activation)
        gate = self.expand(middle, x.shape[1], 1)
        return x * (F.hardsigmoid(gate) if hard else torch.sigmoid(gate))

    def state(self, prefix: str, channels: int, squeezed: int) -> State:
        return self.reduce.state(f"{prefix}reduce.", squeezed, channels, 1) | self.expand.state(
            f"{prefix}expand.", channels, squeezed, 1)

    def permute_channels(self, order: Tensor) -> None:
        self.reduce.permute_input(order)
        self.expand.permute_output(order)

    def sort_squeezed(self) -> None:
        order = _descending(self.expand.input_importance())
        self.reduce.permute_output(order)
        self.expand.permute_input(order)


def _descending(importance: Tensor) -> Tensor:
    return torch.argsort(importance, descending=True, stable=True)


def _squeezed(block: BlockPlacement) -> int:
    return block.squeezed if block.stage.se_ratio > 0 else 0


class ElasticBlock(nn.Module):
    """The body of one block position for one block type; the supernet adds the residual."""

    def forward(self, x: Tensor, block: BlockPlacement) -> Tensor:
        raise NotImplementedError

    def state(self, prefix: str, block: BlockPlacement) -> State:
        raise NotImplementedError

    def input_importance(self) -> Tensor:
        raise NotImplementedError

    def permute_input(self, order: Tensor) -> None:
        raise NotImplementedError

    def permute_output(self, order: Tensor) -> None:
        raise NotImplementedError

    def sort_hidden(self) -> None:
        """Sort the channels no other block reads (expansion, squeeze), most important first."""


class ElasticMBConv(ElasticBlock):
    """``mbconv_body``: 1x1 expand, depthwise, squeeze-excite, 1x1 projection, all elastic."""

    def __init__(self, in_channels: int, out_channels: int, hidden: int, squeezed: int, kernel_sizes: Sequence[int],
                 norm: Norm, *, fused: bool = False) -> None:
        super().__init__()
        self.fused = fused
        self.expand = ElasticConvNorm(in_channels, hidden, kernel_sizes if fused else (1,), norm)
        self.depthwise = None if fused else ElasticConvNorm(hidden, hidden, kernel_sizes, norm, depthwise=True)
        self.squeeze_excite = ElasticSqueezeExcite(hidden, squeezed) if squeezed else None
        self.project = ElasticConvNorm(hidden, out_channels, (1,), norm)

    def forward(self, x: Tensor, block: BlockPlacement) -> Tensor:
        stage = block.stage
        hidden = expanded_channels(block.in_channels, stage.expand_ratio)
        if self.depthwise is None:
            x = self.expand(x, hidden, stage.kernel_size, block.stride, stage.activation)
        else:
            x = self.expand(x, hidden, 1, 1, stage.activation)
            x = self.depthwise(x, hidden, stage.kernel_size, block.stride, stage.activation)
        if self.squeeze_excite is not None and stage.se_ratio > 0:
            x = self.squeeze_excite(x, block.squeezed, stage.activation, block.se_style)
        return self.project(x, stage.out_channels)

    def state(self, prefix: str, block: BlockPlacement) -> State:
        stage, in_channels = block.stage, block.in_channels
        hidden = expanded_channels(in_channels, stage.expand_ratio)
        expand_kernel = stage.kernel_size if self.depthwise is None else 1
        state = self.expand.state(f"{prefix}expand.", hidden, in_channels, expand_kernel)
        if self.depthwise is not None:
            state |= self.depthwise.state(f"{prefix}depthwise.", hidden, hidden, stage.kernel_size)
        if self.squeeze_excite is not None and stage.se_ratio > 0:
            state |= self.squeeze_excite.state(f"{prefix}squeeze_excite.", hidden, _squeezed(block))
        return state | self.project.state(f"{prefix}project.", stage.out_channels, hidden)

    def input_importance(self) -> Tensor:
        return self.expand.conv.input_importance()

    def permute_input(self, order: Tensor) -> None:
        self.expand.conv.permute_input(order)

    def permute_output(self, order: Tensor) -> None:
        self.project.permute_output(order)

    def sort_hidden(self) -> None:
        order = _descending(self.project.conv.input_importance())
        self.expand.permute_output(order)
        if self.depthwise is not None:
            self.depthwise.permute_output(order)
        if self.squeeze_excite is not None:
            self.squeeze_excite.permute_channels(order)
            self.squeeze_excite.sort_squeezed()
        self.project.conv.permute_input(order)


class ElasticSepConv(ElasticBlock):
    """``sepconv_body``: depthwise, squeeze-excite, 1x1 projection; its channels are its input's."""

    def __init__(self, in_channels: int, out_channels: int, squeezed: int, kernel_sizes: Sequence[int],
                 norm: Norm) -> None:
        super().__init__()
        self.depthwise = ElasticConvNorm(in_channels, in_channels, kernel_sizes, norm, depthwise=True)
        self.squeeze_excite = ElasticSqueezeExcite(in_channels, squeezed) if squeezed else None
        self.project = ElasticConvNorm(in_channels, out_channels, (1,), norm)

    def forward(self, x: Tensor, block: BlockPlacement) -> Tensor:
        stage = block.stage
        x = self.depthwise(x, block.in_channels, stage.kernel_size, block.stride, stage.activation)
        if self.squeeze_excite is not None and stage.se_ratio > 0:
            x = self.squeeze_excite(x, block.squeezed, stage.activation, block.se_style)
        return self.project(x, stage.out_channels)

    def state(self, prefix: str, block: BlockPlacement) -> State:
        stage, in_channels = block.stage, block.in_channels
        state = self.depthwise.state(f"{prefix}depthwise.", in_channels, in_channels, stage.kernel_size)
        if self.squeeze_excite is not None and stage.se_ratio > 0:
            state |= self.squeeze_excite.state(f"{prefix}squeeze_excite.", in_channels, _squeezed(block))
        return state | self.project.state(f"{prefix}project.", stage.out_channels, in_channels)

    def input_importance(self) -> Tensor:
        return self.depthwise.conv.input_importance()

    def permute_input(self, order: Tensor) -> None:
        self.depthwise.permute_output(order)
        if self.squeeze_excite is not None:
            self.squeeze_excite.permute_channels(order)
        self.project.conv.permute_input(order)

    def permute_output(self, order: Tensor) -> None:
        self.project.permute_output(order)

    def sort_hidden(self) -> None:
        if self.squeeze_excite is not None:
            self.squeeze_excite.sort_squeezed()


class ElasticConvBlock(ElasticBlock):
    """A conv block: one k x k conv, BatchNorm and activation (its state is the body's ``0.``/``1.``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_sizes: Sequence[int], norm: Norm) -> None:
        super().__init__()
        self.conv = ElasticConvNorm(in_channels, out_channels, kernel_sizes, norm)

    def forward(self, x: Tensor, block: BlockPlacement) -> Tensor:
        stage = block.stage
        return self.conv(x, stage.out_channels, stage.kernel_size, block.stride, stage.activation)

    def state(self, prefix: str, block: BlockPlacement) -> State:
        return self.conv.state(prefix, block.stage.out_channels, block.in_channels, block.stage.kernel_size)

    def input_importance(self) -> Tensor:
        return self.conv.conv.input_importance()

    def permute_input(self, order: Tensor) -> None:
        self.conv.conv.permute_input(order)

    def permute_output(self, order: Tensor) -> None:
        self.conv.permute_output(order)


class ElasticStem(nn.Module):
    """``build_stem``'s stem of a layout with BatchNorm or no norm, at the first ``stem_channels``."""

    def __init__(self, layout: StemLayout, in_channels: int, channels: int, norm: Norm) -> None:
        super().__init__()
        self.layout = layout
        self.conv = ElasticConv(in_channels, channels, (layout.kernel_size,), bias=layout.bias)
        self.norm = batch_norm(channels, norm) if layout.norm is StemNorm.BATCH else None
        self.pool = None if layout.pool is None else make_pool(layout.pool)

    def forward(self, x: Tensor, channels: int, activation: Activation) -> Tensor:
        layout = self.layout
        x = self.conv(x, channels, layout.kernel_size, layout.stride, layout.padding)
        if self.norm is not None:
            x = self.norm(x)
        if layout.activation:
            x = activate(x, activation)
        return x if self.pool is None else self.pool(x)

    def state(self, prefix: str, channels: int, in_channels: int) -> State:
        state = self.conv.state(f"{prefix}0.", channels, in_channels, self.layout.kernel_size)
        return state if self.norm is None else state | self.norm.state(f"{prefix}1.", channels)

    def permute_output(self, order: Tensor) -> None:
        self.conv.permute_output(order)
        if self.norm is not None:
            self.norm.permute(order)


class ElasticHead(nn.Module):
    """``Head`` of a conv head (1x1 conv-norm-activation to ``head_channels``) or a pool head (``head_channels``
    0): average pool, dropout, the classifier over the first features."""

    def __init__(self, features: int, head_channels: int, num_classes: int, norm: Norm) -> None:
        super().__init__()
        self.conv = ElasticConvNorm(features, head_channels, (1,), norm) if head_channels else None
        self.classifier = nn.Linear(head_channels or features, num_classes)

    def forward(self, x: Tensor, head_channels: int, activation: Activation, dropout: float) -> Tensor:
        if self.conv is not None:
            x = self.conv(x, head_channels, activation=activation)
        x = F.dropout(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1), dropout, self.training)
        return F.linear(x, self.classifier.weight[:, :x.shape[1]], self.classifier.bias)

    def state(self, prefix: str, features: int, head_channels: int) -> State:
        state: State = {}
        if self.conv is not None:
            state = self.conv.state(f"{prefix}conv.", head_channels, features)
            features = head_channels
        return state | {f"{prefix}classifier.weight": self.classifier.weight[:, :features],
                        f"{prefix}classifier.bias": self.classifier.bias}

    def input_importance(self) -> Tensor:
        return self.classifier.weight.abs().sum(0) if self.conv is None else self.conv.conv.input_importance()

    def permute_input(self, order: Tensor) -> None:
        if self.conv is None:
            self.classifier.weight.copy_(self.classifier.weight[:, order])
        else:
            self.conv.conv.permute_input(order)

    def sort_hidden(self) -> None:
        if self.conv is not None:
            order = _descending(self.classifier.weight.abs().sum(0))
            self.conv.permute_output(order)
            self.classifier.weight.copy_(self.classifier.weight[:, order])
