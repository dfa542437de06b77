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
import socket
import sys
import threading
import time
from typing import Any, Mapping

import jax

ADDRESS_ENV = "JAX_COORDINATOR_ADDRESS"
PROCESSES_ENV = "JAX_NUM_PROCESSES"
PROCESS_ID_ENV = "JAX_PROCESS_ID"
JOIN_TIMEOUT_ENV = "JAXNN_JOIN_TIMEOUT"            # seconds to wait for every process to join
HEARTBEAT_TIMEOUT_ENV = "JAXNN_HEARTBEAT_TIMEOUT"  # seconds of silence before a process is dead


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
  join_timeout = _int(JOIN_TIMEOUT_ENV, environ.get(JOIN_TIMEOUT_ENV, "60"))
  peer_timeout = _int(HEARTBEAT_TIMEOUT_ENV, environ.get(HEARTBEAT_TIMEOUT_ENV, "10"))
  # Bounded waits. JAX aborts the process (SIGABRT, a long C++ trace) when joining fails, so a
  # timer of ours speaks first: after `join_timeout` s it prints one line and exits 2. JAX's own
  # timeouts stay as the backstop. Noticing a dead process later is the watchdog's job.
  timer = threading.Timer(join_timeout, _join_failed, (address, process_id, num_processes,
                                                      join_timeout))
  timer.daemon = True
  timer.start()
  try:
    jax.distributed.initialize(
        coordinator_address=address, num_processes=num_processes, process_id=process_id,
        initialization_timeout=join_timeout + 30, heartbeat_timeout_seconds=3 * peer_timeout)
  finally:
    timer.cancel()
  _check_counts(process_id, num_processes, join_timeout)
  from jax._src import distributed
  if distributed.global_state.client is not None:   # (None only where initialize is faked)
    global _watchdog
    _watchdog = _Watchdog(process_id, num_processes, peer_timeout)
    _watchdog.start()
  return True


def _join_failed(address: str, process_id: int, num_processes: int, seconds: int) -> None:
  host, _, port = address.rpartition(":")
  try:
    socket.create_connection((host, int(port)), timeout=2).close()
    why = (f"the coordinator answers but not every process joined (one is missing, or the "
           f"processes disagree on {PROCESSES_ENV}={num_processes})")
  except (OSError, ValueError) as e:
    why = f"the coordinator is unreachable ({e})"
  print(f"multihost: process {process_id} of {num_processes} could not join the job at {address} "
        f"within {seconds} s: {why}", file=sys.stderr, flush=True)
  os._exit(2)


def _check_counts(process_id: int, num_processes: int, seconds: int) -> None:
  """Every process must have been started with the same process count (JAX accepts a process
  that claims more; the sweep would then wait for one that never comes)."""
  from jax._src import distributed
  client = distributed.global_state.client
  if client is None:   # initialize faked (tests)
    return
  client.key_value_set(f"jaxnn_count/{process_id}", str(num_processes), allow_overwrite=True)
  counts = {peer: client.blocking_key_value_get(f"jaxnn_count/{peer}", seconds * 1000)
            for peer in range(jax.process_count())}
  if jax.process_count() != num_processes or set(counts.values()) != {str(num_processes)}:
    raise JoinError(f"multihost: mismatched process counts: {PROCESSES_ENV} per process "
                    f"{dict(sorted(counts.items()))}, {jax.process_count()} joined")


class JoinError(RuntimeError):
  """Joining the job failed (one line; the entry points exit with status 2)."""


# Exit status of a process whose peer died: temporary failure, run the same command again.
EXIT_PEER_LOST = 75
_KEY = "jaxnn_alive/"


def _first_line(error: BaseException) -> str:
  return (str(error).strip().splitlines() or [type(error).__name__])[0][:200]


class _Watchdog(threading.Thread):
  """Stops this process with one line when another process of the job stops beating.

  Every process bumps its own key in the coordinator's key-value store each second and watches
  the others' keys (a JAX primitive, no socket of ours). A peer whose key has not moved for
  `timeout` s, or a coordinator that cannot be reached for as long, ends this process with
  `EXIT_PEER_LOST`: without it, the survivors would wait in the next collective until JAX's
  heartbeat aborts them with a C++ stack trace. A process that finished its work says so
  (`finished()`), and is no longer expected to beat.
  """

  def __init__(self, process_id: int, num_processes: int, timeout: float):
    super().__init__(name="jaxnn-multihost-watchdog", daemon=True)
    self.process_id, self.num_processes, self.timeout = process_id, num_processes, timeout

  def run(self) -> None:
    from jax._src import distributed
    client = distributed.global_state.client
    beat, seen, trouble_since = 0, {}, None
    while not _finished.is_set():
      now = time.monotonic()
      try:
        beat += 1
        client.key_value_set(f"{_KEY}{self.process_id}", str(beat), allow_overwrite=True)
        values = dict(client.key_value_dir_get(_KEY))
        trouble_since = None
      except Exception as e:  # noqa: BLE001 - the coordinator went away
        trouble_since = trouble_since or now
        if now - trouble_since > self.timeout:
          self._stop(f"the coordinator (process 0) is unreachable: {_first_line(e)}")
        time.sleep(1.0)
        continue
      for peer in range(self.num_processes):
        value = values.get(f"{_KEY}{peer}")
        if peer == self.process_id or value == "done":
          continue
        last_value, since = seen.get(peer, (None, now))
        if value != last_value:
          seen[peer] = (value, now)
        elif now - since > self.timeout:
          self._stop(f"process {peer} stopped beating {now - since:.0f} s ago (dead or hung)")
      time.sleep(1.0)

  def _stop(self, why: str) -> None:
    if _finished.is_set():
      return
    print(f"multihost: {why}; process {self.process_id} stops (exit {EXIT_PEER_LOST}); run the "
          "same command again to resume from the last checkpoint", file=sys.stderr, flush=True)
    os._exit(EXIT_PEER_LOST)


_finished = threading.Event()
_watchdog: _Watchdog | None = None


def settle() -> None:
  """Called when the main thread failed: with several processes a dead peer often shows up
  first as a failed collective (the transport sees the closed connection before any timeout).
  Gives the watchdog time to recognize it and stop this process with its one line; returns
  (and the caller re-raises) when every peer is alive, i.e. the failure is this process's own."""
  if _watchdog is not None and _watchdog.is_alive() and not _finished.is_set():
    _watchdog.join(_watchdog.timeout + 3)


def finished() -> None:
  """Tells the other processes that this one is done (its silence is no longer a failure)."""
  if _finished.is_set() or not jax.distributed.is_initialized():
    return
  _finished.set()
  try:
    from jax._src import distributed
    distributed.global_state.client.key_value_set(f"{_KEY}{jax.process_index()}", "done",
                                                  allow_overwrite=True)
  except Exception:  # noqa: BLE001 - best effort at exit
    pass


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


def barrier(name: str) -> None:
  """Waits until every process reached the barrier `name` (nothing with one process)."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices(name)
