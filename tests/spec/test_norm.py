"""Norm settings in the spec: validated with one-line errors, serialized with the rest (only where they differ
from the default, so every existing spec keeps its arch_id), kept by scaling and by timm's strings."""

import random

import pytest

from nasscale.errors import SpecError
from nasscale.presets.efficientnet import efficientnet_b0, efficientnetv2_s
from nasscale.presets.registry import PRESETS, preset_arch
from nasscale.spec.arch import canonical_json, to_dict
from nasscale.spec.cost import cost
from nasscale.spec.interchange import arch_from_timm, arch_to_timm
from nasscale.spec.norm import DEFAULT_NORM, Norm
from nasscale.spec.random_arch import random_arch, random_norm
from nasscale.spec.rescaling import scale_arch, scale_arch_nonuniform
from nasscale.spec.serialization import from_dict, from_json, from_yaml, to_json, to_yaml

TF_STYLE = Norm(batch_norm_eps=1e-3, batch_norm_momentum=0.01)


def test_the_default_is_what_build_did_before_norm_existed():
    # torch's BatchNorm2d defaults, and the LayerNorm eps ConvNeXt's and VAN's modules were built with.
    assert (DEFAULT_NORM.batch_norm_eps, DEFAULT_NORM.batch_norm_momentum) == (1e-5, 0.1)
    assert (DEFAULT_NORM.layer_norm_eps, DEFAULT_NORM.zero_init_last_bn) == (1e-6, False)
    assert efficientnet_b0().norm == Norm() == DEFAULT_NORM


def test_a_default_norm_is_left_out_so_existing_arch_ids_stay():
    arch = efficientnet_b0()
    assert "norm" not in to_dict(arch) and '"norm"' not in canonical_json(arch)
    assert arch.arch_id == "056725e7780d"  # as before norm existed (the README quotes it)
    assert from_dict(to_dict(arch) | {"norm": {}}).arch_id == arch.arch_id
    assert from_dict(to_dict(arch) | {"norm": {"batch_norm_eps": 1e-5}}).arch_id == arch.arch_id


def test_a_set_norm_is_written_as_its_non_default_settings_and_changes_the_arch_id():
    arch = efficientnet_b0().replace(norm=TF_STYLE)
    assert to_dict(arch)["norm"] == {"batch_norm_eps": 1e-3, "batch_norm_momentum": 0.01}
    assert arch.arch_id != efficientnet_b0().arch_id
    assert arch.replace(norm=Norm(batch_norm_eps=1e-3)).arch_id not in (arch.arch_id, efficientnet_b0().arch_id)
    # An int and a float spelling are one spec.
    as_int, as_float = (to_dict(arch) | {"norm": {"batch_norm_momentum": value}} for value in (1, 1.0))
    assert from_dict(as_int).arch_id == from_dict(as_float).arch_id


@pytest.mark.parametrize("seed", range(20))
def test_random_norms_round_trip_through_json_and_yaml(seed):
    rng = random.Random(seed)
    arch = random_arch(rng, scalable=seed % 2 == 0).replace(norm=random_norm(rng))
    for back in (from_json(to_json(arch)), from_yaml(to_yaml(arch))):
        assert back == arch and back.norm == arch.norm and back.arch_id == arch.arch_id


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_round_trips_with_its_norm(name):
    arch = preset_arch(name)
    assert from_yaml(to_yaml(arch)).norm == arch.norm
    assert from_json(to_json(arch)).arch_id == arch.arch_id


def test_yaml_exponents_without_a_dot_are_numbers():
    # PyYAML follows YAML 1.1, where 1e-3 (no dot) is a string; a user writes it so.
    text = to_yaml(efficientnet_b0()) + "norm:\n  batch_norm_eps: 1e-3\n  batch_norm_momentum: 1.0e-2\n"
    assert from_yaml(text).norm == TF_STYLE


@pytest.mark.parametrize(
    ("norm", "expected"),
    [
        ({"batch_norm_eps": -1e-3}, "norm.batch_norm_eps: must be in (0, 1], got -0.001"),
        ({"batch_norm_eps": 0}, "norm.batch_norm_eps: must be in (0, 1], got 0"),
        ({"layer_norm_eps": -1e-6}, "norm.layer_norm_eps: must be in (0, 1], got -1e-06"),
        ({"layer_norm_eps": 2}, "norm.layer_norm_eps: must be in (0, 1], got 2"),
        ({"batch_norm_momentum": 1.5}, "norm.batch_norm_momentum: must be in [0, 1], got 1.5"),
        ({"batch_norm_momentum": -0.1}, "norm.batch_norm_momentum: must be in [0, 1], got -0.1"),
        ({"batch_norm_momentum": None}, "norm.batch_norm_momentum: must be a number, got None"),
        ({"batch_norm_eps": "small"}, "norm.batch_norm_eps: must be a number, got 'small'"),
        ({"batch_norm_eps": float("nan")}, "norm.batch_norm_eps: must be a number, got nan"),
        ({"zero_init_last_bn": "yes"}, "norm.zero_init_last_bn: must be true or false, got 'yes'"),
        ({"eps": 1e-3}, "norm.eps: unknown key; valid keys are batch_norm_eps, batch_norm_momentum, "
                        "layer_norm_eps, zero_init_last_bn"),
        ("bn", "norm: must be a mapping, got str"),
    ],
)
def test_bad_norm_values_are_one_line_errors_naming_the_field(norm, expected):
    with pytest.raises(SpecError) as error:
        from_dict(to_dict(efficientnet_b0()) | {"norm": norm}, source="arch.yaml")
    assert str(error.value) == "arch.yaml: " + expected


def test_the_python_api_validates_norm_too():
    with pytest.raises(SpecError, match=r"^norm.batch_norm_momentum: must be in \[0, 1\], got 2$"):
        Norm(batch_norm_momentum=2)
    with pytest.raises(SpecError, match=r"^norm: must be a Norm, got dict$"):
        efficientnet_b0().replace(norm={"batch_norm_eps": 1e-3})
    assert Norm(batch_norm_momentum=0).batch_norm_momentum == 0  # frozen running statistics: torch allows it


def test_scaling_keeps_the_norm():
    base = efficientnetv2_s()
    assert scale_arch(base, width=1.2, depth=1.4, resolution=300).norm == base.norm != DEFAULT_NORM
    assert scale_arch_nonuniform(base, 1.1, [1.2] * len(base.stages), 384).norm == base.norm
    zero_init = preset_arch("se_resnet50")
    assert scale_arch(zero_init, width=1.5, depth=2.0).norm.zero_init_last_bn


def test_norm_does_not_change_cost():
    rng = random.Random(0)
    for name in sorted(PRESETS):
        arch = preset_arch(name)
        assert cost(arch.replace(norm=random_norm(rng))) == cost(arch.replace(norm=DEFAULT_NORM)) == cost(arch)


def test_timm_strings_leave_the_norm_to_the_model_arguments():
    preset = preset_arch("mobilenet_v3_large")
    assert preset.norm != DEFAULT_NORM
    back = arch_from_timm(arch_to_timm(preset), stem_channels=preset.stem_channels,
                          head_channels=preset.head_channels, resolution=preset.resolution,
                          activation=preset.activation, se_style=preset.se_style,
                          classifier_hidden=preset.classifier_hidden, norm=preset.norm)
    assert back.norm == preset.norm
