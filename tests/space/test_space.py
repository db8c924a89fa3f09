import copy
from typing import Any

import pytest
import yaml

from nasscale.errors import NasscaleError, SpaceError, UnknownNameError
from nasscale.presets.convnext import convnext_tiny
from nasscale.presets.efficientnet import efficientnetv2_s
from nasscale.presets.mobile import mobilenet_v2
from nasscale.space.domains import Categorical, Deltas, Fixed, IntRange, Multipliers
from nasscale.space.extent import cost_range, describe_space, mac_range, space_size
from nasscale.space.model import BlockVariant, SearchSpace, StageSpace
from nasscale.space.parsing import builtin_space_names, load_space, space_from_dict, space_from_yaml
from nasscale.space.sampling import FixedChooser, RandomChooser, sample
from nasscale.spec.cost import cost
from nasscale.spec.norm import Norm
from nasscale.spec.vocabulary import Activation, BlockType, HeadType, StemType

# ---------------------------------------------------------------------------------------------- helpers


class EnumeratingChooser:
    """Follows a script of option indices, takes option 0 past its end and notes every untaken option as a
    new script, so replaying all scripts visits every combination of decisions exactly once."""

    def __init__(self, script: tuple[int, ...]):
        self.script = script
        self.taken: list[int] = []
        self.branches: list[tuple[int, ...]] = []

    def _pick(self, options: list[Any]) -> Any:
        position = len(self.taken)
        if position < len(self.script):
            index = self.script[position]
        else:
            index = 0
            self.branches += [(*self.taken, other) for other in range(1, len(options))]
        self.taken.append(index)
        return options[index]

    def categorical(self, name, choices):
        return self._pick(list(choices))

    def integer(self, name, low, high, step):
        return self._pick(list(range(low, high + 1, step)))


def all_archs(space: SearchSpace, **options: Any) -> dict:
    """Every architecture of the space by arch_id, by sampling every combination of decisions."""
    archs = {}
    scripts: list[tuple[int, ...]] = [()]
    while scripts:
        chooser = EnumeratingChooser(scripts.pop())
        arch = sample(space, chooser, **options)
        archs[arch.arch_id] = arch
        scripts += chooser.branches
    return archs


def problems_of(data: Any, source: str = "bad.yaml") -> list[str]:
    with pytest.raises(SpaceError) as caught:
        space_from_dict(data, source=source)
    assert str(caught.value) == "\n".join(caught.value.problems)
    return caught.value.problems


def base_data() -> dict:
    return {
        "name": "base",
        "resolution": 32,
        "stem_channels": 8,
        "head_channels": 16,
        "stages": [
            {"block": "mbconv", "num_blocks": 1, "out_channels": 8, "stride": 1, "kernel_size": [3, 5]},
            {"block": ["sepconv", "conv"], "num_blocks": 2, "out_channels": 16, "stride": 2},
        ],
    }


# Overlapping variants (mbconv with expand_ratio [3, 4] next to mbconv_e3), ConvNeXt mixed with strided
# convolutions at odd sizes (floor against ceil), relative globals: the corners of counting and costing.
TRICKY = {
    "name": "tricky",
    "resolution": [25, 32],
    "stem_channels": [8, 12],
    "head_channels": {"base": 16, "multipliers": [1.0, 2.0]},
    "stages": [
        {"block": ["convnext", "mbconv", {"block": "mbconv", "expand_ratio": 3}], "num_blocks": {"low": 1, "high": 2},
         "out_channels": [8, 16], "stride": 2, "kernel_size": [3, 5], "expand_ratio": [3, 4]},
        {"block": ["sepconv", "convnext", {"block": "fused_mbconv", "se_ratio": 0.25}], "num_blocks": 1,
         "out_channels": {"base": 16, "multipliers": [0.5, 1.0]}, "stride": 2, "se_ratio": [0, 0.5],
         "skip": [True, False]},
    ],
}


# ------------------------------------------------------------------------------------------- built-ins


def test_builtin_names_resolve_through_package_resources():
    import importlib.resources

    folder = importlib.resources.files("nasscale.search_spaces")
    assert (folder / "mnas.yaml").is_file()
    assert builtin_space_names() == ["convnext", "efficientnetv2", "hybrid", "mnas", "regnet", "resnet", "tiny", "vit"]


def test_builtin_folder_fallback_for_an_uninstalled_tree(monkeypatch):
    import importlib.resources

    def not_installed(package):
        raise ModuleNotFoundError(package)

    monkeypatch.setattr(importlib.resources, "files", not_installed)
    assert builtin_space_names() == ["convnext", "efficientnetv2", "hybrid", "mnas", "regnet", "resnet", "tiny", "vit"]
    assert load_space("tiny").name == "tiny"


@pytest.mark.parametrize("name", ["convnext", "efficientnetv2", "hybrid", "mnas", "regnet", "resnet", "tiny", "vit"])
def test_builtin_space_loads_samples_and_bounds_its_samples(name):
    space = load_space(name)
    assert space.name == name and space.description
    low, high = mac_range(space)
    bounds = cost_range(space)
    assert 0 < low < high and (low, high) == (bounds.macs_min, bounds.macs_max)
    assert 0 < bounds.params_min < bounds.params_max
    assert space_size(space) > 1000
    chooser = RandomChooser(0)
    for _ in range(50):
        arch = sample(space, chooser)  # Arch validates itself
        arch_cost = cost(arch)
        assert low <= arch_cost.macs <= high
        assert bounds.params_min <= arch_cost.params <= bounds.params_max


@pytest.mark.parametrize("name", ["convnext", "efficientnetv2", "hybrid", "mnas", "regnet", "resnet", "tiny", "vit"])
def test_builtin_round_trips_through_dict_and_yaml(name):
    space = load_space(name)
    assert space_from_dict(space.to_dict()) == space
    assert space_from_yaml(yaml.safe_dump(space.to_dict(), sort_keys=False)) == space


def test_describe_space_has_the_cli_fields():
    row = describe_space(load_space("tiny"))
    assert set(row) == {"name", "description", "stages", "size", "macs_min", "macs_max", "params_min",
                        "params_max", "resolution"}
    assert row["stages"] == 2 and row["size"] == 2048 and row["resolution"] == [24, 32]


def test_builtin_name_is_forgiving_about_case_and_dashes():
    assert load_space(" Tiny ") == load_space("tiny")


def test_mnas_contains_the_mobilenet_v2_backbone():
    params = {}
    for index in range(7):
        params |= {f"stages.{index}.block": "sepconv" if index == 0 else "mbconv_e6",
                   f"stages.{index}.kernel_size": 3, f"stages.{index}.se_ratio": 0, f"stages.{index}.skip": True,
                   f"stages.{index}.out_channels_multiplier": 1.0, f"stages.{index}.num_blocks_delta": 0}
    arch = sample(load_space("mnas"), FixedChooser(params))
    # MobileNetV2's expansion-1 first block is a separable conv; only its ReLU6 differs, which costs nothing.
    assert cost(arch) == cost(mobilenet_v2())


def test_efficientnetv2_contains_v2_s():
    params = {}
    for index, expand in enumerate((1, 4, 4, 4, 6, 6)):
        params |= {f"stages.{index}.block": "fused_mbconv" if index < 3 else "mbconv_se0.25",
                   f"stages.{index}.kernel_size": 3, f"stages.{index}.expand_ratio": expand,
                   f"stages.{index}.num_blocks_delta": 0}
    arch = sample(load_space("efficientnetv2"), FixedChooser(params), resolution=384)
    assert arch.arch_id == efficientnetv2_s().arch_id  # the space carries V2's BatchNorm eps, as the preset does


def test_convnext_contains_convnext_tiny():
    params = {f"stages.{index}.kernel_size": 7 for index in range(4)}
    params |= {f"stages.{index}.out_channels_multiplier": 1.0 for index in range(1, 4)}
    params |= {"stages.0.num_blocks": 3, "stages.1.num_blocks": 3, "stages.2.num_blocks": 9, "stages.3.num_blocks": 3}
    arch = sample(load_space("convnext"), FixedChooser(params))
    assert arch.arch_id == convnext_tiny().arch_id


# ------------------------------------------------------------------------------- size and cost, exactly


@pytest.mark.parametrize("space", [load_space("tiny"), space_from_dict(TRICKY)], ids=["tiny", "tricky"])
@pytest.mark.parametrize("in_channels, num_classes", [(3, 1000), (1, 10)])
def test_size_and_cost_range_match_brute_force(space, in_channels, num_classes):
    archs = all_archs(space, in_channels=in_channels, num_classes=num_classes)
    assert space_size(space) == len(archs)
    costs = [cost(arch) for arch in archs.values()]
    bounds = cost_range(space, in_channels=in_channels, num_classes=num_classes)
    assert bounds.macs_min == min(item.macs for item in costs)
    assert bounds.macs_max == max(item.macs for item in costs)
    assert bounds.params_min == min(item.params for item in costs)
    assert bounds.params_max == max(item.params for item in costs)


def test_tiny_is_small_enough_to_enumerate():
    assert space_size(load_space("tiny")) == 2048


def test_cost_range_at_a_fixed_resolution():
    space = load_space("tiny")
    costs = [cost(arch).macs for arch in all_archs(space, resolution=24).values()]
    assert mac_range(space, resolution=24) == (min(costs), max(costs))


def test_size_counts_architectures_not_parameter_combinations():
    data = base_data()
    # round_filters(16, 0.75) and round_filters(16, 1.0) are both 16.
    data["stages"][1]["out_channels"] = {"base": 16, "multipliers": [0.75, 1.0, 1.5]}
    space = space_from_dict(data)
    assert space_size(space) == 2 * 2 * 2  # kernel x block x {16, 24}
    assert space_size(space) == len(all_archs(space))


# ---------------------------------------------------------------------------------------------- parsing


def test_every_construct_parses():
    data = {
        "name": "all",
        "description": "every construct",
        "resolution": {"low": 32, "high": 64, "step": 16},
        "stem_channels": {"base": 16, "multipliers": [0.5, 1.0]},
        "head_channels": [64, 128],
        "activation": "swish",
        "dropout": 0.1,
        "stages": [{
            "block": ["conv", "sepconv", {"block": "mbconv", "expand_ratio": 3},
                      {"block": "mbconv", "expand_ratio": 6, "kernel_size": 5}],
            "num_blocks": {"base": 2, "deltas": [-1, 0, 1]},
            "out_channels": {"low": 8, "high": 24, "step": 8},
            "stride": 2,
            "kernel_size": [3, 5, 7],
            "se_ratio": [0, 0.25],
            "activation": ["relu", "hardswish"],
            "skip": [True, False],
        }],
    }
    space = space_from_dict(data)
    stage = space.stages[0]
    assert space.resolution == IntRange(low=32, high=64, step=16)
    assert space.stem_channels == Multipliers(base=16, multipliers=(0.5, 1.0))
    assert space.head_channels == Categorical(choices=(64, 128))
    assert space.activation is Activation.SILU  # "swish" is SiLU's other name
    assert stage.labels == ("conv", "sepconv", "mbconv_e3", "mbconv_k5_e6")
    assert stage.num_blocks == Deltas(base=2, deltas=(-1, 0, 1))
    assert stage.num_blocks.values() == (1, 2, 3)
    assert stage.out_channels == IntRange(low=8, high=24, step=8)
    assert stage.stride == 2
    assert stage.activation == Categorical(choices=("relu", "hardswish"))
    assert space.stem is StemType.CONV and space.head is HeadType.CONV and space.dropout == 0.1
    assert space_from_dict(space.to_dict()) == space


def test_a_one_item_list_is_a_fixed_value():
    data = base_data()
    data["stages"][0]["kernel_size"] = [5]
    assert space_from_dict(data).stages[0].kernel_size == Fixed(value=5)


def test_python_api_builds_the_same_space():
    built = SearchSpace(
        name="base",
        resolution=Fixed(value=32),
        stem_channels=Fixed(value=8),
        head_channels=Fixed(value=16),
        stages=(
            StageSpace(block=(BlockVariant(block=BlockType.MBCONV),), num_blocks=Fixed(value=1),
                       out_channels=Fixed(value=8), stride=1, kernel_size=Categorical(choices=(3, 5))),
            StageSpace(block=(BlockVariant(block=BlockType.SEPCONV), BlockVariant(block=BlockType.CONV)),
                       num_blocks=Fixed(value=2), out_channels=Fixed(value=16), stride=2),
        ),
    )
    assert built == space_from_dict(base_data())


def test_python_api_validates_too():
    stage = StageSpace(block=(BlockVariant(block=BlockType.CONV),), num_blocks=Fixed(value=1),
                       out_channels=Fixed(value=8), stride=1, kernel_size=Categorical(choices=(3, 4)))
    with pytest.raises(SpaceError, match=r"<SearchSpace>: stages\[0\].kernel_size: must be odd"):
        SearchSpace(name="x", resolution=Fixed(value=32), stem_channels=Fixed(value=8), head_channels=Fixed(value=8),
                    stages=(stage,))


def test_python_api_checks_domain_types():
    stage = StageSpace(block=(BlockVariant(block=BlockType.CONV),), num_blocks=2, out_channels=Fixed(value=8),
                       stride=1, kernel_size=Multipliers(base=3, multipliers=(1.0,)))
    with pytest.raises(SpaceError) as caught:
        SearchSpace(name="x", resolution=Fixed(value=32), stem_channels=Fixed(value=8), head_channels=Fixed(value=8),
                    stages=(stage,))
    assert caught.value.problems == [
        "<SearchSpace>: stages[0].num_blocks: must be a Fixed, Categorical, IntRange, Multipliers or Deltas, got 2",
        "<SearchSpace>: stages[0].kernel_size: {base, multipliers} is only for out_channels, stem_channels, "
        "head_channels",
    ]


def test_variant_key_order_does_not_matter():
    first = BlockVariant(block=BlockType.MBCONV, fixed=(("expand_ratio", 6), ("kernel_size", 5)))
    second = BlockVariant(block=BlockType.MBCONV, fixed=(("kernel_size", 5), ("expand_ratio", 6)))
    assert first == second and first.label == "mbconv_k5_e6"


def test_norm_head_needs_no_head_channels():
    space = load_space("convnext")
    assert space.head is HeadType.NORM and space.head_channels == Fixed(value=0)


# ----------------------------------------------------------------------------------------------- errors


def mutated(change) -> dict:
    data = copy.deepcopy(base_data())
    change(data)
    return data


VALID_TOP_KEYS = ("name, description, resolution, stem, stem_channels, head, head_channels, activation, dropout, "
                  "drop_path_rate, norm, stages")
VALID_STAGE_KEYS = ("block, num_blocks, out_channels, stride, kernel_size, expand_ratio, se_ratio, activation, skip, "
                    "groups, bottleneck_ratio, pool, same_padding, branches, num_heads, patch_size, class_token, "
                    "position_embedding, residual_scale, output_activation")

ERROR_CASES = {
    "unknown top-level key": (
        lambda data: data.update(resolutoin=32),
        f"bad.yaml: resolutoin: unknown key; valid keys are {VALID_TOP_KEYS} (did you mean resolution?)"),
    "unknown stage key": (
        lambda data: data["stages"][0].update(kernal_size=3),
        f"bad.yaml: stages[0].kernal_size: unknown key; valid keys are {VALID_STAGE_KEYS} (did you mean kernel_size?)"),
    "missing stage key": (
        lambda data: data["stages"][1].pop("out_channels"),
        "bad.yaml: stages[1].out_channels: is required"),
    "bad value type": (
        lambda data: data["stages"][0].update(kernel_size="three"),
        "bad.yaml: stages[0].kernel_size: must be an integer, got 'three'"),
    "bad choice type": (
        lambda data: data["stages"][0].update(skip=[True, "no"]),
        "bad.yaml: stages[0].skip: must be true or false, got 'no'"),
    "nested list": (
        lambda data: data["stages"][0].update(kernel_size=[3, [5]]),
        "bad.yaml: stages[0].kernel_size: must be a value, a list of values or a range, got [5]"),
    "empty choice": (
        lambda data: data["stages"][0].update(kernel_size=[]),
        "bad.yaml: stages[0].kernel_size: empty list of choices"),
    "empty block choice": (
        lambda data: data["stages"][1].update(block=[]),
        "bad.yaml: stages[1].block: empty list of choices"),
    "duplicate choice": (
        lambda data: data["stages"][0].update(kernel_size=[3, 5, 3]),
        "bad.yaml: stages[0].kernel_size: lists the choice 3 more than once"),
    "range low above high": (
        lambda data: data["stages"][0].update(num_blocks={"low": 3, "high": 1}),
        "bad.yaml: stages[0].num_blocks: range low 3 is greater than high 1"),
    "range not integer": (
        lambda data: data["stages"][0].update(num_blocks={"low": 1.5, "high": 3}),
        "bad.yaml: stages[0].num_blocks: range low must be an integer, got 1.5"),
    "range off its step": (
        lambda data: data.update(resolution={"low": 32, "high": 40, "step": 16}),
        "bad.yaml: resolution: range high - low (8) is not a multiple of step 16"),
    "range on a float field": (
        lambda data: data["stages"][0].update(se_ratio={"low": 0, "high": 1}),
        "bad.yaml: stages[0].se_ratio: {low, high, step} is only for num_blocks, out_channels, kernel_size, "
        "resolution, stem_channels, head_channels"),
    "mapping on a plain field": (
        lambda data: data["stages"][0].update(skip={"yes": 1}),
        "bad.yaml: stages[0].skip: must be a value or a list of values, got {'yes': 1}"),
    "mapping of the wrong shape": (
        lambda data: data["stages"][0].update(num_blocks={"min": 1}),
        "bad.yaml: stages[0].num_blocks: a mapping here must be {base, deltas} or {low, high, step}, got keys min"),
    "range key typo": (
        lambda data: data["stages"][0].update(num_blocks={"low": 1, "hihg": 3}),
        "bad.yaml: stages[0].num_blocks.hihg: unknown key; valid keys are low, high, step"),
    "multipliers on kernel": (
        lambda data: data["stages"][0].update(kernel_size={"base": 3, "multipliers": [1, 2]}),
        "bad.yaml: stages[0].kernel_size: {base, multipliers} is only for out_channels, stem_channels, "
        "head_channels"),
    "deltas on channels": (
        lambda data: data["stages"][0].update(out_channels={"base": 16, "deltas": [0, 8]}),
        "bad.yaml: stages[0].out_channels: {base, deltas} is only for num_blocks"),
    "stride choice": (
        lambda data: data["stages"][1].update(stride=[1, 2]),
        "bad.yaml: stages[1].stride: must be one fixed value (strides come from the backbone and are not "
        "searched), got [1, 2]"),
    "bad stride": (
        lambda data: data["stages"][1].update(stride=3),
        "bad.yaml: stages[1].stride: must be 1 or 2, got 3"),
    "unknown block": (
        lambda data: data["stages"][1].update(block=["sepconv", "dwconv"]),
        "bad.yaml: stages[1].block[1]: unknown block type 'dwconv'; valid block types are mbconv, fused_mbconv, "
        "sepconv, conv, convnext, basic, bottleneck, se_bottleneck, preact_basic, preact_bottleneck, "
        "depthwise_separable, shuffle, dense, inception, fire, plain, van, transformer, inception_v3_a, "
        "inception_v3_b, inception_v3_c, inception_v3_d, inception_v3_e, inception_resnet_mixed_5b, "
        "inception_resnet_a, inception_resnet_b, inception_resnet_c, inception_resnet_reduction_b"),
    "variant field that does not apply": (
        lambda data: data["stages"][1].update(block=[{"block": "sepconv", "expand_ratio": 3}, "conv"]),
        "bad.yaml: stages[1].block[0].expand_ratio: does not apply to sepconv blocks"),
    "variant with a bad value": (
        lambda data: data["stages"][0].update(block={"block": "mbconv", "expand_ratio": 0}),
        "bad.yaml: stages[0].block.expand_ratio: must be positive, got 0"),
    "variant with a list": (
        lambda data: data["stages"][0].update(block=[{"block": "mbconv", "expand_ratio": [3, 6]}, "conv"]),
        "bad.yaml: stages[0].block[0].expand_ratio: must be one value here, got [3, 6]"),
    "duplicate variant": (
        lambda data: data["stages"][1].update(block=["conv", "sepconv", "conv"]),
        "bad.yaml: stages[1].block: lists conv more than once"),
    "field for none of the blocks": (
        lambda data: data["stages"][1].update(block="conv", se_ratio=[0, 0.25]),
        "bad.yaml: stages[1].se_ratio: does not apply to conv blocks; leave it out"),
    "field every variant fixes": (
        lambda data: data["stages"][0].update(block={"block": "mbconv", "kernel_size": 5}),
        "bad.yaml: stages[0].kernel_size: every block choice fixes it; leave it out"),
    "even kernel among the choices": (
        lambda data: data["stages"][0].update(kernel_size=[3, 4]),
        "bad.yaml: stages[0].kernel_size: must be odd and at most 11, got 4"),
    "delta giving no layers": (
        lambda data: data["stages"][0].update(num_blocks={"base": 1, "deltas": [-1, 0, 1]}),
        "bad.yaml: stages[0].num_blocks: must be at least 1, got 0 (base 1, delta -1)"),
    "multiplier giving a bad width": (
        lambda data: data.update(head_channels={"base": 16, "multipliers": [-1, 1]}),
        "bad.yaml: head_channels: multipliers must be positive numbers, got -1"),
    "unknown activation": (
        lambda data: data["stages"][0].update(activation=["relu", "mish"]),
        "bad.yaml: stages[0].activation: must be one of relu, relu6, silu, hardswish, gelu, got 'mish'"),
    "unknown stem": (
        lambda data: data.update(stem="fancy"),
        "bad.yaml: stem: unknown stem 'fancy'; valid stems are conv, patchify, resnet, resnet_preact, "
        "conv_pool, googlenet, squeezenet_1_0, squeezenet_1_1, alexnet, overlapping_patchify, inception, none"),
    "bad dropout": (
        lambda data: data.update(dropout=1.5),
        "bad.yaml: dropout: must be in [0, 1), got 1.5"),
    "bad global choice": (
        lambda data: data.update(stem_channels=[8, 0]),
        "bad.yaml: stem_channels: must be at least 1, got 0"),
    "head channels with a norm head": (
        lambda data: data.update(head="norm"),
        "bad.yaml: head_channels: must be 0 with a norm head, got 16"),
    "no head channels with a conv head": (
        lambda data: data.pop("head_channels"),
        "bad.yaml: head_channels: is required with a conv head"),
    "no stages": (
        lambda data: data.update(stages=[]),
        "bad.yaml: stages: must be a non-empty list of stages, got []"),
    "name not a string": (
        lambda data: data.update(name=7),
        "bad.yaml: name: must be a string, got 7"),
}


@pytest.mark.parametrize("case", ERROR_CASES, ids=list(ERROR_CASES))
def test_problem_lines_name_the_file_and_field(case):
    change, expected = ERROR_CASES[case]
    assert expected in problems_of(mutated(change))


def test_resolution_too_small_for_the_strides():
    data = load_space("convnext").to_dict()
    data["resolution"] = [16, 224]  # patchify 16 -> 4, then 2, then 1: stage 3 cannot downsample
    assert problems_of(data) == ["bad.yaml: resolution: 16 is too small: stages[3] gets a 1x1 input"]


def test_resolution_too_small_for_the_stem():
    data = load_space("convnext").to_dict()
    data["resolution"] = 3
    assert "bad.yaml: resolution: 3 is too small for the patchify stem" in problems_of(data)


def test_mnas_with_a_minus_one_delta_on_a_base_one_stage_is_rejected():
    data = load_space("mnas").to_dict()
    data["stages"][0]["num_blocks"]["deltas"] = [-1, 0, 1]
    assert problems_of(data, "mnas.yaml") == [
        "mnas.yaml: stages[0].num_blocks: must be at least 1, got 0 (base 1, delta -1)"]


def test_several_problems_give_several_lines():
    def change(data):
        data.update(resolutoin=32)
        data["stages"][0].update(kernal_size=3, kernel_size=[3, 4])
        data["stages"][1].update(stride=[1, 2], block=["conv", "dwconv"])

    lines = problems_of(mutated(change))
    assert len(lines) == 5
    for prefix in ("bad.yaml: resolutoin: unknown key", "bad.yaml: stages[0].kernal_size: unknown key",
                   "bad.yaml: stages[0].kernel_size: must be odd", "bad.yaml: stages[1].stride: must be one fixed",
                   "bad.yaml: stages[1].block[1]: unknown block type 'dwconv'"):
        assert any(line.startswith(prefix) for line in lines), prefix


def test_a_bad_field_does_not_hide_the_other_fields_of_its_stage():
    def change(data):
        data["stages"][1].update(block=["conv", "dw"], stride=[1, 2], kernel_size=[2, 3], num_blocks=0)
        data["stages"][1].pop("out_channels")

    assert problems_of(mutated(change)) == [
        "bad.yaml: stages[1].out_channels: is required",
        "bad.yaml: stages[1].block[1]: unknown block type 'dw'; valid block types are mbconv, fused_mbconv, "
        "sepconv, conv, convnext, basic, bottleneck, se_bottleneck, preact_basic, preact_bottleneck, "
        "depthwise_separable, shuffle, dense, inception, fire, plain, van, transformer, inception_v3_a, "
        "inception_v3_b, inception_v3_c, inception_v3_d, inception_v3_e, inception_resnet_mixed_5b, "
        "inception_resnet_a, inception_resnet_b, inception_resnet_c, inception_resnet_reduction_b",
        "bad.yaml: stages[1].stride: must be one fixed value (strides come from the backbone and are not "
        "searched), got [1, 2]",
        "bad.yaml: stages[1].num_blocks: must be at least 1, got 0",
        "bad.yaml: stages[1].kernel_size: must be odd and at most 11, got 2",
    ]


def test_an_unknown_key_does_not_hide_the_checks_of_the_space():
    data = load_space("convnext").to_dict()
    data["resolution"] = 16
    data["drop_pathrate"] = 0.1
    assert problems_of(data) == [
        f"bad.yaml: drop_pathrate: unknown key; valid keys are {VALID_TOP_KEYS} (did you mean drop_path_rate?)",
        "bad.yaml: resolution: 16 is too small: stages[3] gets a 1x1 input",
    ]


def test_identical_problems_are_reported_once():
    data = base_data()
    data["stages"][1]["kernel_size"] = [4, 5]  # applies to both sepconv and conv
    assert problems_of(data) == ["bad.yaml: stages[1].kernel_size: must be odd and at most 11, got 4"]


def test_no_stages_is_one_line():
    assert problems_of(mutated(lambda data: data.update(stages=[]))) == [
        "bad.yaml: stages: must be a non-empty list of stages, got []"]


def test_not_a_mapping():
    assert problems_of([1, 2]) == ["bad.yaml: a search space must be a mapping of fields, got list"]


def test_yaml_syntax_error_is_one_line_with_the_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nstages: [\n  - block: conv\n")
    with pytest.raises(SpaceError) as caught:
        load_space(str(path))
    assert len(caught.value.problems) == 1
    assert caught.value.problems[0].startswith(f"{path}: not valid YAML: ")
    assert "line" in caught.value.problems[0]


def test_load_space_from_a_file(tmp_path):
    path = tmp_path / "mine.yaml"
    data = base_data()
    del data["name"]
    path.write_text(yaml.safe_dump(data))
    space = load_space(str(path))
    assert space.name == "mine"
    path.write_text(yaml.safe_dump(mutated(lambda data: data["stages"][0].update(kernel_size=[2]))))
    with pytest.raises(SpaceError, match=rf"^{path}: stages\[0\].kernel_size: must be odd"):
        load_space(str(path))


def test_missing_file():
    with pytest.raises(SpaceError, match="nowhere.yaml: no such search-space file"):
        load_space("nowhere.yaml")


def test_unknown_builtin_name_lists_the_builtins():
    with pytest.raises(UnknownNameError) as caught:
        load_space("mnasnet")
    message = str(caught.value)
    assert "unknown search space 'mnasnet'" in message
    assert "convnext, efficientnetv2, hybrid, mnas, regnet, resnet, tiny, vit" in message
    assert isinstance(caught.value, NasscaleError)


def test_space_error_is_a_nasscale_error():
    assert issubclass(SpaceError, NasscaleError)


def test_mnas_size_is_the_product_over_stages():
    from nasscale.spec.rescaling import round_filters

    ops = 2 * 2 + 3 * (2 * 2 * 2)  # conv (kernel x skip; no SE) + sepconv, mbconv_e3, mbconv_e6 (kernel x se x skip)
    size = 1
    for base, depths in zip((16, 24, 32, 64, 96, 160, 320), (2, 3, 3, 3, 3, 3, 2), strict=True):
        widths = len({round_filters(base, multiplier) for multiplier in (0.75, 1.0, 1.25)})
        size *= ops * widths * depths
    assert space_size(load_space("mnas")) == size


def test_a_space_carries_its_norm_settings_into_every_sample():
    data = copy.deepcopy(base_data()) | {"norm": {"batch_norm_eps": "1e-3", "zero_init_last_bn": True}}
    space = space_from_dict(data)
    assert space.to_dict()["norm"] == {"batch_norm_eps": 1e-3, "zero_init_last_bn": True}
    assert sample(space, RandomChooser(0)).norm == Norm(batch_norm_eps=1e-3, zero_init_last_bn=True)
    assert "norm" not in space_from_dict(base_data()).to_dict()
    with pytest.raises(SpaceError, match=r"^bad.yaml: norm.batch_norm_momentum: must be in \[0, 1\], got 2$"):
        space_from_dict(copy.deepcopy(base_data()) | {"norm": {"batch_norm_momentum": 2}}, source="bad.yaml")
