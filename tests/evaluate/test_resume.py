"""Resumable training: a run stopped after an epoch, started again, ends with the weights of a run never stopped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from nasscale.errors import DataError
from nasscale.evaluate.checkpoint import Checkpoint
from nasscale.evaluate.data import load_splits
from nasscale.evaluate.recipes import load_recipe, settings_for
from nasscale.evaluate.training import train_model
from nasscale.models.build import build
from nasscale.spec.arch import Arch
from nasscale.spec.serialization import to_yaml


class Stop(Exception):
    pass


@pytest.fixture(scope="module")
def digits():
    return load_splits("digits", split_seed=0)


def _run(arch: Arch, digits, settings, checkpoint: Checkpoint | None, stop_after: int | None = None):
    torch.manual_seed(settings.seed)
    model = build(arch)

    def on_epoch(record) -> None:
        if record.epoch == stop_after:
            raise Stop

    return model, train_model(model, *digits, settings, checkpoint=checkpoint, on_epoch=on_epoch)


@pytest.mark.parametrize("recipe", ["fast-proxy", "efficientnet", "convnext"])
def test_a_resumed_run_ends_with_the_uninterrupted_weights(recipe: str, tiny_arch: Arch, digits,
                                                           tmp_path: Path) -> None:
    arch = tiny_arch.replace(in_channels=1, num_classes=10, resolution=16)
    settings = settings_for(load_recipe(recipe), arch, epochs=3, resolution=16, max_train_samples=160, batch_size=32)
    whole_model, whole = _run(arch, digits, settings, None)
    checkpoint = Checkpoint.for_run(tmp_path, arch_id=arch.arch_id, data="digits", settings=settings, split_seed=0)
    with pytest.raises(Stop):
        _run(arch, digits, settings, checkpoint, stop_after=2)
    resumed_model, resumed = _run(arch, digits, settings, checkpoint)
    assert resumed.resumed_epochs == 2
    assert [record.train_loss for record in resumed.history] == [record.train_loss for record in whole.history]
    for (name, expected), actual in zip(whole_model.state_dict().items(), resumed_model.state_dict().values(),
                                        strict=True):
        assert torch.equal(expected, actual), name
    assert whole.deployed is not None and resumed.deployed is not None
    for expected, actual in zip(whole.deployed.state_dict().values(), resumed.deployed.state_dict().values(),
                                strict=True):
        assert torch.equal(expected, actual)


def test_another_run_s_checkpoint_is_refused_in_one_line(tiny_arch: Arch, digits, tmp_path: Path) -> None:
    arch = tiny_arch.replace(in_channels=1, num_classes=10, resolution=16)
    settings = settings_for(load_recipe("fast-proxy"), arch, epochs=1, resolution=16, max_train_samples=64)
    _run(arch, digits, settings, Checkpoint.for_run(tmp_path, arch_id=arch.arch_id, data="digits", settings=settings,
                                                    split_seed=0))
    other = Checkpoint.for_run(tmp_path, arch_id=arch.arch_id, data="digits", settings=settings, split_seed=1)
    with pytest.raises(DataError, match="from another run .split_seed 0, this run 1."):
        other.load()
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="not a readable checkpoint"):
        other.load()


def test_kill_9_then_the_same_command_resumes_to_the_same_weights(tiny_arch: Arch, tmp_path: Path) -> None:
    arch_file = tmp_path / "arch.yaml"
    arch_file.write_text(to_yaml(tiny_arch.replace(resolution=16)))

    def command(out: Path) -> list[str]:
        return [sys.executable, "-m", "nasscale.cli", "train", "--arch", str(arch_file), "--out", str(out),
                "--recipe", "efficientnet", "--epochs", "4", "--resolution", "16", "--max-train-samples", "400",
                "--batch-size", "32", "--json"]

    whole = subprocess.run(command(tmp_path / "whole"), capture_output=True, text=True, timeout=300)
    assert whole.returncode == 0, whole.stderr[-2000:]
    killed = tmp_path / "killed"
    process = subprocess.Popen(command(killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not (killed / "checkpoint.pt").exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (killed / "metrics.json").exists(), "the run ended before it could be killed"
    resumed = subprocess.run(command(killed), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads(resumed.stdout)["resumed_epochs"] >= 1
    expected = torch.load(tmp_path / "whole" / "weights.pt", weights_only=True)
    actual = torch.load(killed / "weights.pt", weights_only=True)
    assert expected.keys() == actual.keys() and all(torch.equal(expected[key], actual[key]) for key in expected)
    assert json.loads(resumed.stdout)["test_accuracy"] == json.loads(whole.stdout)["test_accuracy"]
