"""Batch augmentation of a recipe, on the training device: kornia's RandAugment / TrivialAugment and random
erasing, kornia's CutMix, and MixUp. Every random draw comes from torch's global generator, whose state a
checkpoint keeps, so a resumed run augments exactly as an uninterrupted one.

Images are float (N, C, H, W) in [0, 1]; targets come back as class probabilities (N, num_classes) when
batches are mixed, else as the class indices they came in as.
"""

from __future__ import annotations

from dataclasses import dataclass

import kornia.augmentation as augmentation
import torch
from kornia.augmentation.auto import RandAugment, TrivialAugment
from torch import nn

from nasscale.evaluate.optimization import soft_targets
from nasscale.evaluate.settings import TrainSettings

# kornia's RandAugment magnitude m is an integer strictly inside (0, 30), 30 being each operation's largest; the
# recipes' magnitudes are on the papers' scale (TensorFlow's and timm's levels), where 10 is the largest.
KORNIA_MAGNITUDE_PER_LEVEL = 3
KORNIA_MAGNITUDE_RANGE = (1, 29)
POLICY_GROUP = 8  # images that share one draw of RandAugment's operations
# timm's Mixup: with both mixup and cutmix on, each batch takes one of them with this probability for cutmix.
CUTMIX_SHARE = 0.5


@dataclass(frozen=True, slots=True)
class StageAugmentation:
    """What one stage of training does to a batch (``magnitude`` and ``mixup`` ramp in progressive learning)."""

    settings: TrainSettings
    num_classes: int
    magnitude: float
    mixup: float
    policy: nn.Module | None
    cutmix: nn.Module | None

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.policy is not None:
            images = _augmented(self.policy, images)
        choice = _mix_choice(self.mixup, self.settings.cutmix)
        if choice == "mixup":
            return _mixup(images, labels, self.mixup, self.num_classes, self.settings.label_smoothing)
        if choice == "cutmix" and self.cutmix is not None:  # built whenever settings.cutmix > 0
            return _cutmix(self.cutmix, images, labels, self.num_classes, self.settings.label_smoothing)
        return images, labels


def _augmented(policy: nn.Module, images: torch.Tensor) -> torch.Tensor:
    # kornia's RandAugment picks its operations once per call: the whole batch inverted, say, which shifts
    # batch norm's statistics with it and derails training (measured: Fashion-MNIST loss from 2.3 up to 6).
    # The papers pick per image; groups of POLICY_GROUP images come close at a sixteenth of the calls.
    return torch.cat([_augmented_group(policy, group) for group in images.split(POLICY_GROUP)])


def _augmented_group(policy: nn.Module, images: torch.Tensor) -> torch.Tensor:
    if images.shape[1] != 1:
        return policy(images).clamp_(0, 1)
    # kornia's colour operations (saturation, hue) take RGB: a grayscale image goes through as three equal
    # channels, which those operations leave equal, and comes back as their mean.
    rgb = images.expand(-1, 3, -1, -1).contiguous()
    return policy(rgb).clamp_(0, 1).mean(1, keepdim=True)


def _cutmix(cutmix: nn.Module, images: torch.Tensor, labels: torch.Tensor, num_classes: int,
            smoothing: float) -> tuple[torch.Tensor, torch.Tensor]:
    mixed, mixing = cutmix(images, labels)
    # kornia's rows: (label kept, label pasted, share of the image kept), lambda from the box's true area.
    kept, pasted, share = mixing[0, :, 0].long(), mixing[0, :, 1].long(), mixing[0, :, 2:3]
    targets = (share * soft_targets(kept, num_classes, smoothing)
               + (1 - share) * soft_targets(pasted, num_classes, smoothing))
    return mixed, targets


def stage_augmentation(settings: TrainSettings, num_classes: int, *, magnitude: float,
                       mixup: float) -> StageAugmentation | None:
    """The stage's augmentation, or None when it would leave every batch as it is (the fast proxy)."""
    steps: list[nn.Module] = []
    if settings.augment == "randaugment" and magnitude > 0:
        low, high = KORNIA_MAGNITUDE_RANGE
        steps.append(RandAugment(n=settings.augment_ops,
                                 m=min(high, max(low, round(magnitude * KORNIA_MAGNITUDE_PER_LEVEL)))))
    elif settings.augment == "trivialaugment":
        steps.append(TrivialAugment())
    if settings.random_erasing > 0:
        steps.append(augmentation.RandomErasing(p=settings.random_erasing))
    cutmix = (augmentation.RandomCutMixV2(beta=settings.cutmix, use_correct_lambda=True, p=1.0,
                                          data_keys=["input", "class"]) if settings.cutmix > 0 else None)
    if not steps and cutmix is None and mixup <= 0:
        return None
    policy = nn.Sequential(*steps) if steps else None
    return StageAugmentation(settings, num_classes, magnitude, mixup, policy, cutmix)


def _mix_choice(mixup: float, cutmix: float) -> str | None:
    if mixup > 0 and cutmix > 0:
        return "cutmix" if float(torch.rand(())) < CUTMIX_SHARE else "mixup"
    return "mixup" if mixup > 0 else "cutmix" if cutmix > 0 else None


def _mixup(images: torch.Tensor, labels: torch.Tensor, alpha: float, num_classes: int,
           smoothing: float) -> tuple[torch.Tensor, torch.Tensor]:
    """MixUp (Zhang et al. 2018) with one lambda ~ Beta(alpha, alpha) per batch, as timm and the recipes' papers
    draw it. Hand-written: kornia's RandomMixUpV2 draws lambda uniformly from a range, not from Beta(alpha, alpha),
    and torchvision's v2.MixUp cannot be imported next to the CPU torch here."""
    share = float(torch.distributions.Beta(alpha, alpha).sample())
    order = torch.randperm(len(labels), device=labels.device)
    mixed = images * share + images[order] * (1 - share)
    targets = share * soft_targets(labels, num_classes, smoothing) + (1 - share) * soft_targets(
        labels[order], num_classes, smoothing)
    return mixed, targets
