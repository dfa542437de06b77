"""A chunk: a live population of one bucket, as the sweep loop holds it.

A chunk is one BucketSpec, the ids of its members, their stacked hyperparameters and their
state on the device. It runs at a *slot* size from sweeps/plan.py (`slot_size`): its first
`len(ids)` slots are its members, the rest inactive fillers (copies of a member's row, `active`
False), so a chunk that shrinks or starts short reuses a compiled program.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import jax

from jaxnn import member as member_lib
from jaxnn import population
from jaxnn import slots as slots_lib
from launch import mesh as mesh_lib


@dataclasses.dataclass
class Chunk:
  """A live population of one bucket."""
  spec: member_lib.BucketSpec
  ids: list[int]
  hparams: dict[str, jax.Array]
  state: population.MemberState | None   # None until it first trains (SweepLoop.init_chunk)
  member_bytes: int = 0   # the planner's estimate, for memory back-off decisions
  vectorize: str | None = None   # 'vmap' or 'map' once chosen (see sweeps/vectorize.py)
  slots: int = 0   # the compiled population size: ids fill the first slots, fillers the rest

  def __post_init__(self):
    self.slots = self.slots or len(self.ids)

  def index(self, member_id: int) -> int:
    return self.ids.index(member_id)


def gather(chunk: Chunk, positions: Sequence[int], slots: int) -> Chunk:
  """A new chunk of the members at `positions`, padded with fillers to `slots`."""
  hparams, state = slots_lib.gather(chunk.hparams, chunk.state, positions, slots)
  return Chunk(chunk.spec, [chunk.ids[i] for i in positions], hparams, state,
               chunk.member_bytes, chunk.vectorize, slots)


def locate(chunks: Sequence[Chunk], member_id: int) -> tuple[Chunk, int]:
  """The chunk that holds a member, and the member's slot in it."""
  for chunk in chunks:
    if member_id in chunk.ids:
      return chunk, chunk.index(member_id)
  raise KeyError(member_id)


def place_data(dataset) -> tuple[Any, population.DeviceData]:
  """(mesh or None, the data on the device). Several devices: each chunk's members are split
  over them ('members' mesh axis), the data replicated; the same jitted programs run SPMD."""
  mesh = mesh_lib.member_mesh() if jax.device_count() > 1 else None
  data = population.device_data(dataset)
  return mesh, (data if mesh is None else mesh_lib.place_data(data, mesh))
