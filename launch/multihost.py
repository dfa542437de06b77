"""Joining several processes (hosts) into one JAX runtime, and the rules that follow from it.

With `jax.distributed` every process runs the same program on the same values (the sweep loop is
deterministic given its flags and the metrics every process reads), `jax.devices()` lists all
hosts' devices, and a mesh over them spreads the members across hosts. Two consequences:

  * only process 0 writes files (records, reports, config): `is_primary()`;
  * a host reads arrays split across processes with `to_host`, which gathers them first
    (`jax.device_get` fails on shards held by another process).

The coordinator comes from the environment, as launchers (SLURM scripts, `mpirun -x`, a Kubernetes
job template) set it, or from flags; with neither it is a single process and nothing happens.
`initialize_from_env` must run before anything touches a device.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import jax

ADDRESS_ENV = "JAX_COORDINATOR_ADDRESS"
PROCESSES_ENV = "JAX_NUM_PROCESSES"
PROCESS_ID_ENV = "JAX_PROCESS_ID"


def _int(name: str, text: str) -> int:
  try:
    return int(text)
  except ValueError:
    raise ValueError(f"{name}: {text!r} is not an integer") from None


def initialize_from_env(coordinator_address: str | None = None, num_processes: int | None = None,
                        process_id: int | None = None,
                        environ: Mapping[str, str] | None = None) -> bool:
  """Calls `jax.distributed.initialize` when a multi-process job is described; else nothing.

  Arguments win over the environment variables JAX_COORDINATOR_ADDRESS,
  JAX_NUM_PROCESSES and JAX_PROCESS_ID.

  Args:
    coordinator_address: host:port of process 0.
    num_processes: processes in the job; 1 means a single process (nothing to join).
    process_id: this process's index in [0, num_processes).
    environ: where to read the variables (default `os.environ`).

  Returns:
    True when this call joined a multi-process runtime, False when there is none to join.

  Raises:
    ValueError: one line, when the description is partial or out of range.
  """
  environ = os.environ if environ is None else environ
  address = coordinator_address or environ.get(ADDRESS_ENV) or None
  if num_processes is None and environ.get(PROCESSES_ENV):
    num_processes = _int(PROCESSES_ENV, environ[PROCESSES_ENV])
  if process_id is None and environ.get(PROCESS_ID_ENV):
    process_id = _int(PROCESS_ID_ENV, environ[PROCESS_ID_ENV])
  if address is None and num_processes is None and process_id is None:
    return False
  if num_processes == 1 and process_id in (None, 0):
    return False
  missing = [name for name, value in ((ADDRESS_ENV, address), (PROCESSES_ENV, num_processes),
                                      (PROCESS_ID_ENV, process_id)) if value is None]
  if missing:
    raise ValueError(f"multihost: {', '.join(missing)} not set; a multi-process job needs the "
                     f"coordinator address, the process count and this process's id")
  if num_processes < 1 or not 0 <= process_id < num_processes:
    raise ValueError(f"multihost: process id {process_id} not in [0, {num_processes})")
  if jax.distributed.is_initialized():
    return True
  jax.distributed.initialize(coordinator_address=address, num_processes=num_processes,
                             process_id=process_id)
  return True


def is_primary() -> bool:
  """True in the one process that writes files (process 0; also a single process)."""
  return jax.process_index() == 0


def to_host(tree: Any) -> Any:
  """Numpy copies of every leaf, whole, in every process (shards of other processes gathered).

  Args:
    tree: a pytree of arrays, e.g. the [members] metrics of `population.train_epoch`.

  Returns:
    The same pytree of numpy arrays.
  """
  from jax.experimental import multihost_utils

  def fetch(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      # Every process takes part (a collective); tiled: the global array, not one per process.
      return multihost_utils.process_allgather(x, tiled=True)
    return jax.device_get(x)

  return jax.tree_util.tree_map(fetch, tree)
