"""The ``inrkit`` command line: the group, its error handling, and one module per command group.

Commands parse, call :mod:`inrkit.api` (and the subpackages), and print; each lives in the module
of its group (:mod:`~inrkit.cli.fit`, :mod:`~inrkit.cli.experiments`, :mod:`~inrkit.cli.compress`,
:mod:`~inrkit.cli.tools`, :mod:`~inrkit.cli.plugins`). Importing this package loads no plugin and
not torch (``inrkit --help`` always works, quickly); plugin names are checked against the registry
when an option is actually used.
"""

from __future__ import annotations

import signal
import sys
import threading
import warnings
from typing import Any

import click

from inrkit.cli import compress, experiments, fit, plugins, tools
from inrkit.errors import InrkitError, Terminated, TrainingInterrupted, one_line, signal_number


class UserError(click.ClickException):
    """An :class:`InrkitError` shown as one ``Error: <message>`` line with its exit code, no traceback."""

    def __init__(self, error: InrkitError) -> None:
        super().__init__(one_line(str(error)))
        setattr(self, "exit_code", error.exit_code)  # noqa: B010 - click declares it a class variable


def _terminate(signum: int, frame: Any) -> None:
    """SIGTERM (``timeout``, job schedulers, ``docker stop``) unwinds like Ctrl-C: the trainer
    saves a snapshot and the command exits with 143. Later SIGTERMs are ignored meanwhile, so
    that the snapshot being written is not cut short."""
    signal.signal(signum, signal.SIG_IGN)
    raise Terminated(signum)


class InrkitGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        previous = None
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGTERM, _terminate)
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as exc:  # outside a fit's own handling: still one line and 128 + signal
            _mark_group_failed()
            signum = signal_number(exc)
            raise UserError(TrainingInterrupted(f"interrupted ({signal.Signals(signum).name})", signum)) from None
        except Exception as exc:
            _mark_group_failed()
            if isinstance(exc, InrkitError):
                raise UserError(exc) from None
            raise
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)


def _mark_group_failed() -> None:
    # A process of a torchrun group that stops on an error must not wait for its peers at exit.
    # The group exists only if inrkit.training.distributed was imported.
    group_module = sys.modules.get("inrkit.training.distributed")
    if group_module is not None:
        group_module.mark_failed()


def _format_warning(message: Any, category: Any, filename: str, lineno: int, line: str | None = None) -> str:
    return f"Warning: {message}\n"


def _print_version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    """``--version``: as ``click.version_option`` (eager, then exit), also naming torch and the device."""
    if not value or ctx.resilient_parsing:
        return
    from inrkit.tools.doctor import version_line

    click.echo(version_line(), color=ctx.color)
    ctx.exit()


@click.group(cls=InrkitGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_version,
    help="Show the version (with torch's and the default device) and exit.",
)
def main() -> None:
    """Fit implicit neural representations to many signals at once (MINR and friends)."""
    warnings.formatwarning = _format_warning


for _group in (fit, experiments, compress, tools, plugins):
    for _command in _group.COMMANDS:
        main.add_command(_command)
