"""Bad input, as a careless user types it: every case is one ``twcore: error:`` line naming what
was wrong, exit code 2, no traceback, and nothing written.

The cases replay the bad-input part of a fault campaign (those it found broken, fixed since, and
those that already held), so that they stay held. Each runs ``twcore`` in this process.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from twcore.orchestration.cli.main import main

QUIET = ["-q", "steps=3", "wandb.enabled=false"]

# (arguments, a fragment the one-line message must contain)
CASES: list[tuple[list[str], str]] = [
    # unknown keys, typos, wrong types
    (["run", *QUIET, "optim.lrr=1"], "did you mean 'optim.lr'"),
    (["run", *QUIET, "stepz=3"], "did you mean 'steps'"),
    (["run", *QUIET, "seed=abc"], "seed='abc' is not a valid int"),
    (["run", *QUIET, "steps=1.5"], "steps"),
    (["run", *QUIET, "optim=adam"], "'optim' is a group of keys"),
    (["run", *QUIET, "model.hidden=abc"], "model.hidden"),
    (["run", *QUIET, "not-an-override"], "is not an override"),
    (["run", *QUIET, "optim.lr=0.1,0.2"], "add -m"),
    # plugins and pairings
    (["run", *QUIET, "method=nope"], "unknown method 'nope'"),
    (["run", *QUIET, "task=toy-multitsk"], "did you mean 'toy-multitask'"),
    (["run", *QUIET, "model=nope"], "unknown model 'nope'"),
    (["run", *QUIET, "method=gradcos", "task=digits"], "cannot run on task 'digits'"),
    (["run", *QUIET, "method=gradcos", "method.variant=sometimes"], "method.variant"),
    # run-level values out of range
    (["run", *QUIET, "batch_size=0"], "batch_size=0 must be >= 1"),
    (["run", *QUIET, "eval_every=-1"], "eval_every=-1"),
    (["run", *QUIET, "device=tpu"], "device='tpu' is not a device"),
    (["run", *QUIET, "wandb.mode=offlin"], "wandb.mode=offlin must be one of online"),
    (["run", *QUIET, "wandb.mode=offlin"], "did you mean 'offline'"),
    (["run", *QUIET, "seed=-1"], "seed=-1 must be >= 0 and < 4294967296"),
    (["run", *QUIET, "seed=99999999999999999999999"], "must be >= 0 and < 4294967296"),
    (["run", *QUIET, "run_dir="], "run_dir is empty"),
    (["run", *QUIET, "runs_root="], "runs_root is empty"),
    (["run", *QUIET, "best_metric=nonsense"], "reports no metric 'nonsense'"),
    (["run", *QUIET, "best_metric=best:mse"], "min:NAME / max:NAME"),
    (["run", *QUIET, "model.hidden=128"], "a list is written in brackets: model.hidden=[128]"),
    (["run", *QUIET, "wandb.mode=offlin"], "did you mean 'offline'"),
    (["run", *QUIET, "best_metric=min:nonexistent"], "reports no metric 'nonexistent'"),
    (["run", *QUIET, "best_metric=max:avg_ac"], "did you mean 'max:avg_acc'"),
    # optimiser settings, checked before anything is written or trained
    (["run", *QUIET, "optim.name=adamm"], "optim.name=adamm must be one of sgd"),
    (["run", *QUIET, "optim.name=adamm"], "did you mean 'adam'"),
    (["run", *QUIET, "optim.lr=nan"], "optim.lr=nan must be a finite number >= 0"),
    (["run", *QUIET, "optim.lr=inf"], "optim.lr=inf must be a finite number >= 0"),
    (["run", *QUIET, "optim.lr=-0.1"], "optim.lr=-0.1 must be >= 0"),
    (["run", *QUIET, "optim.betas=[2,3]"], "holds 2.0: each element must be >= 0 and < 1"),
    (["run", *QUIET, "optim.betas=[0.9]"], "optim.betas=[0.9] must be two numbers"),
    (["run", *QUIET, "optim.weight_decay=-1"], "optim.weight_decay=-1.0 must be >= 0"),
    (["run", *QUIET, "optim.momentum=nan"], "optim.momentum=nan must be a finite number"),
    (["run", *QUIET, "optim.grad_clip=0"], "optim.grad_clip=0.0 must be > 0"),
    (["run", *QUIET, "optim.grad_clip=nan"], "optim.grad_clip=nan must be a finite number"),
    (["run", *QUIET, "method=gradcos", "method.variant=weigted"], "did you mean 'weighted'"),
    # commands and flags
    (["frobnicate"], "invalid choice"),
    (["show", "optimizer=adam"], "write one of method=NAME"),
    (["show", "method=nope"], "unknown method 'nope'"),
    (["sweep", *QUIET, "seed=0,1", "--backend", "serail"], "did you mean 'serial'"),
    (["sweep", *QUIET, "seed=0,1", "--workers", "0"], "--workers 0"),
    (["sweep", *QUIET, "seed=0,1", "--retries", "-1"], "--retries -1"),
    (["sweep", *QUIET, "seed=0,1", "--threads", "0"], "--threads 0"),
    (["reproduce", "--only", "no-such-grid"], "no reproduction grid 'no-such-grid'"),
]


@pytest.mark.parametrize(("arguments", "fragment"), CASES, ids=[" ".join(c[0]) for c in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(arguments, fragment, capsys, tmp_path):
    code = main(arguments)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("twcore: error: ") and err.count("\n") == 1, err
    assert fragment in err, err
    assert "Traceback" not in err
    assert not Path("runs").exists(), "a run directory was created"


def test_a_bad_config_file_is_one_line(capsys, tmp_path):
    cases = {
        "missing.yaml": None,
        "broken.yaml": "steps: [1, 2\n",
        "list.yaml": "- 1\n- 2\n",
        "tagged.yaml": "steps: !!python/object/apply:os.system ['touch pwned']\n",
        "unknown.yaml": "stepz: 3\n",
    }
    for name, text in cases.items():
        path = tmp_path / name
        if text is not None:
            path.write_text(text)
        assert main(["run", "-q", "--config", str(path)]) == 2, name
        err = capsys.readouterr().err
        assert err.startswith("twcore: error: ") and err.count("\n") == 1, err
    assert not Path("pwned").exists()


def test_resume_of_something_that_is_not_a_run_is_one_line(capsys, tmp_path):
    assert main(["resume", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "is not a run directory" in err and err.count("\n") == 1


def test_report_of_a_directory_without_runs_is_one_line(capsys, tmp_path):
    for target in (tmp_path, tmp_path / "missing"):
        assert main(["report", "--no-wandb", str(target)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("twcore: error: ") and err.count("\n") == 1, err
