"""timm's EfficientNet block strings: the published arch_defs import to the presets, exports round-trip, and what
cannot be expressed either way is a one-line error naming the string or the stage."""

import json
import random
import subprocess
import sys

import pytest

from nasscale.errors import InterchangeError, NasscaleError
from nasscale.presets.registry import PRESETS, preset_arch
from nasscale.spec.arch import Arch
from nasscale.spec.cost import cost
from nasscale.spec.interchange import (
    arch_def_from_text,
    arch_from_timm,
    arch_to_timm,
    parse_block_string,
    timm_equivalent,
    timm_model_kwargs,
)
from nasscale.spec.serialization import from_yaml
from nasscale.spec.stage import Stage
from nasscale.spec.vocabulary import Activation, BlockType, SqueezeExciteStyle
from tests.cli.test_cli_foundation import run_cli

# Facts: the arch_defs of timm/models/efficientnet.py (_gen_efficientnet, _gen_efficientnetv2_s, _gen_mnasnet_a1)
# and timm/models/mobilenetv3.py (_gen_mobilenet_v3, mobilenetv3_large_100).
EFFICIENTNET_B0 = [
    ["ds_r1_k3_s1_e1_c16_se0.25"],
    ["ir_r2_k3_s2_e6_c24_se0.25"],
    ["ir_r2_k5_s2_e6_c40_se0.25"],
    ["ir_r3_k3_s2_e6_c80_se0.25"],
    ["ir_r3_k5_s1_e6_c112_se0.25"],
    ["ir_r4_k5_s2_e6_c192_se0.25"],
    ["ir_r1_k3_s1_e6_c320_se0.25"],
]
EFFICIENTNETV2_S = [
    ["cn_r2_k3_s1_e1_c24_skip"],
    ["er_r4_k3_s2_e4_c48"],
    ["er_r4_k3_s2_e4_c64"],
    ["ir_r6_k3_s2_e4_c128_se0.25"],
    ["ir_r9_k3_s1_e6_c160_se0.25"],
    ["ir_r15_k3_s2_e6_c256_se0.25"],
]
MNASNET_A1 = [
    ["ds_r1_k3_s1_e1_c16_noskip"],
    ["ir_r2_k3_s2_e6_c24"],
    ["ir_r3_k5_s2_e3_c40_se0.25"],
    ["ir_r4_k3_s2_e6_c80"],
    ["ir_r2_k3_s1_e6_c112_se0.25"],
    ["ir_r3_k5_s2_e6_c160_se0.25"],
    ["ir_r1_k3_s1_e6_c320"],
]
MOBILENETV3_LARGE = [
    ["ds_r1_k3_s1_e1_c16_nre"],
    ["ir_r1_k3_s2_e4_c24_nre", "ir_r1_k3_s1_e3_c24_nre"],
    ["ir_r3_k5_s2_e3_c40_se0.25_nre"],
    ["ir_r1_k3_s2_e6_c80", "ir_r1_k3_s1_e2.5_c80", "ir_r2_k3_s1_e2.3_c80"],
    ["ir_r2_k3_s1_e6_c112_se0.25"],
    ["ir_r3_k5_s2_e6_c160_se0.25"],
    ["cn_r1_k1_s1_c960"],  # timm's last "stage" is our conv head of 960
]
# timm's block strings do not carry norm settings (its models take bn_eps / bn_momentum as keyword arguments), so
# the norm passes through like the other model-level fields.
ARCH_FIELDS_BESIDE_STAGES = ("num_classes", "in_channels", "dropout", "drop_path_rate", "stem", "head",
                             "classifier_hidden", "head_pool_size", "norm")


def import_like(arch: Arch, arch_def) -> Arch:
    """Import ``arch_def`` with every field of ``arch`` but its stages."""
    return arch_from_timm(arch_def, stem_channels=arch.stem_channels, head_channels=arch.head_channels,
                          resolution=arch.resolution, activation=arch.activation, se_style=arch.se_style,
                          **{name: getattr(arch, name) for name in ARCH_FIELDS_BESIDE_STAGES})


# ------------------------------------------------------------------------------------ published arch_defs


def test_efficientnet_b0_imports_as_the_preset_with_its_first_stage_spelled_sepconv():
    preset = preset_arch("efficientnet_b0")
    imported = import_like(preset, EFFICIENTNET_B0)
    first = Stage(block=BlockType.SEPCONV, num_blocks=1, out_channels=16, stride=1, kernel_size=3, se_ratio=0.25)
    assert imported.stages == (first, *preset.stages[1:])
    assert imported == timm_equivalent(preset)
    assert cost(imported) == cost(preset) == (5_288_548, 385_814_752)  # the preset's reference figures
    assert arch_to_timm(preset) == EFFICIENTNET_B0


def test_efficientnet_b0_import_builds_the_same_layers():
    from nasscale.models.build import build

    def shapes(arch):
        return [(name, tuple(tensor.shape)) for name, tensor in build(arch).state_dict().items()]

    preset = preset_arch("efficientnet_b0")
    assert shapes(import_like(preset, EFFICIENTNET_B0)) == shapes(preset)


@pytest.mark.parametrize(("name", "arch_def"), [("efficientnetv2_s", EFFICIENTNETV2_S), ("mnasnet_a1", MNASNET_A1)])
def test_published_arch_def_imports_as_exactly_the_preset(name, arch_def):
    preset = preset_arch(name)
    imported = import_like(preset, arch_def)
    assert imported == preset and imported.arch_id == preset.arch_id
    assert cost(imported) == cost(preset)
    assert arch_to_timm(preset) == arch_def


def test_efficientnetv2_s_cn_stage_is_fused_mbconv_e1_with_a_residual():
    stage = import_like(preset_arch("efficientnetv2_s"), EFFICIENTNETV2_S).stages[0]
    assert (stage.block, stage.expand_ratio, stage.se_ratio, stage.skip) == (BlockType.FUSED_MBCONV, 1, 0, True)
    # timm's cn adds its input only when told to: without _skip it has no residual.
    assert parse_block_string("cn_r2_k3_s1_e1_c24").skip is None
    no_skip = arch_from_timm([["cn_r2_k3_s1_e1_c24"]], stem_channels=24, head_channels=64, resolution=32)
    assert no_skip.stages[0].skip is False


def test_mobilenet_v3_large_imports_in_the_mobilenet_v3_style():
    preset = preset_arch("mobilenet_v3_large")
    imported = import_like(preset, MOBILENETV3_LARGE[:-1])
    assert imported.stages == timm_equivalent(preset).stages
    assert imported.stages[0].activation is Activation.RELU and imported.stages[-1].activation is Activation.HARDSWISH
    assert preset.head_channels == int(MOBILENETV3_LARGE[-1][0].removeprefix("cn_r1_k1_s1_c"))
    # Canonical export: one string per stage (timm groups some), in timm's order.
    assert arch_to_timm(preset) == [[string] for stage in MOBILENETV3_LARGE[:-1] for string in stage]


# --------------------------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_round_trips_or_names_the_stage_it_cannot_express(name):
    preset = preset_arch(name)
    expressible = {BlockType.SEPCONV, BlockType.MBCONV, BlockType.FUSED_MBCONV, BlockType.CONV,
                   BlockType.DEPTHWISE_SEPARABLE}
    first_other = next((index for index, stage in enumerate(preset.stages) if stage.block not in expressible), None)
    if first_other is not None:
        with pytest.raises(InterchangeError, match=rf"^stages\[{first_other}\] \({preset.stages[first_other].block}"):
            arch_to_timm(preset)
        return
    arch_def = arch_to_timm(preset)
    back = import_like(preset, arch_def)
    assert back == timm_equivalent(preset) and cost(back) == cost(preset)
    assert arch_to_timm(back) == arch_def


TIMM_CODED_ACTIVATIONS = (Activation.RELU, Activation.RELU6, Activation.HARDSWISH, Activation.SILU)
EXPORTABLE = (BlockType.SEPCONV, BlockType.MBCONV, BlockType.FUSED_MBCONV, BlockType.CONV,
              BlockType.DEPTHWISE_SEPARABLE)


def exportable_arch(rng: random.Random) -> Arch:
    """A random architecture timm's strings can express: widths in multiples of 8, every expressible block type,
    activations, skips, expansions and SE in both styles."""
    model_activation = rng.choice([Activation.RELU, Activation.SILU, Activation.HARDSWISH])
    stages = []
    for _ in range(rng.randint(1, 4)):
        block = rng.choice(EXPORTABLE)
        fields = {"block": block, "num_blocks": rng.randint(1, 3), "out_channels": rng.choice([8, 16, 24, 40]),
                  "stride": rng.choice([1, 2]), "kernel_size": rng.choice([1, 3, 5]),
                  "activation": rng.choice([model_activation, model_activation, *TIMM_CODED_ACTIVATIONS])}
        if block is not BlockType.DEPTHWISE_SEPARABLE:
            fields["skip"] = rng.random() < 0.7
        if block in (BlockType.MBCONV, BlockType.FUSED_MBCONV):
            fields["expand_ratio"] = rng.choice([1, 3, 4, 6])
        if block in (BlockType.SEPCONV, BlockType.MBCONV) or fields.get("expand_ratio", 1) != 1:
            fields["se_ratio"] = rng.choice([0, 0.25])
        stages.append(Stage(**fields))
    uses_se = any(stage.se_ratio > 0 for stage in stages)
    return Arch(stages=tuple(stages), stem_channels=rng.choice([16, 32]), head_channels=64, resolution=32,
                activation=model_activation, num_classes=10,
                se_style=rng.choice(list(SqueezeExciteStyle)) if uses_se else SqueezeExciteStyle.EFFICIENTNET)


def test_random_expressible_architectures_round_trip():
    blocks = set()
    for seed in range(200):
        arch = exportable_arch(random.Random(seed))
        arch_def = arch_to_timm(arch)
        back = import_like(arch, arch_def)
        assert back == timm_equivalent(arch), arch_def
        assert cost(back) == cost(arch)
        assert arch_to_timm(back) == arch_def
        blocks |= {string.split("_")[0] for stage in arch_def for string in stage}
    assert blocks == {"ds", "dsa", "ir", "er", "cn"}


def test_ratios_that_are_not_short_decimals_round_trip_exactly():
    preset = preset_arch("mobilenet_v3_small")  # expansion 88 / 24
    assert import_like(preset, arch_to_timm(preset)) == timm_equivalent(preset)


# ------------------------------------------------------------------------------------------------- errors


def one_line_error(function, *args, **kwargs) -> str:
    with pytest.raises(InterchangeError) as caught:
        function(*args, **kwargs)
    assert isinstance(caught.value, NasscaleError) and "\n" not in str(caught.value)
    return str(caught.value)


@pytest.mark.parametrize(
    ("arch_def", "expected"),
    [
        ([["xx_r1_k3_s1_c16"]], "arch_def[0][0] 'xx_r1_k3_s1_c16': unknown timm block type 'xx'"),
        ([["uir_r1_a3_k5_s1_e4_c16"]], "timm's uir blocks (universal inverted residual (MobileNetV4))"),
        ([["ir_r1_k3_s1_c16"]], "missing option e (timm needs it for ir blocks)"),
        ([["ir_r1_k3.5_s1_e6_c16"]], "k3.5: mixed kernels (MixNet) have no equivalent here"),
        ([["ir_r1_k3_s1_e6_c16_gs8"]], "option 'gs8' (group size) has no equivalent here"),
        ([["ir_r1_k3_s1_e6_c16_swish"]], "unknown option 'swish'; timm writes that activation nsw"),
        ([["ir_r1_k3_s1_e6_c16_x2"]], "unknown option 'x2'"),
        ([["ir_r1_k3_s1_e0_c16"]], "expand_ratio must be positive, got 0"),
        ([["ir_r1_k3_s1_e6_c16_nmi"]], "activation nmi (mish) has no equivalent here"),
        ([["ir_r1_k3_s1_e6_c16_nxx"]], "unknown activation 'nxx'; timm's codes are nre, nr6, nhs, nsw"),
        ([["ir_r1_k3_s1_e6_c16_k5"]], "option 'k' is given twice"),
        ([["ir_r1_k3_s1_e6_c16_p3"]], "option p3: only 1x1 expansion and projection convs are expressible"),
        ([["ir_r1_k3_s1_e1_c16"]], "timm's ir at e1 keeps a 1x1 expansion conv that mbconv e1 drops; write ds"),
        ([["er_r1_k3_s1_e1_c16"]], "timm's er at e1 keeps a 1x1 projection that fused_mbconv e1"),
        ([["ds_r1_k3_s1_e6_c16"]], "timm ignores e on ds blocks (they do not expand)"),
        ([["cn_r1_k3_s1_c16_se0.25"]], "se0.25: timm ignores se on cn blocks"),
        ([["dsa_r1_k3_s1_c16_se0.25"]], "se0.25: depthwise_separable has no squeeze-excite"),
        ([["ir_r1_k4_s1_e6_c16"]], "arch_def[0][0] 'ir_r1_k4_s1_e6_c16': kernel_size must be odd"),
        ([["ir_r1_k3_s3_e6_c16"]], "stride must be 1 or 2, got 3"),
        ([["ir_r1_k3_s1_e6_c16", "ir_r1_k3_s2_e6_c24"]], "arch_def[0][1] 'ir_r1_k3_s2_e6_c24': timm strides only"),
        ([["ds_r1_k3_s1_e1_c16"], ["ir_r2_k3_s2_e6_c20"]], "arch_def[1][0] 'ir_r2_k3_s2_e6_c20': timm rounds c20 to "
                                                           "24 output channels"),
        ([["ir_r1_k3_s1_e2.5_c24"]], "timm expands 24 channels by e2.5 to 64 (multiples of 8), this block to 60"),
        ([["ds_r1_k3_s1_e1_c16_se0.1"]], "timm squeezes to 6 channels (se0.1), this block to 5"),
        ("ir_r1_k3_s1_e6_c16", "arch_def: must be a non-empty list of stages"),
        ([[]], "arch_def: must be a non-empty list of stages"),
    ],
)
def test_bad_strings_are_one_line_errors(arch_def, expected):
    # Stem 24 for the expansion case (24 x 2.5 = 60, timm: 64), 56 for the SE case (56 x 0.1: round 6, int 5).
    stem = 56 if "se0.1" in str(arch_def) else 24
    message = one_line_error(arch_from_timm, arch_def, stem_channels=stem, head_channels=64, resolution=32)
    assert expected in message


def test_stem_width_timm_would_round_is_an_error():
    assert one_line_error(arch_from_timm, EFFICIENTNET_B0, stem_channels=20, head_channels=1280, resolution=224) \
        == "stem_channels: timm rounds stem_size 20 to 24 (multiples of 8)"


def stage(block: BlockType, **fields) -> Stage:
    return Stage(**{"block": block, "num_blocks": 1, "out_channels": 16, "stride": 1} | fields)


@pytest.mark.parametrize(
    ("stages", "expected"),
    [
        ((stage(BlockType.CONVNEXT, activation=Activation.GELU),),
         "stages[0] (convnext e1 k3 16x1 s1): convnext blocks have no timm block string"),
        ((stage(BlockType.SEPCONV), stage(BlockType.BOTTLENECK, bottleneck_ratio=0.5, activation=Activation.RELU)),
         "stages[1] (bottleneck k3 b0.5 16x1 s1): bottleneck blocks"),
        ((stage(BlockType.DENSE, expand_ratio=4, activation=Activation.RELU, num_blocks=2, out_channels=24),),
         "dense blocks"),
        ((stage(BlockType.FUSED_MBCONV, se_ratio=0.25),), "fused_mbconv at e1 with squeeze-excite has no timm string"),
        ((stage(BlockType.SEPCONV, activation=Activation.GELU),), "timm block strings have no code for gelu"),
        ((stage(BlockType.MBCONV, expand_ratio=6, out_channels=20),), "timm rounds c20 to 24 output channels"),
    ],
)
def test_stages_timm_cannot_express_are_one_line_errors(stages, expected):
    arch = Arch(stages=stages, stem_channels=16, head_channels=64, resolution=32)
    assert expected in one_line_error(arch_to_timm, arch)


def test_efficientnet_class_arguments():
    assert timm_model_kwargs(preset_arch("efficientnet_b0")) == {
        "stem_size": 32, "num_features": 1280, "act_layer": "silu", "num_classes": 1000, "in_chans": 3,
        "drop_rate": 0.2, "drop_path_rate": 0.2}
    assert timm_model_kwargs(preset_arch("mnasnet_a1"))["act_layer"] == "relu"
    message = one_line_error(timm_model_kwargs, preset_arch("mobilenet_v3_large"))
    assert "not a conv head with a single linear classifier" in message and "mobilenet_v3-style" in message


def test_arch_def_from_command_line_text():
    assert arch_def_from_text(str(EFFICIENTNETV2_S)) == EFFICIENTNETV2_S
    assert arch_def_from_text(json.dumps(MNASNET_A1)) == MNASNET_A1
    assert arch_def_from_text(" ds_r1_k3_s1_e1_c16;ir_r1_k3_s2_e4_c24_nre,ir_r1_k3_s1_e3_c24_nre ") == [
        ["ds_r1_k3_s1_e1_c16"], ["ir_r1_k3_s2_e4_c24_nre", "ir_r1_k3_s1_e3_c24_nre"]]
    assert one_line_error(arch_def_from_text, "[['ds_r1'") == "arch_def: not a valid list of lists of block strings"


# ----------------------------------------------------------------------------------------------------- CLI


def test_cli_prints_the_strings_and_the_efficientnet_arguments(capsys):
    code, out, err = run_cli(capsys, "timm", "efficientnet_b0", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["arch_def"] == EFFICIENTNET_B0 and result["efficientnet_kwargs"]["stem_size"] == 32
    code, out, _ = run_cli(capsys, "timm", "efficientnetv2_s")
    assert code == 0 and "    ['cn_r2_k3_s1_e1_c24_skip'],\n" in out
    assert "EfficientNet(decode_arch_def(arch_def), stem_size=24, num_features=1280, act_layer='silu'" in out
    code, out, err = run_cli(capsys, "timm", "convnext_tiny")
    assert code == 2 and out == ""
    assert err == ("nasscale: error: stages[0] (convnext e4 k7 96x3 s1): convnext blocks have no timm block string "
                   "(only sepconv, depthwise_separable, mbconv, fused_mbconv and conv do)\n")


def test_cli_imports_strings_and_writes_an_architecture_file(capsys, tmp_path):
    path = tmp_path / "v2s.yaml"
    code, out, err = run_cli(capsys, "from-timm", str(EFFICIENTNETV2_S), "--stem-channels", "24", "--resolution",
                             "384", "--out", str(path), "--json")
    assert code == 0, err
    result = json.loads(out)
    assert (result["params"], result["macs"]) == (PRESETS["efficientnetv2_s"].reference_params,
                                                  PRESETS["efficientnetv2_s"].reference_macs)
    assert from_yaml(path.read_text()).arch_id == result["arch_id"]
    code, _, err = run_cli(capsys, "from-timm", "ir_r1_k3_s1_e6_c16_gs8")
    assert code == 2 and err == ("nasscale: error: arch_def[0][0] 'ir_r1_k3_s1_e6_c16_gs8': option 'gs8' (group size) "
                                 "has no equivalent here\n")


def test_interchange_is_light_core():
    code = "import sys, nasscale.spec.interchange; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
