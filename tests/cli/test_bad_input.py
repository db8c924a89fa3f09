"""The guard over every command: malformed input of each kind (unknown and missing options, wrong types,
out-of-range values, missing, unreadable, non-UTF-8, folder and empty files, bad storage URLs, unreachable
servers, names that do not exist) ends with exit status 2 and a few lines on stderr, no traceback, and leaves an
existing study's trials as they were. Every row of ``COMMANDS`` must have rows here."""

from __future__ import annotations

import json
import os
from pathlib import Path

import optuna
import pytest
import torch

from nasscale.cli.app import COMMANDS, GROUPS
from nasscale.search.record import ATTR_ARCH, ATTR_INFEASIBLE, ATTR_SUMMARY
from tests.cli.test_cli_foundation import run_cli

STUDY = "guard"
FAST = ["--space", "tiny", "--data", "digits", "--epochs", "1", "--proxy-resolution", "16", "--batch-size", "128",
        "--max-train-samples", "256"]
MAX_ERROR_LINES = 3
UNREACHABLE = "postgresql://127.0.0.1:1/x"
NOT_A_URL = "sqlite//nasscale.db"
ROOT = os.geteuid() == 0  # root reads a file whatever its permissions


def files(folder: Path) -> dict[str, str]:
    """The malformed files of the table, by the placeholder its rows use."""
    (folder / "latin1.yaml").write_bytes(b"name: caf\xe9\nresolution: 32\n")
    (folder / "empty.yaml").write_text("")
    (folder / "folder.yaml").mkdir()
    (folder / "notes.txt").write_text("not a database\n")
    (folder / "fast.yaml").write_text("learning_rate: fast\n")
    (folder / "locked.yaml").write_text("space: tiny\n")
    (folder / "locked.yaml").chmod(0)
    (folder / "out.txt").write_text("an existing file\n")
    torch.save([1, 2], folder / "list.pt")  # a pickle, but not a state dict
    torch.save({"fc.weight": torch.zeros(10, 4), "fc.bias": torch.zeros(10)}, folder / "other.pt")  # another model's
    return {name: str(folder / name) for name in ("latin1.yaml", "empty.yaml", "folder.yaml", "notes.txt",
                                                  "fast.yaml", "locked.yaml", "out.txt", "list.pt", "other.pt")} | {
        "missing.yaml": str(folder / "missing.yaml"), "through-file": str(folder / "notes.txt" / "x.yaml")}


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    """A study with two trained trials and one pruned over budget, and the malformed files."""
    folder = tmp_path_factory.mktemp("guard")
    storage = f"sqlite:///{folder / 'study.db'}"
    code = _run_main("search", *FAST, "--trials", "2", "--storage", storage, "--study", STUDY, "--json")
    assert code == 0
    study = optuna.load_study(study_name=STUDY, storage=storage)
    trained = study.trials[0]
    study.add_trial(optuna.trial.create_trial(
        state=optuna.trial.TrialState.PRUNED, params=trained.params, distributions=trained.distributions,
        user_attrs={ATTR_ARCH: trained.user_attrs[ATTR_ARCH], ATTR_SUMMARY: trained.user_attrs[ATTR_SUMMARY],
                    ATTR_INFEASIBLE: "MACs 1.16M > budget 1.00M"}))
    return storage, files(folder)


def _run_main(*args: str) -> int:
    from nasscale.cli.app import main

    try:
        main(list(args))
    except SystemExit as exit_request:
        return int(exit_request.code or 0)
    return 0


def snapshot(storage: str) -> list:
    studies = optuna.get_all_study_summaries(optuna.storages.RDBStorage(storage))
    study = optuna.load_study(study_name=STUDY, storage=storage)
    return [sorted(summary.study_name for summary in studies), study.user_attrs,
            [(trial.number, trial.state, trial.values, json.dumps(trial.user_attrs, sort_keys=True))
             for trial in study.trials]]


S = "{storage}"  # the guarded study's storage
ROWS = [
    # name, arguments, a fragment of the one line
    ("presets", ["--bogus"], "No such option: --bogus"),
    ("presets", ["extra"], "Got unexpected extra argument"),
    ("cost", [], "Missing argument 'TARGET'"),
    ("cost", ["efficientnet_b0", "--resolution", "abc"], "Invalid value for '--resolution'"),
    ("cost", ["efficientnet_b0", "--resolution", "0"], "resolution: must be at least 1"),
    ("cost", ["{missing.yaml}"], "no such architecture file"),
    ("cost", ["{latin1.yaml}"], "is not UTF-8 text"),
    ("cost", ["{folder.yaml}"], "is a folder where the architecture file should be"),
    ("cost", ["{empty.yaml}"], "empty.yaml: "),
    ("cost", ["{through-file}"], "no such architecture file"),
    pytest.param("cost", ["{locked.yaml}"], "permission denied", marks=pytest.mark.skipif(ROOT, reason="root")),
    ("cost", ["resnet9"], "unknown preset 'resnet9'"),
    ("spaces", ["--json", "--bogus"], "No such option: --bogus"),
    ("sample", ["-n", "0"], "Invalid value for '-n' / '--count'"),
    ("sample", ["--seed", "x"], "Invalid value for '--seed'"),
    ("sample", ["--space", "{missing.yaml}"], "no such search-space file"),
    ("sample", ["--space", "{latin1.yaml}"], "is not UTF-8 text"),
    ("sample", ["--space", "{folder.yaml}"], "is a folder"),
    ("sample", ["--space", "{empty.yaml}"], "empty.yaml: "),
    ("sample", ["--space", "nope"], "unknown search space 'nope'"),
    ("search", ["--trials", "abc"], "Invalid value for '--trials'"),
    ("search", ["--nope"], "No such option: --nope"),
    ("search", ["--trials", "0", "--storage", S], "trials: must be a positive integer, got 0"),
    ("search", ["--pruner", "hyperband", "--storage", S], "pruner: must be one of auto, none, mo-asha"),
    ("search", ["--reduction-factor", "2", "--storage", S], "sets the rungs of --pruner mo-asha"),
    ("search", ["--pruner", "mo-asha", "--epochs", "2", "--min-epochs", "2", "--storage", S],
     "min_epochs: must be below --epochs (2)"),
    ("search", ["--space", "tiny", "--trials", "3000", "--storage", S], "holds 2048 distinct architectures"),
    ("search", ["--config", "{missing.yaml}", "--storage", S], "no such study config"),
    ("search", ["--config", "{latin1.yaml}", "--storage", S], "is not UTF-8 text"),
    ("search", ["--config", "{folder.yaml}", "--storage", S], "is a folder"),
    ("search", ["--config", "{empty.yaml}", "--storage", S], "is empty; give at least one setting"),
    ("search", ["--config", "{fast.yaml}", "--storage", S], "fast.yaml: learning_rate: must be a number, got 'fast'"),
    ("search", [*FAST, "--storage", NOT_A_URL], "is not a storage URL"),
    ("search", [*FAST, "--storage", "sqlite:///{notes.txt}"], "is not a SQLite database"),
    ("search", [*FAST, "--storage", UNREACHABLE], "is unreachable"),
    ("search", [*FAST, "--space", "mnas", "--study", STUDY, "--storage", S], "searches space tiny, not mnas"),
    ("search", [*FAST, "--objectives", "accuracy,params", "--study", STUDY, "--storage", S],
     "optimises accuracy,macs, not accuracy,params"),
    ("best", [], "Missing option '--study'"),
    ("best", ["--study", STUDY, "--top", "abc", "--storage", S], "Invalid value for '--top'"),
    ("best", ["--study", "nope", "--storage", S], "study 'nope' not found"),
    ("best", ["--study", STUDY, "--storage", NOT_A_URL], "is not a storage URL"),
    ("best", ["--study", STUDY, "--storage", UNREACHABLE], "is unreachable"),
    ("export", ["--study", STUDY, "--out", "x"], "Missing option '--trial'"),
    ("export", ["--study", STUDY, "--trial", "abc", "--out", "x"], "Invalid value for '--trial'"),
    ("export", ["--study", STUDY, "--trial", "0", "--out", "{out.txt}", "--storage", S], "is a file; give a folder"),
    ("export", ["--study", STUDY, "--trial", "2", "--out", "x", "--storage", S], "--allow-untrained"),
    ("export", ["--study", STUDY, "--trial", "99", "--out", "x", "--storage", S], "has no trial 99"),
    ("train", ["--out", "x"], "Missing option '--arch'"),
    ("train", ["--arch", "resnet18", "--out", "x", "--epochs", "0"], "Invalid value for '--epochs'"),
    ("train", ["--arch", "{latin1.yaml}", "--out", "x"], "is not UTF-8 text"),
    ("train", ["--arch", "nope", "--out", "x"], "unknown preset 'nope'"),
    ("train", ["--arch", "resnet18", "--out", "x", "--recipe", "nope"], "unknown recipe 'nope'"),
    ("train", ["--arch", "resnet18", "--out", "x", "--recipe", "{latin1.yaml}"], "is not UTF-8 text"),
    ("train", ["--arch", "resnet18", "--out", "x", "--recipe", "{fast.yaml}"], "learning_rate: unknown recipe key"),
    ("train", ["--arch", "resnet18", "--out", "x", "--recipe", "{missing.yaml}"], "missing.yaml"),
    ("train", ["--arch", "resnet18", "--out", "x", "--recipe", "efficientnetv2-progressive", "--epochs", "2"],
     "4 stages do not fit in 2 epochs"),
    ("train", ["--arch", "resnet18", "--out", "x", "--workers", "-1"], "Invalid value for '--workers'"),
    ("train", ["--arch", "resnet18", "--out", "x", "--stream"], "only image folders"),
    ("recipes", ["--bogus"], "No such option"),
    ("scale", ["--phi", "abc", "--base", "efficientnet_b0"], "--phi: must be an integer or a range"),
    ("scale", ["--base", "efficientnet_b0", "--latency-repeats", "0"], "Invalid value for '--latency-repeats'"),
    ("scale", ["--base", "{missing.yaml}", "--dry-run"], "no such architecture file"),
    ("scale", ["--study", "nope", "--storage", S], "study 'nope' not found"),
    ("scale", ["--phi", "3", "--storage", "sqlite:///{missing.yaml}"], "no study in"),
    ("scale", ["--study", STUDY, "--storage", NOT_A_URL], "is not a storage URL"),
    ("report", [], "Missing option '--study'"),
    ("report", ["--study", "nope", "--storage", S], "study 'nope' not found"),
    ("report", ["--study", STUDY, "--storage", S, "--out", "{through-file}"], "check the path"),
    ("report", ["--study", STUDY, "--storage", UNREACHABLE], "is unreachable"),
    ("dashboard", ["--port", "99999"], "Invalid value for '--port'"),
    ("dashboard", ["--port", "abc"], "Invalid value for '--port'"),
    ("dashboard", ["--storage", "sqlite:///{missing.yaml}"], "no such file"),
    ("dashboard", ["--storage", NOT_A_URL], "is not a storage URL"),
    ("rerun", ["--study", STUDY], "Missing option '--trial'"),
    ("rerun", ["--study", "nope", "--trial", "0", "--storage", S], "study 'nope' not found"),
    ("rerun", ["--study", STUDY, "--trial", "99", "--storage", S], "has no trial 99"),
    ("latency", ["resnet18", "--repeats", "0"], "Invalid value for '--repeats'"),
    ("latency", [], "Missing argument 'TARGET'"),
    ("latency", ["{latin1.yaml}"], "is not UTF-8 text"),
    ("latency", ["resnet18", "--table", "{missing.yaml}"], "no such latency table"),
    ("latency", ["resnet18", "--table", "{latin1.yaml}"], "is not UTF-8 text"),
    ("latency-table", ["--out", "x.json"], "Missing option '--space'"),
    ("latency-table", ["--space", "tiny", "--out", "x.json", "--repeats", "0"], "Invalid value for '--repeats'"),
    ("latency-table", ["--space", "{empty.yaml}", "--out", "x.json"], "empty.yaml: "),
    ("latency-table", ["--space", "nope", "--out", "x.json"], "unknown search space 'nope'"),
    ("proxies", ["--space", "tiny"], "Missing option '--data'"),
    ("proxies", ["--space", "tiny", "--data", "digits", "-n", "1"], "Invalid value for '-n' / '--count'"),
    ("proxies", ["--space", "tiny", "--data", "digits", "--proxy", "nope"], "nope"),
    ("timm", [], "Missing argument 'TARGET'"),
    ("timm", ["nope"], "unknown preset 'nope'"),
    ("timm", ["{folder.yaml}"], "is a folder"),
    ("from-timm", [], "Missing argument 'ARCH_DEF'"),
    ("from-timm", ["ds_r1_k3_s1_e1_c16", "--stem-channels", "0"], "Invalid value for '--stem-channels'"),
    ("from-timm", ["ds_r1_k3_s1_e1_c16", "--activation", "bogus"], "Invalid value for '--activation'"),
    ("from-timm", ["zz"], "zz"),
    ("weights", ["import"], "Missing argument 'CHECKPOINT'"),
    ("weights", ["import", "--from", "torchvision", "--preset", "resnet18", "{missing.yaml}", "-o", "x"],
     "no such checkpoint file"),
    ("weights", ["import", "--from", "torchvision", "--preset", "resnet18", "{folder.yaml}", "-o", "x"],
     "is a folder where a checkpoint file should be"),
    ("weights", ["import", "--from", "torchvision", "--preset", "resnet18", "{notes.txt}", "-o", "x"],
     "is truncated or not a torch checkpoint"),
    ("weights", ["import", "--from", "torchvision", "--preset", "resnet18", "{list.pt}", "-o", "x"],
     "is not a state dict (name -> tensor): it holds a list"),
    ("weights", ["import", "--from", "torchvision", "--preset", "resnet18", "{other.pt}", "-o", "x"],
     "resnet18 <-> torchvision resnet18: not a checkpoint of this network"),
    ("weights", ["import", "--from", "keras", "--preset", "resnet18", "{other.pt}", "-o", "x"],
     "unknown weights source 'keras'; one of torchvision, timm"),
    ("weights", ["import", "--from", "torchvision", "--preset", "resnetv2_50", "{other.pt}", "-o", "x"],
     "torchvision has no counterpart of preset resnetv2_50; resnetv2_50 maps to timm"),
    ("weights", ["import", "--from", "timm", "--preset", "nope", "{other.pt}", "-o", "x"], "unknown preset 'nope'"),
    ("weights", ["import", "--from", "torchvision", "--preset", "resnet18", "{other.pt}", "-o", "{out.txt}"],
     "is a file; give a folder"),
    ("weights", ["export", "--to", "timm", "--preset", "resnet18", "{missing.yaml}", "-o", "x.pth"],
     "no such run folder"),
    ("weights", ["export", "--to", "timm", "--preset", "resnet18", "{folder.yaml}", "-o", "x.pth"],
     "no such architecture file"),
    ("weights", ["export", "--to", "timm", "--preset", "resnet18", "{folder.yaml}"], "Missing option '--out'"),
    ("weights", ["references", "--bogus"], "No such option: --bogus"),
    ("train", ["--arch", "resnet18", "--out", "x", "--init-from", "{folder.yaml}"], "no such architecture file"),
]


def fill(argument: str, values: dict[str, str]) -> str:
    for name, value in values.items():
        argument = argument.replace("{" + name + "}", value)
    return argument


def _name(row) -> str:
    values = row.values if hasattr(row, "values") else row
    return f"{values[0]} {' '.join(values[1])}"


@pytest.mark.parametrize(("command", "arguments", "expected"), ROWS, ids=[_name(row) for row in ROWS])
def test_bad_input_is_a_few_lines_exit_2_and_the_study_unchanged(capsys, monkeypatch, tmp_path, guarded, command,
                                                                   arguments, expected):
    storage, paths = guarded
    monkeypatch.chdir(tmp_path)  # commands that write (x.json, x) would write here, and must not
    filled = [fill(argument, paths | {"storage": storage}) for argument in arguments]
    before = snapshot(storage)
    code, _, err = run_cli(capsys, command, *filled)
    lines = err.strip().splitlines()
    assert code == 2, err
    assert "Traceback" not in err and 1 <= len(lines) <= MAX_ERROR_LINES, err
    assert all(line.startswith("nasscale: error: ") for line in lines), err
    assert expected.lower() in err.lower(), err
    assert snapshot(storage) == before
    assert not list(tmp_path.iterdir())  # nothing written


def test_every_command_has_rows():
    covered = {_name(row).split(" ")[0] for row in ROWS}
    commands = {name for name, _, _ in COMMANDS}
    # Every command, and groups of sub-commands where they have rows (weights does; bench has its own tests).
    assert commands <= covered <= commands | {name for name, _ in GROUPS}


def test_an_unknown_command_is_one_line(capsys):
    code, _, err = run_cli(capsys, "bogus")
    assert code == 2 and err == "nasscale: error: nasscale: No such command 'bogus'; see 'nasscale --help'\n"


# ---------------------------------------------------------------------- the paths next to the refusals above


def test_export_of_an_untrained_trial_needs_the_flag(capsys, tmp_path, guarded):
    storage, _ = guarded
    code, _, err = run_cli(capsys, "export", "--study", STUDY, "--trial", "2", "--out", str(tmp_path / "pruned"),
                           "--storage", storage, "--allow-untrained")
    assert code == 0, err
    assert (tmp_path / "pruned" / "arch.yaml").is_file()


def test_tables_of_a_pareto_front_have_no_empty_value_column(capsys, guarded):
    storage, _ = guarded
    code, out, _ = run_cli(capsys, "best", "--study", STUDY, "--storage", storage)
    assert code == 0 and "accuracy" in out and "value" not in out


def test_scale_without_a_baseline_takes_the_only_study(capsys, guarded):
    storage, _ = guarded
    code, out, err = run_cli(capsys, "scale", "--phi", "1", "--dry-run", "--storage", storage)
    assert code == 0, err
    assert f"scaling the best trial of study '{STUDY}', the only one in" in err
    assert f"base study {STUDY} trial" in out


def test_scale_without_a_baseline_lists_the_studies(capsys, tmp_path, guarded):
    storage, _ = guarded
    copy = tmp_path / "two.db"
    copy.write_bytes(Path(storage.removeprefix("sqlite:///")).read_bytes())
    optuna.create_study(study_name="other", storage=f"sqlite:///{copy}")
    code, _, err = run_cli(capsys, "scale", "--phi", "1", "--dry-run", "--storage", f"sqlite:///{copy}")
    assert code == 2 and f"2 studies in sqlite:///{copy} (guard, other); pick one with --study NAME" in err
