"""Helpers shared by the test suite and the benchmarks (as optuna.testing is): random architectures
that exercise every block type and option of the spec. Light: no torch."""

import random

from nasscale.arch import Activation, Arch, BlockType, HeadType, Stage, StemType


def random_stage(rng: random.Random, block: BlockType) -> Stage:
    fields = {
        "block": block,
        "num_blocks": rng.randint(1, 2),
        "out_channels": rng.choice([3, 4, 8, 12, 16, 24, 32]),
        "stride": rng.choice([1, 2]),
        "kernel_size": rng.choice([1, 3, 5, 7]),
        "activation": rng.choice(list(Activation)),
        "skip": rng.random() < 0.8,
    }
    if block in (BlockType.MBCONV, BlockType.FUSED_MBCONV, BlockType.CONVNEXT):
        fields["expand_ratio"] = rng.choice([1, 2, 2.5, 3, 4, 6])
    if block in (BlockType.MBCONV, BlockType.FUSED_MBCONV, BlockType.SEPCONV):
        fields["se_ratio"] = rng.choice([0.0, 0.0, 0.25, 0.5])
    return Stage(**fields)


def random_arch(rng: random.Random) -> Arch:
    """A small random architecture over every block type, stride, kernel, SE on/off, odd resolutions,
    1 or 3 input channels, and both stems and heads."""
    stem = rng.choice([StemType.CONV, StemType.CONV, StemType.PATCHIFY])
    head = rng.choice(list(HeadType))
    stages = tuple(random_stage(rng, rng.choice(list(BlockType))) for _ in range(rng.randint(1, 4)))
    return Arch(
        stages=stages,
        stem=stem,
        stem_channels=rng.choice([4, 8, 16]),
        head=head,
        head_channels=rng.choice([16, 32, 64]) if head is HeadType.CONV else 0,
        resolution=rng.choice([17, 23, 32, 33, 40, 47, 64]),
        in_channels=rng.choice([1, 3]),
        num_classes=rng.choice([2, 10, 17]),
        activation=rng.choice(list(Activation)),
        dropout=0.1,
        drop_path_rate=rng.choice([0.0, 0.2]),
    )
