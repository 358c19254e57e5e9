"""What the commands share: plugin-name parameters, the run options and their defaults, small parsers.

Defaults shown in help (``[default: 256]``) are read from the typed run config
(:mod:`inrkit.config`) when the help is rendered, never retyped here, and importing this module
imports neither the config nor torch nor a plugin.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import click

from inrkit.errors import InrkitError

KINDS = ("activation", "sharing", "signal")


class PluginName(click.ParamType):
    """A plugin name checked against the registry at use, so choices come from installed plugins."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.name = f"{kind} name"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        from inrkit.plugins import get_registry

        try:
            get_registry().entry(self.kind, str(value))
        except InrkitError as exc:  # unknown, or registered twice: the registry's message says which
            self.fail(str(exc), param, ctx)
        return str(value)

    def shell_complete(self, ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
        from click.shell_completion import CompletionItem

        from inrkit.plugins import get_registry

        return [CompletionItem(n) for n in get_registry().names(self.kind) if n.startswith(incomplete)]


def config_default(key: str) -> Any:
    """The typed run config's default for a dotted key: ``model.width``, ``train.steps``, or a
    plugin kind (``activation``: the default plugin's name). Imports the config on first use."""
    from inrkit.config import RunConfig

    value: Any = RunConfig()
    for part in key.split("."):
        value = getattr(value, part)
    return value.name if key in KINDS else value


def shown_default(value: Any) -> str:
    """A default as help text shows it: ``on``/``off`` for flags, the value otherwise."""
    return ("on" if value else "off") if isinstance(value, bool) else str(value)


class ConfigDefault:
    """A click default read from the typed run config when click asks for it (click calls
    callable defaults), so the value is never retyped and importing the CLI stays light."""

    def __init__(self, key: str) -> None:
        self.key = key

    def __call__(self) -> Any:
        return config_default(self.key)

    def __str__(self) -> str:  # the CLI reference's default column
        return shown_default(self())


class ConfigOption(click.Option):
    """An option whose help ends in ``[default: …]`` taken from the typed run config
    (``config_key``), rendered when the help is read (``inrkit run --help``, the CLI reference).

    ``unset`` replaces a default of ``None`` (``lr``: "the activation's"); ``also`` (text, or a
    function giving it when the help is rendered) follows the value (``; 100 for the samples demo``).
    """

    def __init__(
        self, *decls: Any, config_key: str, unset: str | None = None, also: str | Callable[[], str] = "", **attrs: Any
    ) -> None:
        self.config_key, self.unset, self.also = config_key, unset, also
        super().__init__(*decls, **attrs)

    @property
    def help(self) -> str | None:
        value = config_default(self.config_key)
        text = self.unset if value is None and self.unset is not None else shown_default(value)
        also = self.also() if callable(self.also) else self.also
        return f"{self._help} [default: {text}{also}]."

    @help.setter
    def help(self, text: str | None) -> None:
        self._help = (text or "").rstrip(".")


def demo_steps() -> str:
    """What a fit of the built-in samples trains instead of ``train.steps``."""
    from inrkit.config import DEMO_STEPS

    return f"; {DEMO_STEPS} for the samples demo"


#: ``train.precision``'s choices (a test holds them to the config's).
PRECISIONS = ("fp32", "bf16")


def config_option(*decls: Any, config_key: str, **attrs: Any) -> Callable[[Any], Any]:
    """``click.option`` with a :class:`ConfigOption`: its ``[default: …]`` comes from the config."""
    return click.option(*decls, cls=ConfigOption, config_key=config_key, **attrs)


def _plugin_section(data: dict[str, Any], kind: str, name: str | None) -> None:
    """Set a plugin name from a flag; options from a config file for another plugin are dropped."""
    from inrkit.config import DEFAULT_PLUGINS

    if name is None:
        return
    section = data.get(kind)
    if isinstance(section, dict) and section.get("name", DEFAULT_PLUGINS[kind]) == name:
        section["name"] = name
        return
    data[kind] = {"name": name}


def build_config_dict(
    config_file: str | None, flags: dict[str, Any], assignments: Sequence[str]
) -> dict[str, Any]:
    """Defaults < ``--config`` file < explicit flags < ``--set`` assignments."""
    from inrkit.config import apply_overrides, read_config_file

    data: dict[str, Any] = read_config_file(config_file) if config_file else {}
    for kind in KINDS:
        _plugin_section(data, kind, flags.get(kind))
    sources = list(flags.get("data") or ()) + list(flags.get("paths") or ())
    if sources:
        data["data"] = sources
    if flags.get("log"):
        train = data.setdefault("train", {})
        if isinstance(train, dict):
            listed = [c if isinstance(c, str) else c.get("name") if isinstance(c, dict) else None for c in train.get("callbacks") or []]
            train["callbacks"] = list(train.get("callbacks") or []) + [n for n in dict.fromkeys(flags["log"]) if n not in listed]
    for section, keys in (("model", ("width", "layers")), ("train", ("steps", "lr", "seed", "device", "compile", "precision"))):
        for key in keys:
            if flags.get(key) is not None:
                data.setdefault(section, {})
                if not isinstance(data[section], dict):
                    from inrkit.errors import ConfigError

                    raise ConfigError(f"config: {section!r} must be a table")
                data[section][key] = flags[key]
    return apply_overrides(data, assignments)


log_option = click.option(
    "--log", "log", multiple=True, type=PluginName("callback"), metavar="NAME",
    help="Callback plugin watching the fit, e.g. tensorboard or jsonl (repeatable; adds to train.callbacks).",
)


def common_run_options(sharing: bool = True, width: bool = True) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The options ``run`` and ``compare`` share (``compare`` takes a list of strategies instead,
    ``rd`` lists of strategies and widths)."""
    options = [
        config_option("--activation", type=PluginName("activation"), config_key="activation", help="Activation plugin"),
        config_option("--signal", type=PluginName("signal"), config_key="signal", help="Signal plugin"),
        click.option("--data", multiple=True, metavar="PATH", help="File, folder or glob (repeatable; paths after the options count too) [default: built-in samples]."),
        *([config_option("--width", type=int, config_key="model.width", help="Hidden width")] if width else []),
        config_option("--layers", type=int, config_key="model.layers", help="Linear layers of one plain MLP, as the paper counts them"),
        config_option("--steps", type=int, config_key="train.steps", also=demo_steps, help="Training steps, each over every point"),
        config_option("--lr", type=float, config_key="train.lr", unset="the activation's", help="Adam learning rate"),
        config_option("--seed", type=int, config_key="train.seed", help="Random seed"),
        config_option("--device", config_key="train.device", help="auto, cpu, cuda or cuda:N"),
        config_option("--compile/--no-compile", "compile", default=None, config_key="train.compile", help="--compile always compiles the training step with torch.compile, --no-compile never; unset, train.compile decides (auto: when the fit repays it)"),
        config_option("--precision", type=click.Choice(PRECISIONS), config_key="train.precision", help="bf16 autocasts the hidden layers' products (for GPUs)"),
        click.option("--config", "config_file", type=click.Path(dir_okay=False), help="TOML, YAML or JSON run config."),
        click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE", help="Override a config value by dotted key, e.g. sharing.projection=false (repeatable)."),
        click.option("--progress/--no-progress", default=None, help="Show a progress bar [default: when stderr is a terminal]."),
        log_option,
    ]
    if sharing:
        options.insert(1, config_option("--sharing", type=PluginName("sharing"), config_key="sharing", help="Sharing strategy plugin"))
    # Paths after the options count as --data too, so `--data photos/*.png` works once the shell
    # has expanded the glob into many arguments.
    options.append(click.argument("paths", nargs=-1, type=click.Path()))

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


def note(text: str) -> None:
    from inrkit.training.distributed import is_main_process

    if is_main_process():  # one note per run, not one per torchrun process
        click.echo(f"Note: {text}", err=True)


def sharing_list(ctx: click.Context, param: click.Parameter, value: str | None) -> list[str]:
    if not value:
        return []
    names = [v.strip() for v in value.split(",") if v.strip()]
    kind = PluginName("sharing")
    return [kind.convert(name, param, ctx) for name in names]


def parse_seeds(ctx: click.Context, param: click.Parameter, value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        seeds = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected seeds such as 0,1,2 (got {value!r})") from None
    if not seeds or any(s < 0 for s in seeds):
        raise click.BadParameter(f"expected non-negative seeds such as 0,1,2 (got {value!r})")
    if len(set(seeds)) != len(seeds):
        raise click.BadParameter(f"a seed is listed twice in {value!r}")
    return seeds


SEEDS_HELP = "Fit every point once per seed, e.g. 0,1,2 (overrides --seed); tables then give means over seeds with 95% intervals."


retry_option = click.option("--retry-failed", is_flag=True, help="Fit again the points that failed (diverged) in an earlier run of this --out [default: skip them].")


def parse_size(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        w, h = (int(v) for v in value.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"expected WIDTHxHEIGHT, e.g. 512x384 (got {value!r})") from None
    if w <= 0 or h <= 0:
        raise click.BadParameter(f"width and height must be positive (got {value!r})")
    return h, w


def int_list(ctx: click.Context, param: click.Parameter, value: str | None) -> list[int]:
    if not value:
        return []
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected whole numbers separated by commas (got {value!r})") from None


def name_list(ctx: click.Context, param: click.Parameter, value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]
