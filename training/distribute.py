"""``python -m training fit ... --strategy mirrored|multiworker``: the same ``train()`` under ``tf.distribute``.

- ``mirrored``: ``tf.distribute.MirroredStrategy``, one replica per GPU of this machine (one CPU replica without).
- ``multiworker``: ``tf.distribute.MultiWorkerMirroredStrategy`` across the machines named in ``TF_CONFIG``
  (``{"cluster": {"worker": ["host1:port", "host2:port"]}, "task": {"type": "worker", "index": i}}``); start the
  same command on every machine, each with its own ``task.index``, the data at the same path on each.

Scaling, so that a run on N replicas is the same recipe as on one: ``--batch-size`` is the batch of *one replica*;
every step trains on a global batch of batch_size x N split across the replicas (each worker builds the same
deterministic global batch and keeps its share), so an epoch has N times fewer steps; the learning rates (``lr``,
``lr_head``, ``lr_lowres``) are multiplied by N (the linear scaling rule of Goyal et al. 2017, "Accurate, Large
Minibatch SGD"), the cosine schedule and weight decay stay as they are. model.json records the distribution
(``training.distribution``: strategy, replicas, workers, global batch, learning-rate factor).

Checkpoints and the model folder: every worker runs every step (collective ops need them all), but only the chief
(worker 0) writes into ``--run-dir`` and ``--out``; the others write into a scratch folder they delete at the end.
``--resume`` works as without a strategy (every worker reads the chief's checkpoint: a shared run folder).
Early stopping is off with several workers (each would decide from its own validation pass, and a split decision
would leave the others waiting in a collective); the best epoch is still the one kept."""
from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

log = logging.getLogger(__name__)

STRATEGIES = ("none", "mirrored", "multiworker")


@dataclass
class Distribution:
    name: str
    strategy: object      # a tf.distribute.Strategy
    replicas: int         # replicas in sync, over every worker
    workers: int
    chief: bool           # this process writes the checkpoints and the model folder

    def describe(self, batch_size: int) -> dict:
        return {"strategy": self.name, "replicas": self.replicas, "workers": self.workers,
                "batch_size_per_replica": batch_size, "global_batch_size": batch_size * self.replicas,
                "learning_rate_factor": self.replicas}


def _tf_config() -> tuple[int, int, bool]:
    """(workers, this worker's index, chief) from TF_CONFIG."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise ValueError("--strategy multiworker needs TF_CONFIG (the cluster's workers and this one's index); "
                         "see training/distribute.py")
    try:
        conf = json.loads(raw)
        cluster, task = conf["cluster"], conf["task"]
        workers = len(cluster.get("worker", [])) + len(cluster.get("chief", []))
        kind, index = task["type"], int(task["index"])
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"TF_CONFIG cannot be read: {e}") from None
    chief = kind == "chief" or (kind == "worker" and index == 0 and "chief" not in cluster)
    return workers, index, chief


def make_distribution(name: str | None) -> Distribution | None:
    """The strategy to train under (None: plain single-device training). Call before TensorFlow runs anything:
    MultiWorkerMirroredStrategy must configure the runtime first."""
    if not name or name == "none":
        return None
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}: use {', '.join(STRATEGIES)}")
    import tensorflow as tf

    if name == "mirrored":
        strategy = tf.distribute.MirroredStrategy()
        return Distribution(name, strategy, strategy.num_replicas_in_sync, 1, True)
    workers, _, chief = _tf_config()
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    return Distribution(name, strategy, strategy.num_replicas_in_sync, workers, chief)


@contextlib.contextmanager
def this_workers_run(config, dist: Distribution | None, resume: bool):
    """The config this process trains with: as given on the chief (or without a strategy); on another worker the
    same recipe writing into a scratch folder (a copy of the chief's run when resuming), deleted afterwards. With
    several workers early stopping is off (see the module docstring)."""
    if dist is not None and dist.workers > 1 and config.patience:
        # each worker would decide from its own validation pass; a split decision would leave the others waiting
        log.warning("early stopping is off with several workers (patience %d ignored); the best epoch is kept",
                    config.patience)
        config = replace(config, patience=0)
    if dist is None or dist.chief:   # every worker trains; only the chief writes the run and the model
        yield config
        return
    scratch = Path(tempfile.mkdtemp(prefix="leukviewer-worker-"))
    try:
        if resume and config.resolved_run_dir().is_dir():
            shutil.copytree(config.resolved_run_dir(), scratch / "run")
        yield replace(config, run_dir=str(scratch / "run"), output=str(scratch / "model") if config.output else None)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def scaled(config, replicas: int):
    """The recipe as run on ``replicas`` replicas: global batch and learning rates times ``replicas``."""
    if replicas == 1:
        return config
    return replace(config, batch_size=config.batch_size * replicas, lr=config.lr * replicas,
                   lr_head=config.lr_head * replicas,
                   lr_lowres=None if config.lr_lowres is None else config.lr_lowres * replicas)


def build_from_local_batch(model) -> None:
    """Work around Keras 3 (3.15) under MultiWorkerMirroredStrategy with one device per worker: before the first
    step ``fit`` builds the model from one batch, which it reduces across replicas with ``strategy.reduce(MEAN)``
    (only its shapes matter), and that reduction fails across workers ("Attempt to convert a value (PerReplica...)
    to a Tensor"). This builds from this worker's share of the batch instead: same shapes, no collective."""
    import types

    import tensorflow as tf
    from keras.src import tree

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        if self._distribute_strategy is None:
            return
        if iterator is not None:
            for _, _, it in iterator:
                batch = next(it)
                data_batch = tree.map_structure(
                    lambda v: self.distribute_strategy.experimental_local_results(v)[0]
                    if isinstance(v, tf.distribute.DistributedValues) else v, batch)
                break
        with self.distribute_strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    model._maybe_symbolic_build = types.MethodType(_maybe_symbolic_build, model)
    _reduce_scalar_logs_across_workers()


def _reduce_scalar_logs_across_workers() -> None:
    """Keras 3 averages each step's logs (scalars: loss, accuracy) over the replicas of several workers with
    ``strategy.reduce("MEAN", v, axis=0)``, which fails on a scalar ("Invalid reduction dimension 0 for input with
    0 dimensions", tensorflow/tensorflow#72388, open against Keras 3). A scalar that is already one value (Keras
    hands the metric results in synchronised) is kept, as Keras keeps it on one worker; a per-replica scalar is
    averaged with axis=None (the same mean); everything else goes through Keras unchanged."""
    import tensorflow as tf
    from keras.src import tree
    from keras.src.backend.tensorflow import trainer

    original = trainer.reduce_per_replica
    if getattr(original, "scalar_logs_fixed", False):
        return

    def reduce_per_replica(values, strategy, reduction):
        if reduction not in ("auto", "mean") or not trainer._collective_all_reduce_multi_worker(strategy):
            return original(values, strategy, reduction)

        def _reduce(v):
            if not isinstance(v, tf.distribute.DistributedValues):
                return v if v.shape.rank == 0 else original(v, strategy, reduction)   # already one value
            if strategy.experimental_local_results(v)[0].shape.rank == 0:
                return strategy.reduce("MEAN", v, axis=None)
            return original(v, strategy, reduction)

        return tree.map_structure(_reduce, values)

    reduce_per_replica.scalar_logs_fixed = True
    trainer.reduce_per_replica = reduce_per_replica
