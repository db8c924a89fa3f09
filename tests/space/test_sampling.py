import json
import subprocess
import sys

import optuna
import pytest

from nasscale.errors import NasscaleError
from nasscale.space.parsing import builtin_space_names, load_space, space_from_dict
from nasscale.space.sampling import FixedChooser, OptunaChooser, RandomChooser, RecordingChooser, sample
from nasscale.spec.stage import STAGE_DEFAULTS
from nasscale.spec.vocabulary import BlockType

MIXED = {
    "name": "mixed",
    "resolution": 32,
    "stem_channels": 8,
    "head_channels": 32,
    "stages": [{
        "block": ["sepconv", "conv", "mbconv", {"block": "fused_mbconv", "expand_ratio": 2}],
        "num_blocks": {"low": 1, "high": 2},
        "out_channels": [8, 16],
        "stride": 1,
        "kernel_size": [3, 5],
        "expand_ratio": [3, 6],
        "se_ratio": [0, 0.25],
    }],
}


def test_same_seed_same_archs_and_different_seeds_differ():
    space = load_space("mnas")

    def ids(seed):
        chooser = RandomChooser(seed)
        return [sample(space, chooser).arch_id for _ in range(5)]

    assert ids(7) == ids(7)
    assert ids(7) != ids(8)
    assert len(set(ids(7))) == 5


def test_parameter_names_of_tiny():
    recorder = RecordingChooser(RandomChooser(0))
    sample(load_space("tiny"), recorder)
    block = recorder.params["stages.0.block"]
    stage_0 = {"stages.0.block", "stages.0.out_channels_multiplier", "stages.0.kernel_size", "stages.0.se_ratio"}
    assert block in ("sepconv", "mbconv_e3")
    assert set(recorder.params) == {
        "resolution", "stem_channels", "head_channels", *stage_0,
        "stages.1.block", "stages.1.num_blocks_delta", "stages.1.out_channels", "stages.1.kernel_size",
    }


def test_fields_that_do_not_apply_are_never_asked():
    space = space_from_dict(MIXED)
    seen = set()
    for seed in range(60):
        recorder = RecordingChooser(RandomChooser(seed))
        arch = sample(space, recorder)
        stage = arch.stages[0]
        label = recorder.params["stages.0.block"]
        seen.add(label)
        asked = {name.removeprefix("stages.0.") for name in recorder.params}
        expected = {"block", "num_blocks", "out_channels", "kernel_size"}
        expected |= {"sepconv": {"se_ratio"}, "conv": set(), "mbconv": {"expand_ratio", "se_ratio"},
                     "fused_mbconv_e2": {"se_ratio"}}[label]
        assert asked == expected, label
        # The fields left out keep their Stage defaults, so the arch is canonical.
        if stage.block in (BlockType.SEPCONV, BlockType.CONV):
            assert stage.expand_ratio == STAGE_DEFAULTS["expand_ratio"]
        if stage.block is BlockType.CONV:
            assert stage.se_ratio == STAGE_DEFAULTS["se_ratio"]
        if label == "fused_mbconv_e2":
            assert stage.expand_ratio == 2
    assert seen == {"sepconv", "conv", "mbconv", "fused_mbconv_e2"}


def test_fixed_fields_are_not_asked():
    recorder = RecordingChooser(RandomChooser(0))
    sample(load_space("efficientnetv2"), recorder)
    assert not any(name.endswith(("se_ratio", "out_channels", "stride", "activation")) for name in recorder.params)
    assert "resolution" not in recorder.params


@pytest.mark.parametrize("name", builtin_space_names())
def test_fixed_chooser_replays_a_record(name):
    space = load_space(name)
    for seed in range(10):
        recorder = RecordingChooser(RandomChooser(seed))
        arch = sample(space, recorder)
        replayed = sample(space, FixedChooser(json.loads(json.dumps(recorder.params))))
        assert replayed.arch_id == arch.arch_id


def test_fixed_chooser_names_a_missing_parameter():
    with pytest.raises(NasscaleError, match="no recorded value for parameter 'stages.0.block'"):
        sample(load_space("tiny"), FixedChooser({"resolution": 32, "stem_channels": 8, "head_channels": 64}))


def test_fixed_chooser_rejects_values_outside_the_space():
    params = {"resolution": 30}
    with pytest.raises(NasscaleError, match=r"parameter 'resolution': recorded value 30 is not one of \[24, 32\]"):
        sample(load_space("tiny"), FixedChooser(params))
    with pytest.raises(NasscaleError, match="'stem_channels': recorded value 12 is not an integer in 8..16"):
        sample(load_space("tiny"), FixedChooser({"resolution": 32, "stem_channels": 12}))


def test_fixed_chooser_gives_back_the_space_values():
    chooser = FixedChooser({"a": 3.0, "b": 16.0, "c": True})
    assert type(chooser.categorical("a", [3, 5])) is int
    assert type(chooser.integer("b", 8, 16, 8)) is int
    with pytest.raises(NasscaleError):
        chooser.categorical("c", [1, 2])  # true is not 1


def test_resolution_override_is_not_asked():
    recorder = RecordingChooser(RandomChooser(0))
    arch = sample(load_space("tiny"), recorder, resolution=48, in_channels=1, num_classes=10)
    assert arch.resolution == 48 and arch.in_channels == 1 and arch.num_classes == 10
    assert "resolution" not in recorder.params


def test_optuna_chooser_with_a_real_study():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = load_space("tiny")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    ids = set()
    for _ in range(20):
        trial = study.ask()
        arch = sample(space, OptunaChooser(trial))
        assert sample(space, FixedChooser(trial.params)).arch_id == arch.arch_id
        ids.add(arch.arch_id)
        study.tell(trial, float(len(ids)))
    assert len(ids) > 10
    distributions = study.trials[0].distributions
    assert isinstance(distributions["stem_channels"], optuna.distributions.IntDistribution)
    assert distributions["stem_channels"].step == 8
    assert distributions["stages.0.block"].choices == ("sepconv", "mbconv_e3")


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_optuna_chooser_on_every_builtin_space():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for name in builtin_space_names():
        space = load_space(name)
        study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0, multivariate=True, group=True,
                                                                       n_startup_trials=2))
        for _ in range(4):
            trial = study.ask()
            arch = sample(space, OptunaChooser(trial))
            study.tell(trial, float(len(arch.stages)))


LIGHT_CORE = """
import sys
from nasscale.space.extent import mac_range
from nasscale.space.parsing import load_space
from nasscale.space.sampling import RandomChooser, sample
arch = sample(load_space("mnas"), RandomChooser(0))
mac_range(load_space("mnas"))
print(arch.arch_id)
assert "torch" not in sys.modules, "torch was imported"
assert "numpy" not in sys.modules, "numpy was imported"
assert "optuna" not in sys.modules, "optuna was imported"
"""


def test_space_and_sampling_are_light_core():
    result = subprocess.run([sys.executable, "-c", LIGHT_CORE], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
