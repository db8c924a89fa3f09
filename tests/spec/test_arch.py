import json
import random
import subprocess
import sys

import pytest

from nasscale.errors import SpecError
from nasscale.presets.efficientnet import efficientnet_b0
from nasscale.spec.arch import Arch, arch_id, to_dict
from nasscale.spec.random_arch import random_arch
from nasscale.spec.serialization import from_dict, from_json, from_yaml, load_arch_file, summary, to_json, to_yaml
from nasscale.spec.stage import Stage
from nasscale.spec.vocabulary import Activation, BlockType


def base_dict() -> dict:
    return to_dict(efficientnet_b0())


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("scalable", [True, False])
def test_json_and_yaml_round_trip(seed, scalable):
    arch = random_arch(random.Random(seed), scalable=scalable)
    assert from_json(to_json(arch)) == arch
    assert from_yaml(to_yaml(arch)) == arch
    assert arch_id(from_yaml(to_yaml(arch))) == arch_id(arch)


def test_arch_id_is_stable_across_processes_and_int_float_spellings():
    arch = efficientnet_b0()
    code = "from nasscale.presets.efficientnet import efficientnet_b0; print(efficientnet_b0().arch_id)"
    other_process = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert other_process.stdout.strip() == arch.arch_id
    data = base_dict()
    data["stages"][1]["expand_ratio"] = 6  # int instead of 6.0
    assert from_dict(data).arch_id == arch.arch_id
    data["stages"][1]["kernel_size"] = 5
    assert from_dict(data).arch_id != arch.arch_id


def test_defaults_and_aliases_are_filled_in():
    arch = from_dict({
        "stem_channels": 16, "head_channels": 64, "resolution": 32,
        "stages": [{"block": "mbconv", "num_blocks": 1, "out_channels": 8, "stride": 1, "activation": "swish"},
                   {"block": "convnext", "num_blocks": 1, "out_channels": 8, "stride": 2, "expand_ratio": 4}],
    })
    assert arch.stages[0].activation is Activation.SILU
    assert arch.stages[1].activation is Activation.GELU  # ConvNeXt's default activation
    assert arch.in_channels == 3 and arch.num_classes == 1000


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (("stages", 2, "stride"), 3, "stages[2].stride: must be 1 or 2, got 3"),
        (("stages", 0, "kernel_size"), 4, "stages[0].kernel_size: must be odd and at most 11, got 4"),
        (("stages", 3, "out_channels"), 0, "stages[3].out_channels: must be at least 1, got 0"),
        (("stages", 1, "se_ratio"), -0.25, "stages[1].se_ratio: must be in [0, 1], got -0.25"),
        (("stages", 1, "expand_ratio"), -1, "stages[1].expand_ratio: must be in [0, 16], got -1"),
        (("stages", 1, "block"), "capsule",
         "stages[1].block: must be one of mbconv, fused_mbconv, sepconv, conv, convnext, basic, bottleneck, "
         "se_bottleneck, preact_basic, preact_bottleneck, depthwise_separable, shuffle, dense, inception, fire, "
         "plain, van, transformer, inception_v3_a, inception_v3_b, inception_v3_c, inception_v3_d, inception_v3_e, "
         "inception_resnet_mixed_5b, inception_resnet_a, inception_resnet_b, inception_resnet_c, "
         "inception_resnet_reduction_b, got 'capsule'"),
        (("stages", 1, "kernal_size"), 3, "stages[1].kernal_size: unknown key; valid keys are block,"),
        (("stages", 1, "num_blocks"), "2", "stages[1].num_blocks: must be an integer, got '2'"),
        (("stages", 1, "activation"), "tanh", "stages[1].activation: must be one of relu, relu6, silu"),
        (("resolution",), 0, "resolution: must be at least 1, got 0"),
        (("widht",), 1.0, "widht: unknown key; valid keys are stages,"),
        (("dropout",), 1.5, "dropout: must be in [0, 1), got 1.5"),
        (("stem",), "vit", "stem: must be one of conv, patchify, resnet, resnet_preact, conv_pool, googlenet, "
                           "squeezenet_1_0, squeezenet_1_1, alexnet, overlapping_patchify, inception, none, got 'vit'"),
    ],
)
def test_bad_values_name_the_field_path_and_value(path, value, expected):
    data = base_dict()
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(SpecError) as error:
        from_dict(data, source="arch.yaml")
    message = str(error.value)
    assert message.startswith("arch.yaml: " + expected)
    assert "\n" not in message


def test_fields_that_do_not_apply_are_rejected_so_specs_stay_canonical():
    with pytest.raises(SpecError, match=r"stage.expand_ratio: does not apply to sepconv blocks"):
        Stage(block=BlockType.SEPCONV, num_blocks=1, out_channels=8, stride=1, expand_ratio=6)
    with pytest.raises(SpecError, match=r"stages\[0\].se_ratio: does not apply to convnext blocks"):
        from_dict({"stem_channels": 8, "head_channels": 16, "resolution": 32,
                   "stages": [{"block": "convnext", "num_blocks": 1, "out_channels": 8, "stride": 1,
                               "se_ratio": 0.25}]})


def test_missing_required_and_too_small_resolution():
    data = base_dict()
    del data["stages"][0]["stride"]
    with pytest.raises(SpecError, match=r"^stages\[0\].stride: is required$"):
        from_dict(data)
    with pytest.raises(SpecError, match="resolution: 3 is too small"):
        from_dict({**base_dict(), "stem": "patchify", "head": "norm", "head_channels": 0, "resolution": 3})


def test_norm_head_rejects_head_channels():
    with pytest.raises(SpecError, match="head_channels: must be 0 with a norm head, got 1280"):
        from_dict({**base_dict(), "head": "norm"})


def test_python_api_validates_too():
    with pytest.raises(SpecError, match="stage.stride: must be 1 or 2, got 3"):
        Stage(block=BlockType.MBCONV, num_blocks=1, out_channels=8, stride=3)
    with pytest.raises(SpecError, match="stages: must be a non-empty tuple"):
        Arch(stages=(), stem_channels=8, head_channels=8, resolution=32)


def test_load_arch_file_accepts_yaml_json_and_sample_wrappers(tmp_path):
    arch = efficientnet_b0()
    (tmp_path / "a.yaml").write_text(to_yaml(arch))
    (tmp_path / "a.json").write_text(json.dumps({"arch": to_dict(arch), "params": 1}))
    assert load_arch_file(str(tmp_path / "a.yaml")) == arch
    assert load_arch_file(str(tmp_path / "a.json")) == arch
    (tmp_path / "bad.yaml").write_text("stages: [\n")
    with pytest.raises(SpecError, match=r"bad.yaml: not valid YAML or JSON"):
        load_arch_file(str(tmp_path / "bad.yaml"))
    with pytest.raises(SpecError, match=r"missing.yaml: no such architecture file"):
        load_arch_file(str(tmp_path / "missing.yaml"))


def test_summary_is_one_readable_line():
    text = summary(efficientnet_b0())
    assert text.startswith("conv 32 | mbconv e1 k3 se0.25 16x1 s1 | mbconv e6 k3 se0.25 24x2 s2")
    assert text.endswith("head 1280 @224")


def test_light_core_imports_without_torch():
    code = (
        "import sys\n"
        "import nasscale, nasscale.spec.arch, nasscale.spec.cost, nasscale.presets, nasscale.scale.solver\n"
        "import nasscale.scale.ladder, nasscale.scale.allocation, nasscale.units\n"
        "from nasscale.presets import PRESETS\n"
        "from nasscale.spec.cost import cost\n"
        "[cost(preset.arch()) for preset in PRESETS.values()]\n"
        "print('torch' in sys.modules, 'numpy' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "False"]
