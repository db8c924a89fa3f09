"""Zero-cost proxies: one protocol, deterministic and finite scores, the right sign on easy cases, validation
against training, and the ``proxies`` command."""

import json
import math

import pytest
import torch
from torch import nn

from nasscale.errors import DataError, UnknownNameError
from nasscale.evaluate.data import load_splits
from nasscale.evaluate.proxy_validation import validate_proxies
from nasscale.evaluate.zero_cost import PROXIES, activation_kernel_logdet, proxy_names, score
from nasscale.presets.mobile import mnasnet_a1
from nasscale.spec.arch import Arch
from nasscale.spec.stage import Stage
from nasscale.spec.vocabulary import Activation, BlockType
from tests.cli.test_cli_foundation import run_cli

RESOLUTION = 16


def _arch(width: int, depth: int, activation: Activation = Activation.RELU) -> Arch:
    stages = (
        Stage(block=BlockType.SEPCONV, num_blocks=1, out_channels=width, stride=1, activation=activation),
        Stage(block=BlockType.MBCONV, num_blocks=depth, out_channels=2 * width, stride=2, expand_ratio=3,
              se_ratio=0.25, activation=activation),
    )
    return Arch(stages=stages, stem_channels=width, head_channels=8 * width, resolution=RESOLUTION, in_channels=1,
                num_classes=10, activation=activation)


SMALL = _arch(4, 1)
LARGE = _arch(24, 3)


@pytest.fixture(scope="module")
def batch():
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(16, 1, RESOLUTION, RESOLUTION, generator=generator)
    return images, torch.arange(16) % 10


@pytest.mark.parametrize("name", list(PROXIES))
def test_each_proxy_is_finite_and_deterministic_for_a_seed(name, batch):
    first = score(name, SMALL, batch, seed=3)
    assert math.isfinite(first)
    assert score(name, SMALL, batch, seed=3) == first


@pytest.mark.parametrize("name", ["synflow", "grad_norm", "snip", "naswot", "jacob_cov"])
def test_trainable_proxies_depend_on_the_initial_weights(name, batch):
    assert score(name, SMALL, batch, seed=1) != score(name, SMALL, batch, seed=2)


@pytest.mark.parametrize("activation", list(Activation))
def test_every_activation_scores(activation, batch):
    arch = _arch(4, 1, activation)
    assert all(math.isfinite(score(name, arch, batch, seed=0)) for name in ("synflow", "naswot", "jacob_cov"))


@pytest.mark.parametrize("name", ["synflow", "params", "macs", "naswot"])
def test_a_much_larger_network_scores_higher(name, batch):
    assert score(name, LARGE, batch, seed=0) > score(name, SMALL, batch, seed=0)


def test_naswot_prefers_activations_that_separate_inputs(batch):
    images, _ = batch
    separating = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Flatten())
    constant = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Flatten())
    with torch.no_grad():
        constant[0].weight.zero_()
        constant[0].bias.fill_(1.0)  # every unit on for every input: one code for the whole batch
    separated, degenerate = activation_kernel_logdet(separating, images), activation_kernel_logdet(constant, images)
    assert math.isfinite(degenerate) and separated > degenerate + 10


def test_naswot_is_lower_when_the_batch_repeats_one_image(batch):
    images, labels = batch
    repeated = images[:1].expand_as(images).clone()
    assert score("naswot", SMALL, (repeated, labels), seed=0) < score("naswot", SMALL, batch, seed=0)


def test_synflow_stays_finite_on_a_deep_imagenet_network():
    arch = mnasnet_a1().replace(resolution=32)
    images = torch.rand(2, 3, 32, 32)
    assert math.isfinite(score("synflow", arch, (images, torch.tensor([0, 1])), seed=0))


def test_baselines_are_the_analytic_cost(batch):
    from nasscale.spec.cost import cost

    assert score("params", LARGE, batch) == cost(LARGE).params
    assert score("macs", LARGE, batch) == cost(LARGE).macs


def test_unknown_proxy_and_bad_batches_are_clear_errors(batch):
    images, labels = batch
    with pytest.raises(UnknownNameError, match="unknown proxy 'zen'; the proxies are synflow"):
        score("zen", SMALL, batch)
    with pytest.raises(UnknownNameError, match="unknown proxy 'zen'"):
        proxy_names("synflow, zen")
    assert proxy_names("grad-norm,naswot") == ("grad_norm", "naswot")
    with pytest.raises(DataError, match=r"proxy images must be \(N, 1, H, W\)"):
        score("snip", SMALL, (images.repeat(1, 3, 1, 1), labels))
    with pytest.raises(DataError, match=r"proxy labels must lie in \[0, 10\)"):
        score("snip", SMALL, (images, labels + 10))


# ------------------------------------------------------------------------------------------------ validation


def test_validate_proxies_correlates_every_proxy_with_accuracy():
    train, validation = load_splits("digits", split_seed=0, max_train_samples=200, max_validation_samples=100)
    result = validate_proxies("tiny", (train, validation), n=4, epochs=1, seed=0, proxy_resolution=RESOLUTION,
                              proxies=("naswot", "params"), proxy_batch_size=16)
    assert [row.proxy for row in result.correlations] == ["naswot", "params"]
    assert [row.baseline for row in result.correlations] == [False, True]
    assert all(record.accuracy is not None and 0 <= record.accuracy <= 1 for record in result.records)
    assert all(-1 <= row.spearman_rho <= 1 and row.architectures == 4 for row in result.correlations
               if row.spearman_rho == row.spearman_rho)
    assert [record.seed for record in result.records] == [0, 1, 2, 3]
    json.dumps(result.to_dict(), allow_nan=False)


def test_cli_proxies_on_tiny(capsys, tmp_path):
    out = tmp_path / "proxies.json"
    code, stdout, stderr = run_cli(capsys, "proxies", "--space", "tiny", "--data", "digits", "-n", "6", "--epochs",
                                   "1", "--proxy-resolution", "16", "--max-train-samples", "300", "--proxy-batch",
                                   "16", "--out", str(out))
    assert code == 0 and "Spearman rho" in stdout and "Kendall tau" in stdout
    # Not a terminal, so no bar: one line per trained architecture instead.
    lines = [line.split(" (")[0] for line in stderr.splitlines() if line.strip()]
    assert lines == [f"architecture {i}/6" for i in range(1, 7)]
    for name in PROXIES:
        assert name in stdout
    report = json.loads(out.read_text())
    assert report["architectures"] == 6 and report["max_train_samples"] == 300 and len(report["records"]) == 6
    assert {row["proxy"] for row in report["correlations"]} == set(PROXIES)


@pytest.mark.parametrize(("args", "expected"), [
    (["--proxy", "zen"], "unknown proxy 'zen'"),
    (["--data", "nowhere"], "unknown data source 'nowhere'"),
])
def test_cli_proxies_bad_input_is_one_line_and_exit_2(capsys, args, expected):
    base = {"--space": "tiny", "--data": "digits"}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    code, _, err = run_cli(capsys, "proxies", *[item for pair in base.items() for item in pair], "-n", "3")
    assert code == 2 and expected in err and len(err.strip().splitlines()) == 1
