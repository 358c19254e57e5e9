"""Weights & Biases tracking (needs ``pip install 'inrkit[wandb]'``).

Each fit is one W&B run named after its run folder, in ``project`` (default ``inrkit``); the
fits of one ``compare``, ``sweep``, ``front`` or ``rd`` share a W&B group
(``"compare:<experiment folder>"``). W&B's files go to ``wandb/`` in the run folder (the
working directory when nothing is saved). Logged:

- the run's configuration (``wandb.config``);
- at every logged step (``train.log_every``): ``train/loss``, ``train/psnr``, ``train/lr`` and
  ``train_item_psnr/<item>`` for the first ``max_items`` items;
- at every evaluation: ``eval/<score>_mean``; after the last, the first ``max_images`` items'
  reconstructions (``reconstruction/<item>``, 2-D items);
- at the end: the run folder's ``plots/*.png`` and ``metrics.json``'s summaries as the run's
  summary (``psnr_mean``, ``ssim_mean``, ...).

Without ``mode`` the run is ``online`` only when an API key is configured (``WANDB_MODE`` if
set; else ``WANDB_API_KEY``, or a ``~/.netrc`` entry written by ``wandb login``), ``offline``
otherwise; nothing touches the network to decide. Upload an offline run later with
``wandb sync <run>/wandb/offline-run-*``. A run that cannot start (an unwritable folder, no
answer from the server) is an error before the first step; a failure of W&B while logging
(network, disk) is warned about once and the run goes on without it. A resumed run is logged
as a new W&B run.
"""

from __future__ import annotations

import atexit
import contextlib
import netrc
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

import pydantic

import inrkit
from inrkit import files
from inrkit.errors import ConfigError, InrkitError, one_line
from inrkit.interfaces import Callback, FitContext, PluginOptions
from inrkit.results import Evaluation, RunMetrics, StepLog, TrainResult

from .tracking import GuardedLogging, as_uint8, finite, shown_images, step_scalars, summary_values, tag

MISSING = (
    "the wandb callback needs the wandb package, which is not installed: pip install 'inrkit[wandb]'"
)


def api_key_configured(environ: Mapping[str, str] | None = None) -> bool:
    """Whether W&B has an API key here: ``WANDB_API_KEY``, or a netrc entry for its host
    (``WANDB_BASE_URL``'s, default ``api.wandb.ai``; the file ``NETRC`` names, else ``~/.netrc``).
    Reads files only."""
    env = os.environ if environ is None else environ
    if env.get("WANDB_API_KEY"):
        return True
    host = urlparse(env.get("WANDB_BASE_URL") or "https://api.wandb.ai").netloc or "api.wandb.ai"
    try:
        entry = netrc.netrc(env.get("NETRC") or None).authenticators(host)
    except (OSError, netrc.NetrcParseError):
        return False
    return bool(entry and entry[2])


def default_mode(option: str | None, environ: Mapping[str, str] | None = None) -> str:
    """``option`` if set, else ``WANDB_MODE``, else ``online`` with an API key and ``offline`` without."""
    env = os.environ if environ is None else environ
    if option:
        return option
    if env.get("WANDB_MODE"):
        return env["WANDB_MODE"]
    return "online" if api_key_configured(env) else "offline"


class WandbTracker(GuardedLogging, Callback):
    name = "wandb"
    service = "W&B"

    class Options(PluginOptions):
        #: The W&B project.
        project: str = pydantic.Field("inrkit", min_length=1)
        #: The W&B entity (user or team); W&B's default when not set.
        entity: str | None = None
        #: ``online``, ``offline`` or ``disabled``; not set: ``WANDB_MODE``, else online with an API key, offline without.
        mode: Literal["online", "offline", "disabled"] | None = None
        #: Per-item PSNR curves for at most this many items (0: none).
        max_items: int = pydantic.Field(16, ge=0)
        #: Reconstructions logged as images after the last step, for at most this many items.
        max_images: int = pydantic.Field(8, ge=0)

    options: Options

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        try:
            import wandb
        except ImportError:
            raise ConfigError(MISSING) from None
        self._wandb: Any = wandb
        self._run: Any = None
        self._warned = False
        #: Where W&B writes (``<dir>/wandb/``), once the run started.
        self.dir: Path | None = None

    # -- guarding: a tracker failure never stops the fit -----------------------------------------

    def _is_open(self) -> bool:
        return self._run is not None

    def _abandon(self) -> None:
        run, self._run = self._run, None
        if run is not None:
            with contextlib.suppress(Exception):  # already given up
                run.finish(exit_code=1)

    def _settings(self) -> Any:
        wanted = {
            "silent": True, "quiet": True, "console": "off", "x_disable_stats": True, "x_disable_machine_info": True,
            "x_disable_meta": True, "disable_git": True, "disable_code": True, "save_code": False,
            "disable_job_creation": True,
        }
        fields = getattr(self._wandb.Settings, "model_fields", {})
        return self._wandb.Settings(**{k: v for k, v in wanted.items() if k in fields})

    # -- hooks ----------------------------------------------------------------------------------

    def on_fit_start(self, context: FitContext) -> None:
        directory = context.run_dir if context.run_dir is not None else Path.cwd()
        mode = default_mode(self.options.mode)
        if mode not in ("online", "offline", "disabled", "dryrun", "run"):
            raise ConfigError(f"callback 'wandb': WANDB_MODE={mode!r} is not one of online, offline, disabled")
        try:
            (directory / "wandb").mkdir(parents=True, exist_ok=True)
            files.check_writable(directory / "wandb")
        except OSError as exc:
            raise ConfigError(f"callback 'wandb': cannot write into {directory / 'wandb'}: {files.os_reason(exc)}") from None
        except InrkitError as exc:
            raise ConfigError(f"callback 'wandb': {exc}") from None
        try:
            self._run = self._wandb.init(
                project=self.options.project, entity=self.options.entity, group=context.group,
                name=context.run_dir.name if context.run_dir is not None else None,
                config=dict(context.config), dir=str(directory), mode=mode, settings=self._settings(),
                reinit="create_new",
            )
        except Exception as exc:  # noqa: BLE001 - any failure to start, before training
            hint = "; without a network, log offline: --set callbacks.wandb.mode=offline (then wandb sync)" if mode == "online" else ""
            raise ConfigError(f"callback 'wandb': cannot start a {mode} run: {one_line(str(exc)) or type(exc).__name__}{hint}") from None
        self.dir = directory
        atexit.register(self._at_exit)

    def on_step_end(self, context: FitContext, log: StepLog) -> None:
        if self._run is None or not log.logged:
            return
        values = step_scalars(context, log, self.options.max_items)
        data = {k: v for k, v in values.items() if finite(v)}
        self._safely("logging a step", lambda: self._run.log(data, step=log.step))

    def on_evaluate(self, context: FitContext, evaluation: Evaluation) -> None:
        if self._run is None:
            return
        data: dict[str, Any] = {}
        for key in evaluation.metric_names():
            mean, _ = evaluation.summary(key)
            if finite(mean):
                data[f"eval/{key}_mean"] = mean
        if evaluation.final:
            for name, image in shown_images(evaluation, self.options.max_images):
                data[f"reconstruction/{tag(name)}"] = self._wandb.Image(as_uint8(image))
        self._safely("logging an evaluation", lambda: self._run.log(data, step=evaluation.step))

    def on_fit_end(self, context: FitContext, result: TrainResult | None) -> None:
        if result is None:
            self._finish(exit_code=1)
        elif not context.results_follow:
            self._finish(exit_code=0)

    def on_results(self, context: FitContext, metrics: RunMetrics | None, run_dir: Path | None) -> None:
        if metrics is None:
            self._finish(exit_code=1)
            return
        summary: dict[str, Any] = {k: v for k, v in metrics.to_dict().items() if isinstance(v, str)}
        summary.update(summary_values(metrics))
        plots = sorted((run_dir / "plots").glob("*.png")) if run_dir is not None else []

        def log_results() -> None:
            if plots:
                self._run.log({f"plots/{p.stem}": self._wandb.Image(str(p)) for p in plots}, step=metrics.steps)
            self._run.summary.update(summary)

        self._safely("logging the results", log_results)
        self._finish(exit_code=0)

    def _finish(self, exit_code: int) -> None:
        run, self._run = self._run, None
        atexit.unregister(self._at_exit)
        if run is None:
            return
        try:
            run.finish(exit_code=exit_code)
        except Exception as exc:  # noqa: BLE001 - the fit's results are already safe
            if not self._warned:
                self._warned = True
                print(f"warning: wandb: finishing the run failed ({exc})", file=sys.stderr)

    def _at_exit(self) -> None:
        """A run still open when Python exits (results never came): finish it as failed."""
        self._finish(exit_code=1)


@inrkit.hookimpl
def inrkit_register_callbacks() -> list[type[Callback]]:
    return [WandbTracker]
