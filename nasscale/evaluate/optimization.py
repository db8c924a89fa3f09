"""What a training step is made of, by the recipe's names: optimizers, learning-rate schedules, losses and the
EMA of the weights (``nasscale.evaluate.settings`` names them; ``nasscale.evaluate.training`` runs them)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel

from nasscale.evaluate.settings import TrainSettings

SGD_MOMENTUM = 0.9
# TensorFlow's RMSProp as EfficientNet trains with it: decay 0.9, momentum 0.9, epsilon 1e-3.
RMSPROP_DECAY, RMSPROP_MOMENTUM, RMSPROP_EPSILON = 0.9, 0.9, 1e-3
# timm's ModelEmaV2 warm-up: the decay starts low so early, random weights fade fast, and reaches the
# recipe's value (0.9999) only after thousands of steps, which short runs never take.
EMA_WARMUP = 10


def make_optimizer(model: nn.Module, settings: TrainSettings) -> torch.optim.Optimizer:
    """Weight decay on weights only, not on one-dimensional parameters (biases, norm scales)."""
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    groups = [{"params": [p for p in trainable if p.ndim > 1], "weight_decay": settings.weight_decay},
              {"params": [p for p in trainable if p.ndim <= 1], "weight_decay": 0.0}]
    groups = [group for group in groups if group["params"]]
    if settings.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=settings.learning_rate)
    if settings.optimizer == "rmsprop":
        return TensorFlowRMSprop(groups, lr=settings.learning_rate)
    if settings.optimizer == "lamb":
        from pytorch_optimizer import Lamb  # 3 s to import: only runs that use LAMB pay it

        return Lamb(groups, lr=settings.learning_rate)
    return torch.optim.SGD(groups, lr=settings.learning_rate, momentum=SGD_MOMENTUM, nesterov=True)


class TensorFlowRMSprop(torch.optim.Optimizer):
    """RMSProp as TensorFlow computes it, which the EfficientNet recipes' learning rates assume: the mean square
    starts at one rather than zero, epsilon sits inside the square root, the learning rate is applied inside the
    momentum buffer, and weight decay is L2 on the gradient. torch's RMSprop (mean square from zero, epsilon
    outside the root) takes steps of about lr / sqrt(1 - decay) on its first updates, which at these rates
    diverges within a few steps (measured: MobileNetV2 on Fashion-MNIST, NaN at step 9). Hand-written: timm's
    RMSpropTF is this, but timm cannot be imported next to the CPU torch here (it imports torchvision)."""

    def __init__(self, params: Any, lr: float, *, decay: float = RMSPROP_DECAY, momentum: float = RMSPROP_MOMENTUM,
                 eps: float = RMSPROP_EPSILON, weight_decay: float = 0.0) -> None:
        super().__init__(params, {"lr": lr, "decay": decay, "momentum": momentum, "eps": eps,
                                  "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None if closure is None else torch.enable_grad()(closure)()
        for group in self.param_groups:
            for parameter in group["params"]:
                if parameter.grad is None:
                    continue
                gradient = parameter.grad.add(parameter, alpha=group["weight_decay"])
                state = self.state[parameter]
                if not state:
                    state["square_average"] = torch.ones_like(parameter)
                    state["momentum_buffer"] = torch.zeros_like(parameter)
                square = state["square_average"].mul_(group["decay"]).addcmul_(gradient, gradient,
                                                                               value=1 - group["decay"])
                step = gradient / square.add(group["eps"]).sqrt_()
                buffer = state["momentum_buffer"].mul_(group["momentum"]).add_(step, alpha=group["lr"])
                parameter.sub_(buffer)
        return loss


def learning_rate_factor(step: int, *, settings: TrainSettings, steps_per_epoch: int) -> float:
    """The schedule's multiple of the learning rate at optimizer step ``step`` (from 0): linear warm-up, then
    cosine to zero, constant, or exponential (``decay_rate`` every ``decay_epochs``, in steps as TF's staircase)."""
    warmup_steps = round(settings.warmup_epochs * steps_per_epoch)
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if settings.schedule == "constant":
        return 1.0
    if settings.schedule == "exponential":
        decay_steps = max(1.0, settings.decay_epochs * steps_per_epoch)
        return settings.decay_rate ** math.floor((step - warmup_steps) / decay_steps)
    progress = (step - warmup_steps) / max(1, steps_per_epoch * settings.epochs - warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * progress))


def soft_targets(labels: torch.Tensor, num_classes: int, smoothing: float) -> torch.Tensor:
    """One-hot targets with label smoothing, as ``nn.CrossEntropyLoss(label_smoothing=...)`` forms them."""
    return F.one_hot(labels, num_classes).float() * (1 - smoothing) + smoothing / num_classes


def loss_value(logits: torch.Tensor, targets: torch.Tensor, settings: TrainSettings) -> torch.Tensor:
    """The recipe's loss of a batch. ``targets`` are class indices (the fast proxy: label smoothing by torch) or
    probabilities (mixed or smoothed already). Binary cross-entropy, as ResNet strikes back trains, treats each
    class as its own yes/no and averages over batch and classes, as timm's BinaryCrossEntropy does."""
    if settings.loss == "binary-cross-entropy":
        if targets.ndim == 1:
            targets = soft_targets(targets, logits.shape[1], settings.label_smoothing)
        return F.binary_cross_entropy_with_logits(logits, targets)
    if targets.ndim == 1:
        return F.cross_entropy(logits, targets, label_smoothing=settings.label_smoothing)
    return F.cross_entropy(logits, targets)


def make_ema(model: nn.Module, settings: TrainSettings) -> AveragedModel | None:
    """The exponential moving average of the weights and of batch-norm buffers, or None without ``ema_decay``."""
    if settings.ema_decay is None:
        return None
    decay = settings.ema_decay

    def average(averaged: torch.Tensor, current: torch.Tensor, steps: torch.Tensor | int) -> torch.Tensor:
        rate = min(decay, (1 + int(steps)) / (EMA_WARMUP + int(steps)))
        return averaged * rate + current * (1 - rate)

    return AveragedModel(model, avg_fn=average, use_buffers=True)


def set_dropout(model: nn.Module, rate: float) -> None:
    """Progressive learning's dropout for the stage: every ``nn.Dropout`` of the model (the classifier's)."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = rate
