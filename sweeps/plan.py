"""The planner: configs -> buckets (what changes the program) -> chunks (what fits in memory)
-> slots (the compiled size of each chunk).

A chunk's population size is a shape, so every new size would be a new compile. Chunks are
therefore padded with inactive filler slots to a small set of sizes (`slot_size`: powers of two,
rounded up to a multiple of the device count so every device holds as many slots as the next):
the last short chunk, compaction after early stopping or a Hyperband rung, and out-of-memory
splits land on sizes that are already compiled, at most log2(members) of them per bucket. A
filler is a copy of a real member's hyperparameters with `active` False from the start; it is
never recorded nor told to the strategy, and members' numbers do not depend on it (randomness
comes from (seed, member_id), not from the slot).

Memory is estimated without compiling: the member's state (params, batch statistics, optimizer
state) comes from `jax.eval_shape` of its init, activations from the shapes of every module
output in one forward pass (Flax `capture_intermediates` under eval_shape) times the batch size,
times 3 (forward values kept for the backward pass, their gradients, and workspace). The data
splits are shared by all members and counted once. A safety margin absorbs what this misses.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn import member as member_lib
from jaxnn import population
from jaxnn.member import BucketSpec
from sweeps.strategies.base import Trial

SAFETY_MARGIN = 0.6   # use at most 60% of the budget for the estimate


def slot_size(members: int, devices: int = 1) -> int:
  """The compiled population size for `members` live members: the next power of two, rounded up
  to a multiple of `devices`."""
  power = 1 << max(members - 1, 0).bit_length()
  return -(-power // devices) * devices


def max_slots(capacity: int, devices: int = 1) -> int:
  """The largest slot size that holds at most `capacity` members (at least the smallest size)."""
  best, k = slot_size(1, devices), 0
  while slot_size(1 << k, devices) <= capacity:
    best, k = slot_size(1 << k, devices), k + 1
  return best


@dataclasses.dataclass
class PlannedMember:
  trial: Trial
  spec: BucketSpec
  row: dict[str, Any]


@dataclasses.dataclass
class Bucket:
  """Members sharing one compiled program, split into chunks that fit in memory."""
  spec: BucketSpec
  members: list[PlannedMember]
  member_bytes: int          # estimated device bytes per member
  param_count: int
  chunk_size: int            # members per chunk (the last may hold fewer)
  devices: int = 1

  def chunks(self) -> list[list[PlannedMember]]:
    return [self.members[i:i + self.chunk_size]
            for i in range(0, len(self.members), self.chunk_size)]

  def slots(self) -> list[int]:
    """The compiled size of each chunk (members plus inactive fillers): one size for the whole
    bucket, so the last, short chunk reuses the program of the full ones."""
    size = slot_size(self.chunk_size, self.devices)
    return [size for _ in self.chunks()]


@dataclasses.dataclass
class Plan:
  buckets: list[Bucket]
  data_bytes: int
  budget_bytes: int
  devices: int = 1
  # Set by the sweep loop, which knows what this process has compiled already and how each
  # program's vectorization is chosen: the train programs this plan will compile.
  new_programs: int | None = None

  def compile_count(self) -> int:
    """The train programs this plan compiles: announced by the loop, else distinct
    (program, slot size) pairs."""
    if self.new_programs is not None:
      return self.new_programs
    return len({(b.spec, n) for b in self.buckets for n in b.slots()})

  def summary(self) -> str:
    lines = [f"plan: {sum(len(b.members) for b in self.buckets)} members in "
             f"{len(self.buckets)} buckets, {sum(len(b.chunks()) for b in self.buckets)} chunks, "
             f"{self.compile_count()} compiled programs; data {_mib(self.data_bytes)} shared; "
             f"memory budget {_mib(self.budget_bytes)}; {self.devices} device"
             f"{'s' if self.devices > 1 else ''}"]
    for i, b in enumerate(self.buckets):
      sizes = ",".join(f"{len(c)}" if len(c) == n else f"{len(c)}->{n}"
                       for c, n in zip(b.chunks(), b.slots()))
      per_device = max(b.slots()) // b.devices
      lines.append(f"  bucket {i}: {b.spec.name()} | {len(b.members)} members | chunks [{sizes}] "
                   f"slots | {per_device} slot{'s' if per_device > 1 else ''}/device "
                   f"| {b.param_count:,} params/member | ~{_mib(b.member_bytes)}/member, "
                   f"~{_mib(b.member_bytes * max(b.slots()))}/chunk")
    return "\n".join(lines)

  def to_json(self) -> dict[str, Any]:
    return {
        "data_bytes": self.data_bytes, "budget_bytes": self.budget_bytes,
        "compile_count": self.compile_count(), "devices": self.devices,
        "buckets": [{"name": b.spec.name(), "spec": dataclasses.asdict(b.spec),
                     "members": [m.trial.member_id for m in b.members],
                     "chunks": [[m.trial.member_id for m in c] for c in b.chunks()],
                     "slots": b.slots(),
                     "member_bytes": b.member_bytes, "param_count": b.param_count}
                    for b in self.buckets]}


def _mib(n: int) -> str:
  return f"{n / 2**20:.1f} MiB"


def device_memory_bytes() -> int:
  """What one device can hold: its allocator limit on GPU/TPU, half the host RAM on CPU."""
  stats = None
  try:
    stats = jax.devices()[0].memory_stats()
  except Exception:  # CPU backends may not report
    stats = None
  if stats and stats.get("bytes_limit"):
    return int(stats["bytes_limit"])
  try:
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2)
  except (ValueError, OSError):
    return 8 * 2**30


def _nbytes(tree) -> int:
  return int(sum(np.prod(x.shape) * jnp.dtype(x.dtype).itemsize
                 for x in jax.tree_util.tree_leaves(tree)))


@functools.lru_cache(maxsize=256)
def estimate(spec: BucketSpec, input_shape: tuple[int, ...], num_train: int,
             input_dtype: str, num_val: int = 0) -> tuple[int, int]:
  """(bytes per member, parameter count) for one member of `spec`, from shapes only.

  The epoch program trains, then evaluates on the validation split in chunks of
  `eval_batch_size`: the activations of the larger of the two phases are counted."""
  sample = jax.ShapeDtypeStruct((1,) + input_shape, jnp.dtype(input_dtype))
  data = population.DeviceData(
      train_x=jax.ShapeDtypeStruct((num_train,) + input_shape, jnp.dtype(input_dtype)),
      train_y=jax.ShapeDtypeStruct((num_train,), jnp.int32), val_x=sample,
      val_y=jax.ShapeDtypeStruct((1,), jnp.int32),
      mean=jax.ShapeDtypeStruct(input_shape[-1:], jnp.float32),
      std=jax.ShapeDtypeStruct(input_shape[-1:], jnp.float32))
  _, row = member_lib.resolve({}, num_classes=2)  # only shapes matter below
  row["dropout"] = [0.0] * member_lib.models.dropout_sites(
      spec.model, num_classes=spec.num_classes, **dict(spec.model_kwargs))
  row["milestones"] = [0.0] * spec.num_milestones
  hparams = jax.tree_util.tree_map(jnp.asarray, population.stack_rows([row], [0]))
  state = jax.eval_shape(lambda h: population.init(spec, h, data), hparams)
  params_count = int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(state.params)))

  model = spec.build_model()
  x = jax.ShapeDtypeStruct((1,) + input_shape, jnp.float32)
  hp = {"dropout": jnp.zeros(len(row["dropout"])), "act_param": jnp.float32(0)}

  def forward(variables, x):
    return model.apply(variables, x, train=False, hparams=hp, capture_intermediates=True,
                       mutable=["intermediates"])

  variables = {"params": state.params}
  if jax.tree_util.tree_leaves(state.batch_stats):
    variables["batch_stats"] = state.batch_stats
  variables = jax.tree_util.tree_map(lambda s: jax.ShapeDtypeStruct(s.shape[1:], s.dtype), variables)
  _, inter = jax.eval_shape(forward, variables, x)
  train_act_bytes = _nbytes(inter) * min(spec.batch_size, num_train) * 3
  eval_act_bytes = _nbytes(inter) * min(spec.eval_batch_size, max(num_val, 1))   # forward only
  act_bytes = max(train_act_bytes, eval_act_bytes)
  state_bytes = _nbytes(state)   # one member
  return state_bytes * 2 + act_bytes, params_count   # x2: new state built beside the old


def make_plan(trials: Sequence[Trial], *, num_classes: int, input_shape: tuple[int, ...],
              input_dtype: str, num_train: int, num_val: int,
              memory_budget_bytes: int | None = None, devices: int = 1) -> Plan:
  """Resolves every trial's config, groups members by BucketSpec, sizes chunks and their slots
  (`devices`: how many devices a chunk's slots are spread over).

  Raises:
    member.ConfigError: the first invalid config (one line naming the field).
  """
  budget = memory_budget_bytes or device_memory_bytes()
  itemsize = jnp.dtype(input_dtype).itemsize
  # The splits once, plus the padded copy of the validation split the evaluation makes.
  data_bytes = int((num_train + 2 * num_val) * np.prod(input_shape) * itemsize)
  groups: dict[BucketSpec, list[PlannedMember]] = {}
  for trial in trials:
    spec, row = member_lib.resolve(trial.config, num_classes=num_classes, num_train=num_train)
    if spec.batch_size > num_train:   # refused, not clamped: the plan must show what runs
      raise member_lib.ConfigError(
          f"batch_size: got {spec.batch_size}; allowed: at most the {num_train} training "
          "examples")
    groups.setdefault(spec, []).append(PlannedMember(trial, spec, row))
  buckets = []
  for spec, members in groups.items():
    member_bytes, params = estimate(spec, tuple(input_shape), num_train, str(jnp.dtype(input_dtype)),
                                    num_val)
    room = max(budget * SAFETY_MARGIN - data_bytes, 0)
    # The memory holds a chunk's slots, fillers included: cap members at the largest slot size
    # that fits, so a padded chunk never outgrows the budget.
    capacity = max_slots(int(room // max(member_bytes, 1)), devices)
    chunk = int(max(1, min(len(members), capacity)))
    buckets.append(Bucket(spec, members, member_bytes, params, chunk, devices))
  return Plan(buckets, data_bytes, budget, devices)
