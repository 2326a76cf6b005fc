"""Data-parallel training in several processes through ``keras.distribution`` (JAX backend).

Launched like ``torchrun``: one process per machine (or per accelerator), each with the same
command plus its rank: ``num_processes``, ``process_id`` and the ``coordinator``'s
``HOST:PORT`` (process 0's address, which it listens on), given in
:class:`keras_resnet.training.TrainConfig` (``--num-processes``, ``--process-id``,
``--coordinator``) or in Keras's own ``KERAS_DISTRIBUTION_NUM_PROCESSES``,
``KERAS_DISTRIBUTION_PROCESS_ID`` and ``KERAS_DISTRIBUTION_JOB_ADDRESSES`` variables (the
config wins). :func:`initialize` then calls ``keras.distribution.initialize`` and sets a
``DataParallel`` distribution over every device of every process: the model's variables are
replicated, each global batch is split between the processes (every process builds the same
``tf.data`` pipeline from the same seed and keeps its share of each batch, :func:`shard`), and
the step runs on the global batch, so the run is the single-process run with the same global
batch (BatchNorm statistics included).

Only process 0 writes the run folder; the others write into a scratch folder. On resuming,
every process reads the resume file from the run folder, so on several machines the run folder
must be shared storage (NFS, a mounted bucket); :func:`agree` stops every process with an
error when they would resume from different epochs.

TensorFlow's ``tf.distribute`` strategies are not used here (see
:func:`keras_resnet.training.check_cluster` for why). This module imports Keras and JAX only
when called.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping

NUM_PROCESSES_ENV = "KERAS_DISTRIBUTION_NUM_PROCESSES"
PROCESS_ID_ENV = "KERAS_DISTRIBUTION_PROCESS_ID"
ADDRESSES_ENV = "KERAS_DISTRIBUTION_JOB_ADDRESSES"
_ADDRESS = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")
_initialized: Cluster | None = None


@dataclasses.dataclass(frozen=True)
class Cluster:
    """Where this process stands: ``process_id`` of ``num_processes``, and the coordinator."""

    num_processes: int
    process_id: int
    coordinator: str

    @property
    def is_chief(self) -> bool:
        return self.process_id == 0


def check_coordinator(value, name: str = "coordinator") -> str:
    """Returns ``value`` if it is ``HOST:PORT`` (port 1-65535), else raises ValueError.

    Example:
    >>> check_coordinator("10.0.0.1:1234")
    '10.0.0.1:1234'
    """
    match = _ADDRESS.match(value) if isinstance(value, str) else None
    if match is None or not 0 < int(match.group(2)) < 65536:
        raise ValueError(f"{name} must be process 0's address as HOST:PORT (e.g. 10.0.0.1:1234); received {name}={value!r}")
    return value


def _env_int(environ: Mapping[str, str], key: str) -> int | None:
    value = environ.get(key)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{key} must be an integer; received {key}={value!r}") from None


def resolve(config, environ: Mapping[str, str] | None = None) -> Cluster | None:
    """The cluster that ``config`` (first) and the ``KERAS_DISTRIBUTION_*`` variables describe.

    Args:
        config: a :class:`keras_resnet.training.TrainConfig`.
        environ: the environment variables; default ``os.environ``.

    Returns:
        A :class:`Cluster`, or None for a single process (no setting, or ``num_processes=1``).

    Raises:
        ValueError: a setting missing or out of range, naming the flag and the variable.

    Example:
    >>> from keras_resnet.training import TrainConfig
    >>> resolve(TrainConfig(), {}) is None
    True
    >>> resolve(TrainConfig(num_processes=2, process_id=1, coordinator="127.0.0.1:1234"), {})
    Cluster(num_processes=2, process_id=1, coordinator='127.0.0.1:1234')
    """
    environ = os.environ if environ is None else environ
    n = config.num_processes if config.num_processes is not None else _env_int(environ, NUM_PROCESSES_ENV)
    i = config.process_id if config.process_id is not None else _env_int(environ, PROCESS_ID_ENV)
    address = config.coordinator if config.coordinator is not None else environ.get(ADDRESSES_ENV) or None
    if n is None and i is None and address is None:
        return None
    if n is None or n < 1:
        raise ValueError(f"multi-process training needs the number of processes, at least 1: --num-processes N "
                         f"(num_processes, or {NUM_PROCESSES_ENV}); received {n!r}")
    if n == 1 and i in (None, 0):
        return None
    if i is None or not 0 <= i < n:
        raise ValueError(f"the process id must be in [0, {n}) for {n} processes: --process-id I (process_id, "
                         f"or {PROCESS_ID_ENV}); received {i!r}")
    if address is None:
        raise ValueError(f"multi-process training needs process 0's address: --coordinator HOST:PORT (coordinator, "
                         f"or {ADDRESSES_ENV})")
    # Keras's variable may list every job's address; JAX needs only the first (the coordinator's).
    address = check_coordinator(address.split(",")[0].strip(), "coordinator")
    return Cluster(int(n), int(i), address)


def check_backend(cluster: Cluster | None, backend: str) -> None:
    """Raises ValueError for a multi-process ``cluster`` on a backend other than JAX."""
    if cluster is not None and backend != "jax":
        raise ValueError(
            f"multi-process training ({cluster.num_processes} processes) runs through keras.distribution on the JAX "
            f"backend; pass --backend jax (or set KERAS_BACKEND=jax); the backend here is {backend!r}"
        )


def initialize(cluster: Cluster) -> None:
    """Joins the cluster and sets a ``DataParallel`` distribution, once per process.

    Call it before JAX runs anything (``jax.distributed`` requires that); it waits until every
    process has joined. A second call with the same cluster does nothing.
    """
    global _initialized
    if _initialized is not None:
        if _initialized != cluster:
            raise ValueError(f"this process already joined {_initialized}; a process joins one cluster")
        return
    import keras
    import tensorflow as tf

    keras.distribution.initialize(job_addresses=cluster.coordinator, num_processes=cluster.num_processes,
                                  process_id=cluster.process_id)
    # initialize() seeds every generator with one seed drawn for the cluster (TensorFlow's included),
    # which would change the tf.data pipeline's shuffle order from a single process's; unset
    # TensorFlow's again, so that every process builds the single-process pipeline. Keras's own
    # seed (model weights) stays the cluster's, or set_random_seed's with set_global_seed.
    tf.random.set_seed(None)
    # Each process cuts its share of every global batch itself (shard): Keras's own sharding needs
    # a batch size that tf.data can read off the pipeline, which ours hides.
    keras.distribution.set_distribution(keras.distribution.DataParallel(auto_shard_dataset=False))
    _initialized = cluster


def shard(dataset, cluster: Cluster):
    """This process's share of each batch of ``dataset``: its 1/N of the rows, in rank order.

    Every process builds the same pipeline (same seed), so the N shares of a step make up the
    global batch. A batch that does not divide by N (an epoch's last, partial one) loses its
    last ``size % N`` rows, so that every process feeds the same shape.
    """
    if dataset is None:
        return None
    import tensorflow as tf

    n, i = cluster.num_processes, cluster.process_id

    def take(*batch):
        per = tf.shape(tf.nest.flatten(batch)[0])[0] // n
        return tf.nest.map_structure(lambda t: t[i * per:(i + 1) * per], batch)

    return dataset.map(take, num_parallel_calls=tf.data.AUTOTUNE)


def barrier(name: str) -> None:
    """Waits until every process has reached the barrier called ``name``."""
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices(name)


def agree(value: int, what: str) -> None:
    """Raises ValueError in every process unless all of them hold the same integer ``value``."""
    import numpy as np
    from jax.experimental import multihost_utils

    values = [int(v) for v in np.asarray(multihost_utils.process_allgather(np.int64(value))).ravel()]
    if len(set(values)) > 1:
        raise ValueError(
            f"the processes disagree on {what} ({', '.join(f'process {i}: {v}' for i, v in enumerate(values))}); "
            "every process resumes from the run folder's backup, so on several machines the run folder must be "
            "shared storage that all of them read"
        )
