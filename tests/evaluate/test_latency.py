"""Latency: whole-architecture measurement, the per-part lookup table and its predictor, and their commands.

The machine these run on is shared and noisy: no assertion here depends on a timing being fast, and the
predictor is held to a loose bound only.
"""

import json
import math

import pytest
import torch

from nasscale.errors import NasscaleError, SpecError
from nasscale.evaluate.latency import CLOCKS, measure_arch_latency, time_forward, time_interleaved
from nasscale.evaluate.latency_calibration import build_latency_table, validate_predictor
from nasscale.evaluate.latency_table import (
    LatencyTableError,
    arch_parts,
    block_key,
    latency_range,
    load_latency_table,
    predict_latency,
    space_parts,
)
from nasscale.space.parsing import load_space
from nasscale.space.sampling import RandomChooser, sample
from nasscale.spec.arch import Arch, iter_blocks
from nasscale.spec.serialization import to_yaml
from nasscale.spec.stage import Stage
from nasscale.spec.vocabulary import Activation, BlockType
from tests.cli.test_cli_foundation import run_cli

TINY_SHAPE = {"in_channels": 1, "num_classes": 10}


@pytest.fixture(scope="module")
def tiny_space():
    return load_space("tiny")


@pytest.fixture(scope="module")
def tiny_table(tiny_space):
    return build_latency_table(tiny_space, **TINY_SHAPE, repeats=5, warmup=1, calibration=3)


def test_arch_latency_result_has_every_field(tiny_arch):
    result = measure_arch_latency(tiny_arch, repeats=5, warmup=1)
    data = result.to_dict()
    assert set(data) == {"arch_id", "resolution", "median_ms", "min_ms", "p10_ms", "p90_ms", "repeats", "warmup",
                         "batch_size", "threads", "device", "clock", "torch_version", "allocator"}
    assert 0 < result.min_ms <= result.p10_ms <= result.median_ms <= result.p90_ms
    assert (result.repeats, result.batch_size, result.threads, result.device) == (5, 1, 1, "cpu")
    assert result.torch_version == torch.__version__ and result.arch_id == tiny_arch.arch_id
    json.dumps(data)


def test_cpu_clock_and_batches(tiny_arch):
    result = measure_arch_latency(tiny_arch, batch_size=4, repeats=3, warmup=0, clock="cpu")
    assert result.batch_size == 4 and result.clock == "cpu" and result.median_ms > 0


def test_time_forward_restores_threads_and_mode(tiny_arch):
    from nasscale.models.build import build

    model = build(tiny_arch).train()
    before = torch.get_num_threads()
    time_forward(model, torch.zeros(1, 1, 32, 32), repeats=2, warmup=0, threads=1)
    assert model.training and torch.get_num_threads() == before


def test_interleaved_timing_runs_every_module_in_turn_and_groups_by_weights():
    order = []

    class Recorder(torch.nn.Module):
        def __init__(self, name: str, weights: int):
            super().__init__()
            self.name, self.weight = name, torch.nn.Parameter(torch.zeros(weights))

        def forward(self, x):
            order.append(self.name)
            return x

    def maker(name: str, weights: int):
        return lambda: (Recorder(name, weights).train(), torch.zeros(1))

    progress = []
    samples = time_interleaved([maker("a", 6), maker("b", 6), maker("c", 6)], rounds=3, warmup=1,
                               max_parameters=12, on_progress=lambda done, total: progress.append((done, total)))
    assert [len(runs) for runs in samples] == [3, 3, 3] and all(run > 0 for runs in samples for run in runs)
    # a and b fit 12 weights together: warm-up each, then three rounds a, b; then c alone
    assert order == ["a", "b"] + ["a", "b"] * 3 + ["c"] + ["c"] * 3
    assert progress == [(2, 9), (4, 9), (6, 9), (7, 9), (8, 9), (9, 9)]
    with pytest.raises(SpecError, match="repeats: must be an integer of at least 1"):
        time_interleaved([maker("a", 1)], rounds=0)


@pytest.mark.parametrize(("options", "message"), [
    ({"device": "tpu"}, "device: must be one of cpu, cuda"),
    ({"clock": "sundial"}, f"clock: must be one of {', '.join(CLOCKS)}"),
    ({"clock": "cpu", "threads": 2}, "clock: cpu time counts the calling thread only"),
    ({"repeats": 0}, "repeats: must be an integer of at least 1"),
    ({"batch_size": 0}, "batch_size: must be an integer of at least 1"),
])
def test_bad_timing_options_are_spec_errors(tiny_arch, options, message):
    with pytest.raises(SpecError, match=message):
        measure_arch_latency(tiny_arch, **options)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_gpu_is_a_clear_error(tiny_arch):
    with pytest.raises(NasscaleError, match="no CUDA device is available"):
        measure_arch_latency(tiny_arch, device="cuda")


# ------------------------------------------------------------------------------------------- the parts


@pytest.mark.parametrize(("name", "shape", "samples"), [
    ("tiny", TINY_SHAPE, 300), ("mnas", {"in_channels": 3, "num_classes": 1000}, 300),
    ("convnext", {"in_channels": 3, "num_classes": 1000}, 60),
    ("efficientnetv2", {"in_channels": 3, "num_classes": 100}, 60),
])
def test_enumerated_parts_cover_every_sampled_architecture(name, shape, samples):
    space = load_space(name)
    keys = {part.key for part in space_parts(space, **shape)}
    chooser = RandomChooser(11)
    for _ in range(samples):
        arch = sample(space, chooser, **shape)
        missing = [key for key in arch_parts(arch) if key not in keys]
        assert not missing, f"{arch.arch_id}: {missing}"


def test_a_stages_first_block_and_its_repeats_are_distinct_parts(tiny_arch):
    first, repeat = [block for block in iter_blocks(tiny_arch) if block.stage.block is BlockType.MBCONV]
    assert block_key(first) != block_key(repeat)
    assert "s2" in block_key(first) and "plain" in block_key(first)
    assert "s1" in block_key(repeat) and "residual" in block_key(repeat)


def test_parts_of_an_architecture_in_forward_order(tiny_arch):
    keys = arch_parts(tiny_arch)
    assert keys[0].startswith("stem conv in1 out8") and keys[-1].startswith("head conv in16 out32 classes10")
    assert len(keys) == 2 + 3  # stem, three blocks, head


# ------------------------------------------------------------------------------------------- the table


def test_table_predicts_tiny_within_a_loose_bound(tiny_space, tiny_table):
    validation = validate_predictor(tiny_table, tiny_space, 8, seed=5, repeats=5, warmup=1)
    assert len(validation.rows) == 8
    held_out = set(tiny_table.calibration_arch_ids) | set(tiny_table.reference_arch_ids)
    assert not set(row.arch_id for row in validation.rows) & held_out
    assert all(0 < row.measured_ms <= row.measured_median_ms and row.predicted_ms > 0 for row in validation.rows)
    assert 0 < validation.speed < 10
    # Its size is measured by the benchmark; a sum of the wrong parts, or of medians, would be off by far more.
    assert validation.median_absolute_error(for_speed=True) < 0.5
    assert 0 <= validation.share_within_tolerance() <= 1
    assert json.loads(json.dumps(validation.to_dict()))["architectures"] == 8


def test_prediction_is_the_factored_sum_plus_overhead(tiny_space, tiny_table):
    arch = sample(tiny_space, RandomChooser(2), **TINY_SHAPE)
    total = sum(tiny_table.entries[key] for key in arch_parts(arch))
    assert predict_latency(tiny_table, arch, calibrated=False) == pytest.approx(total + tiny_table.overhead_ms)
    assert predict_latency(tiny_table, arch) == pytest.approx(
        tiny_table.interaction_factor * total + tiny_table.overhead_ms)
    assert len(tiny_table.calibration_arch_ids) >= 1 and math.isfinite(tiny_table.interaction_factor)
    assert len(tiny_table.reference_arch_ids) == len(tiny_table.reference_ms) == 5
    assert all(milliseconds > 0 for milliseconds in tiny_table.reference_ms)


def test_latency_range_bounds_every_prediction(tiny_space, tiny_table):
    low, high = latency_range(tiny_table, tiny_space)
    chooser = RandomChooser(4)
    predictions = [predict_latency(tiny_table, sample(tiny_space, chooser, **TINY_SHAPE)) for _ in range(400)]
    assert 0 < low <= min(predictions) <= max(predictions) <= high
    assert high - low < 2 * (max(predictions) - min(predictions))  # tight, not merely true


def test_table_covers_both_resolutions_of_tiny(tiny_table):
    assert tiny_table.resolution is None
    assert any("@24" in key for key in tiny_table.entries) and any("@32" in key for key in tiny_table.entries)


def test_table_round_trips_through_json(tiny_table, tmp_path):
    path = tmp_path / "table.json"
    tiny_table.save(path)
    assert load_latency_table(path) == tiny_table


def test_a_part_missing_from_the_table_says_to_rebuild(tiny_space, tiny_table):
    arch = sample(tiny_space, RandomChooser(0), in_channels=3, num_classes=10)
    with pytest.raises(LatencyTableError, match="has no entry for 'stem conv in3 .* rebuild the table"):
        predict_latency(tiny_table, arch)


def test_a_foreign_block_is_missing_too(tiny_table):
    relu = Activation.RELU
    arch = Arch(stages=(Stage(block=BlockType.CONV, num_blocks=1, out_channels=24, stride=1, activation=relu),),
                stem_channels=8, head_channels=64, resolution=32, in_channels=1, num_classes=10, activation=relu)
    with pytest.raises(LatencyTableError, match="block conv in8 out24"):
        predict_latency(tiny_table, arch)


@pytest.mark.parametrize(("content", "message"), [
    (None, "no such latency table"),
    ("{not json", "invalid JSON"),
    ('{"format": 99}', "not a latency table of format 2"),
    ('{"format": 1, "entries": {}}', "not a latency table of format 2 \\(got format 1\\)"),
    ('{"format": 2, "space": "tiny"}', "damaged latency table \\(missing in_channels"),
])
def test_bad_table_files_are_one_line(tmp_path, content, message):
    path = tmp_path / "table.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(LatencyTableError, match=message) as error:
        load_latency_table(path)
    assert "\n" not in str(error.value)


# ------------------------------------------------------------------------------------------------ CLI


@pytest.fixture
def tiny_arch_file(tmp_path):
    arch = sample(load_space("tiny"), RandomChooser(3), **TINY_SHAPE)
    path = tmp_path / "arch.yaml"
    path.write_text(to_yaml(arch))
    return path


def test_cli_latency_json(capsys, tiny_arch_file):
    code, out, _ = run_cli(capsys, "latency", str(tiny_arch_file), "--json", "--repeats", "3", "--batch", "2")
    report = json.loads(out)
    assert code == 0 and report["batch_size"] == 2 and report["median_ms"] > 0 and report["device"] == "cpu"
    code, out, _ = run_cli(capsys, "latency", "mnasnet_a1", "--resolution", "32", "--repeats", "2", "--warmup", "0")
    assert code == 0 and "median" in out and "32x32" in out


def test_cli_latency_table_with_validation_then_prediction(capsys, tmp_path, tiny_arch_file):
    table = tmp_path / "tiny.json"
    code, out, _ = run_cli(capsys, "latency-table", "--space", "tiny", "--out", str(table), "--in-channels", "1",
                           "--num-classes", "10", "--repeats", "3", "--calibration", "2", "--validate", "5", "--json")
    report = json.loads(out)
    assert code == 0 and table.is_file() and report["parts"] == 124
    assert report["validation"]["architectures"] == 5
    assert set(report["validation"]["calibrated"]) == {"share_within_10_percent", "median_absolute_error",
                                                       "median_signed_error"}
    code, out, _ = run_cli(capsys, "latency", str(tiny_arch_file), "--table", str(table), "--json", "--repeats", "3")
    assert code == 0 and json.loads(out)["predicted_ms"] > 0
    code, out, _ = run_cli(capsys, "latency-table", "--space", "tiny", "--out", str(table), "--in-channels", "1",
                           "--num-classes", "10", "--repeats", "2", "--calibration", "0", "--validate", "2")
    assert code == 0 and "124 parts" in out and "sum of parts" in out


@pytest.mark.parametrize(("args", "expected"), [
    (["latency", "mnasnet_a1", "--table", "missing.json"], "missing.json: no such latency table"),
    (["latency", "mnasnet_a1", "--clock", "cpu", "--threads", "2"], "clock: cpu time counts the calling thread"),
    (["latency", "mnasnet_a1", "--device", "gpu"], "device: must be one of cpu, cuda"),
    (["latency-table", "--space", "nowhere", "--out", "x.json"], "unknown search space 'nowhere'"),
])
def test_cli_bad_input_is_one_line_and_exit_2(capsys, args, expected):
    code, _, err = run_cli(capsys, *args)
    assert code == 2 and err.startswith("nasscale: error: ")
    assert expected in err and len(err.strip().splitlines()) == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cli_cuda_unavailable_is_one_line_and_exit_2(capsys):
    code, _, err = run_cli(capsys, "latency", "mnasnet_a1", "--resolution", "32", "--device", "cuda")
    assert code == 2 and "no CUDA device is available" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("name", ["vit", "hybrid"])
def test_a_latency_table_refuses_spaces_of_tokens_in_one_line(name):
    # Its parts are timed on feature maps; a transformer stage's blocks run on tokens.
    with pytest.raises(LatencyTableError, match=f"space '{name}' has transformer blocks.*nasscale latency"):
        space_parts(load_space(name), in_channels=3, num_classes=10)
