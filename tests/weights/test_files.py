"""Checkpoint files and run folders: what reads (torch.save files, wrapped or DDP-prefixed state dicts, safetensors
where installed) and what is refused in one line (a missing, truncated or foreign file, a pickle that is not a
state dict), with nothing written; the import/export round trip through a run folder is bit-exact."""

from __future__ import annotations

import collections
import io

import pytest
import torch

from nasscale.errors import InterchangeError, SpecError, UnknownNameError
from nasscale.evaluate.final import load_weights
from nasscale.models.build import build
from nasscale.presets.registry import preset_arch
from nasscale.spec.serialization import load_arch_file
from nasscale.weights import export_checkpoint, export_weights, import_checkpoint, read_state_dict, write_state_dict


def checkpoint(tmp_path, preset="resnet18", source="torchvision", seed=0, **changes):
    """A reference checkpoint file as the reference would save it: made from our model, so that no torchvision is
    needed (the vision tests make them with torchvision and timm themselves)."""
    torch.manual_seed(seed)
    state_dict = export_weights(build(preset_arch(preset).replace(**changes)), target=source, preset=preset)
    path = tmp_path / f"{preset}-{source}.pth"
    torch.save(state_dict, path)
    return path, state_dict


def refused(path, fragment: str) -> None:
    with pytest.raises(SpecError) as raised:
        read_state_dict(path)
    assert fragment in str(raised.value) and "\n" not in str(raised.value), str(raised.value)
    assert str(raised.value).startswith(str(path))


def test_a_truncated_file_is_one_line(tmp_path):
    path, _ = checkpoint(tmp_path)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    refused(cut, "is truncated or not a torch checkpoint")
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    refused(empty, "is truncated or not a torch checkpoint")
    noise = tmp_path / "noise.pth"
    noise.write_bytes(b"\x00not a checkpoint at all\xff" * 10)
    refused(noise, "not a torch checkpoint")


def test_a_pickle_that_is_not_a_state_dict_is_one_line(tmp_path):
    listed = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], listed)
    refused(listed, "is not a state dict (name -> tensor): it holds a list")
    mixed = tmp_path / "mixed.pt"
    torch.save({"weight": torch.zeros(2), "epoch": 3}, mixed)
    refused(mixed, "is not a state dict (name -> tensor): 'epoch' holds a int")
    emptied = tmp_path / "emptied.pt"
    torch.save({}, emptied)
    refused(emptied, "it holds an empty mapping")
    module = tmp_path / "module.pt"
    torch.save(torch.nn.Linear(2, 2), module)  # a whole pickled model: weights_only refuses to run its code
    refused(module, "holds objects other than tensors (torch.nn.modules.linear.Linear); save the model's state_dict()")


def test_missing_files_and_folders_are_one_line(tmp_path):
    refused(tmp_path / "nope.pth", "no such checkpoint file")
    refused(tmp_path, "is a folder where a checkpoint file should be")


def test_wrapped_and_data_parallel_state_dicts_are_unwrapped(tmp_path):
    _, state_dict = checkpoint(tmp_path)
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"model": state_dict, "epoch": 90}, wrapped)  # torchvision's reference scripts
    assert read_state_dict(wrapped).keys() == state_dict.keys()
    prefixed = tmp_path / "ddp.pth"
    torch.save({"state_dict": {f"module.{name}": tensor for name, tensor in state_dict.items()}}, prefixed)  # timm's
    assert read_state_dict(prefixed).keys() == state_dict.keys()


def test_safetensors_files_round_trip(tmp_path):
    pytest.importorskip("safetensors")
    _, state_dict = checkpoint(tmp_path)
    path = tmp_path / "resnet18.safetensors"
    write_state_dict(state_dict, path)
    loaded = read_state_dict(path)
    assert all(torch.equal(loaded[name], tensor) for name, tensor in state_dict.items())
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(path.read_bytes()[:100])
    refused(cut, "is truncated or not a safetensors file")


def test_metadata_survives_the_file(tmp_path):
    path, _ = checkpoint(tmp_path, "mnasnet_b1")
    buffer = io.BytesIO(path.read_bytes())
    assert torch.load(buffer, weights_only=True)._metadata == {"": {"version": 2}}
    out = tmp_path / "again.pth"
    write_state_dict(read_state_dict(path), out)
    assert isinstance(read_state_dict(out), dict)


def test_import_then_export_is_bit_exact(tmp_path):
    path, state_dict = checkpoint(tmp_path, "efficientnet_b0", num_classes=10)
    run = tmp_path / "run"
    arch = import_checkpoint(path, run, source="torchvision", preset="efficientnet_b0")
    assert arch.num_classes == 10  # read off the checkpoint's classifier
    assert load_arch_file(str(run / "arch.yaml")) == arch == preset_arch("efficientnet_b0").replace(num_classes=10)
    model = load_weights(arch, run / "weights.pt")  # the loader nasscale train's folders are read with
    assert torch.equal(model.state_dict()["stem.0.weight"], state_dict["features.0.0.weight"])
    out = tmp_path / "back.pth"
    assert export_checkpoint(run, out, target="torchvision", preset="efficientnet_b0") == len(state_dict)
    back = read_state_dict(out)
    assert list(back) == list(state_dict)
    assert all(torch.equal(back[name], tensor) for name, tensor in state_dict.items())


def test_a_run_exports_to_the_other_library_too(tmp_path):
    path, _ = checkpoint(tmp_path, "resnet50", source="timm")
    run = tmp_path / "run"
    import_checkpoint(path, run, source="timm", preset="resnet50")
    out = tmp_path / "torchvision.pth"
    export_checkpoint(run, out, target="torchvision", preset="resnet50")  # timm's and torchvision's names agree
    assert read_state_dict(out).keys() == read_state_dict(path).keys()


def test_refused_imports_write_nothing(tmp_path):
    path, _ = checkpoint(tmp_path, "resnet34")
    run = tmp_path / "run"
    with pytest.raises(InterchangeError, match="resnet18 <-> torchvision resnet18: unexpected tensor layer1.2"):
        import_checkpoint(path, run, source="torchvision", preset="resnet18")
    with pytest.raises(UnknownNameError, match="torchvision has no counterpart of preset se_resnet50"):
        import_checkpoint(path, run, source="torchvision", preset="se_resnet50")
    with pytest.raises(SpecError, match="no such checkpoint file"):
        import_checkpoint(tmp_path / "nope.pth", run, source="torchvision", preset="resnet18")
    (tmp_path / "file").write_text("")
    with pytest.raises(SpecError, match="is a file; give a folder"):
        import_checkpoint(path, tmp_path / "file", source="torchvision", preset="resnet34")
    assert not run.exists()


def test_refused_exports_write_nothing(tmp_path):
    path, _ = checkpoint(tmp_path, "resnet18")
    run = tmp_path / "run"
    import_checkpoint(path, run, source="torchvision", preset="resnet18")
    out = tmp_path / "out.pth"
    with pytest.raises(InterchangeError, match=r"the model \(arch \w+\) is not resnet34's layout"):
        export_checkpoint(run, out, target="torchvision", preset="resnet34")
    with pytest.raises(SpecError, match="no such run folder"):
        export_checkpoint(tmp_path / "none", out, target="torchvision", preset="resnet18")
    torch.save(collections.OrderedDict(bogus=torch.zeros(1)), run / "weights.pt")
    with pytest.raises(SpecError, match="weights.pt: lacks tensor stem.0.weight of the arch.yaml beside it"):
        export_checkpoint(run, out, target="torchvision", preset="resnet18")
    assert not out.exists()
