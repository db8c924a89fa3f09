"""Zero-cost proxies: score an untrained network from one minibatch, in seconds rather than a training run.

Every proxy answers one question the same way, ``score(name, arch, (images, labels), seed=...) -> float``,
higher meaning "expected to train to a better accuracy". The network is built from ``arch`` right after
``torch.manual_seed(seed)``, so a score is a function of the architecture, the batch and the seed. The images
are used at the size they come in (a proxy search scores at its training resolution).

    synflow    Tanaka et al. 2020, as used for NAS by Abdelfattah et al. 2021: sum over conv and linear weights of
               |w * dR/dw| where R is the sum of the outputs of the network with all weights made positive, fed
               an all-ones input. Norm layers are removed first (as Abdelfattah et al. do: a norm of a constant
               input is zero or arbitrary). Computed in float64 and returned as its natural log, which keeps the
               ranking and stays finite where the raw product of many layers would not.
    grad_norm  sum over conv and linear layers of the L2 norm of the loss gradient of their weights.
    snip       Lee et al. 2019: sum over conv and linear weights of |w * dL/dw|.
    naswot     Mellor et al. 2021: each input's binary code is which activation units are on; the kernel
               K[i, j] counts the units on which inputs i and j agree, and the score is log |det K|. Mellor et al.
               hook ReLUs; for our other activations (relu6, silu, hardswish, gelu) the code is the sign of the
               pre-activation, which is also exactly where each of them is positive. A ridge of 1e-3 on the
               diagonal keeps the log-determinant finite (and lowest) when two inputs share a code.
    jacob_cov  Mellor et al. 2020 (v1), as in Abdelfattah et al.: the eigenvalues v of the correlation matrix of the
               per-input Jacobians d(sum of outputs)/d(input); score -sum(log(v + k) + 1 / (v + k)), k = 1e-5.
    params     baseline: the parameter count (analytic, from the spec).
    macs       baseline: the multiply-adds at the architecture's resolution (analytic, from the spec).

The batch-based proxies (grad_norm, snip, naswot, jacob_cov) run the network in training mode (batch-norm batch
statistics, dropout drawn from the seeded generator), as the papers' code does.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nasscale.errors import DataError, NasscaleError, UnknownNameError
from nasscale.models.blocks import ACTIVATIONS
from nasscale.models.build import build
from nasscale.spec.arch import Arch
from nasscale.spec.cost import cost

Batch = tuple[torch.Tensor, torch.Tensor]
ProxyFunction = Callable[[Arch, torch.Tensor, torch.Tensor], float]

NASWOT_RIDGE = 1e-3
JACOBIAN_EPSILON = 1e-5
WEIGHTED_LAYERS = (nn.Conv2d, nn.Linear)
NORM_LAYERS = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm)


class ProxyError(NasscaleError):
    """A proxy could not give a finite score."""


def _fresh_model(arch: Arch) -> nn.Module:
    return build(arch)


def _weighted_layers(model: nn.Module) -> list[nn.Conv2d | nn.Linear]:
    return [module for module in model.modules() if isinstance(module, WEIGHTED_LAYERS)]


def _weight_gradient(layer: nn.Conv2d | nn.Linear) -> torch.Tensor:
    # Set by the backward pass each caller has just run: every conv and linear layer takes part in the output.
    return cast(torch.Tensor, layer.weight.grad)


def _loss_backward(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> None:
    model.train()
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(images), labels).backward()


# ---------------------------------------------------------------------------------------------------------------
# The proxies


def synflow(arch: Arch, images: torch.Tensor, labels: torch.Tensor) -> float:
    model = _without_norms(_fresh_model(arch)).double().eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.abs_()
    ones = torch.ones((1, *images.shape[1:]), dtype=torch.float64)
    model.zero_grad(set_to_none=True)
    model(ones).sum().backward()
    total = _saliency(model)
    if not math.isfinite(total) or total <= 0:
        raise ProxyError(f"synflow of {arch.arch_id} is {total} even in float64; score at a smaller resolution")
    return math.log(total)


def _without_norms(model: nn.Module) -> nn.Module:
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, NORM_LAYERS):
                setattr(parent, name, nn.Identity())
    return model


def grad_norm(arch: Arch, images: torch.Tensor, labels: torch.Tensor) -> float:
    model = _fresh_model(arch)
    _loss_backward(model, images, labels)
    with torch.no_grad():
        return sum(float(_weight_gradient(layer).norm()) for layer in _weighted_layers(model))


def snip(arch: Arch, images: torch.Tensor, labels: torch.Tensor) -> float:
    model = _fresh_model(arch)
    _loss_backward(model, images, labels)
    return _saliency(model)


def _saliency(model: nn.Module) -> float:
    """sum |w * dw| over conv and linear weights: SNIP's connection sensitivity, SynFlow's synaptic flow."""
    with torch.no_grad():
        return sum(float((layer.weight * _weight_gradient(layer)).abs().sum()) for layer in _weighted_layers(model))


def naswot(arch: Arch, images: torch.Tensor, labels: torch.Tensor) -> float:
    model = _fresh_model(arch).train()
    return activation_kernel_logdet(model, images)


def activation_kernel_logdet(model: nn.Module, images: torch.Tensor) -> float:
    """log |det K| of Mellor et al.'s binary-code kernel over the batch, for any model with our activations."""
    count = len(images)
    kernel = torch.zeros(count, count, dtype=torch.float64)

    def add_codes(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        # A pre-hook sees the input before an in-place activation overwrites it.
        codes = (inputs[0].detach().reshape(count, -1) > 0).double()
        on = codes.sum(dim=1)
        agree_on = codes @ codes.T
        # Units where both are off: total - on_i - on_j + both on.
        kernel.add_(2 * agree_on - on[:, None] - on[None, :] + codes.shape[1])

    activations = tuple(ACTIVATIONS.values())
    hooks = [module.register_forward_pre_hook(add_codes) for module in model.modules()
             if isinstance(module, activations)]
    try:
        with torch.no_grad():
            model(images)
    finally:
        for hook in hooks:
            hook.remove()
    _, logdet = torch.linalg.slogdet(kernel + NASWOT_RIDGE * torch.eye(count, dtype=torch.float64))
    return float(logdet)


def jacob_cov(arch: Arch, images: torch.Tensor, labels: torch.Tensor) -> float:
    model = _fresh_model(arch).train()
    inputs = images.clone().requires_grad_(True)
    model(inputs).sum().backward()
    jacobians = cast(torch.Tensor, inputs.grad).reshape(len(inputs), -1).double().numpy()  # set by backward()
    with np.errstate(invalid="ignore", divide="ignore"):
        correlations = np.corrcoef(jacobians)
    # A constant Jacobian has no correlation; counting it as fully correlated scores the network down.
    correlations = np.nan_to_num(correlations, nan=1.0)
    eigenvalues = np.clip(np.linalg.eigvalsh(correlations), 0.0, None)
    return float(-np.sum(np.log(eigenvalues + JACOBIAN_EPSILON) + 1.0 / (eigenvalues + JACOBIAN_EPSILON)))


def params(arch: Arch, images: torch.Tensor, labels: torch.Tensor) -> float:
    return float(cost(arch).params)


def macs(arch: Arch, images: torch.Tensor, labels: torch.Tensor) -> float:
    return float(cost(arch).macs)


PROXIES: dict[str, ProxyFunction] = {
    "synflow": synflow,
    "grad_norm": grad_norm,
    "snip": snip,
    "naswot": naswot,
    "jacob_cov": jacob_cov,
    "params": params,
    "macs": macs,
}
BASELINES = frozenset({"params", "macs"})  # analytic cost: what a proxy has to beat


def proxy_names(text: str | None = None) -> tuple[str, ...]:
    """Every proxy, or those named in a comma-separated list (checked)."""
    if text is None or not text.strip():
        return tuple(PROXIES)
    names = tuple(name.strip().replace("-", "_") for name in text.split(",") if name.strip())
    for name in names:
        check_proxy_name(name)
    return names


def check_proxy_name(name: str) -> None:
    if name not in PROXIES:
        raise UnknownNameError(f"unknown proxy {name!r}; the proxies are {', '.join(PROXIES)}")


def score(name: str, arch: Arch, batch: Batch, *, seed: int = 0) -> float:
    """The proxy ``name`` of ``arch`` on ``batch`` (images (N, C, H, W) float, labels (N,) int): higher is better.
    The network's initial weights come from ``seed``; the same inputs give the same score."""
    check_proxy_name(name)
    images, labels = _check_batch(arch, batch)
    torch.manual_seed(seed)
    value = PROXIES[name](arch, images, labels)
    if not math.isfinite(value):
        raise ProxyError(f"{name} of architecture {arch.arch_id} is not finite ({value})")
    return value


def _check_batch(arch: Arch, batch: Batch) -> Batch:
    if not isinstance(batch, tuple | list) or len(batch) != 2:
        raise DataError("a proxy batch must be a pair (images, labels)")
    images = torch.as_tensor(batch[0], dtype=torch.float32)
    labels = torch.as_tensor(batch[1], dtype=torch.int64)
    if images.ndim != 4 or images.shape[1] != arch.in_channels:
        raise DataError(f"proxy images must be (N, {arch.in_channels}, H, W) for this architecture, "
                        f"got {tuple(images.shape)}")
    if len(images) < 2 or labels.shape != (len(images),):
        raise DataError(f"a proxy batch needs at least 2 images and one label each, got {len(images)} images "
                        f"and labels of shape {tuple(labels.shape)}")
    if labels.min() < 0 or labels.max() >= arch.num_classes:
        raise DataError(f"proxy labels must lie in [0, {arch.num_classes}), got {int(labels.min())}.."
                        f"{int(labels.max())}")
    return images, labels
