"""Data-parallel training under torchrun: two CPU processes (gloo), each on half of every batch, end with the weights
of one process training on the whole batches."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import torch

from nasscale.models.build import build
from nasscale.presets.convnext import convnext_tiny
from nasscale.spec.serialization import to_yaml


def test_two_processes_train_the_weights_of_one(tmp_path: Path) -> None:
    # Layer norm only (ConvNeXt), no dropout: batch norm's statistics and dropout's masks are per process by
    # design, so only a model without them can be compared weight for weight.
    tiny = convnext_tiny()
    stages = tuple(dataclasses.replace(stage, out_channels=8 * (index + 1), num_blocks=1)
                   for index, stage in enumerate(tiny.stages[:2]))
    arch = tiny.replace(stages=stages, stem_channels=8, resolution=16, dropout=0.0, drop_path_rate=0.0)
    arch_file = tmp_path / "arch.yaml"
    arch_file.write_text(to_yaml(arch))
    train = ["-m", "nasscale.cli", "train", "--arch", str(arch_file), "--epochs", "2", "--resolution", "16",
             "--max-train-samples", "256", "--batch-size", "32", "--recipe", "fast-proxy", "--json"]
    one = subprocess.run([sys.executable, *train, "--out", str(tmp_path / "one")], capture_output=True, text=True,
                         timeout=300)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                          *train, "--out", str(tmp_path / "two")], capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    expected = torch.load(tmp_path / "one" / "weights.pt", weights_only=True)
    actual = torch.load(tmp_path / "two" / "weights.pt", weights_only=True)
    assert expected.keys() == actual.keys()
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], rtol=1e-4, atol=1e-5, msg=key)
    torch.manual_seed(0)  # the run's seed: its initial weights
    initial = build(arch.replace(in_channels=1, num_classes=10)).state_dict()
    assert any(not torch.allclose(initial[key], expected[key]) for key in expected)  # it trained
