"""The study committed under docs/ is what the README says it is: the main job's run of studies/digits.yaml,
under the protocol, with the scaling example's ladder, and the README's report command works on it."""

import shutil
from pathlib import Path

import optuna

from nasscale.report.page import write_report
from nasscale.search.config import FIELD_DEFAULTS, load_config_file, make_config
from nasscale.search.record import LADDER_ATTR, STUDY_ATTR_CONFIG, STUDY_ATTR_SPLITS
from nasscale.search.results import trial_counts
from nasscale.search.storage import make_storage

ROOT = Path(__file__).resolve().parents[1]


def test_the_committed_study_is_the_main_jobs_run(tmp_path):
    copy = tmp_path / "tiny-digits.db"  # opening a storage may write to it: never the committed file
    shutil.copy(ROOT / "docs" / "studies" / "tiny-digits.db", copy)
    storage = f"sqlite:///{copy}"
    study = optuna.load_study(study_name="tiny-digits", storage=make_storage(storage))
    recorded = study.user_attrs[STUDY_ATTR_CONFIG]
    expected = make_config(load_config_file(str(ROOT / "studies" / "digits.yaml"))).to_dict()
    # A setting added after the study ran (max_train_ms) is not recorded: the study ran on its default.
    recorded = {key: FIELD_DEFAULTS[key] for key in expected if key not in recorded} | recorded
    assert {key: value for key, value in recorded.items() if key != "storage"} == \
        {key: value for key, value in expected.items() if key != "storage"}
    assert STUDY_ATTR_SPLITS in study.user_attrs and study.user_attrs[LADDER_ATTR]
    assert trial_counts(study)["evaluated"] == expected["trials"]
    out = write_report(["tiny-digits"], storage, tmp_path / "report.html")
    assert "TPE over accuracy and macs on space tiny" in out.read_text()
