"""Measured inference latency on the CPU: what a MAC count cannot tell (memory traffic, depthwise kernels,
framework overhead). Used by ``nasscale scale --latency``; a single batch-1 model per call.

``measure_arch_latency`` builds an architecture and times it (CPU, or CUDA where available) into a
``LatencyResult``; ``time_interleaved`` times many modules in turn, which is how a latency table
(``nasscale.evaluate.latency_calibration``) times the parts of a space and the networks it predicts.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from nasscale.errors import NasscaleError, SpecError
from nasscale.models.build import build
from nasscale.spec.arch import Arch


def measure_latency(model: nn.Module, example: torch.Tensor, *, repeats: int = 10, warmup: int = 2,
                    threads: int = 1) -> dict[str, Any]:
    """``time_forward`` on the CPU's wall clock, with the repeats and threads used: the thread count is pinned
    because torch's default follows the machine's cores, so unpinned figures would not compare."""
    return time_forward(model, example, repeats=repeats, warmup=warmup, threads=threads) | {
        "repeats": repeats, "threads": threads}


# ---------------------------------------------------------------------------------------------------------------
# The allocator: glibc's default hands large freed blocks back to the kernel, so every forward pass of a network
# with megabyte activations page-faults its memory in again (thousands of faults per pass at 224 px). That churn
# tripled some blocks' timings and made them swing with the machine's load. Keeping freed memory, as a caching
# allocator (jemalloc, tcmalloc, a serving runtime) would, measures the network rather than the kernel.

GLIBC_TRIM_THRESHOLD = -1  # mallopt parameter numbers from <malloc.h>
GLIBC_MMAP_THRESHOLD = -3
KEEP_FREED_BYTES = 1 << 30


@functools.cache
def steady_allocator() -> str:
    """Make glibc keep freed memory for reuse (process-wide, once); returns the allocator mode in effect,
    "glibc-keep-freed" or "default" where glibc's mallopt is not available (macOS, musl)."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        applied = libc.mallopt(GLIBC_MMAP_THRESHOLD, KEEP_FREED_BYTES) and libc.mallopt(GLIBC_TRIM_THRESHOLD,
                                                                                         KEEP_FREED_BYTES)
    except (OSError, AttributeError):
        return "default"
    return "glibc-keep-freed" if applied else "default"


# ---------------------------------------------------------------------------------------------------------------
# Whole architectures: build, then time on a device

DEVICES = ("cpu", "cuda")
# wall: elapsed time, what a user waits. cpu: the calling thread's CPU time, which ignores the time the thread
# spends descheduled while other jobs share the machine; with one thread torch runs every op in the calling thread,
# so on a quiet machine the two agree, and on a busy one "cpu" is the steadier estimate of the quiet figure.
CLOCKS = ("wall", "cpu")
DEFAULT_REPEATS = 20
DEFAULT_WARMUP = 3
EXAMPLE_SEED = 0  # the input's values do not change the work done, but random ones avoid denormal fast paths


@dataclass(frozen=True, slots=True, kw_only=True)
class LatencyResult:
    """Measured latency of one architecture: milliseconds per forward pass of a whole batch."""

    arch_id: str
    resolution: int
    median_ms: float
    min_ms: float  # the fastest run: the least disturbed by other jobs, what a latency table predicts
    p10_ms: float
    p90_ms: float
    repeats: int
    warmup: int
    batch_size: int
    threads: int
    device: str
    clock: str
    torch_version: str
    allocator: str  # see steady_allocator

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def measure_arch_latency(arch: Arch, *, batch_size: int = 1, threads: int = 1, device: str = "cpu",
                         repeats: int = DEFAULT_REPEATS, warmup: int = DEFAULT_WARMUP,
                         clock: str = "wall") -> LatencyResult:
    """Build ``arch`` and time its forward pass in eval mode under ``torch.inference_mode``: ``warmup`` untimed
    runs, then the median and 10th/90th percentiles of ``repeats`` timed ones. The weights are random: latency
    does not depend on their values. Sets up ``steady_allocator`` first. ``device="cuda"`` needs a CUDA build of
    torch and a GPU; ``clock="cpu"`` (see ``CLOCKS``) needs the CPU and one thread."""
    check_timing_options(device=device, clock=clock, threads=threads, repeats=repeats, warmup=warmup)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise SpecError("batch_size", f"must be an integer of at least 1, got {batch_size!r}")
    allocator = steady_allocator()
    model = build(arch)
    example = random_input(batch_size, arch.in_channels, arch.resolution)
    summary = time_forward(model, example, repeats=repeats, warmup=warmup, threads=threads, device=device,
                           clock=clock)
    return LatencyResult(arch_id=arch.arch_id, resolution=arch.resolution, **summary, repeats=repeats,
                         warmup=warmup, batch_size=batch_size, threads=threads, device=device, clock=clock,
                         torch_version=torch.__version__, allocator=allocator)


def random_input(batch_size: int, channels: int, size: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(EXAMPLE_SEED)
    return torch.randn(batch_size, channels, size, size, generator=generator)


def check_timing_options(*, device: str = "cpu", clock: str = "wall", threads: int = 1, repeats: int = 1,
                         warmup: int = 0) -> None:
    for name, value, minimum in (("repeats", repeats, 1), ("warmup", warmup, 0), ("threads", threads, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise SpecError(name, f"must be an integer of at least {minimum}, got {value!r}")
    if device not in DEVICES:
        raise SpecError("device", f"must be one of {', '.join(DEVICES)}, got {device!r}")
    if clock not in CLOCKS:
        raise SpecError("clock", f"must be one of {', '.join(CLOCKS)}, got {clock!r}")
    if clock == "cpu" and (device != "cpu" or threads != 1):
        raise SpecError("clock", "cpu time counts the calling thread only: use it on the cpu device with 1 thread")
    if device == "cuda" and not torch.cuda.is_available():
        raise NasscaleError(f"device cuda: no CUDA device is available to this torch ({torch.__version__}); "
                            "use --device cpu")


def time_forward(model: nn.Module, example: torch.Tensor, *, repeats: int, warmup: int, threads: int,
                 device: str = "cpu", clock: str = "wall") -> dict[str, float]:
    """Median, fastest, 10th and 90th percentile milliseconds of ``model(example)`` in eval mode without
    gradients, timed ``repeats`` times in a row.

    Like ``measure_latency``, with a choice of clock and device; on CUDA each run waits for its kernels, since
    the clock would otherwise stop when they are queued. Threads and the model's mode are restored."""
    check_timing_options(device=device, clock=clock, threads=threads, repeats=repeats, warmup=warmup)
    was_training = model.training
    milliseconds: list[float] = []
    try:
        group = [(model.to(device).eval(), example.to(device))]
        for _ in _timed_rounds(group, [milliseconds], rounds=repeats, warmup=warmup, threads=threads, clock=clock,
                               device=device):
            pass
    finally:
        model.train(was_training)
    return summarize(milliseconds)


def summarize(milliseconds: Sequence[float]) -> dict[str, float]:
    p10, median, p90 = np.percentile(milliseconds, [10, 50, 90])
    return {"median_ms": float(median), "min_ms": float(min(milliseconds)), "p10_ms": float(p10),
            "p90_ms": float(p90)}


def _no_wait() -> None:
    pass


# ---------------------------------------------------------------------------------------------------------------
# Many modules, timed in turn
#
# On a machine shared with other jobs (a virtual machine on a busy host) the disturbances come in bursts of
# seconds: timed back to back, one module's runs can all fall into one burst (the same network's median of 15-30
# runs in a row moved by 6-35% between five measurements a few seconds apart, measured here). Timing every module
# once per round, round after round, spreads each module's runs over the whole measurement, so its fastest run is
# an undisturbed one. It also runs each module after a different one, with its weights out of cache as inside a
# network: a block timed back to back finds them hot and runs 15-30% faster than it does within a network.

MAX_RESIDENT_PARAMETERS = 256_000_000  # modules timed together hold at most this many weights (1 GiB in float32)

Timed = Callable[[], tuple[nn.Module, torch.Tensor]]  # builds a module and its example input


def time_interleaved(makers: Sequence[Timed], *, rounds: int, warmup: int = DEFAULT_WARMUP, threads: int = 1,
                     clock: str = "wall", max_parameters: int = MAX_RESIDENT_PARAMETERS,
                     on_progress: Callable[[int, int], None] | None = None) -> list[list[float]]:
    """Milliseconds of ``rounds`` forward passes of each module ``makers`` build (CPU, eval mode, no gradients),
    in round-robin order: every round runs every module once. Modules are built and timed in groups of at most
    ``max_parameters`` weights, so a large space does not hold all its networks at once. Sets up
    ``steady_allocator`` first. ``on_progress(done, total)`` counts timed passes, after each round."""
    check_timing_options(clock=clock, threads=threads, repeats=rounds, warmup=warmup)
    steady_allocator()
    samples: list[list[float]] = []
    done, total = 0, len(makers) * rounds
    for group in _resident_groups(makers, max_parameters):
        group_samples: list[list[float]] = [[] for _ in group]
        for _ in _timed_rounds(group, group_samples, rounds=rounds, warmup=warmup, threads=threads, clock=clock):
            done += len(group)
            if on_progress is not None:
                on_progress(done, total)
        samples.extend(group_samples)
    return samples


def _resident_groups(makers: Sequence[Timed], max_parameters: int) -> Iterator[list[tuple[nn.Module, torch.Tensor]]]:
    group: list[tuple[nn.Module, torch.Tensor]] = []
    weights = 0
    for make in makers:
        module, example = make()
        count = sum(parameter.numel() for parameter in module.parameters())
        if group and weights + count > max_parameters:
            yield group
            group, weights = [], 0
        group.append((module.eval(), example))
        weights += count
    if group:
        yield group


def _timed_rounds(group: list[tuple[nn.Module, torch.Tensor]], samples: list[list[float]], *, rounds: int,
                  warmup: int, threads: int, clock: str, device: str = "cpu") -> Iterator[None]:
    """Warm every module up, then run them in turn ``rounds`` times, appending to ``samples``; yields per round.
    The one timing loop: a group of one is ``time_forward``'s runs in a row."""
    read_clock = time.thread_time if clock == "cpu" else time.perf_counter
    synchronize = torch.cuda.synchronize if device == "cuda" else _no_wait
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            for module, example in group:
                for _ in range(warmup):
                    module(example)
            synchronize()
            for _ in range(rounds):
                for (module, example), timings in zip(group, samples, strict=True):
                    started = read_clock()
                    module(example)
                    synchronize()
                    timings.append((read_clock() - started) * 1e3)
                yield
    finally:
        torch.set_num_threads(previous_threads)
