"""MLflow tracking (needs ``pip install 'inrkit[mlflow]'``).

Each fit is one MLflow run named after its run folder, in the experiment ``experiment``
(default ``inrkit``). By default the tracking store is a SQLite database in the run folder,
``sqlite:///<run>/mlflow/mlflow.db``, with the artifacts in ``<run>/mlflow/mlartifacts/``; the
fits of one ``compare``, ``sweep``, ``front`` or ``rd`` share one in the experiment's folder
(``<out>/mlflow/mlflow.db``), and without a run folder it is ``mlflow/`` in the working
directory. Look at it with ``mlflow ui --backend-store-uri sqlite:///<run>/mlflow/mlflow.db``.
``tracking_uri`` names another store: a shared ``sqlite:///path/mlflow.db`` (a relative path is
from the working directory; the artifacts go to ``mlartifacts/`` beside the database) or a
tracking server (``http://host:5000``, which keeps the artifacts itself). MLflow's plain-folder
store is not offered: MLflow 3 refuses it. The fits of one experiment are child runs of one
parent run (tagged ``inrkit.group``; a run's ``inrkit.role`` is ``fit`` or ``group``, a fit's
``inrkit.run_dir`` its run folder). Logged:

- the run's configuration as parameters, flattened with dots (``model.width``), each value cut
  to MLflow's length limit;
- at every logged step (``train.log_every``): ``train/loss``, ``train/psnr``, ``train/lr`` and
  ``train_item_psnr/<item>`` for the first ``max_items`` items;
- at every evaluation: ``eval/<score>_mean``; after the last, the first ``max_images`` items'
  reconstructions as ``reconstructions/<item>.png`` artifacts (2-D items);
- at the end: ``metrics.json`` and the run folder's ``plots/*.png`` as artifacts, and
  ``metrics.json``'s scalar summaries (``psnr_mean``, ...) as metrics.

A store that cannot be opened when the fit starts (an unknown scheme, an unwritable folder, a
server that does not answer) is an error before the first step. A failure of MLflow while
logging (a server gone down, a full disk) is warned about once and the run goes on without it.
A resumed run is logged as a new MLflow run.
"""

from __future__ import annotations

import atexit
import json
import logging
import re
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pydantic

import inrkit
from inrkit import files
from inrkit.errors import ConfigError, InrkitError, one_line
from inrkit.interfaces import Callback, FitContext, PluginOptions
from inrkit.results import Evaluation, RunMetrics, StepLog, TrainResult

from .tracking import GuardedLogging, as_uint8, finite, shown_images, step_scalars, summary_values, tag

MISSING = (
    "the mlflow callback needs the mlflow package, which is not installed: pip install 'inrkit[mlflow]'"
)
#: The store created in the run folder when no ``tracking_uri`` is given: ``mlflow/mlflow.db``.
STORE_DIR = "mlflow"
DB_FILE = "mlflow.db"
#: The artifacts' folder, beside a SQLite database.
ARTIFACTS_DIR = "mlartifacts"
GROUP_TAG = "inrkit.group"
ROLE_TAG = "inrkit.role"
#: MLflow's limits (``mlflow.utils.validation``), should the import move.
PARAM_VALUE_LIMIT = 6000
PARAM_KEY_LIMIT = 250
BATCH_LIMIT = 100


def _key(name: str) -> str:
    """A metric or artifact name MLflow accepts (letters, digits, ``_-. /``)."""
    return re.sub(r"[^\w\-. /]", "_", name).replace(" ", "_") or "_"


def flatten(data: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    """``(dotted key, value as text)`` of nested mappings; lists and other values as JSON."""
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            yield from flatten(value, name + ".")
        else:
            yield name, value if isinstance(value, str) else json.dumps(value, default=str)


def _missing_module(exc: BaseException | None) -> str | None:
    """The module an error (or an error it was raised from) says is not installed."""
    while exc is not None:
        if isinstance(exc, ImportError):
            return exc.name or "a package that is not installed"
        exc = exc.__cause__ or exc.__context__
    return None


def _quiet() -> None:
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


class MlflowTracker(GuardedLogging, Callback):
    name = "mlflow"
    service = "MLflow"

    class Options(PluginOptions):
        #: The tracking store (``sqlite:///path.db``, ``http://host:5000``); not set: ``sqlite:///<run>/mlflow/mlflow.db``.
        tracking_uri: str | None = None
        #: The MLflow experiment.
        experiment: str = pydantic.Field("inrkit", min_length=1)
        #: Per-item PSNR curves for at most this many items (0: none).
        max_items: int = pydantic.Field(16, ge=0)
        #: Reconstructions logged as artifacts after the last step, for at most this many items.
        max_images: int = pydantic.Field(8, ge=0)

        @pydantic.field_validator("tracking_uri")
        @classmethod
        def _uri(cls, value: str | None) -> str | None:
            if value is not None and not re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*:", value) and value != "databricks":
                raise ValueError(
                    "must be a URI, e.g. sqlite:///path/mlflow.db or http://host:5000 (a plain path is not one)"
                )
            if value is not None and len(value) >= 2 and value[1] == ":" and value[0].isalpha():
                raise ValueError("must be a URI, e.g. sqlite:///C:/path/mlflow.db (a Windows path is not one)")
            return value

    options: Options

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        try:
            import mlflow
            from mlflow.entities import Metric, Param
        except ImportError:
            raise ConfigError(MISSING) from None
        self._mlflow: Any = mlflow
        self._metric, self._param = Metric, Param
        self._client: Any = None
        self.run_id: str | None = None
        self.tracking_uri: str | None = None
        self._warned = False

    # -- guarding: a tracker failure never stops the fit -----------------------------------------

    def _is_open(self) -> bool:
        return self.run_id is not None

    def _abandon(self) -> None:
        self._finish("FAILED")

    # -- setup ----------------------------------------------------------------------------------

    def _store(self, context: FitContext) -> tuple[str, Path | None]:
        """The tracking URI and the folder of a SQLite database (``None`` for other stores)."""
        uri = self.options.tracking_uri
        if uri is None:
            base = context.run_dir if context.run_dir is not None else Path.cwd()
            if context.group is not None and context.run_dir is not None:
                base = context.run_dir.parent  # the experiment's folder: one store for all its fits
            folder = (base / STORE_DIR).resolve()
            return f"sqlite:///{(folder / DB_FILE).as_posix()}", folder
        if urlparse(uri).scheme == "sqlite" and uri.startswith("sqlite:///") and ":memory:" not in uri:
            return uri, Path(uri[len("sqlite:///"):]).resolve().parent
        return uri, None

    def _experiment_id(self, artifacts: str | None) -> str:
        """The experiment's id, the experiment created (artifacts in ``artifacts``) when new."""
        experiment = self._client.get_experiment_by_name(self.options.experiment)
        if experiment is not None:
            return str(experiment.experiment_id)
        return str(self._client.create_experiment(self.options.experiment, artifact_location=artifacts))

    def _parent(self, experiment_id: str, group: str) -> str:
        """The run all fits of ``group`` hang under: found by its tags, else created (finished at once)."""
        escaped = group.replace("\\", "\\\\").replace("'", "\\'")
        found = self._client.search_runs(
            [experiment_id], filter_string=f"tags.`{GROUP_TAG}` = '{escaped}' and tags.`{ROLE_TAG}` = 'group'", max_results=1,
        )
        if found:
            return str(found[0].info.run_id)
        run = self._client.create_run(experiment_id, tags={GROUP_TAG: group, ROLE_TAG: "group"}, run_name=group)
        self._client.set_terminated(run.info.run_id, "FINISHED")
        return str(run.info.run_id)

    def on_fit_start(self, context: FitContext) -> None:
        _quiet()
        uri, folder = self._store(context)
        artifacts = (folder / ARTIFACTS_DIR).as_uri() if folder is not None else None
        if folder is not None:
            try:
                folder.mkdir(parents=True, exist_ok=True)
                files.check_writable(folder)
            except OSError as exc:
                raise ConfigError(f"callback 'mlflow': cannot write into {folder}: {files.os_reason(exc)}") from None
            except InrkitError as exc:
                raise ConfigError(f"callback 'mlflow': {exc}") from None
        try:
            self._client = self._mlflow.MlflowClient(tracking_uri=uri)
            _quiet()  # the store's first use configures mlflow's loggers again
            experiment_id = self._experiment_id(artifacts)
            tags = {ROLE_TAG: "fit"}
            if context.group is not None:
                tags[GROUP_TAG] = context.group
                tags["mlflow.parentRunId"] = self._parent(experiment_id, context.group)
            if context.run_dir is not None:
                tags["inrkit.run_dir"] = str(context.run_dir)
            name = context.run_dir.name if context.run_dir is not None else None
            self.run_id = str(self._client.create_run(experiment_id, tags=tags, run_name=name).info.run_id)
        except Exception as exc:  # noqa: BLE001 - any failure of the store's first use, before training
            self._client = None
            if _missing_module(exc):
                raise ConfigError(f"callback 'mlflow': the store {uri} needs {_missing_module(exc)}: pip install 'inrkit[mlflow]'") from None
            raise ConfigError(f"callback 'mlflow': cannot open the tracking store {uri}: {one_line(str(exc)) or type(exc).__name__}") from None
        self.tracking_uri = uri
        atexit.register(self._at_exit)
        params = [self._param(k[:PARAM_KEY_LIMIT], v[:PARAM_VALUE_LIMIT]) for k, v in flatten(context.config)]

        def log_params() -> None:
            for start in range(0, len(params), BATCH_LIMIT):
                self._client.log_batch(self.run_id, params=params[start : start + BATCH_LIMIT])

        self._safely("logging the config", log_params)

    # -- logging --------------------------------------------------------------------------------

    def _log(self, what: str, values: Mapping[str, Any], step: int) -> None:
        now = int(time.time() * 1000)
        metrics = [self._metric(_key(k), float(v), now, step) for k, v in values.items() if finite(v)]
        if metrics:
            self._safely(what, lambda: self._client.log_batch(self.run_id, metrics=metrics))

    def on_step_end(self, context: FitContext, log: StepLog) -> None:
        if not self.run_id or not log.logged:
            return
        self._log("logging a step", step_scalars(context, log, self.options.max_items), log.step)

    def on_evaluate(self, context: FitContext, evaluation: Evaluation) -> None:
        if not self.run_id:
            return
        self._log("logging an evaluation", {f"eval/{k}_mean": evaluation.summary(k)[0] for k in evaluation.metric_names()}, evaluation.step)
        if not evaluation.final or not self.options.max_images:
            return

        def images() -> None:
            for name, image in shown_images(evaluation, self.options.max_images):
                self._client.log_image(self.run_id, as_uint8(image), artifact_file=f"reconstructions/{_key(tag(name))}.png")

        self._safely("logging the reconstructions", images)

    def on_fit_end(self, context: FitContext, result: TrainResult | None) -> None:
        if result is None:
            self._finish("FAILED")
        elif not context.results_follow:
            self._finish("FINISHED")

    def on_results(self, context: FitContext, metrics: RunMetrics | None, run_dir: Path | None) -> None:
        if metrics is None:
            self._finish("FAILED")
            return
        data = metrics.to_dict()

        def results() -> None:
            metrics_file = run_dir / "metrics.json" if run_dir is not None else None
            if metrics_file is not None and metrics_file.is_file():
                self._client.log_artifact(self.run_id, str(metrics_file))
            else:
                with tempfile.TemporaryDirectory() as tmp:
                    path = Path(tmp) / "metrics.json"
                    path.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
                    self._client.log_artifact(self.run_id, str(path))
            for plot in sorted((run_dir / "plots").glob("*.png")) if run_dir is not None else []:
                self._client.log_artifact(self.run_id, str(plot), "plots")

        self._safely("logging the results", results)
        self._log("logging the summaries", summary_values(metrics), metrics.steps)
        self._finish("FINISHED")

    def _finish(self, status: str) -> None:
        run_id, self.run_id = self.run_id, None
        atexit.unregister(self._at_exit)
        if not run_id or self._client is None:
            return
        try:
            self._client.set_terminated(run_id, status)
        except Exception as exc:  # noqa: BLE001 - the fit's results are already safe
            if not self._warned:
                self._warned = True
                print(f"warning: mlflow: ending the run failed ({exc})", file=sys.stderr)

    def _at_exit(self) -> None:
        """A run still open when Python exits (results never came): end it as failed."""
        self._finish("FAILED")


@inrkit.hookimpl
def inrkit_register_callbacks() -> list[type[Callback]]:
    return [MlflowTracker]
