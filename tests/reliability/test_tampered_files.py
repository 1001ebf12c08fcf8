"""Files of a run directory changed behind twcore's back: nothing they hold is executed, a run
that cannot continue says so in one line, and what is intact keeps working."""

from __future__ import annotations

import json

import torch

from twcore.orchestration import api
from twcore.orchestration.cli.main import main
from twcore.orchestration.engine.checkpoint import load_checkpoint
from twcore.orchestration.engine.lock import LOCK_FILE
from twcore.orchestration.sweep import run_sweep

QUIET = ["wandb.enabled=false", "eval_every=0"]


class _Exploit:
    """Pickles as a call of ``exec(code)``: what a crafted checkpoint would carry."""

    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self):
        return (exec, (self.code,))


def _trained(tmp_path, steps: int = 2):
    run_dir = tmp_path / "run"
    api.run([f"steps={steps}", f"run_dir={run_dir}", *QUIET])
    return run_dir


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("twcore: error: ") and err.count("\n") == 1, err
    return err


def test_a_checkpoint_carrying_code_is_refused_without_running_it(tmp_path, capsys):
    run_dir = _trained(tmp_path)
    marker = tmp_path / "pwned"
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    state["step"] = _Exploit(f"open({str(marker)!r}, 'w')")
    torch.save(state, run_dir / "checkpoints" / "last.pt")
    assert main(["resume", str(run_dir)]) == 2
    err = _one_error_line(capsys)
    assert "holds something other than tensors and plain data (Unsupported global" in err
    assert "weights_only" not in err and "\x1b" not in err  # no advice to load it anyway
    assert not marker.exists()


def test_a_checkpoint_of_another_shape_is_refused_in_one_line(tmp_path, capsys):
    run_dir = _trained(tmp_path)
    checkpoint = run_dir / "checkpoints" / "last.pt"
    for state, fragment in (
        ({"step": 1}, "is not a twcore run checkpoint (it lacks format, epochs_seen"),
        ({**load_checkpoint(checkpoint), "format": 99}, "has format 99"),
        ({**load_checkpoint(checkpoint), "step": -3}, "records step -3"),
        ([1, 2, 3], "is not a twcore run checkpoint"),
    ):
        torch.save(state, checkpoint)
        assert main(["resume", str(run_dir)]) == 2
        assert fragment in _one_error_line(capsys)


def test_a_truncated_checkpoint_is_refused_in_one_line(tmp_path, capsys):
    run_dir = _trained(tmp_path)
    checkpoint = run_dir / "checkpoints" / "last.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:100])
    assert main(["resume", str(run_dir)]) == 2
    assert "cannot be read" in _one_error_line(capsys)


def test_a_config_with_a_python_tag_is_refused_without_running_it(tmp_path, capsys):
    run_dir = _trained(tmp_path)
    marker = tmp_path / "pwned"
    config = run_dir / "config.yaml"
    config.write_text(
        config.read_text() + f"extra: !!python/object/apply:os.system ['touch {marker}']\n"
    )
    assert main(["resume", str(run_dir)]) == 2
    assert "is not valid YAML" in _one_error_line(capsys)
    assert not marker.exists()


def test_a_garbage_lock_file_does_not_block_a_resume(tmp_path):
    run_dir = _trained(tmp_path)
    (run_dir / LOCK_FILE).write_text("\x00\x01 not json")
    assert api.resume(run_dir, ["steps=4"]).summary["status"] == "completed"


def test_a_torn_metrics_line_is_dropped_on_resume(tmp_path):
    run_dir = _trained(tmp_path)
    with (run_dir / "metrics.jsonl").open("a") as metrics:
        metrics.write('{"step": 3, "train/loss')  # a kill in the middle of a write
    api.resume(run_dir, ["steps=4"])
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert all(json.loads(line) for line in lines)
    assert [json.loads(line)["step"] for line in lines][-1] == 4


def test_a_sweep_reruns_a_trial_whose_summary_was_corrupted(tmp_path):
    arguments = ["seed=0,1", "steps=2", f"run_dir={tmp_path}", *QUIET, "checkpoint_every=0"]
    first = run_sweep(arguments)
    broken = tmp_path / first.trials[0].name / "summary.json"
    broken.write_text("{ not json")
    again = run_sweep(arguments)
    assert [t.status for t in again.trials] == ["completed", "completed"]
    assert json.loads(broken.read_text())["status"] == "completed"
