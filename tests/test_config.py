"""Config composition: defaults < YAML file < overrides, typed, with one-line errors."""

from __future__ import annotations

import pytest

from twcore.contract.errors import ConfigError, UnknownPluginError
from twcore.contract.method import Method, StepResult
from twcore.orchestration.config.compose import compose
from twcore.orchestration.config.overrides import parse_override, parse_value, split_sweep
from twcore.testing import registry_with
from twcore.testing.harness import resolve
from twcore.testing.reference import REFERENCE_MODEL, REFERENCE_TASK


def test_defaults_name_the_default_plugins_and_fill_their_sections():
    composed = compose()
    assert composed.to_dict()["method"] == {"name": "ew", "objectives": []}
    assert composed.plugins["task"].name == "toy-multitask"
    assert composed.sections["model"].hidden == [128, 128]
    assert composed.run.optim.lr == 1e-3


def test_overrides_win_over_the_file_which_wins_over_defaults(tmp_path):
    config_file = tmp_path / "exp.yaml"
    config_file.write_text("seed: 5\nsteps: 7\noptim: {lr: 0.5}\nmodel: {hidden: [3]}\n")
    composed = compose(["steps=9", "model.hidden=[4,4]"], config_file=config_file)
    assert composed.run.seed == 5
    assert composed.run.steps == 9
    assert composed.run.optim.lr == 0.5
    assert composed.sections["model"].hidden == [4, 4]


def test_plugins_are_chosen_by_name_in_file_or_override(tmp_path):
    config_file = tmp_path / "exp.yaml"
    config_file.write_text("method: {name: ew, objectives: [cls1]}\n")
    assert compose(config_file=config_file).sections["method"].objectives == ["cls1"]
    assert compose(["method.name=ew"]).plugins["method"].name == "ew"


def test_values_are_typed():
    composed = compose(
        [
            "optim.lr=1e-2",
            "seed=3",
            "wandb.tags=[a,b]",
            "optim.grad_clip=null",
            "deterministic=true",
        ]
    )
    assert composed.run.optim.lr == 0.01 and isinstance(composed.run.optim.lr, float)
    assert composed.run.wandb.tags == ["a", "b"]
    assert composed.run.optim.grad_clip is None
    assert composed.run.deterministic is True


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "sed=1",
            "unknown config key 'sed' (did you mean 'seed'?) in override sed=1; valid keys: ",
        ),
        ("optim.lrr=1", "unknown config key 'optim.lrr' (did you mean 'optim.lr'?)"),
        (
            "method.objective=[a]",
            "unknown config key 'method.objective' (did you mean 'method.objectives'?)",
        ),
        ("model.hiden=[3]", "valid keys under model: activation, dropout, hidden, name"),
    ],
)
def test_unknown_keys_name_the_full_path_and_suggest(override, message):
    with pytest.raises(ConfigError) as caught:
        compose([override])
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("seed=abc", "seed='abc' is not a valid int"),
        ("optim.lr=fast", "optim.lr='fast' is not a valid float"),
        ("model.hidden=wide", "model.hidden='wide' is not a valid list[int]"),
        ("steps=1.5", "steps=1.5 is not a valid int"),
        ("model.hidden=[8,wide]", "model.hidden[1]='wide' is not a valid int"),
        (
            "optim=adam",
            "optim='adam': 'optim' is a group of keys, not a value; set them one by one",
        ),
    ],
)
def test_wrong_types_name_key_value_and_expected_type(override, message):
    with pytest.raises(ConfigError) as caught:
        compose([override])
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("steps=-1", "steps=-1 must be >= 0"),
        ("batch_size=0", "batch_size=0 must be >= 1"),
        ("device=tpu", "device='tpu' is not a device"),
        ("optim.name=adagradd", "optim.name=adagradd must be one of sgd, adam, adamw, rmsprop"),
        ("wandb.mode=sometimes", "wandb.mode=sometimes must be one of online, offline"),
        ("model.activation=swish", "model.activation=swish must be one of relu"),
        ("seed=-3", "seed=-3 must be >= 0 and < 4294967296"),
    ],
)
def test_out_of_range_values_are_config_errors(override, message):
    with pytest.raises(ConfigError, match=message):
        compose([override])


def test_unknown_plugin_lists_the_installed_ones():
    with pytest.raises(
        UnknownPluginError,
        match=r"unknown task 'toy-multtask' \(did you mean "
        r"'toy-multitask'\?\); installed tasks: ",
    ):
        compose(["task=toy-multtask"])


def test_a_comma_list_without_multirun_is_refused_with_a_hint():
    with pytest.raises(ConfigError, match="add -m to run each value"):
        compose(["seed=1,2"])


def test_broken_yaml_file_is_a_config_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: [1,\n")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        compose(config_file=bad)
    with pytest.raises(ConfigError, match="cannot read config file"):
        compose(config_file=tmp_path / "missing.yaml")


def test_file_keys_are_checked_like_overrides(tmp_path):
    config_file = tmp_path / "exp.yaml"
    config_file.write_text("optim: {lrate: 1}\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'optim.lrate'.* in config file"):
        compose(config_file=config_file)


def test_overrides_that_pick_a_plugin_are_recognised_in_both_spellings():
    assert parse_override("method=ew").plugin_section == "method"
    assert parse_override("task.name=toy-multitask").plugin_section == "task"
    assert parse_override("model.hidden=[4]").plugin_section is None
    assert parse_override("seed=1").plugin_section is None


def test_value_parsing_and_sweep_splitting():
    assert parse_value("1e-3") == 0.001
    assert parse_value("[1, 2]") == [1, 2]
    assert parse_value("null") is None
    assert parse_value("adam") == "adam"
    assert split_sweep("a,[b,c],'d,e'") == ["a", "[b,c]", "'d,e'"]


def test_cli_errors_are_one_line_with_exit_code_2_and_no_traceback(run_cli):
    for args in (
        ["run", "optim.lrr=1"],
        ["run", "seed=abc"],
        ["run", "method=nope"],
        ["run", "not-an-override"],
        ["show", "method=nope"],
        ["frobnicate"],
        ["run", "-m", "method=ew,gradcos", "method=ew"],  # a swept key given again
    ):
        result = run_cli(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.startswith("twcore: error: "), result.stderr
        assert result.stderr.count("\n") == 1, result.stderr
        assert "Traceback" not in result.stderr


def test_debug_flag_shows_the_traceback(run_cli):
    result = run_cli("run", "--debug", "optim.lrr=1")
    assert result.returncode == 2
    assert "Traceback" in result.stderr


def test_config_errors_create_no_run_directory(run_cli, tmp_path):
    result = run_cli("run", "seed=abc", f"run_dir={tmp_path / 'run'}")
    assert result.returncode == 2
    assert not (tmp_path / "run").exists()


def test_a_plugins_run_defaults_replace_the_run_defaults_but_not_what_the_user_gives(tmp_path):
    class OuterLoopMethod(Method):
        run_defaults = {"steps": 7, "optim.lr": 0.05}

        def train_step(self, batch):
            return StepResult(self.ctx.objective_losses(batch).detach())

    registry = registry_with(
        [
            resolve("method", OuterLoopMethod, "outer-loop"),
            resolve("task", REFERENCE_TASK, "reference-task"),
            resolve("model", REFERENCE_MODEL, "reference-model"),
        ]
    )
    base = ["method=outer-loop", "task=reference-task", "model=reference-model"]
    suggested = compose(base, registry=registry)
    assert suggested.run.steps == 7 and suggested.run.optim.lr == 0.05
    assert suggested.run.batch_size == 64  # untouched run defaults stay
    given = compose([*base, "steps=3"], registry=registry)
    assert given.run.steps == 3 and given.run.optim.lr == 0.05
    config_file = tmp_path / "exp.yaml"
    config_file.write_text("optim:\n  lr: 0.2\n")
    from_file = compose(base, config_file=config_file, registry=registry)
    assert from_file.run.optim.lr == 0.2 and from_file.run.steps == 7


def test_yes_no_on_off_are_words_on_the_command_line_as_in_config_files(tmp_path):
    """YAML 1.1 reads ``off`` as false; config files and the command line read the word (YAML
    1.2), so a choice spelled ``off`` can be given either way."""
    from twcore.orchestration.config.overrides import parse_value

    assert parse_value("off") == "off" and parse_value("Yes") == "Yes"
    assert parse_value("true") is True and parse_value("false") is False
    assert compose([parse_override("wandb.console=off")]).run.wandb.console == "off"
    config_file = tmp_path / "run.yaml"
    config_file.write_text("wandb:\n  console: off\n")
    assert compose(config_file=config_file).run.wandb.console == "off"
