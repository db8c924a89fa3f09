"""The evaluation protocol: search and scaling choose on a validation split of the training data and never see
the test set; every architecture is trained, validated and costed at one deployment resolution."""

import gzip
import json
from pathlib import Path

import numpy as np
import optuna

from nasscale.evaluate.data import IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC, load_dataset
from nasscale.search.record import ATTR_ARCH, ATTR_MACS, STUDY_ATTR_RESOLUTION, STUDY_ATTR_SPLITS
from nasscale.spec.cost import cost
from nasscale.spec.serialization import from_dict
from tests.cli.test_cli_foundation import run_cli

SEARCH = ["--space", "tiny", "--epochs", "1", "--trials", "4", "--sampler", "random", "--batch-size", "32",
          "--max-train-samples", "600", "--seed", "0"]


def write_idx(path: Path, magic: int, array: np.ndarray) -> None:
    header = magic.to_bytes(4, "big") + b"".join(size.to_bytes(4, "big") for size in array.shape)
    with gzip.open(path, "wb") as file:
        file.write(header + array.astype(np.uint8).tobytes())


def digits_with_official_split(folder: Path, *, scramble_test_labels: bool) -> str:
    """scikit-learn's digits as a Fashion-MNIST-style folder: 1,400 training images, the rest the test set, whose
    labels may be scrambled; a search or scale that never reads the test set cannot tell the two apart."""
    digits = load_dataset("digits")
    images = np.round(digits.images[:, 0] * 255)
    labels = digits.labels.copy()
    if scramble_test_labels:
        labels[1400:] = np.random.default_rng(7).permutation(labels[1400:])
    folder.mkdir()
    for prefix, part in (("train", slice(0, 1400)), ("t10k", slice(1400, None))):
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", IDX_IMAGES_MAGIC, images[part])
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", IDX_LABELS_MAGIC, labels[part])
    return f"fashion-mnist:{folder}"


def without_timings(value):
    if isinstance(value, dict):
        return {key: without_timings(item) for key, item in value.items() if key != "seconds"}
    if isinstance(value, list):
        return [without_timings(item) for item in value]
    return value


def search_and_scale(capsys, tmp_path: Path, data: str) -> tuple[list, dict]:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    code, _, err = run_cli(capsys, "search", *SEARCH, "--data", data, "--storage", storage, "--study", "s")
    assert code == 0, err
    study = optuna.load_study(study_name="s", storage=storage)
    trials = [(trial.number, trial.state.name, trial.values, trial.params) for trial in study.trials]
    code, out, err = run_cli(capsys, "scale", "--study", "s", "--storage", storage, "--phi", "1", "--evaluate",
                             "--max-candidates", "2", "--epochs", "6", "--json")
    assert code == 0, err
    return trials, json.loads(out)


def test_scrambled_test_labels_change_no_search_or_scale_result(capsys, tmp_path):
    results = {}
    for scramble in (False, True):
        folder = tmp_path / ("scrambled" if scramble else "honest")
        folder.mkdir()
        data = digits_with_official_split(folder / "data", scramble_test_labels=scramble)
        results[scramble] = search_and_scale(capsys, folder, data)
    (honest_trials, honest), (scrambled_trials, scrambled) = results[False], results[True]
    assert honest_trials == scrambled_trials  # every trial: state, values (validation accuracy, MACs), parameters
    test_accuracies = []
    for step, other in zip(honest["steps"], scrambled["steps"], strict=True):
        test_accuracies.append((step.pop("test_accuracy"), other.pop("test_accuracy")))
        assert step == other  # the coefficients, architecture, MACs and validation accuracy of each step
    assert honest["coefficients"] == scrambled["coefficients"]
    assert without_timings(honest["solver"]) == without_timings(scrambled["solver"])
    # Final evaluation did read the test set, once per step: with scrambled labels it scores near chance.
    for honest_test, scrambled_test in test_accuracies:
        assert honest_test > 0.5 > scrambled_test


def test_a_study_records_its_splits_and_costs_what_it_trains(capsys, tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    code, _, err = run_cli(capsys, "search", *SEARCH, "--data", "digits", "--storage", storage, "--study", "s")
    assert code == 0, err
    study = optuna.load_study(study_name="s", storage=storage)
    splits = study.user_attrs[STUDY_ATTR_SPLITS]
    assert splits["validation"].startswith("0.1 of the training data") and splits["validation_images"] == 144
    assert study.user_attrs[STUDY_ATTR_RESOLUTION] == 32  # 8x8 digits are deployed at 32 px
    for trial in study.trials:
        if ATTR_ARCH in trial.user_attrs:
            arch = from_dict(trial.user_attrs[ATTR_ARCH])
            assert arch.resolution in (24, 32)  # tiny's choices, and what the trial trained at
            assert trial.user_attrs[ATTR_MACS] == cost(arch).macs


def test_a_space_written_for_224_is_deployed_at_the_data_resolution(capsys, tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    code, _, err = run_cli(capsys, "search", "--space", "mnas", "--data", "digits", "--epochs", "1", "--trials", "1",
                           "--max-train-samples", "100", "--storage", storage, "--study", "m")
    assert code == 0, err
    study = optuna.load_study(study_name="m", storage=storage)
    arch = from_dict(study.trials[0].user_attrs[ATTR_ARCH])
    assert arch.resolution == 32 and study.user_attrs["nasscale_space"]["resolution"] == 32
    assert study.trials[0].user_attrs[ATTR_MACS] == cost(arch).macs < 30_000_000  # not 224 px's ~300M


def test_scale_refuses_to_evaluate_a_study_from_before_the_protocol(capsys, tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    code, _, err = run_cli(capsys, "search", *SEARCH, "--trials", "1", "--data", "digits", "--storage", storage,
                           "--study", "old")
    assert code == 0, err
    optuna.load_study(study_name="old", storage=storage).set_user_attr(STUDY_ATTR_RESOLUTION, None)
    code, _, err = run_cli(capsys, "scale", "--study", "old", "--storage", storage, "--phi", "1", "--evaluate")
    assert code == 2 and "predates the evaluation protocol" in err and err.count("\n") == 1, err
