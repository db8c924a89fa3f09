"""Against the reference models themselves (marked vision: run in .venv-vision, see scripts/install-vision-env.sh):
for every pairing of the reference tables, torchvision's or timm's model with random weights (its norms perturbed,
so that every statistic and scale matters) is loaded into ours and ours exported back into it; in eval mode the
outputs agree to 1e-5 of their scale both ways, and the tensors survive the round trip bit for bit. Where a preset
cannot match, the test shows why. Nothing downloads: every model is built with random initialisation."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from nasscale.models.build import build
from nasscale.presets.registry import preset_arch
from nasscale.spec.norm import Norm
from nasscale.spec.vocabulary import Activation
from nasscale.weights import REFERENCES, export_weights, load_reference_weights, read_state_dict
from nasscale.weights.timm_rules import efficientnet as timm_efficientnet
from nasscale.weights.transfer import load_pairs, tensor_pairs

pytestmark = pytest.mark.vision

SIZE = 64  # every reference takes it (adaptive pools); the weights do not depend on the size
# But the ViTs, which take only the resolution they were built for (torchvision asserts it, timm's patch embedding
# too), and the Inceptions, whose stems and stride-2 modules need 75 px.
SIZES = {"vit_b_16": 224, "vit_b_32": 224, "vit_l_16": 224, "inception_v3": 139, "inception_resnet_v2": 139}
TOLERANCE = 1e-5  # of the output's scale (its largest magnitude)
PAIRINGS = [(preset, source) for source, table in REFERENCES.items() for preset in table]


def reference_model(source: str, name: str) -> nn.Module:
    if source == "torchvision":
        import torchvision

        # GoogLeNet's and Inception-v3's auxiliary heads are training-only; init_weights avoids their warning about
        # scipy's init.
        options = {"aux_logits": False, "init_weights": True} if name in ("googlenet", "inception_v3") else {}
        model = torchvision.models.get_model(name, weights=None, **options).eval()
        if name == "inception_v3":  # its init (std 0.1 for every conv) takes the logits to 1e11, where the biases
            for module in model.modules():  # of the last modules vanish: He's init keeps every tensor in play
                if isinstance(module, nn.Conv2d):
                    nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        return model
    import timm

    return timm.create_model(name, pretrained=False).eval()


@torch.no_grad()
def perturb(model: nn.Module, seed: int) -> nn.Module:
    """Random norm statistics, scales and biases (fresh models have unit scales, zero biases, zero-initialised
    branches and ConvNeXt's 1e-6 layer scale, which would hide a norm or a scale mapped to the wrong place)."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm | nn.LayerNorm | nn.GroupNorm):
            if getattr(module, "weight", None) is not None:
                module.weight.uniform_(0.5, 1.5, generator=generator)
                module.bias.normal_(0.0, 0.1, generator=generator)
            if getattr(module, "running_mean", None) is not None:
                module.running_mean.normal_(0.0, 0.1, generator=generator)
                module.running_var.uniform_(0.5, 2.0, generator=generator)
    for name, parameter in model.named_parameters():
        if name.endswith(("layer_scale", "gamma")):
            parameter.uniform_(0.5, 1.5, generator=generator)
        elif name.endswith("bias") and not parameter.abs().sum():
            parameter.normal_(0.0, 0.05, generator=generator)
        elif not parameter.abs().sum() or name.endswith(("class_token", "cls_token")):
            # torchvision's zero ViT classifier and class token, timm's class token of std 1e-6
            parameter.normal_(0.0, 0.02, generator=generator)
    return model


def relative_difference(first: torch.Tensor, second: torch.Tensor) -> float:
    return ((first - second).abs().max() / second.abs().max()).item()


def inputs(size: int = SIZE) -> torch.Tensor:
    return torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))


def our_arch(preset: str):
    arch = preset_arch(preset)
    if preset == "mobilenet_v1":  # timm's is ReLU6 throughout, the preset ReLU (the paper's table): see below
        arch = arch.replace(activation=Activation.RELU6, stages=tuple(
            dataclasses.replace(stage, activation=Activation.RELU6) for stage in arch.stages))
    return arch


@pytest.mark.parametrize(("preset", "source"), PAIRINGS, ids=[f"{source}-{preset}" for preset, source in PAIRINGS])
def test_weights_move_both_ways_and_outputs_agree(preset, source):
    reference = REFERENCES[source][preset]
    theirs = perturb(reference_model(source, reference.model), seed=0)
    their_weights = {name: tensor.clone() for name, tensor in theirs.state_dict().items()}
    torch.manual_seed(0)
    ours = build(our_arch(preset)).eval()
    load_reference_weights(ours, theirs.state_dict(), source=source, preset=preset)
    x = inputs(SIZES.get(preset, SIZE))
    with torch.no_grad():
        expected, got = theirs(x), ours(x)
    assert got.shape == expected.shape
    assert relative_difference(got, expected) <= TOLERANCE, "theirs -> ours"

    exported = export_weights(ours, target=source, preset=preset)
    # Their names in their order, but for the tensors we do not build (GoogLeNet's and Inception-v3's auxiliary
    # heads).
    assert list(exported) == [name for name in their_weights
                              if not (reference.ignored and name.startswith(reference.ignored))]
    for name, tensor in exported.items():  # the round trip theirs -> ours -> theirs is bit-exact
        assert torch.equal(tensor, their_weights[name]) and tensor.dtype == their_weights[name].dtype, name
    perturb(theirs, seed=1)  # scramble theirs, then load ours back into it
    theirs.load_state_dict(exported, strict=True)
    with torch.no_grad():
        assert relative_difference(theirs(x), got) <= TOLERANCE, "ours -> theirs"


def test_mobilenet_v1_differs_from_timm_only_by_its_activation():
    """timm's mobilenetv1_100 (ReLU6) against the preset as the paper tables it (ReLU): every tensor maps, the
    outputs differ; with ReLU6 (the test above) they agree."""
    theirs = perturb(reference_model("timm", "mobilenetv1_100"), seed=0)
    with torch.no_grad():  # scales that take activations past 6, where ReLU and ReLU6 part
        for module in theirs.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(4.0, 8.0, generator=torch.Generator().manual_seed(2))
    ours = build(preset_arch("mobilenet_v1")).eval()
    load_reference_weights(ours, theirs.state_dict(), source="timm")
    with torch.no_grad():
        assert relative_difference(ours(inputs()), theirs(inputs())) > 1e-4


def test_timm_efficientnet_b5_differs_from_the_preset_by_its_batch_norm():
    """Why efficientnet_b5-b7 have no timm pairing: timm's non-TF B5 keeps BatchNorm's eps 1e-5, torchvision's (the
    preset's) 1e-3. The tensors map one to one; the outputs agree only once the preset takes timm's norm."""
    theirs = perturb(reference_model("timm", "efficientnet_b5"), seed=0)
    for norm, agrees in ((preset_arch("efficientnet_b5").norm, False), (Norm(), True)):
        ours = build(preset_arch("efficientnet_b5").replace(norm=norm)).eval()
        # B0-B4's timm rules, which hold for B5's layout: the pairing is left out for its outputs, not its names.
        pairs = tensor_pairs(ours, timm_efficientnet(ours.arch), what="efficientnet_b5 <-> timm")
        load_pairs(ours, theirs.state_dict(), pairs, what="efficientnet_b5 <-> timm")
        with torch.no_grad():
            difference = relative_difference(ours(inputs()), theirs(inputs()))
        assert (difference <= TOLERANCE) is agrees, difference


def test_files_of_the_libraries_go_through_the_command_line(tmp_path, capsys):
    """A checkpoint as torchvision saves it and one as timm saves it (safetensors), imported into run folders and
    exported back: the reference models load the exports strictly and give the same outputs."""
    from tests.cli.test_cli_foundation import run_cli

    torchvision_model = perturb(reference_model("torchvision", "efficientnet_b0"), seed=0)
    torch.save(torchvision_model.state_dict(), tmp_path / "efficientnet_b0.pth")
    timm_model = perturb(reference_model("timm", "convnext_tiny"), seed=0)
    from safetensors.torch import save_file

    save_file(timm_model.state_dict(), str(tmp_path / "convnext_tiny.safetensors"))
    for model, source, preset, file in ((torchvision_model, "torchvision", "efficientnet_b0", "efficientnet_b0.pth"),
                                        (timm_model, "timm", "convnext_tiny", "convnext_tiny.safetensors")):
        run, out = tmp_path / preset, tmp_path / f"exported-{file}"
        code, _, err = run_cli(capsys, "weights", "import", "--from", source, "--preset", preset,
                               str(tmp_path / file), "-o", str(run))
        assert code == 0, err
        code, _, err = run_cli(capsys, "weights", "export", "--to", source, "--preset", preset, str(run), "-o",
                               str(out))
        assert code == 0, err
        expected = model(inputs())
        fresh = perturb(reference_model(source, REFERENCES[source][preset].model), seed=5)
        fresh.load_state_dict(read_state_dict(out), strict=True)
        with torch.no_grad():
            assert relative_difference(fresh(inputs()), expected) == 0.0
