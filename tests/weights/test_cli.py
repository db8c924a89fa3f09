"""``nasscale weights import / export / references`` and ``nasscale train --init-from``: a reference checkpoint
becomes a run folder that fine-tunes on an image folder with another class count, the classifier re-initialised
and every other tensor taken from the checkpoint."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from nasscale.errors import SpecError
from nasscale.evaluate.final import initialize_from, load_weights
from nasscale.models.build import build
from nasscale.presets.registry import preset_arch
from nasscale.spec.serialization import load_arch_file
from nasscale.weights import export_weights, read_state_dict
from tests.cli.test_cli_foundation import run_cli

PRESET = "resnet18"


@pytest.fixture(scope="module")
def torchvision_file(tmp_path_factory):
    """A checkpoint with torchvision's names, as `torch.save(torchvision.models.resnet18().state_dict(), FILE)`
    would write it (made from our model here: the main environment has no torchvision)."""
    folder = tmp_path_factory.mktemp("checkpoint")
    torch.manual_seed(123)  # not the training seed: a run from scratch starts elsewhere
    state_dict = export_weights(build(preset_arch(PRESET)), target="torchvision")
    torch.save(state_dict, folder / "resnet18.pth")
    return folder / "resnet18.pth", state_dict


def image_folder(root, classes=("cat", "dog", "fox"), per_class=6, size=32):
    for index, name in enumerate(classes):
        for number in range(per_class):
            colour = tuple((40 * index + 90 * channel + 7 * number) % 256 for channel in range(3))
            path = root / name / f"{number}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (size, size), colour).save(path)
    return root


def test_import_export_and_references(capsys, tmp_path, torchvision_file):
    path, state_dict = torchvision_file
    run = tmp_path / "run"
    code, out, err = run_cli(capsys, "weights", "import", "--from", "torchvision", "--preset", PRESET, str(path),
                             "-o", str(run), "--json")
    assert code == 0, err
    record = json.loads(out)
    assert record["num_classes"] == 1000 and record["arch_id"] == preset_arch(PRESET).arch_id
    assert sorted(item.name for item in run.iterdir()) == ["arch.yaml", "weights.pt"]
    code, out, err = run_cli(capsys, "weights", "export", "--to", "timm", "--preset", PRESET, str(run), "-o",
                             str(tmp_path / "timm.pth"))
    assert code == 0 and "tensors under timm's resnet18 names" in out, err
    exported = read_state_dict(tmp_path / "timm.pth")
    assert all(torch.equal(exported[name], tensor) for name, tensor in state_dict.items())
    code, out, _ = run_cli(capsys, "weights", "references", "--json")
    rows = {row["preset"]: row for row in json.loads(out)}
    assert rows["mnasnet_b1"]["torchvision"] == "mnasnet1_0" and rows["mnasnet_a1"]["timm"] == "semnasnet_100"
    assert rows["lenet5"] == {"preset": "lenet5", "torchvision": None, "timm": None,
                              "note": "neither library has LeNet-5"}
    code, out, _ = run_cli(capsys, "weights", "references")
    assert code == 0 and "semnasnet_100" in out


def test_train_init_from_fine_tunes_with_a_new_classifier(capsys, tmp_path, torchvision_file):
    path, state_dict = torchvision_file
    run = tmp_path / "imported"
    assert run_cli(capsys, "weights", "import", "--from", "torchvision", "--preset", PRESET, str(path), "-o",
                   str(run))[0] == 0
    data = image_folder(tmp_path / "pets")
    out = tmp_path / "tuned"
    # A learning rate too small to move them: the convolutions come out as the checkpoint's.
    code, _, err = run_cli(capsys, "train", "--arch", PRESET, "--init-from", str(run), "--data", f"imagefolder:{data}",
                           "--out", str(out), "--epochs", "1", "--resolution", "32", "--batch-size", "4",
                           "--learning-rate", "1e-9", "--json")
    assert code == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["init_from"] == {"run": str(run), "arch_id": preset_arch(PRESET).arch_id, "tensors_loaded": 120,
                                    "tensors": 122, "classifier_reinitialized": True}
    tuned = load_weights(load_arch_file(str(out / "arch.yaml")), out / "weights.pt").state_dict()
    assert tuned["head.classifier.weight"].shape == (3, 512)
    for ours, theirs in (("stem.0.weight", "conv1.weight"), ("stages.3.1.body.1.0.weight", "layer4.1.conv2.weight")):
        assert (tuned[ours] - state_dict[theirs]).abs().max() < 1e-4, ours  # a fresh init is 1e-2 away


def test_init_from_refuses_another_architecture(tmp_path, torchvision_file):
    path, _ = torchvision_file
    run = tmp_path / "imported"
    from nasscale.weights import import_checkpoint

    import_checkpoint(path, run, source="torchvision", preset=PRESET)
    arch = preset_arch("resnet34").replace(num_classes=3)
    with pytest.raises(SpecError, match=r"--init-from: .*arch.yaml holds another architecture"):
        initialize_from(build(arch), arch, run)
    grey = preset_arch(PRESET).replace(num_classes=3, in_channels=1)
    with pytest.raises(SpecError, match="and data with 3 channels"):
        initialize_from(build(grey), grey, run)
    same = preset_arch(PRESET).replace(num_classes=1000)
    (run / "weights.pt").write_bytes(b"cut")
    with pytest.raises(SpecError, match="weights.pt: is truncated or not a state dict"):
        initialize_from(build(same), same, run)
