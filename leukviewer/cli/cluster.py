"""The cases of an archive on a Ray cluster (``leukviewer batch ARCHIVE --out DIR --cluster ADDRESS|local[:N]``).

One Ray actor per CPU slot, or per GPU where the cluster has GPUs (``worker_plan``), loads the model once and
analyses whole cases (``archive.analyse_case``: the files of
``leukviewer batch CASE --out DIR/CASE``). An actor pool rather than Ray Data: the unit of work is a case whose
files are written next to each other by the worker that analysed it, not a stream of rows to collect, and a case
is what a rerun skips and what a failure names. Ray restarts an actor whose process dies (a killed worker, a lost
node) and retries the case it held; the case starts over from nothing (its files are written together at the end).

Every node needs leukviewer installed (``pip install 'leukviewer[cluster]'``) and the archive, --out and --model
at the same paths (a shared file system); this module is imported only with ``--cluster``."""
from __future__ import annotations

import os
from typing import Callable

RESTARTS = 3   # times a worker process may die (killed, out of memory, node lost) before its case is failed


def parse_address(text: str) -> tuple[str | None, int | None]:
    """``local`` -> (None, None): a Ray instance here, one worker per core; ``local:N`` -> (None, N);
    anything else is the address of a running cluster (``HOST:PORT``, ``ray://HOST:10001`` or ``auto``)."""
    if text == "local":
        return None, None
    if text.startswith("local:"):
        try:
            n = int(text.split(":", 1)[1])
        except ValueError:
            n = 0
        if n < 1:
            raise ValueError(f"--cluster {text}: local:N needs a number of workers N >= 1")
        return None, n
    return text, None


def worker_plan(cpu_slots: int, gpus: int, cases: int) -> list[int]:
    """GPUs of each actor to start (1: a GPU actor, 0: a CPU-slot actor), GPU actors first.

    Each GPU gets one actor: TensorFlow classifies there (the engine's ``auto`` picks it when it sees a GPU) while
    the actor's CPU slot reads and localises. Every CPU slot left over gets a CPU actor (LiteRT). No more actors than
    cases: an idle actor would only hold a model in memory."""
    gpus = max(0, min(int(gpus), int(cpu_slots)))   # a GPU actor holds one CPU slot too: no more than there are
    cpu_actors = max(0, int(cpu_slots) - gpus)
    plan = [1] * gpus + [0] * cpu_actors
    return plan[:max(1, min(len(plan), cases))] or [0]


def limit_to_slot(threads: int) -> None:
    """Keep this worker process to its CPU slot: several workers on one machine share its cores instead of fighting
    over them. LiteRT's threads and the image readers read ``LEUKVIEWER_THREADS`` (``engine.cpu_threads``);
    TensorFlow's pools read ``TF_NUM_INTRAOP_THREADS`` / ``TF_NUM_INTEROP_THREADS`` when, and only if, the engine
    imports it, so a LiteRT worker never pays TensorFlow's 5-7 s import."""
    from leukviewer.core.model.engine import THREADS_ENV

    os.environ[THREADS_ENV] = str(threads)
    os.environ["TF_NUM_INTRAOP_THREADS"] = os.environ["TF_NUM_INTEROP_THREADS"] = str(threads)


def _worker_class(ray):
    @ray.remote(num_cpus=1, max_restarts=RESTARTS, max_task_retries=RESTARTS)
    class CaseWorker:
        """Holds the model; analyses one case per call."""

        def __init__(self, options: dict):
            os.environ.setdefault("KERAS_BACKEND", "tensorflow")
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
            limit_to_slot(max(1, int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1))))
            from leukviewer.cli.archive import load_classifier

            self.options = options
            self.classifier = load_classifier(options)

        def pid(self) -> int:
            return os.getpid()

        def analyse(self, archive: str, name: str, out: str) -> dict:
            from leukviewer.cli.archive import analyse_case

            return analyse_case(archive, name, out, self.options, self.classifier)

    return CaseWorker


def run_on_ray(address: str, archive: str, cases: list[str], out: str, options: dict,
               on_result: Callable[[dict], None]) -> None:
    """Analyse ``cases`` on the Ray cluster at ``address``; ``on_result`` gets each case's outcome as it finishes
    (in the driver). Every case gets exactly one outcome: done, or failed with its reason."""
    try:
        import ray
    except ImportError:
        raise RuntimeError("--cluster needs Ray: pip install 'leukviewer[cluster]'") from None
    from ray.exceptions import RayError

    remote, n_local = parse_address(address)
    started_here = not ray.is_initialized()
    if started_here:
        if remote is None:
            ray.init(num_cpus=n_local, include_dashboard=False, log_to_driver=False, configure_logging=False)
        else:
            ray.init(address=remote, log_to_driver=False, configure_logging=False)
    try:
        resources = ray.cluster_resources()
        plan = worker_plan(int(resources.get("CPU", 1)), int(resources.get("GPU", 0)), len(cases))
        Worker = _worker_class(ray)
        idle = [Worker.options(num_gpus=g).remote(options) if g else Worker.remote(options) for g in plan]
        queue = list(cases)
        pending = {}   # object ref -> (case, actor)
        while queue or pending:
            while queue and idle:
                actor, name = idle.pop(), queue.pop(0)
                pending[actor.analyse.remote(archive, name, out)] = (name, actor)
            if not pending:   # every worker is gone for good
                for name in queue:
                    on_result({"case": name, "row": {"case": name, "status": "failed",
                                                     "reason": "no Ray worker left to analyse it"}})
                return
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                name, actor = pending.pop(ref)
                try:
                    outcome = ray.get(ref)
                    idle.append(actor)
                except RayError as e:   # the worker died more than RESTARTS times, or could not load the model
                    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                    outcome = {"case": name, "row": {"case": name, "status": "failed",
                                                     "reason": f"the Ray worker failed: {first}"}}
                on_result(outcome)
    finally:
        if started_here:
            ray.shutdown()
