"""Measured training time: the milliseconds one SGD step (forward, backward and optimizer step, train mode,
cross-entropy on random images and labels) takes per image, EfficientNetV2's training-aware objective (section
3.2): two networks of equal MACs can train at very different speeds (depthwise kernels, memory traffic).

``measure_train_step_ms`` times a fresh build of an architecture (or a copy of a given model, so the caller's
weights, optimizer and batch-norm statistics are never touched) and keeps each architecture's figure for the rest
of the process, per (arch_id, resolution, batch size, threads, device): a search measures each architecture once.
"""

from __future__ import annotations

import copy
import time

import torch
from torch import nn

from nasscale.errors import SpecError
from nasscale.evaluate.latency import steady_allocator
from nasscale.evaluate.settings import check_device
from nasscale.models.build import build
from nasscale.spec.arch import Arch

DEFAULT_REPEATS = 5
DEFAULT_WARMUP = 2
EXAMPLE_SEED = 0  # the values do not change the work done; random ones avoid denormal fast paths
LEARNING_RATE = 1e-3  # small, so that the steps timed stay finite; the work of a step does not depend on it
MAX_CACHED = 4096  # architectures remembered per process (the oldest is forgotten first)

CacheKey = tuple[str, int, int, int, str]  # arch_id, resolution, batch size, threads, device
_measured: dict[CacheKey, float] = {}


def cache_key(arch_id: str, *, resolution: int, batch_size: int, threads: int, device: str) -> CacheKey:
    return (arch_id, resolution, batch_size, threads, device)


def clear_cache() -> None:
    """Forget every measurement of this process (tests, or after the machine's load changed)."""
    _measured.clear()


def measure_train_step_ms(model_or_arch: nn.Module | Arch, *, batch_size: int, resolution: int, in_channels: int,
                          num_classes: int, threads: int = 1, device: str = "cpu", repeats: int = DEFAULT_REPEATS,
                          warmup: int = DEFAULT_WARMUP) -> float:
    """Milliseconds per image of one training step on a batch of ``batch_size`` random images of ``resolution``
    pixels, with ``threads`` torch threads on ``device``: ``warmup`` untimed steps, then the fastest of ``repeats``
    timed ones divided by the batch size. The fastest, as for measured latency: a step always does the same work,
    so its fastest run is the one least disturbed by other jobs on the machine, and the figure that compares.
    An architecture's figure is cached per (arch_id, resolution, batch_size, threads, device) in this process; a
    module is copied and timed every call (it has no arch_id)."""
    _check_options(batch_size=batch_size, resolution=resolution, threads=threads, repeats=repeats, warmup=warmup)
    check_device(device)
    key: CacheKey | None = None
    if isinstance(model_or_arch, Arch):
        arch = model_or_arch
        if (arch.in_channels, arch.num_classes) != (in_channels, num_classes):
            raise SpecError("in_channels", f"architecture {arch.arch_id} takes {arch.in_channels} channels and "
                                           f"{arch.num_classes} classes, not {in_channels} and {num_classes}")
        key = cache_key(arch.arch_id, resolution=resolution, batch_size=batch_size, threads=threads, device=device)
        if key in _measured:
            return _measured[key]
        model: nn.Module = build(arch)
    else:
        model = copy.deepcopy(model_or_arch)  # the steps move weights: never the caller's
    steady_allocator()
    milliseconds = time_train_steps(model, batch_size=batch_size, resolution=resolution, in_channels=in_channels,
                                    num_classes=num_classes, threads=threads, device=device, repeats=repeats,
                                    warmup=warmup)
    per_image = min(milliseconds) / batch_size
    if key is not None:
        if len(_measured) >= MAX_CACHED:
            del _measured[next(iter(_measured))]
        _measured[key] = per_image
    return per_image


def time_train_steps(model: nn.Module, *, batch_size: int, resolution: int, in_channels: int, num_classes: int,
                     threads: int, device: str, repeats: int, warmup: int) -> list[float]:
    """Milliseconds of each of ``repeats`` SGD steps of ``model`` (moved to ``device``, in train mode) after
    ``warmup`` untimed ones; on CUDA each step waits for its kernels. Restores the thread count."""
    generator = torch.Generator().manual_seed(EXAMPLE_SEED)
    images = torch.randn(batch_size, in_channels, resolution, resolution, generator=generator).to(device)
    labels = torch.randint(0, num_classes, (batch_size,), generator=generator).to(device)
    model = model.to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE, momentum=0.9)
    loss_function = nn.CrossEntropyLoss()
    on_gpu = device.startswith("cuda")
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    milliseconds: list[float] = []
    try:
        for step in range(warmup + repeats):
            started = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            loss_function(model(images), labels).backward()
            optimizer.step()
            if on_gpu:
                torch.cuda.synchronize()
            if step >= warmup:
                milliseconds.append((time.perf_counter() - started) * 1e3)
    finally:
        torch.set_num_threads(previous_threads)
    return milliseconds


def _check_options(**values: int) -> None:
    for name, value in values.items():
        minimum = 0 if name == "warmup" else 1
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise SpecError(name, f"must be an integer of at least {minimum}, got {value!r}")
