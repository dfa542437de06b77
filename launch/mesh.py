"""Members spread over every device (and host) with JAX's own sharding; no training logic here.

A population is already one program over a leading [members] axis (jit of vmap), so spreading it
is only a question of where its arrays live: shard every leaf of the hyperparameters and of the
state along that axis over a 1-D mesh named 'members', replicate the data, and the unchanged
jitted `population.init/train_epoch/evaluate` run SPMD, each device training its own members.
Members never interact, so no collective runs inside an epoch; only the small [members] metrics
cross devices when the host reads them.

Usage (what the sweep loop does with a chunk):

    mesh = member_mesh()
    data = place_data(population.device_data(dataset), mesh)
    hparams, state = place_population(hparams, population.init(spec, hparams, data), mesh)
    state, metrics = population.train_epoch(spec, state, hparams, data)

Multi-host: build the mesh after `launch.multihost.initialize_from_env()`; `jax.devices()` then
lists every host's devices, and every process runs the same loop on the same values.
"""

from __future__ import annotations

from typing import Any, Sequence, TypeVar

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MEMBERS = "members"

T = TypeVar("T")


def member_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A 1-D mesh with the axis 'members' over `devices`.

  Args:
    devices: the devices to use, in order; default every device of every process
      (`jax.devices()`).

  Returns:
    The mesh (axis type Auto: XLA propagates the sharding through the program).
  """
  devices = list(jax.devices() if devices is None else devices)
  if not devices:
    raise ValueError("devices: empty; a mesh needs at least one device")
  return Mesh(np.array(devices), (MEMBERS,), axis_types=(jax.sharding.AxisType.Auto,))


def population_sharding(num_members: int, mesh: Mesh) -> NamedSharding:
  """Where a population of `num_members` lives on `mesh`: split along 'members' when every
  device gets the same number of members, else replicated (see `place_population`)."""
  if num_members % mesh.size == 0:
    return NamedSharding(mesh, PartitionSpec(MEMBERS))
  return NamedSharding(mesh, PartitionSpec())


def place_population(hparams: T, state: Any, mesh: Mesh) -> tuple[T, Any]:
  """Puts every leaf of `hparams` and `state` on `mesh`, split along the leading members axis.

  The split happens only when the member count is a multiple of the device count; an uneven
  population is replicated: every device runs every member, which gives the same numbers at no
  speed-up. The sweep loop never hands it one: its chunks are padded with inactive filler slots
  to multiples of `mesh.size` (sweeps/plan.py `slot_size`).
  Placing an already placed population costs nothing.

  Args:
    hparams: per-member arrays (a pytree, every leaf [members, ...]).
    state: the population's state (`population.MemberState`, every leaf [members, ...]).
    mesh: from `member_mesh`.

  Returns:
    (hparams, state) with the same structure, values and dtypes, placed on `mesh`.
  """
  leaves = jax.tree_util.tree_leaves((hparams, state))
  counts = {np.shape(x)[0] for x in leaves if np.ndim(x) > 0}
  if len(counts) > 1:
    raise ValueError(f"place_population: leaves disagree on the member count: {sorted(counts)}")
  sharding = population_sharding(counts.pop() if counts else 1, mesh)
  replicated = NamedSharding(mesh, PartitionSpec())

  def place(x):
    return _put(x, sharding if np.ndim(x) > 0 else replicated)

  return jax.tree_util.tree_map(place, hparams), jax.tree_util.tree_map(place, state)


def place_data(data: T, mesh: Mesh) -> T:
  """The read-only data (`population.DeviceData`, or any pytree) replicated on every device.

  Args:
    data: the splits and statistics every member reads.
    mesh: from `member_mesh`.

  Returns:
    The same pytree, each leaf fully replicated on `mesh`.
  """
  replicated = NamedSharding(mesh, PartitionSpec())
  return jax.tree_util.tree_map(lambda x: _put(x, replicated), data)


def _put(x, sharding: NamedSharding) -> jax.Array:
  if isinstance(x, jax.Array) and x.sharding.is_equivalent_to(sharding, x.ndim):
    return x   # already there (e.g. the state train_epoch returns): no copy
  if jax.process_count() == 1 or (isinstance(x, jax.Array) and not x.is_fully_addressable):
    # One process: a device-to-device copy. A global array of several processes: a reshard,
    # which every process runs together.
    return jax.device_put(x, sharding)
  # Several processes, each holding the whole value on its host (or its own devices): each one
  # builds only the shards its devices hold, so no process needs another's memory.
  host = np.asarray(x)
  return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])
