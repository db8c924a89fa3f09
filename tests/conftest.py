import pytest

from nasscale.spec.arch import Arch
from nasscale.spec.random_arch import random_arch  # noqa: F401  (re-exported for the tests)
from nasscale.spec.stage import Stage
from nasscale.spec.vocabulary import BlockType


@pytest.fixture
def tiny_arch() -> Arch:
    return Arch(
        stages=(
            Stage(block=BlockType.SEPCONV, num_blocks=1, out_channels=8, stride=1),
            Stage(block=BlockType.MBCONV, num_blocks=2, out_channels=16, stride=2, expand_ratio=4, se_ratio=0.25),
        ),
        stem_channels=8,
        head_channels=32,
        resolution=32,
        in_channels=1,
        num_classes=10,
    )
