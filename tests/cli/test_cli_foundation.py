import json
import signal
import subprocess
import sys
import time

import pytest

from nasscale.cli.app import main
from nasscale.presets.efficientnet import efficientnet_b0
from nasscale.spec.serialization import to_yaml


def run_cli(capsys, *args):
    """Run the CLI in-process; returns (exit code, stdout, stderr)."""
    try:
        main(list(args))
        code = 0
    except SystemExit as exit_request:
        code = exit_request.code or 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cost_json_check_reports_all_four_counts(capsys):
    code, out, _ = run_cli(capsys, "cost", "efficientnet_b0", "--json", "--check")
    report = json.loads(out)
    assert code == 0
    assert report["params"] == report["params_built"] == 5_288_548
    assert report["macs"] == report["macs_fvcore"] == report["macs_torch"] == 385_814_752
    assert report["counts_agree"] is True


def test_cost_table_with_overrides_and_a_file(capsys, tmp_path):
    path = tmp_path / "b0.yaml"
    path.write_text(to_yaml(efficientnet_b0()))
    code, out, _ = run_cli(capsys, "cost", str(path), "--resolution", "64", "--in-channels", "1",
                           "--num-classes", "10")
    assert code == 0 and "64x64, 1 in, 10 classes" in out and "total" in out
    code, out, _ = run_cli(capsys, "cost", str(path), "--json", "--resolution", "64")
    assert json.loads(out)["resolution"] == 64


def test_presets_json_lists_every_preset_matching(capsys):
    code, out, _ = run_cli(capsys, "presets", "--json")
    rows = json.loads(out)
    from nasscale.presets.registry import PRESETS

    assert code == 0 and len(rows) == len(PRESETS) >= 42
    assert all(row["matches_reference"] for row in rows)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["cost", "resnet9"], "nasscale: error: unknown preset 'resnet9'"),
        (["cost", "missing.yaml"], "nasscale: error: missing.yaml: no such architecture file"),
        (["cost", "efficientnet_b0", "--resolution", "0"], "nasscale: error: resolution: must be at least 1, got 0"),
        (["cost", "convnext_tiny", "--resolution", "3"], "nasscale: error: resolution: 3 is too small"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, args, expected):
    code, out, err = run_cli(capsys, *args)
    assert code == 2
    assert err.startswith(expected) and err.count("\n") == 1
    assert "Traceback" not in err


def test_bad_spec_file_names_the_field(capsys, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(to_yaml(efficientnet_b0()).replace("stride: 2", "stride: 3", 1))
    code, _, err = run_cli(capsys, "cost", str(path))
    assert code == 2 and f"{path}: stages[1].stride: must be 1 or 2, got 3" in err


def test_console_script_debug_shows_traceback():
    plain = subprocess.run([sys.executable, "-m", "nasscale.cli", "cost", "nope"], capture_output=True, text=True)
    assert plain.returncode == 2 and "Traceback" not in plain.stderr
    debug = subprocess.run([sys.executable, "-m", "nasscale.cli", "--debug", "cost", "nope"], capture_output=True,
                           text=True)
    assert debug.returncode != 0 and "Traceback" in debug.stderr


# A command whose unwinding hangs: it swallows the KeyboardInterrupt of the first signal, the way a library
# waiting on a lock that the interrupted main thread holds would never return.
HANGING_COMMAND = """
import sys, time
import nasscale.cli.app as application
application.STOP_GRACE_SECONDS = float(sys.argv[1])
application._install_stop_signals()
ready = False
while True:
    try:  # "ready" inside the try: a signal right after it must land here, not end the script
        if not ready:
            print("ready", flush=True)
            ready = True
        time.sleep(60)
    except KeyboardInterrupt:
        print("swallowed", flush=True)
"""


def _start_hanging_command(grace_seconds: float) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", HANGING_COMMAND, str(grace_seconds)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "ready"
    return process


def test_a_stop_that_hangs_ends_after_the_grace_period_with_status_130():
    process = _start_hanging_command(grace_seconds=1)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130 and "swallowed" in out
    assert "finished trials are kept" in err and "did not stop within 1 s" in err


def test_a_second_signal_ends_at_once():
    process = _start_hanging_command(grace_seconds=600)
    process.send_signal(signal.SIGINT)
    assert process.stdout.readline().strip() == "swallowed"
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130 and "stopped again" in err


# A stop that lands inside a callback whose exceptions Python ignores (SQLAlchemy's weakref callback in the
# CI failure of test_sigterm_fails_and_queues_the_running_trial): it must still stop the command, at once.
SWALLOWING_COMMAND = """
import gc, sys, time, weakref
import nasscale.cli.app as application
application.STOP_GRACE_SECONDS = 600.0
application._install_stop_signals()

class Thing:
    pass

def callback(reference):
    print("in callback", flush=True)
    time.sleep(30)  # the signal arrives here; its KeyboardInterrupt is raised inside the callback

thing = Thing()
reference = weakref.ref(thing, callback)
try:
    del thing
    gc.collect()
    time.sleep(30)
    print("not stopped", flush=True)
except KeyboardInterrupt:
    print("stopped", flush=True)
"""


def test_a_stop_swallowed_by_a_callback_is_delivered_again():
    process = subprocess.Popen([sys.executable, "-c", SWALLOWING_COMMAND], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "in callback"
    time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=20)  # well before the callback's or the watchdog's time is up
    assert out.strip() == "stopped" and process.returncode == 0, (out, err)
    assert "Traceback" not in err and "Exception ignored" not in err, err
