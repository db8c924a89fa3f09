"""Counting oracles on a built model: parameters, fvcore and torch's FlopCounterMode.

fvcore lives behind this one module. Both oracles count multiply-adds of convolutions and linear
layers only, the convention of ``nasscale.spec.cost``: fvcore's default handles for norms, pooling and
upsampling are replaced by handles that return zero (setting them to None would not stop them).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from nasscale.models.build import build
from nasscale.spec.arch import Arch
from nasscale.spec.cost import Cost

logger = logging.getLogger(__name__)

# fvcore ops that it counts by default but the MAC convention does not.
FVCORE_ZERO_OPS = (
    "aten::batch_norm",
    "aten::group_norm",
    "aten::layer_norm",
    "aten::instance_norm",
    "aten::adaptive_avg_pool2d",
    "aten::upsample_nearest2d",
    "aten::upsample_bilinear2d",
)


def _zero_handle(inputs, outputs) -> int:
    return 0


def count_parameters(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


def example_input(arch: Arch, batch_size: int = 1) -> torch.Tensor:
    return torch.zeros(batch_size, arch.in_channels, arch.resolution, arch.resolution)


def fvcore_macs(model: nn.Module, example: torch.Tensor) -> int:
    from fvcore.nn import FlopCountAnalysis

    model.eval()
    analysis = FlopCountAnalysis(model, example)
    for op in FVCORE_ZERO_OPS:
        analysis.set_op_handle(op, _zero_handle)
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    with torch.no_grad():
        return int(analysis.total()) // example.shape[0]


def torch_macs(model: nn.Module, example: torch.Tensor) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    model.eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(example)
    return counter.get_total_flops() // 2 // example.shape[0]


@dataclass(frozen=True, slots=True)
class BuiltCounts:
    params_built: int
    macs_fvcore: int
    macs_torch: int


def measure_counts(arch: Arch) -> BuiltCounts:
    """Build ``arch`` and count it with both oracles (batch 1, eval mode)."""
    model = build(arch).eval()
    example = example_input(arch)
    return BuiltCounts(count_parameters(model), fvcore_macs(model, example), torch_macs(model, example))


def count_agreement(arch: Arch, total: Cost) -> dict[str, Any]:
    """The built model's counts next to the analytic ``total``: ``nasscale cost --check``'s extra fields."""
    counts = measure_counts(arch)
    return {
        "params_built": counts.params_built,
        "macs_fvcore": counts.macs_fvcore,
        "macs_torch": counts.macs_torch,
        "counts_agree": counts.params_built == total.params and counts.macs_fvcore == total.macs == counts.macs_torch,
    }
