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

Memory is estimated without compiling (`estimate`, `chunk_bytes`) and pinned to XLA's own count
of the compiled epoch program (`compiled_bytes`; tests/test_memory_estimate.py): per slot, the
state twice (params, batch statistics, the optimizer state of every family in the bucket; the
epoch is not donated, so the old state lives beside the new), the train step's parameter-sized
temporaries (gradient, each family's update, `UPDATE_TEMPORARIES`) and the larger of the
training and evaluation activations (from the shapes of every module output in one forward pass:
Flax `capture_intermediates` under eval_shape); once per chunk, the data splits and one
normalized evaluation chunk (`shared_bytes`). Measured on the CPU (benchmarks/
memory_calibration.py): MLPs 1.0-1.35x XLA's count, convolutional models 1.2-1.9x; the process's
resident memory grows by XLA's count within a few %. The safety margin is for what no program
counts: other processes, allocator fragmentation, weights kept on the host.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn import member as member_lib
from jaxnn import optim, population
from jaxnn.member import BucketSpec
from sweeps.strategies.base import Trial

SAFETY_MARGIN = 0.6   # use at most 60% of the budget for the estimate
PACK_MODES = ("auto", "off")


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
  spec: BucketSpec            # the bucket's (padded) spec once planned
  row: dict[str, Any]         # fitted to `spec` (see member.fit_row)
  param_count: int = 0        # of the member's true shape


@dataclasses.dataclass
class Bucket:
  """Members sharing one compiled program, split into chunks that fit in memory."""
  spec: BucketSpec
  members: list[PlannedMember]
  member_bytes: int          # estimated device bytes per slot (`estimate`)
  param_count: int
  chunk_size: int            # members per chunk (the last may hold fewer)
  devices: int = 1
  waste: float = 0.0         # padding waste: share of the program's FLOPs spent on masked units
  memory_waste: float = 0.0  # the same for parameter memory
  split_by: tuple[str, ...] = ()   # what keeps these members out of the other buckets
  predicted_seconds: float | None = None   # the cost model's compile + train time (MLPs)
  shared_bytes: int = 0      # a chunk's bytes that do not grow with its slots (`shared_bytes`)

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

  def predicted_seconds(self) -> float | None:
    """The cost model's compile + training seconds for every member's first target (None
    unless every bucket is an MLP's)."""
    if any(b.predicted_seconds is None for b in self.buckets):
      return None
    return sum(b.predicted_seconds for b in self.buckets)

  def summary(self) -> str:
    lines = [f"plan: {sum(len(b.members) for b in self.buckets)} members in "
             f"{len(self.buckets)} buckets, {sum(len(b.chunks()) for b in self.buckets)} chunks, "
             f"{self.compile_count()} compiled programs; "
             + (f"predicted {self.predicted_seconds():.0f} s (compile + train); "
                if self.predicted_seconds() is not None else "")
             + f"data {_mib(self.data_bytes)} shared; "
             f"memory budget {_mib(self.budget_bytes)}; {self.devices} device"
             f"{'s' if self.devices > 1 else ''}"]
    split = sorted({f for b in self.buckets for f in b.split_by})
    if split:
      lines.append(f"split by: {', '.join(split)}")
    for i, b in enumerate(self.buckets):
      sizes = ",".join(f"{len(c)}" if len(c) == n else f"{len(c)}->{n}"
                       for c, n in zip(b.chunks(), b.slots()))
      per_device = max(b.slots()) // b.devices
      ids = ",".join(str(m.trial.member_id) for m in b.members)
      lines.append(f"  bucket {i}: {b.spec.name()} | {len(b.members)} members | chunks [{sizes}] "
                   f"slots | {per_device} slot{'s' if per_device > 1 else ''}/device "
                   f"| {b.param_count:,} params/member | ~{_mib(b.member_bytes)}/member, "
                   f"~{_mib(b.shared_bytes + b.member_bytes * max(b.slots()))}/chunk "
                   f"| padding waste "
                   f"{100 * b.waste:.0f}% FLOPs, {100 * b.memory_waste:.0f}% memory"
                   + (f" | split by: {', '.join(b.split_by)}" if b.split_by else ""))
      lines.append(f"    members: {ids}")
    return "\n".join(lines)

  def to_json(self) -> dict[str, Any]:
    return {
        "data_bytes": self.data_bytes, "budget_bytes": self.budget_bytes,
        "compile_count": self.compile_count(), "devices": self.devices,
        "buckets": [{"name": b.spec.name(), "spec": dataclasses.asdict(b.spec),
                     "members": [m.trial.member_id for m in b.members],
                     "chunks": [[m.trial.member_id for m in c] for c in b.chunks()],
                     "slots": b.slots(),
                     "member_bytes": b.member_bytes, "shared_bytes": b.shared_bytes,
                     "param_count": b.param_count,
                     "waste": b.waste, "memory_waste": b.memory_waste,
                     "split_by": list(b.split_by),
                     "predicted_seconds": b.predicted_seconds}
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
def _probe_hparams(spec: BucketSpec) -> dict[str, Any]:
  """The per-member numbers a forward pass of `spec`'s model reads, as zeros: what shape-only
  probes (memory estimate, FLOP count) pass as `hparams`."""
  sites = member_lib.models.dropout_sites(spec.model, num_classes=spec.num_classes,
                                          **dict(spec.model_kwargs))
  return {"dropout": jnp.zeros(sites), "act_param": jnp.float32(0)}


# Temporaries of one optimizer family's update inside the compiled train step, in units of the
# parameters' bytes, beyond the gradient (which every step holds once: 1 more). Measured as XLA's
# temp_size_in_bytes of the real epoch program (`compiled_bytes`) of [512, 512] MLPs at 4 slots,
# less the gradient and the activations, then rounded up (2026-12-01, XLA:CPU, jax 0.10.2):
# sgd/momentum/nesterov/adagrad 0.2-0.3, adam/adamw 1.0-1.3, rmsprop 1.8, rmsprop_centered
# 2.4, adadelta 2.8; a one-slot chunk (lax.map) holds ~0.25 more. A bucket with a family gated
# from outside (optim.gated: a select over its new state) holds GATED_COPY more, once per step.
# Measured again after the step regularizes the gradient once (its norm shared by the
# finiteness check and the clip) and Adam gates its own moments, on [128, 128] and
# [1024, 1024] MLPs at 1 and 4 slots: every family 1.03-1.28x of XLA's count.
# A family not listed counts UPDATE_TEMPORARIES_DEFAULT.
UPDATE_TEMPORARIES = {"sgd": 0.5, "momentum": 0.5, "nesterov": 0.5, "adagrad": 0.5, "adam": 1.5,
                      "adamw": 1.5, "rmsprop": 2.5, "rmsprop_centered": 3.5, "adadelta": 3.5}
UPDATE_TEMPORARIES_DEFAULT = 3.0
SELF_GATED = ("adam", "adamw")
GATED_COPY = 0.5
# What the backward pass holds per value of a forward pass (captured module outputs): the value
# kept for the backward pass, its gradient and one workspace; a packed MLP layer computes every
# activation choice (a select keeps one), one more value each.
TRAIN_ACTIVATION_COPIES = 3
# The same for convolutional families (trained in blocks of CPU_CONV_BLOCK unrolled steps on the
# CPU). At CIFAR sizes their evaluation decides (measured: small_cnn 0.7x, lenet5 1.3x one chunk
# of captured outputs per slot); with batch 32 and small evaluation chunks (MNIST-shaped, the
# test) training does, and needs 3 copies too.
CONV_ACTIVATION_COPIES = 3


def update_temporaries(spec: BucketSpec) -> float:
  """Parameter-sized temporaries of `spec`'s train step: the gradient, each optimizer family's
  update workspace, the copy that gating a family's state from outside holds (once), and with
  several families the select among their updates."""
  families = optim.families(member_lib.optimizers(spec))
  work = sum(max(UPDATE_TEMPORARIES.get(n, UPDATE_TEMPORARIES_DEFAULT) for n in family)
             for family in families)
  gated = GATED_COPY if any(n not in SELF_GATED for family in families for n in family) else 0
  return 1.0 + work + gated + (len(families) if len(families) > 1 else 0)


def _choices(spec: BucketSpec) -> int:
  return len(member_lib.mlp_choices(spec)) if spec.model == "mlp" else 1


def shared_bytes(spec: BucketSpec, input_shape: tuple[int, ...], num_train: int,
                 input_dtype: str, num_val: int = 0) -> int:
  """Device bytes of a chunk that do not grow with its slots: the data splits (once, not per
  member), the padded copy of the validation split the evaluation makes, and one evaluation
  chunk normalized to float32 (every member reads the same one)."""
  example = int(np.prod(input_shape))
  itemsize = jnp.dtype(input_dtype).itemsize
  data = (num_train + 2 * num_val) * example * itemsize + 4 * (num_train + num_val)  # + labels
  eval_chunk = min(spec.eval_batch_size, max(num_val, 1)) * example * 4
  return int(data + eval_chunk)


def estimate(spec: BucketSpec, input_shape: tuple[int, ...], num_train: int,
             input_dtype: str, num_val: int = 0) -> tuple[int, int]:
  """(bytes per slot, parameter count) for one member of `spec`, from shapes only.

  What a slot holds while its chunk runs an epoch (the program is not donated, so the loop can
  retry after an allocation failure): its state twice (params, batch statistics, the optimizer
  state of every family in the bucket; the old state beside the new), the train step's
  parameter-sized temporaries (`update_temporaries`), and the larger of the training
  activations (its batch of inputs and every captured module output, TRAIN_ACTIVATION_COPIES
  times, one more per extra activation choice) and the evaluation's (a chunk of
  `eval_batch_size` examples, forward only). What does not grow with the slots is
  `shared_bytes`; a chunk is `chunk_bytes`. Pinned against XLA's own count of the compiled
  program (`compiled_bytes`) in tests/test_memory_estimate.py."""
  sample = jax.ShapeDtypeStruct((1,) + input_shape, jnp.dtype(input_dtype))
  data = population.DeviceData(
      train_x=jax.ShapeDtypeStruct((num_train,) + input_shape, jnp.dtype(input_dtype)),
      train_y=jax.ShapeDtypeStruct((num_train,), jnp.int32), val_x=sample,
      val_y=jax.ShapeDtypeStruct((1,), jnp.int32),
      mean=jax.ShapeDtypeStruct(input_shape[-1:], jnp.float32),
      std=jax.ShapeDtypeStruct(input_shape[-1:], jnp.float32))
  hparams = jax.tree_util.tree_map(jnp.asarray, population.stack_rows([probe_row(spec)], [0]))
  state = jax.eval_shape(lambda h: population.init(spec, h, data), hparams)
  params_count = int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(state.params)))

  model = spec.build_model()
  x = jax.ShapeDtypeStruct((1,) + input_shape, jnp.float32)
  hp = _probe_hparams(spec)

  def forward(variables, x):
    return model.apply(variables, x, train=False, hparams=hp, capture_intermediates=True,
                       mutable=["intermediates"])

  variables = {"params": state.params}
  if jax.tree_util.tree_leaves(state.batch_stats):
    variables["batch_stats"] = state.batch_stats
  variables = jax.tree_util.tree_map(lambda s: jax.ShapeDtypeStruct(s.shape[1:], s.dtype), variables)
  _, inter = jax.eval_shape(forward, variables, x)
  convolutional = member_lib.models.model_entry(spec.model).convolutional
  copies = CONV_ACTIVATION_COPIES if convolutional else TRAIN_ACTIVATION_COPIES
  choices = _choices(spec)
  example = _nbytes(inter) * (copies + choices - 1) + 4 * int(np.prod(input_shape))
  train_act_bytes = example * min(spec.batch_size, num_train)
  # Under vmap a convolution of the shared evaluation chunk becomes a grouped convolution over
  # a per-slot copy of its input (measured: lenet5's evaluation holds 1.3x its outputs).
  eval_example = _nbytes(inter) * choices + (4 * int(np.prod(input_shape)) if convolutional else 0)
  eval_act_bytes = eval_example * min(spec.eval_batch_size, max(num_val, 1))
  param_bytes = _nbytes(state.params)
  state_bytes = _nbytes(state)
  return int(2 * state_bytes + update_temporaries(spec) * param_bytes
             + max(train_act_bytes, eval_act_bytes)), params_count


def chunk_bytes(spec: BucketSpec, slots: int, input_shape: tuple[int, ...], num_train: int,
                input_dtype: str, num_val: int = 0) -> int:
  """Estimated device bytes of a chunk of `slots` slots running its epoch: `shared_bytes` once
  plus `estimate` per slot."""
  per_slot, _ = estimate(spec, tuple(input_shape), num_train, input_dtype, num_val)
  return shared_bytes(spec, tuple(input_shape), num_train, input_dtype, num_val) + slots * per_slot


def probe_row(spec: BucketSpec) -> dict[str, Any]:
  """A member's row at `spec`'s (padded) shape, all numbers placeholders: what shape-only
  probes (`estimate`, `compiled_bytes`) stack as hparams."""
  _, row = member_lib.resolve({}, num_classes=2)  # only shapes matter below
  row["dropout"] = [0.0] * member_lib.models.dropout_sites(
      spec.model, num_classes=spec.num_classes, **dict(spec.model_kwargs))
  row["milestones"] = [0.0] * spec.num_milestones
  if spec.model == "mlp":   # the row of a member at this spec's (padded) shape
    depth = len(row["dropout"])
    row.update(widths=[0.0] * depth, act_index=[0.0] * depth, l2=[0.0] * (depth + 1))
    if not isinstance(spec.schedule, str):
      row["schedule_index"] = 0.0
    if not isinstance(spec.optimizer, str):
      row["optimizer_index"] = 0.0
  else:
    row["l2"] = 0.0
  return row


def compiled_bytes(spec: BucketSpec, slots: int, data: population.DeviceData,
                   vectorize: str | None = None) -> int:
  """XLA's own count of the device bytes of a chunk's epoch: arguments + outputs + temporaries
  - aliased, of each program `population.run_epoch` calls for it on this backend (the largest;
  lowered and compiled, never run). `data` may hold arrays or ShapeDtypeStructs; `vectorize`
  defaults to the loop's rule for a chunk of `slots` ('map' for one slot, else 'vmap').

  The ground truth `estimate` is pinned to; on the CPU a process's resident memory grows by
  about this much while the chunk runs (measured: within 3%)."""
  vectorize = vectorize or ("map" if slots == 1 else "vmap")
  struct = lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype)  # noqa: E731
  data = population.DeviceData(*(struct(x) for x in data))
  hparams = jax.tree_util.tree_map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype),
      population.stack_rows([probe_row(spec)] * slots, list(range(slots))))
  state = jax.eval_shape(lambda h, d: population.init(spec, h, d), hparams, data)
  block = population.default_block(spec)
  if block is not None and vectorize == "map" and slots > 1:
    # run_epoch issues each member alone with the one-slot program; the chunk's other slots
    # hold their state before and after meanwhile.
    per_slot = _nbytes(state) // slots
    return compiled_bytes(spec, 1, data, "map") + 2 * (slots - 1) * per_slot
  if block is None:
    programs = [population.train_epoch_retryable.lower(spec, state, hparams, data,
                                                       vectorize=vectorize)]
  else:
    steps = min(block, population.steps_per_epoch(spec, data.train_x.shape[0]))
    order = jax.ShapeDtypeStruct((slots, steps, min(spec.batch_size, data.train_x.shape[0])),
                                 jnp.int32)
    per = jax.ShapeDtypeStruct((slots,), jnp.float32)
    step_metric = jax.ShapeDtypeStruct((slots, steps), jnp.float32)
    programs = [population.train_block_retryable.lower(spec, state, hparams, data, order,
                                                       vectorize=vectorize),
                population.finish_epoch.lower(spec, state, hparams, data, step_metric,
                                              step_metric, per, vectorize=vectorize)]
  sizes = []
  for lowered in programs:
    m = lowered.compile().memory_analysis()
    sizes.append(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
                 - m.alias_size_in_bytes)
  return int(max(sizes))


def make_plan(trials: Sequence[Trial], *, num_classes: int, input_shape: tuple[int, ...],
              input_dtype: str, num_train: int, num_val: int,
              memory_budget_bytes: int | None = None, devices: int = 1, pack: str = "auto",
              backend: str | None = None) -> Plan:
  """Resolves every trial's config, groups members into buckets, sizes chunks and their slots
  (`devices`: how many devices a chunk's slots are spread over).

  Args:
    pack: 'off': one bucket per BucketSpec (members whose programs are identical). 'auto':
      members whose programs differ only in what a packed program reads per member (MLP
      widths, depth, activations) may share one, padded, where the cost model of `backend`
      (default: the default device's platform) says it pays; see `cost_model`.

  Raises:
    member.ConfigError: the first invalid config (one line naming the field).
  """
  if pack not in PACK_MODES:
    raise ValueError(f"pack: got {pack!r}; allowed: {', '.join(PACK_MODES)}")
  budget = memory_budget_bytes or device_memory_bytes()
  itemsize = jnp.dtype(input_dtype).itemsize
  # The splits once, plus the padded copy of the validation split the evaluation makes.
  data_bytes = int((num_train + 2 * num_val) * np.prod(input_shape) * itemsize)
  dtype = str(jnp.dtype(input_dtype))

  def room(spec):   # what the slots of a chunk of `spec` may use
    shared = shared_bytes(spec, tuple(input_shape), num_train, dtype, num_val)
    return max(budget * SAFETY_MARGIN - shared, 0)
  groups: dict[BucketSpec, list[PlannedMember]] = {}
  for trial in trials:
    spec, row = member_lib.resolve(trial.config, num_classes=num_classes, num_train=num_train)
    if spec.batch_size > num_train:   # refused, not clamped: the plan must show what runs
      raise member_lib.ConfigError(
          f"batch_size: got {spec.batch_size}; allowed: at most the {num_train} training "
          "examples")
    _, params = estimate(spec, tuple(input_shape), num_train, dtype, num_val)
    groups.setdefault(spec, []).append(PlannedMember(trial, spec, row, params))
  merged = list(groups.items())
  if pack == "auto":
    model = cost_model(backend)
    merged = _pack(merged, model, input_shape=tuple(input_shape), num_classes=num_classes,
                   num_train=num_train, num_val=num_val, room=room, devices=devices)
  model = cost_model(backend)
  buckets = []
  for spec, members in merged:
    member_bytes, params = estimate(spec, tuple(input_shape), num_train, dtype, num_val)
    waste, memory_waste = _waste(spec, members, input_shape, num_classes)
    for m in members:
      m.row = member_lib.fit_row(m.spec, m.row, spec)
      m.spec = spec
    # The memory holds a chunk's slots, fillers included: cap members at the largest slot size
    # that fits, so a padded chunk never outgrows the budget.
    capacity = max_slots(int(room(spec) // max(member_bytes, 1)), devices)
    chunk = int(max(1, min(len(members), capacity)))
    shared = shared_bytes(spec, tuple(input_shape), num_train, dtype, num_val)
    epochs = sum(max(int(m.trial.epochs), 1) for m in members) / len(members)
    predicted = None   # MLPs only: other families' FLOPs would need a lowering each
    if spec.model == "mlp":
      predicted = bucket_seconds(model, spec, len(members), epochs,
                                 input_shape=tuple(input_shape), num_classes=num_classes,
                                 num_train=num_train, num_val=num_val, capacity=chunk,
                                 devices=devices)
    buckets.append(Bucket(spec, members, member_bytes, params, chunk, devices, waste=waste,
                          memory_waste=memory_waste, predicted_seconds=predicted,
                          shared_bytes=shared))
  for b in buckets:
    b.split_by = tuple(sorted({f for o in buckets if o is not b
                               for f in member_lib.split_fields(b.spec, o.spec)}))
  return Plan(buckets, data_bytes, budget, devices)


# ------------------------------------------------------------------------------ the cost model

@dataclasses.dataclass(frozen=True)
class CostModel:
  """What a program costs on one backend, in seconds.

  Attributes:
    flops_per_second: sustained training throughput of an MLP epoch program (train + eval).
    compile_seconds: tracing + compiling one MLP bucket's init and epoch programs, one layer.
    compile_per_layer: what each further hidden layer adds to that.
    compile_vmap: what a vmapped program (more than one slot) adds to a one-member program.
    step_seconds: the least a training step costs however small (launch, loop, occupancy: a
      step of one small member leaves an accelerator mostly idle).
    update_seconds: one optimizer family's update of one parameter in one step (elementwise,
      memory-bound); a bucket whose members use k families computes k updates.
    chunk_seconds: a chunk's fixed cost per epoch beyond compute.
    width_rates: FLOP/s of an MLP layer by width (see `rate`).
  """
  flops_per_second: float
  compile_seconds: float
  step_seconds: float
  compile_per_layer: float = 0.0
  compile_vmap: float = 0.0
  update_seconds: float = 0.0
  # What a chunk's epoch costs beyond its compute: init, launch, the metrics' host sync, records.
  chunk_seconds: float = 0.0
  # (width, FLOP/s) of an MLP layer's matmuls by its output width (the head: by its input
  # width), interpolated in log width; empty: flops_per_second for every layer.
  width_rates: tuple[tuple[int, float], ...] = ()

  def rate(self, width: int) -> float:
    """Sustained FLOP/s of an MLP layer of `width` units."""
    if not self.width_rates:
      return self.flops_per_second
    widths = np.log([w for w, _ in self.width_rates])
    return float(np.interp(np.log(max(width, 1)), widths, [r for _, r in self.width_rates]))

  def _seconds_per_mac(self, spec: BucketSpec, input_shape, num_classes) -> float:
    """Seconds of one multiply-add of `spec`'s forward pass, averaged over its layers by MACs."""
    if spec.model != "mlp" or not self.width_rates:
      return 1.0 / self.flops_per_second
    widths, head = _mlp_shape(spec)
    sizes = (int(np.prod(input_shape)),) + tuple(widths)
    layers = [(a * b, b) for a, b in zip(sizes, sizes[1:])] + [((head or sizes[0]) * num_classes,
                                                              head or sizes[0])]
    return sum(m / self.rate(w) for m, w in layers) / max(sum(m for m, _ in layers), 1)

  def compile(self, spec: BucketSpec, slots: int) -> float:
    """Predicted seconds to trace and compile `spec`'s programs at `slots` slots."""
    depth = len(_mlp_shape(spec)[0]) if spec.model == "mlp" else 3
    return (self.compile_seconds + self.compile_per_layer * max(depth - 1, 0)
            + (self.compile_vmap if slots > 1 else 0.0))

  def epoch(self, spec: BucketSpec, slots: int, *, input_shape, num_classes, num_train,
            num_val) -> float:
    """Predicted seconds of one epoch (training + validation) of a chunk of `slots` slots: every
    slot computes the bucket's padded shape, fillers included."""
    macs = member_macs(spec, input_shape, num_classes)
    per_flop = self._seconds_per_mac(spec, tuple(input_shape), num_classes)
    batch = min(spec.batch_size, num_train)
    steps = max(num_train // batch, 1)
    train = 6.0 * macs * batch * slots * per_flop
    if spec.model == "mlp":
      families = len(optim.families(member_lib.optimizers(spec)))
      params = estimate_params(spec, int(np.prod(input_shape)), num_classes)
      train += families * params * slots * self.update_seconds
    return steps * max(train, self.step_seconds) + 2.0 * macs * num_val * slots * per_flop


# Measured with `nice -n 10 python benchmarks/cost_calibration.py --slots=1,8
# --widths=64,256,1024,2048` (2026-12-01 02:05-02:09 UTC, the shared 2-core CPU, load average
# 5.5-6.7: another engineer's locked measurement ran at normal priority beside it), through the
# real init and train_epoch programs of MLP buckets on CIFAR-shaped data:
#   compile (init + epoch), width 256, 1 / 8 slots: depth 1: 10.3 / 14.3 s (3 activations:
#     14.4), depth 3: 12.1 / 19.5 (18.7), depth 5: 10.8 / 11.2 (11.7) -> 10.5 + 1.0 per further
#     layer + 3.5 vmapped (the run of 2026-11-30 at load 2-11: 12.0-27.9 s, +2.5 per layer);
#   epoch FLOP/s, one layer, batch 128, 2048 examples, 1 / 8 slots: width 64: 31 / 32 GFLOP/s,
#     256: 57 / 45, 1024: 51 / 50, 2048: 53 / 39 -> the table below (by layer width: a narrow
#     layer's matmuls are too small to keep both cores busy).
#   Probes beside it (niced, same load): a packed [1024, 2048, 2048, 1024, 2048] bucket with
#     three activations ran at 37 GFLOP/s at 1, 2 and 8 slots vs 40-46 for one 2048 layer: depth
#     and activation choices cost little; dropout and the 3-way select were within noise.
# Other work on the machine slows compiles and matmuls alike (NOTES.md: 30-50%), so what
# decides, compile seconds x FLOP/s (~500-700 GFLOP per program), holds across loads.
# A chunk's fixed cost per epoch (init, launch, host sync, records): 0.15 s, from (b) --pack=off
# (2026-12-01 00:05, load 4-5): 6.9 s of "train" for 42 one-member chunks whose compute the
# model puts at 2.2 s.
# An optimizer family's update: ~7 float32 arrays of the parameters' size read or written
# (gradient, moments, parameters), ~28 bytes a parameter, at the few GB/s two busy cores
# stream: 3e-9 s (an estimate; the epoch rates above include one family's update).
# GPU/TPU: not measured here (no device lent); small MLP steps are launch-bound there, so padding
# is nearly free and every compile saved pays.
COST_MODELS = {
    "cpu": CostModel(flops_per_second=45e9, compile_seconds=10.5, compile_per_layer=1.0,
                     compile_vmap=3.5, step_seconds=2e-5, update_seconds=3e-9,
                     chunk_seconds=0.15,
                     width_rates=((64, 31e9), (256, 51e9), (1024, 51e9), (2048, 46e9))),
    "gpu": CostModel(flops_per_second=2e13, compile_seconds=4.0, step_seconds=1.5e-4,
                     update_seconds=2e-11),
    "tpu": CostModel(flops_per_second=5e13, compile_seconds=6.0, step_seconds=1.5e-4,
                     update_seconds=2e-11),
}


def cost_model(backend: str | None = None) -> CostModel:
  """The cost model of `backend` ('cpu', 'gpu', 'tpu'; default: the default device's)."""
  backend = backend or jax.default_backend()
  return COST_MODELS.get(backend, COST_MODELS["gpu" if backend in ("cuda", "rocm") else "cpu"])


def _mlp_shape(spec: BucketSpec) -> tuple[tuple[int, ...], int]:
  kwargs = dict(spec.model_kwargs)
  widths = tuple(kwargs["widths"])
  return widths, kwargs.get("head_width") or (widths[-1] if widths else 0)


def _macs(widths, head, fan_in, num_classes) -> int:
  """Multiply-adds of one example's forward pass through an MLP of this (padded) shape."""
  sizes = (fan_in,) + tuple(widths)
  return sum(a * b for a, b in zip(sizes, sizes[1:])) + (head or fan_in) * num_classes


@functools.lru_cache(maxsize=4096)
def member_macs(spec: BucketSpec, input_shape: tuple[int, ...], num_classes: int) -> int:
  """Multiply-adds of one example's forward pass in `spec`'s program: exact for MLPs, XLA's own
  count of a one-example forward pass (lowered, not compiled) for other families."""
  fan_in = int(np.prod(input_shape))
  if spec.model == "mlp":
    return _macs(*_mlp_shape(spec), fan_in, num_classes)
  model = spec.build_model()
  x = jax.ShapeDtypeStruct((1,) + tuple(input_shape), jnp.float32)
  hp = _probe_hparams(spec)
  try:
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(x.shape), hparams=hp))
    cost = jax.jit(lambda v, x: model.apply(v, x, hparams=hp)).lower(variables, x).cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return max(int(float(cost.get("flops", 0.0)) // 2), 1)
  except Exception:  # noqa: BLE001 - a family XLA cannot count: its parameters, a lower bound
    _, params = estimate(spec, tuple(input_shape), 1, "float32")
    return max(params, 1)


def _waste(spec, members, input_shape, num_classes) -> tuple[float, float]:
  """(FLOPs, memory) shares of a packed bucket spent on padding."""
  if member_lib.pack_key(spec) is None or len({m.spec for m in members}) == 1:
    return 0.0, 0.0
  fan_in = int(np.prod(input_shape))
  full = _macs(*_mlp_shape(spec), fan_in, num_classes)
  true = [_macs(*_mlp_shape(m.spec), fan_in, num_classes) for m in members]
  params = max(sum(m.param_count for m in members), 1)
  padded = estimate_params(spec, fan_in, num_classes) * len(members)
  return 1.0 - sum(true) / (full * len(members)), max(0.0, 1.0 - params / padded)


@functools.lru_cache(maxsize=64)
def _state_arrays(optimizer: str) -> float:
  """Parameter-sized arrays in `optimizer`'s state (adam: 2, momentum: 1), from its init's
  shapes on a probe vector."""
  entry = optim.OPTIMIZERS.get(optimizer)
  hp = {k: jnp.float32(v) for k, v in optim.default_hparams(optimizer).items()}
  size = 1024
  state = jax.eval_shape(entry.scale_by(hp, **entry.static).init,
                         jax.ShapeDtypeStruct((size,), jnp.float32))
  return sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(state)
             if jnp.ndim(x) and x.shape[0] == size) / size


def mlp_slot_bytes(spec: BucketSpec, fan_in: int, num_classes: int, num_train: int,
                   num_val: int) -> int:
  """`estimate` for an MLP spec, from its shape alone (no tracing): what the packing search
  uses for the many merged specs it weighs. The same terms: state twice (parameters, each
  family's optimizer state), the step's temporaries, the larger of the training and
  evaluation activations (captured outputs: every layer and the head, twice over)."""
  widths, _ = _mlp_shape(spec)
  params = 4 * estimate_params(spec, fan_in, num_classes)
  families = optim.families(member_lib.optimizers(spec))
  state = params * (1 + sum(_state_arrays(f[0]) for f in families))
  if dict(spec.model_kwargs).get("batchnorm"):
    state += 4 * 2 * sum(widths)
  choices = _choices(spec)
  inter = 4 * (sum(widths) + 2 * num_classes)
  train = min(spec.batch_size, num_train) * (
      inter * (TRAIN_ACTIVATION_COPIES + choices - 1) + 4 * fan_in)
  evaluation = min(spec.eval_batch_size, max(num_val, 1)) * inter * choices
  return int(2 * state + update_temporaries(spec) * params + max(train, evaluation))


def estimate_params(spec, fan_in, num_classes) -> int:
  """Parameters of an MLP of `spec`'s shape: its kernels (one per multiply-add of `_macs`), then
  per hidden unit a bias, or BatchNorm's scale and shift, and the head's biases."""
  widths, head = _mlp_shape(spec)
  per_unit = 2 if dict(spec.model_kwargs).get("batchnorm") else 1
  return _macs(widths, head, fan_in, num_classes) + per_unit * sum(widths) + num_classes


def bucket_seconds(model: CostModel, spec: BucketSpec, members: int, epochs: float, *,
                   input_shape, num_classes, num_train, num_val, capacity: int | None = None,
                   devices: int = 1) -> float:
  """Predicted seconds of a bucket: one compile, then `epochs` epochs of its chunks (`members`
  split into chunks of at most `capacity`, each padded to the bucket's slot size)."""
  chunk = max(1, min(members, capacity or members))
  slots = slot_size(chunk, devices)
  total = -(-members // chunk) * slots
  epoch = model.epoch(spec, total, input_shape=input_shape, num_classes=num_classes,
                      num_train=num_train, num_val=num_val)
  # The fixed per-step floor is paid per chunk, not per slot.
  return model.compile(spec, slots) + epochs * (epoch + -(-members // chunk) * model.chunk_seconds)


# Among partitions whose predicted time is within this share of the fastest, the planner takes
# the one with the fewest programs: compile seconds vary most with other work on the machine
# (NOTES: 30-50%), and a program saved is also one fewer to compile at every later compaction.
PACK_TOLERANCE = 0.05


def _pack(groups, model: CostModel, *, input_shape, num_classes, num_train, num_val, room,
          devices=1):
  """The partition of each pack key's members into buckets with the least predicted total time
  (`bucket_seconds`: one compile per bucket + every slot's padded compute, fillers included),
  or the fewest buckets within PACK_TOLERANCE of it: an exact dynamic program over the members
  in a 1-D order (contiguous runs become buckets; best[k][i] = the first i members in k
  buckets), tried for three orders (by forward MACs; by layer widths; by optimizer, then
  MACs), the best kept."""
  fan_in = int(np.prod(input_shape))
  out = [(spec, members) for spec, members in groups if member_lib.pack_key(spec) is None]
  by_key: dict[BucketSpec, list] = {}
  for spec, members in groups:
    key = member_lib.pack_key(spec)
    if key is not None:
      by_key.setdefault(key, []).extend(members)

  def cost(spec, members):
    epochs = sum(max(int(m.trial.epochs), 1) for m in members) / len(members)
    slot = mlp_slot_bytes(spec, fan_in, num_classes, num_train, num_val)
    capacity = max_slots(int(room(spec) // max(slot, 1)), devices)
    return bucket_seconds(model, spec, len(members), epochs, input_shape=tuple(input_shape),
                          num_classes=num_classes, num_train=num_train, num_val=num_val,
                          capacity=capacity, devices=devices)

  orders = (lambda m: (member_macs(m.spec, tuple(input_shape), num_classes), m.trial.member_id),
            lambda m: (_mlp_shape(m.spec)[0], m.trial.member_id),
            lambda m: (member_lib.optimizers(m.spec), member_macs(m.spec, tuple(input_shape),
                                                                  num_classes), m.trial.member_id))
  for members in by_key.values():
    candidates = []   # (seconds, buckets, parts) per order and bucket count
    for order in orders:
      ms = sorted(members, key=order)
      n = len(ms)
      run = {}   # (j, i) -> seconds of ms[j:i] as one bucket
      for j in range(n):
        spec = None
        for i in range(j + 1, n + 1):
          spec = ms[i - 1].spec if spec is None else member_lib.merge_specs([spec, ms[i - 1].spec])
          run[j, i] = cost(spec, ms[j:i])
      best = [[0.0] + [float("inf")] * n]
      cuts = [[0] * (n + 1)]
      for k in range(1, n + 1):
        row, cut = [float("inf")] * (n + 1), [0] * (n + 1)
        for i in range(k, n + 1):
          for j in range(k - 1, i):
            c = best[k - 1][j] + run[j, i]
            if c < row[i]:
              row[i], cut[i] = c, j
        best.append(row)
        cuts.append(cut)
        parts, i = [], n
        for kk in range(k, 0, -1):
          parts.append(ms[cuts[kk][i]:i])
          i = cuts[kk][i]
        candidates.append((row[n], k, parts[::-1]))
    fastest = min(c[0] for c in candidates)
    _, _, parts = min((c for c in candidates if c[0] <= fastest * (1 + PACK_TOLERANCE)),
                      key=lambda c: (c[1], c[0]))
    out.extend((member_lib.merge_specs([m.spec for m in part]), part) for part in parts)
  return sorted(out, key=lambda c: min(m.trial.member_id for m in c[1]))
