"""The CLI's options and the typed run config say the same thing: defaults, choices, names."""

from __future__ import annotations

import typing

import click
import pytest

from inrkit.cli import main
from inrkit.cli.options import PRECISIONS, ConfigDefault, ConfigOption, config_default, shown_default
from inrkit.config import RunConfig, TrainConfig

#: Flags that set a run-config key somewhere in the CLI.
CONFIG_FLAGS = {
    "--activation", "--sharing", "--signal", "--width", "--layers", "--steps", "--lr", "--seed",
    "--device", "--compile", "--precision",
}  # fmt: skip
#: (command, flag) pairs that are deliberately *not* the config's default, and why.
NOT_THE_CONFIGS = {
    ("encode", "--steps"): "the run's own settings",
    ("encode", "--lr"): "the run's own settings",
    ("encode", "--seed"): "the run's own settings",
    ("encode", "--device"): "the run's own settings",
    ("decode", "--device"): "decoding defaults to the CPU",
    ("compress", "--device"): "fine-tuning defaults to the CPU",
    ("compare", "--sharing"): "a list of methods",
    ("front", "--sharing"): "a list of methods",
    ("rd", "--sharing"): "a list of methods",
    ("rd", "--width"): "a list of widths",
    ("bench", "--compile"): "bench measures eager unless asked",
}


def _options(command: click.Command, path: tuple[str, ...] = ()) -> list[tuple[str, click.Option]]:
    if isinstance(command, click.Group):
        return [found for name, sub in command.commands.items() for found in _options(sub, (*path, name))]
    return [(" ".join(path), p) for p in command.params if isinstance(p, click.Option)]


OPTIONS = _options(main)
CONFIG_OPTIONS = [(name, option) for name, option in OPTIONS if isinstance(option, ConfigOption)]
FLAGGED = [(name, option) for name, option in OPTIONS if set(option.opts) & CONFIG_FLAGS]


def test_the_walk_finds_the_commands():
    assert {name for name, _ in OPTIONS} >= {"run", "encode", "decode", "compare", "sweep", "front", "rd", "bench"}
    assert len(CONFIG_OPTIONS) > 40


@pytest.mark.parametrize(("command", "option"), CONFIG_OPTIONS, ids=lambda v: v if isinstance(v, str) else v.opts[0])
def test_help_shows_the_configs_default(command: str, option: ConfigOption):
    value = config_default(option.config_key)
    shown = option.unset if value is None and option.unset is not None else shown_default(value)
    assert option.help is not None and f"[default: {shown}" in option.help, (command, option.help)
    if isinstance(option.default, ConfigDefault):  # a default click applies is the config's own
        assert option.default() == value


def test_config_defaults_follow_the_config_model(monkeypatch: pytest.MonkeyPatch):
    """Help text is rendered from the config when it is read, not retyped: change it, the help follows."""
    import inrkit.config

    option = next(o for c, o in CONFIG_OPTIONS if c == "run" and o.opts == ["--width"])
    assert f"[default: {RunConfig().model.width}]" in (option.help or "")
    changed = RunConfig(model={"width": 777})
    monkeypatch.setattr(inrkit.config, "RunConfig", lambda: changed)
    assert "[default: 777]" in (option.help or "")


def test_precision_choices_are_the_configs():
    assert set(PRECISIONS) == set(typing.get_args(TrainConfig.model_fields["precision"].annotation))


@pytest.mark.parametrize(("command", "option"), FLAGGED, ids=lambda v: v if isinstance(v, str) else v.opts[0])
def test_every_config_flag_takes_its_default_from_the_config(command: str, option: click.Option):
    flag = next(o for o in option.opts if o in CONFIG_FLAGS)
    if (command, flag) in NOT_THE_CONFIGS:
        assert not isinstance(option, ConfigOption), f"{command} {flag} is a ConfigOption now: drop its exception"
    else:
        assert isinstance(option, ConfigOption), f"{command} {flag} retypes a config default: use config_option"


def test_every_exception_names_a_real_option():
    present = {(c, o) for c, option in OPTIONS for o in option.opts}
    assert set(NOT_THE_CONFIGS) <= present
