"""The Ray engine: the models on Ray Data workers, everything else in this process, the same files at the end.

The driver (this process) keeps all that makes a run a run, in :mod:`grounded_sam.runs.batch`: the
manifest, output names, resume and skips, the atomic per-image writes and the dataset-level files.
The workers only turn image paths into detections:

* one Ray Data ``map_batches`` over the image paths (one image per block), through a callable class
  on an actor pool: each actor loads the models once (one replica per GPU, or per few CPU cores) and
  reads its images from their paths with the same :func:`~grounded_sam.inputs.images.load_image` the
  local engine uses (EXIF, colour modes, the pixel cap);
* results come back as RLE masks (:mod:`grounded_sam.export.rle`) and float32 arrays, never as
  full-size masks, in input order; the driver decodes them (exactly: RLE is lossless, arrays travel
  as they are) and loads the image again for the writers, so the files are the local engine's bytes;
* a worker that dies (killed, out of memory) is restarted by Ray and its in-flight image is retried
  ``retries`` times; after that the image is recorded as failed with the reason and the run goes on
  (Ray Data's ``max_errored_blocks``), so a run never hangs on an image that kills every worker.

Paths must be visible at the same path on every node (a local Ray, or a shared file system); the
package and the weights must be installed on every node.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import math
import os
import pickle
import signal
import threading
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import supervision as sv

from grounded_sam.categories import Categories
from grounded_sam.errors import EngineError, GroundedSamError, OptionError
from grounded_sam.export.rle import decode_rle, encode_mask
from grounded_sam.runs.batch import Labeled, LabelJob, describe_failure, label_one, load_pipeline_models

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install -r requirements-ray.txt"
#: Times an image is tried again after its worker died on it, before it is recorded as failed.
DEFAULT_RETRIES = 2
#: CPU cores per worker on a cluster without GPUs (the default worker count is the cores over this).
CPU_CORES_PER_WORKER = 2
#: Test hook: ``N:MARKER`` makes the worker that reaches its N-th image exit at once, once per run
#: (the marker file, created by the dying worker, stops the others and its restart from doing it again).
KILL_ENV = "GROUNDED_SAM_RAY_KILL_WORKER"
CONNECT_HINT = ("On the head node run `ray start --head`; then pass --ray-address auto on a node of the cluster, "
                "HEAD:6379, or ray://HEAD:10001 from elsewhere (the same Ray and Python versions everywhere), or "
                "leave --ray-address and RAY_ADDRESS unset to start a local Ray.")
#: Seconds to wait for a cluster's port to answer before giving up (ray.init itself waits minutes).
CONNECT_TIMEOUT_S = 5.0
#: Variables the workers get from the driver, so they load and refuse images as it would.
FORWARDED_ENV_PREFIXES = ("GROUNDED_SAM_", "HF_HUB_OFFLINE")


@dataclass(frozen=True)
class WorkerPlan:
    """How many actors run and what each asks Ray for.

    Attributes:
        workers: Actors in the pool.
        cpus: Logical CPUs each asks for.
        gpus: GPUs each asks for (0 on CPU).
        threads: torch threads each uses.
    """

    workers: int
    cpus: float
    gpus: float
    threads: int

    def describe(self) -> str:
        gpus = f", {self.gpus:g} GPU" if self.gpus else ""
        return f"{self.workers} worker{'s' if self.workers != 1 else ''} ({self.cpus:g} CPU{gpus}, " \
               f"{self.threads} torch thread{'s' if self.threads != 1 else ''} each)"


def plan_workers(
    resources: Mapping[str, float], *, workers: int | None = None, gpus_per_worker: float | None = None,
    threads_per_worker: int | None = None, device: str = "auto", nodes: Sequence[Mapping[str, float]] = (),
) -> WorkerPlan:
    """Sizes the actor pool from what the cluster has (``ray.cluster_resources()``).

    A quarter of the CPUs (at least half of one) is left to Ray Data's own tasks: a pool that asks for
    every CPU starves them and the dataset stalls. With GPUs (and a device that may use them), one
    worker per ``gpus_per_worker`` GPUs (default 1); on CPUs only, one worker per
    :data:`CPU_CORES_PER_WORKER` cores left. A worker's ask always fits on one node.

    Args:
        resources: ``{"CPU": n, "GPU": m, ...}``, the whole cluster's.
        nodes: Each live node's resources; empty: one node holding ``resources``.
        workers: Actors wanted; None: as many as the cluster holds.
        gpus_per_worker: GPUs per actor; None: 1 where the cluster has GPUs and ``device`` may use
            them, else 0.
        threads_per_worker: torch threads per actor; None: its whole CPUs (at least 1).
        device: The pipeline's device (``cpu`` and ``mps`` never take a GPU).

    Raises:
        EngineError: The cluster has no CPUs, or fewer GPUs than the workers ask for (their actors
            would wait for ever).
        OptionError: A count out of range.
    """
    _check_counts(workers, gpus_per_worker, threads_per_worker)
    cpus, gpus = float(resources.get("CPU", 0.0)), float(resources.get("GPU", 0.0))
    if cpus <= 0:
        raise EngineError(f"The Ray cluster has no CPUs (it reports {dict(resources)}). Start its nodes with CPUs.")
    nodes = list(nodes) or [resources]
    spare = cpus - max(0.5, cpus / 4)
    largest = max(float(node.get("CPU", 0.0)) for node in nodes)
    if gpus_per_worker is None:
        gpus_per_worker = 1.0 if gpus > 0 and device.split(":")[0] not in ("cpu", "mps") else 0.0
    if gpus_per_worker > 0:
        fit = sum(int(float(node.get("GPU", 0.0)) // gpus_per_worker) for node in nodes)  # a worker's GPUs: one node's
        workers = workers or fit
        if fit < 1 or workers > fit:
            raise EngineError(
                f"{workers or 1} worker(s) x {gpus_per_worker:g} GPU need {(workers or 1) * gpus_per_worker:g} GPUs, but "
                f"the Ray cluster has {gpus:g} ({fit} such worker(s) fit on its nodes). Ask for fewer --workers or "
                "--gpus-per-worker, add GPU nodes, or use --gpus-per-worker 0 to run on CPUs."
            )
        per_worker = min(float(CPU_CORES_PER_WORKER), spare / workers)
    else:
        workers = workers or max(1, int(spare // CPU_CORES_PER_WORKER))
        per_worker = spare / workers
    per_worker = min(per_worker, largest - max(0.5, largest / 4))  # schedulable on one node, leaving it Ray Data's share
    per_worker = math.floor(per_worker * 100) / 100  # a round ask; never more than is spare
    threads = threads_per_worker or max(1, int(per_worker))
    return WorkerPlan(workers, per_worker, float(gpus_per_worker), threads)


def _check_counts(workers: int | None, gpus_per_worker: float | None, threads_per_worker: int | None) -> None:
    if workers is not None and workers < 1:
        raise OptionError(f"--workers must be >= 1, but got {workers}.")
    if gpus_per_worker is not None and gpus_per_worker < 0:
        raise OptionError(f"--gpus-per-worker must be >= 0, but got {gpus_per_worker:g}.")
    if threads_per_worker is not None and threads_per_worker < 1:
        raise OptionError(f"threads per worker must be >= 1, but got {threads_per_worker}.")


@dataclass(frozen=True)
class KillSwitch:
    """The test hook of :data:`KILL_ENV`: the first worker to reach its ``after``-th image exits, once.

    Attributes:
        after: The image count (per worker) at which it exits.
        marker: A file the dying worker creates first; once it exists, nobody exits.
    """

    after: int
    marker: Path

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> KillSwitch | None:
        raw = (os.environ if environ is None else environ).get(KILL_ENV, "").strip()
        if not raw:
            return None
        count, _, marker = raw.partition(":")
        if not count.isdigit() or int(count) < 1 or not marker:
            raise OptionError(f"{KILL_ENV} must be N:MARKER_FILE (N >= 1), but got {raw!r}.")
        return cls(int(count), Path(marker))

    def fires(self, done: int) -> bool:
        """Whether a worker about to label its ``done``-th image exits now (claims the marker if so)."""
        if done != self.after:
            return False
        try:
            with open(self.marker, "x"):
                return True
        except FileExistsError:
            return False


# ------------------------------------------------------------------------------------ transport


def pack_detections(detections: sv.Detections) -> dict[str, Any]:
    """Detections as small plain values for the trip back: masks as COCO RLE, arrays as they are.

    ``unpack_detections(pack_detections(d))`` has the same arrays, dtypes and masks as ``d``.
    """
    mask = detections.mask
    return {
        "xyxy": detections.xyxy, "confidence": detections.confidence, "class_id": detections.class_id,
        "tracker_id": detections.tracker_id, "data": dict(detections.data), "metadata": dict(detections.metadata),
        "masks": None if mask is None else [encode_mask(m) for m in mask],
        "mask_hw": None if mask is None else tuple(int(v) for v in mask.shape[1:]),
    }


def unpack_detections(packed: Mapping[str, Any]) -> sv.Detections:
    """The inverse of :func:`pack_detections`: ``mask`` back to (N, H, W) bool."""
    mask = None
    if packed["masks"] is not None:
        height, width = packed["mask_hw"]
        mask = (np.stack([decode_rle(rle) for rle in packed["masks"]]) if packed["masks"]
                else np.zeros((0, height, width), dtype=bool))
    return sv.Detections(
        xyxy=packed["xyxy"], mask=mask, confidence=packed["confidence"], class_id=packed["class_id"],
        tracker_id=packed["tracker_id"], data=dict(packed["data"]), metadata=dict(packed["metadata"]),
    )


def pack_labeled(labeled: Labeled) -> bytes:
    """One result as bytes for a Ray Data column (no image: the driver loads it itself)."""
    return pickle.dumps({
        "detections": None if labeled.detections is None else pack_detections(labeled.detections),
        "size": labeled.size, "error": labeled.error, "trace": labeled.trace, "seconds": labeled.seconds,
        "worker": labeled.worker,
    }, protocol=pickle.HIGHEST_PROTOCOL)


def unpack_labeled(data: bytes) -> Labeled:
    """The inverse of :func:`pack_labeled` (bytes from our own workers only)."""
    fields = pickle.loads(data)
    packed = fields.pop("detections")
    return Labeled(detections=None if packed is None else unpack_detections(packed), **fields)


# ------------------------------------------------------------------------------------ the workers


class LabelWorker:
    """Ray Data's callable class: one per actor, the models loaded once, a batch of image paths per call.

    Args:
        pipe: The pipeline, pickled as its settings (models load lazily, once per actor process).
        categories: The run's parsed categories.
        threads: torch threads for this actor.
        kill: The test hook (see :data:`KILL_ENV`), or None.
    """

    def __init__(self, pipe: Any, categories: Categories, threads: int, kill: KillSwitch | None = None) -> None:
        import ray
        import torch

        torch.set_num_threads(threads)
        self.pipe, self.categories, self.kill = pipe, categories, kill
        self.done = 0
        context = ray.get_runtime_context()
        self.name = f"{ray.util.get_node_ip_address()}/{(context.get_actor_id() or '')[:8]}"
        # Load once, now. Missing weights or a device this node lacks must stop the run once with the loader's
        # own message, as the local engine does; an actor that raised here would reach the driver as Ray's
        # text only, so the error is kept and handed back with the first batch instead.
        self.startup_error: GroundedSamError | None = None
        try:
            load_pipeline_models(pipe)
        except GroundedSamError as exc:
            self.startup_error = exc

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.startup_error is not None:
            fatal = pickle.dumps(self.startup_error)
            return {"index": batch["index"], "result": np.array([b""] * len(batch["index"]), dtype=object),
                    "fatal": np.array([fatal] * len(batch["index"]), dtype=object)}
        results = []
        for path in batch["path"]:
            self.done += 1
            if self.kill is not None and self.kill.fires(self.done):
                os._exit(1)  # the test hook: die as a killed process does, without cleaning up
            labeled = label_one(self.pipe, Path(str(path)), self.categories, keep_image=False)
            labeled.worker = self.name
            try:
                results.append(pack_labeled(labeled))
            except Exception as exc:  # noqa: BLE001 - an odd result must fail its image, not look like a dead worker
                error, trace = describe_failure(exc)
                results.append(pack_labeled(Labeled(size=labeled.size, error=error, trace=trace, worker=self.name)))
        return {"index": batch["index"], "result": np.array(results, dtype=object),
                "fatal": np.array([b""] * len(results), dtype=object)}


# ------------------------------------------------------------------------------------ the engine


def _import_ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise EngineError(f"--engine ray needs Ray Data, which is not installed ({exc}). Install it with "
                          f"`{INSTALL_HINT}` (in every node's environment too).") from exc
    return ray


class RayEngine:
    """Labels a run's images on Ray Data workers (see this module's docstring).

    Args:
        address: The cluster: ``auto`` (a node of a running cluster), ``HOST:PORT``, ``ray://HOST:PORT``
            (Ray Client); None: ``RAY_ADDRESS`` if set, else a local Ray started for the run and
            stopped after it. A Ray already initialised in this process is used as it is.
        workers: Actors; None: as many as the cluster holds (see :func:`plan_workers`).
        gpus_per_worker: None: 1 where the cluster has GPUs (and the device may use them), else 0.
        threads_per_worker: torch threads per actor; None: its whole CPUs.
        retries: Times an image is tried again after its worker died on it.
        kill: The test hook; None reads :data:`KILL_ENV`.

    Raises:
        EngineError: Ray is not installed.
        OptionError: A count out of range.
    """

    name = "ray"

    def __init__(
        self, address: str | None = None, *, workers: int | None = None, gpus_per_worker: float | None = None,
        threads_per_worker: int | None = None, retries: int = DEFAULT_RETRIES, kill: KillSwitch | None = None,
    ) -> None:
        if importlib.util.find_spec("ray") is None:
            raise EngineError(f"--engine ray needs Ray, which is not installed. Install it with `{INSTALL_HINT}`.")
        if retries < 0:
            raise OptionError(f"retries must be >= 0, but got {retries}.")
        _check_counts(workers, gpus_per_worker, threads_per_worker)  # before any model or cluster is touched
        self.address = (address or "").strip() or None
        self.workers, self.gpus_per_worker, self.threads_per_worker = workers, gpus_per_worker, threads_per_worker
        self.retries = retries
        self.kill = kill if kill is not None else KillSwitch.from_env()
        self.plan: WorkerPlan | None = None
        self._connected_here = False

    # ---------------------------------------------------------------- lifecycle

    def start(self, pipe: Any) -> None:
        """Connects (or starts a local Ray) and sizes the pool; the models load on the workers.

        Raises:
            EngineError: Ray Data is missing, the cluster cannot be reached, or it lacks the GPUs asked for.
        """
        ray = self._connect()
        self.plan = plan_workers(
            ray.cluster_resources(), workers=self.workers, gpus_per_worker=self.gpus_per_worker,
            threads_per_worker=self.threads_per_worker, device=str(getattr(pipe, "device", "auto")),
            nodes=[node["Resources"] for node in ray.nodes() if node.get("Alive")],
        )
        logger.info("Ray engine: %s", self.plan.describe())

    def close(self) -> None:
        """Stops the local Ray this engine started (or leaves the cluster it joined); idempotent."""
        if self._connected_here:
            import ray

            self._connected_here = False
            ray.shutdown()

    def _connect(self) -> Any:
        ray = _import_ray()
        if ray.is_initialized():
            return ray
        address = self.address or os.environ.get("RAY_ADDRESS", "").strip() or None
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage reports from our runs
        # ray.init replaces the SIGTERM handler with one that exits at once; keep ours (a plain
        # `kill` stops a run as Ctrl-C does: dataset files written, summary printed).
        main = threading.current_thread() is threading.main_thread()
        previous = signal.getsignal(signal.SIGTERM) if main else None
        # Ray sets its loggers' level in init: its notices only with -vv, its errors always.
        level = logging.DEBUG if logger.isEnabledFor(logging.DEBUG) else logging.ERROR
        kwargs: dict[str, Any] = {"log_to_driver": False, "logging_level": level}
        if address is None:
            kwargs["include_dashboard"] = False  # a local Ray for this run: nothing to watch, no port to open
        try:
            if address is not None:
                _check_reachable(address)
            with _quiet_ray_logs():
                ray.init(address=address, **kwargs)
        except Exception as exc:  # ConnectionError, a timeout, a version mismatch: all mean "cannot use it"
            where = f"the Ray cluster at {address}" if address else "a local Ray"
            raise EngineError(
                f"Could not start or reach {where} ({type(exc).__name__}: {str(exc).rstrip('.')}). {CONNECT_HINT}"
            ) from exc
        finally:
            if main and previous is not None:
                signal.signal(signal.SIGTERM, previous)
        self._connected_here = True
        return ray

    # ---------------------------------------------------------------- the run

    def label(self, pipe: Any, categories: Categories, jobs: Iterable[LabelJob]) -> Iterator[tuple[LabelJob, Labeled]]:
        """Sends every job's path to the pool and yields the results in input order as they arrive.

        Jobs are all taken (the driver's skip checks run) before the first is sent. An image whose
        worker died on it every time comes last, failed.

        Raises:
            A :class:`~grounded_sam.errors.GroundedSamError` raised while the workers start (missing
            weights), else EngineError when they cannot start.
        """
        pending = list(jobs)
        if not pending:
            return
        if self.plan is None:
            self.start(pipe)
        plan = self.plan
        ray = _import_ray()
        from ray.data import ActorPoolStrategy, DataContext

        context = DataContext.get_current()
        settings = {"max_errored_blocks": -1, "enable_progress_bars": False, "print_on_execution_start": False}
        saved = {name: getattr(context, name) for name in settings}
        saved_order = context.execution_options.preserve_order
        for name, value in settings.items():
            setattr(context, name, value)  # a failed image is ours to record, not the end of the run
        context.execution_options.preserve_order = True  # the manifest gets the local engine's order
        seen: set[int] = set()
        try:
            dataset = ray.data.from_items([{"index": i, "path": str(job.image.path)} for i, job in enumerate(pending)],
                                          override_num_blocks=len(pending))  # one image per block: a death costs one
            with warnings.catch_warnings():
                # Ray Data takes max_restarts/max_task_retries only as (deprecated) extra remote args; its
                # default retries a task for ever, which would loop on an image that kills every worker.
                warnings.simplefilter("ignore")
                dataset = dataset.map_batches(
                    LabelWorker, batch_size=1, batch_format="numpy", compute=ActorPoolStrategy(
                        # One image in flight per actor: a worker's death then costs (and retries) that image
                        # alone, never the innocent ones queued behind it.
                        size=plan.workers, max_tasks_in_flight_per_actor=1),
                    fn_constructor_kwargs={"pipe": pipe, "categories": categories, "threads": plan.threads,
                                           "kill": self.kill},
                    num_cpus=plan.cpus, num_gpus=plan.gpus or None, runtime_env={"env_vars": _forwarded_env()},
                    max_restarts=-1, max_task_retries=self.retries,
                )
            rows = iter(dataset.iter_rows())
            with _quiet_ray_logs(), contextlib.closing(rows) if hasattr(rows, "close") else contextlib.nullcontext():
                for row in _unwrapping_worker_errors(rows):
                    if row["fatal"]:
                        raise pickle.loads(row["fatal"])
                    index = int(row["index"])
                    seen.add(index)
                    yield pending[index], unpack_labeled(row["result"])
        finally:
            for name, value in saved.items():
                setattr(context, name, value)
            context.execution_options.preserve_order = saved_order
        tries = self.retries + 1
        for index, job in enumerate(pending):
            if index not in seen:
                yield job, Labeled(error=(
                    f"The Ray worker labeling it died {tries} time{'s' if tries != 1 else ''} (killed, out of memory "
                    "or crashed), so it was given up; the workers' logs are in /tmp/ray/session_latest/logs on "
                    "their nodes."))


def _check_reachable(address: str) -> None:
    """Fails fast when a ``HOST:PORT`` (or ``ray://HOST:PORT``) address does not answer: ``ray.init`` would wait
    minutes before saying so. ``auto`` and other forms are left to Ray.

    Raises:
        ConnectionError: Nothing listens there (or the host is unknown).
    """
    import socket

    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise ConnectionError(f"nothing answers at {host}:{port}: {exc}") from exc


@contextlib.contextmanager
def _quiet_ray_logs() -> Iterator[None]:
    """Ray's own INFO and WARNING lines (its start, each dataset's plan, progress notices) only with ``-vv``;
    its errors (a worker that died, an image given up) always show."""
    if logger.isEnabledFor(logging.DEBUG):
        yield
        return
    loggers = [logging.getLogger(name) for name in ("ray", "ray.data")]
    levels = [each.level for each in loggers]
    for each in loggers:
        each.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for each, level in zip(loggers, levels):
            each.setLevel(level)


def _forwarded_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV_PREFIXES) and k != KILL_ENV}


def _unwrapping_worker_errors(rows: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """The rows; a Ray failure (a worker that could not start for a reason that is not ours) as EngineError."""
    try:
        yield from rows
    except GroundedSamError:
        raise
    except Exception as exc:
        raise EngineError(f"The Ray workers failed: {type(exc).__name__}: {exc}") from exc
