"""The agreement check every cost test makes: the analytic count of an architecture against its built model's
parameters, fvcore's MACs and FlopCounterMode's, and the model's output shape."""

from __future__ import annotations

import torch

from nasscale.models.build import build
from nasscale.models.counts import count_parameters, example_input, fvcore_macs, torch_macs
from nasscale.spec.arch import Arch
from nasscale.spec.cost import cost


def assert_cost_matches_oracles(arch: Arch) -> None:
    analytic = cost(arch)
    model = build(arch).eval()
    example = example_input(arch, batch_size=2)
    assert count_parameters(model) == analytic.params
    assert fvcore_macs(model, example) == analytic.macs
    assert torch_macs(model, example) == analytic.macs
    with torch.no_grad():
        assert model(example).shape == (2, arch.num_classes)
