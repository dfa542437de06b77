"""The sweep loop: drives a strategy over populations of live members.

    ask -> plan -> init chunks -> train epoch by epoch until a sync point -> on_sync actions
        -> finished members recorded and told -> compaction -> ask again ...

A *chunk* here is a live population: one BucketSpec, a list of member ids, their stacked
hyperparameters and state on the device. Members leave a chunk through one path, `_retire`:
early-stopped (and, unless the strategy may revive them, diverged) members at the end of the
epoch they stopped in, the others at the sync; the chunk is compacted at once (a gather), so
retired members stop costing compute. PBT exploits copy a parent's state into a child's slot by
indexing, also across chunks of the same bucket; a diverged member waits, frozen, for the next
PBT sync, where it is replaced first.

Every chunk runs at a *slot* size from sweeps/plan.py (`slot_size`): its first `len(ids)` slots
are its members, the rest inactive fillers (copies of a member's row, `active` False), so a chunk
that shrinks or starts short reuses a compiled program. Which programs a plan will compile is
announced before it runs (`Plan.new_programs`), and what was really traced is counted from
`population.TRACE_COUNTS` (`SweepLoop.summary`).

Metrics come to the host once per epoch per chunk (one device_get of a few [members] arrays).
The held-out test split is used only at the end, on the `test_top` best members by the
validation objective, with each member's weights from its BEST epoch (the epoch that ranks it).
Those weights are copied to the host during training, but only when a member's objective improves
while it ranks in the current top K (K = max(test_top, 1)): a member outside the top K can enter
it only by improving, and then it is copied. The best one is what a sweep exports.

This module only schedules. How a population is reshaped (take, pad with fillers, gather, copy a
slot, evaluate given weights) is `jaxnn/slots.py`; what is kept of each member (histories,
early stopping, ranking, its checkpoint form) is `sweeps/members.py`; which programs are
announced and how many were compiled is `sweeps/programs.py`.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn import member as member_lib
from jaxnn import population
from jaxnn import slots as slots_lib
from launch import mesh as mesh_lib
from launch import multihost
from sweeps import members as members_lib
from sweeps import plan as plan_lib
from sweeps import programs as programs_lib
from sweeps import vocab
from sweeps.members import EarlyStopping, MemberRun
from sweeps.records import Record
from sweeps.strategies import base
from sweeps.strategies.base import Exploit, Extend, Stop, Trial

METRICS = vocab.METRICS

@dataclasses.dataclass
class Chunk:
  """A live population of one bucket."""
  spec: member_lib.BucketSpec
  ids: list[int]
  hparams: dict[str, jax.Array]
  state: population.MemberState | None   # None until initialized (see SweepLoop._init_chunks)
  member_bytes: int = 0   # the planner's estimate, for memory back-off decisions
  vectorize: str | None = None   # 'vmap' or 'map' once chosen (see SweepLoop._choose_vectorize)
  slots: int = 0   # the compiled population size: ids fill the first slots, fillers the rest

  def __post_init__(self):
    self.slots = self.slots or len(self.ids)

  def index(self, member_id: int) -> int:
    return self.ids.index(member_id)


def _gather(chunk: "Chunk", positions: Sequence[int], slots: int) -> "Chunk":
  """A new chunk of the members at `positions`, padded with fillers to `slots`."""
  hparams, state = slots_lib.gather(chunk.hparams, chunk.state, positions, slots)
  return Chunk(chunk.spec, [chunk.ids[i] for i in positions], hparams, state,
               chunk.member_bytes, chunk.vectorize, slots)


class SweepLoop:
  """Runs one strategy to the end over one data set. Pure engine: no flags, no printing."""

  def __init__(self, strategy: base.Strategy, dataset, *, objective: str = "val_acc",
               early_stopping: EarlyStopping = EarlyStopping(), test_top: int = 5,
               memory_budget_bytes: int | None = None,
               on_record: Callable[[list[Record]], None] | None = None,
               on_epoch: Callable[["SweepLoop", Chunk], None] | None = None,
               on_checkpoint: Callable[["SweepLoop", bool], None] | None = None,
               simulate_device_bytes: int | None = None, conv_vectorize: str = "auto",
               on_plan: Callable[[plan_lib.Plan], None] | None = None, dtype: str = "float32",
               pack: str = "auto"):
    self.strategy = strategy
    self.dtype = dtype   # compute dtype of every bucket (population.with_dtype)
    self.dataset = dataset
    # Several devices: each chunk's members are split over them ('members' mesh axis), the
    # data replicated; the same jitted programs then run SPMD.
    self.mesh = mesh_lib.member_mesh() if jax.device_count() > 1 else None
    self.devices = self.mesh.size if self.mesh is not None else 1
    self.data = population.device_data(dataset)
    if self.mesh is not None:
      self.data = mesh_lib.place_data(self.data, self.mesh)
    self.objective = objective
    self.early_stopping = early_stopping
    self.test_top = test_top
    self.memory_budget_bytes = memory_budget_bytes
    self.on_record = on_record or (lambda records: None)
    self.on_epoch = on_epoch or (lambda loop, chunk: None)
    self.on_checkpoint = on_checkpoint or (lambda loop, force: None)
    self.on_plan = on_plan or (lambda plan: None)   # after a plan's chunks are initialized
    self.phase = "ask"            # ask | train | test | done
    self.sync_at: int | None = None
    self.stop_requested: str | None = None   # set by a signal handler: checkpoint and stop
    self.simulate_device_bytes = simulate_device_bytes
    self.conv_vectorize = conv_vectorize
    self.pack = pack   # 'auto' | 'off': may members of different MLP shapes share a program
    self.restored_plans: list[dict[str, Any]] = []
    self.members: dict[int, MemberRun] = {}
    self.chunks: list[Chunk] = []
    self.plans: list[plan_lib.Plan] = []
    # member_id -> (params, batch_stats) at its best epoch, on host, for the current top K only
    self._kept: dict[int, tuple[Any, Any]] = {}
    # member_id -> final MemberState (on host) of members that completed their budget, kept only
    # for strategies whose --epochs a resume may raise (they continue from it): a finished
    # sweep's checkpoint then holds what one taken while all of them trained held, no more.
    self.keep_final = "epochs" in getattr(strategy, "extends", ())
    self.best_copies = 0   # members' best-epoch weights copied to the host (a cost figure)
    self._final: dict[int, Any] = {}
    self.on_announce: Callable[[str], None] = lambda line: None   # compiles not in a plan
    self.programs = programs_lib.Programs(self.data, self.devices, self._mode)
    self.seconds = {"checkpoint": 0.0}

  def slot_size(self, members: int) -> int:
    return plan_lib.slot_size(members, self.devices)

  # ------------------------------------------------------------- programs: predicted, counted

  def _mode(self, spec, slots: int) -> str:
    """How a chunk of `slots` runs: 'vmap', 'map', or 'auto' (probed; conv buckets only)."""
    if self.mesh is not None:   # members split over devices: lax.map would gather them all
      return "vmap"
    if slots == 1:   # one member: the plain, unbatched program (vmap of one member still
      return "map"   # batches every matmul and conv)
    convolutional = member_lib.models.model_entry(spec.model).convolutional
    if not convolutional or self.conv_vectorize == "auto":
      return "auto" if convolutional else "vmap"
    return self.conv_vectorize

  @property
  def programs_announced(self) -> int:
    return self.programs.announced

  def _announce(self, chunks: Sequence["Chunk"], why: str) -> None:
    """Announces the compiles a change of chunk sizes (compaction, split, resume) will cause."""
    line = self.programs.announce(chunks, why)
    if line:
      self.on_announce(line)

  def summary(self) -> dict[str, Any]:
    """What this process did, counted (not estimated): members, programs traced, seconds."""
    return self.programs.summary(len(self.members), self.seconds["checkpoint"])

  # ------------------------------------------------------------------ planning and starting

  def plan(self, trials: Sequence[Trial]) -> plan_lib.Plan:
    x = self.dataset.train.x
    plan = plan_lib.make_plan(
        trials, num_classes=self.dataset.num_classes, input_shape=tuple(x.shape[1:]),
        input_dtype=str(x.dtype), num_train=x.shape[0], num_val=self.dataset.val.x.shape[0],
        memory_budget_bytes=self.memory_budget_bytes, devices=self.devices, pack=self.pack)
    plan.new_programs = self.programs.new(
        [(b.spec, n, None) for b in plan.buckets for n in b.slots()])
    return plan

  def start(self, trials: Sequence[Trial]) -> None:
    plan = self.plan(trials)
    self.plans.append(plan)
    self.programs.announced += plan.compile_count()
    for bucket in plan.buckets:
      for chunk_members, slots in zip(bucket.chunks(), bucket.slots()):
        ids = [m.trial.member_id for m in chunk_members]
        rows = [m.row for m in chunk_members]
        for m in chunk_members:
          self.members[m.trial.member_id] = MemberRun(
              m.trial, population.with_dtype(m.spec, self.dtype), m.row, m.param_count,
              target=m.trial.epochs)
        self.chunks.extend(self._init_chunks(population.with_dtype(bucket.spec, self.dtype), ids,
                                             rows, bucket.member_bytes, slots))
    self.on_plan(plan)

  def _init_chunks(self, spec, ids, rows, member_bytes, slots=None) -> list[Chunk]:
    """Initializes a chunk padded to `slots` (default: its own slot size); on an allocation
    failure splits it in halves and retries."""
    slots = slots or self.slot_size(len(ids))
    try:
      self._check_memory(member_bytes * slots)
      hparams = jax.tree_util.tree_map(
          jnp.asarray, population.stack_rows(slots_lib.padded(rows, slots),
                                             slots_lib.padded(ids, slots)))
      state = slots_lib.without_fillers(population.init(spec, hparams, self.data), len(ids))
      return [Chunk(spec, ids, hparams, state, member_bytes, slots=slots)]
    except Exception as e:  # noqa: BLE001 - only allocation failures are handled
      if not is_out_of_memory(e):
        raise
      if self.slot_size(len(ids)) < slots:   # a short chunk padded to its bucket's size
        self._announce([Chunk(spec, ids, {}, None, slots=self.slot_size(len(ids)))],
                       "out-of-memory retry without fillers")
        return self._init_chunks(spec, ids, rows, member_bytes)
      half = len(ids) // 2
      if len(ids) == 1 or self.slot_size(len(ids) - half) >= slots:   # halves would not shrink
        for member_id in ids:
          self._fail(member_id, f"out of memory even alone: {_first_line(e)}")
        return []
      self._note_split(ids, half, e)
      self._announce([Chunk(spec, part, {}, None, slots=self.slot_size(len(part)))
                      for part in (ids[:half], ids[half:])], "out-of-memory split")
      # (the program of the failed size may now never be traced: announced, not compiled)
      return (self._init_chunks(spec, ids[:half], rows[:half], member_bytes)
              + self._init_chunks(spec, ids[half:], rows[half:], member_bytes))

  def _note_split(self, ids, half, error) -> None:
    for member_id in ids:
      run = self.members[member_id]
      run.events.append({"epoch": run.epochs_run, "kind": "split",
                         "reason": f"chunk of {len(ids)} out of memory, retried as {half}+"
                                   f"{len(ids) - half}: {_first_line(error)}"})

  def _check_memory(self, nbytes: int) -> None:
    if self.simulate_device_bytes is not None and nbytes > self.simulate_device_bytes:
      raise SimulatedOutOfMemory(
          f"RESOURCE_EXHAUSTED: simulated: {nbytes / 2**20:.1f} MiB needed, "
          f"{self.simulate_device_bytes / 2**20:.1f} MiB available")

  def _fail(self, member_id: int, reason: str) -> None:
    run = self.members[member_id]
    run.status, run.reason = "failed", reason
    run.events.append({"epoch": run.epochs_run, "kind": "failed", "reason": reason})
    self.on_record([run.record(self.objective)])
    self.strategy.tell(run.report())

  # ------------------------------------------------------------------------------ training

  def _wants_epoch(self, run: MemberRun, sync_at: int | None) -> bool:
    if run.status != "running" or run.epochs_run >= run.target:
      return False
    return sync_at is None or run.epochs_run < sync_at

  def train_chunk(self, chunk: Chunk) -> None:
    """Trains a chunk to the phase's end; on an allocation failure the chunk is split in halves
    (fillers shed first) and each half retried from the state before the failed epoch, down
    to single members, which are then recorded as failed with the reason."""
    try:
      self._train_chunk(chunk)
    except Exception as e:  # noqa: BLE001 - only allocation failures are handled
      if not is_out_of_memory(e):
        raise
      position = self.chunks.index(chunk)
      if self.slot_size(len(chunk.ids)) < chunk.slots:   # shed the fillers first
        smaller = _gather(chunk, list(range(len(chunk.ids))), self.slot_size(len(chunk.ids)))
        self._announce([smaller], "out-of-memory retry without fillers")
        self.chunks[position] = smaller
        self.train_chunk(smaller)
        return
      half = len(chunk.ids) // 2
      if len(chunk.ids) == 1 or self.slot_size(len(chunk.ids) - half) >= chunk.slots:
        self.chunks.pop(position)
        for member_id in chunk.ids:
          self._fail(member_id, f"out of memory even alone: {_first_line(e)}")
        return
      self._note_split(chunk.ids, half, e)
      parts = [_gather(chunk, list(range(a, b)), self.slot_size(b - a))
               for a, b in ((0, half), (half, len(chunk.ids)))]
      self._announce(parts, "out-of-memory split")
      self.chunks[position:position + 1] = parts
      for part in parts:
        self.train_chunk(part)

  def _train_chunk(self, chunk: Chunk) -> None:
    runs = [self.members[i] for i in chunk.ids]
    sync_at = self.sync_at
    while True:
      wants = np.array([self._wants_epoch(r, sync_at) for r in runs])
      if not wants.any():
        return
      wants = np.pad(wants, (0, chunk.slots - len(runs)))   # fillers never train
      if self.mesh is not None:   # no copy when already placed
        chunk.hparams, chunk.state = mesh_lib.place_population(chunk.hparams, chunk.state,
                                                               self.mesh)
      self._choose_vectorize(chunk)
      chunk.state = population.set_active(chunk.state, jnp.asarray(wants))
      start = time.perf_counter()
      # Not donated: if the epoch fails to allocate, chunk.state is still the state before it.
      state, metrics = population.run_epoch(
          chunk.spec, chunk.state, chunk.hparams, self.data, vectorize=chunk.vectorize,
          block=population.default_block(chunk.spec), retryable=True)
      # A simulated failure lands where a real one does: after the program was called.
      self._check_memory(chunk.member_bytes * chunk.slots)
      chunk.state = state
      # One sync per epoch; with several processes a collective that gathers every member's
      # metrics into every process (each process then takes the same decisions).
      host = multihost.to_host({**metrics, "diverged": chunk.state.diverged})
      share = (time.perf_counter() - start) / max(int(wants.sum()), 1)
      for i, run in enumerate(runs):
        if wants[i]:
          self._after_epoch(run, {k: host[k][i] for k in host}, share)
      self._keep_best(chunk, [i for i, run in enumerate(runs)
                              if wants[i] and members_lib.improved(run, self.objective)])
      self.on_epoch(self, chunk)
      gone = [r for r in runs if r.status == "stopped"
              or (r.status == "diverged" and not self._may_revive())]
      if gone:
        self._retire(gone, why="early-stopping compaction")
        if not chunk.ids:
          self.checkpoint()
          return
        runs = [self.members[i] for i in chunk.ids]
      self.checkpoint()

  PROBE_BATCHES = programs_lib.PROBE_BATCHES

  def _choose_vectorize(self, chunk: Chunk) -> None:
    """Picks vmap or lax.map for a chunk, once per program. vmap makes convolutions grouped
    convolutions, which can be slower than running the members one after another, so for
    convolutional buckets ('auto') both are timed on a probe epoch of a few batches (on a copy
    of the state, after a warm-up call that compiles) and the faster is kept and recorded as an
    event; later chunks of the same program (same slot size) take the same choice."""
    entry = self.programs.entry(chunk.spec, chunk.slots)
    if chunk.vectorize is None:
      self._pick_vectorize(chunk, entry)
    self.programs.traced(chunk.spec, chunk.slots, chunk.vectorize)

  def _pick_vectorize(self, chunk: Chunk, entry: dict[str, Any]) -> None:
    mode = self._mode(chunk.spec, chunk.slots)
    if mode != "auto":
      chunk.vectorize = mode
      return
    if entry["choice"] is not None:
      chunk.vectorize = entry["choice"]
      self._note_vectorize(chunk, entry["seconds"])
      return
    n = min(self.data.train_x.shape[0], self.PROBE_BATCHES * chunk.spec.batch_size)
    probe = self.data._replace(train_x=self.data.train_x[:n], train_y=self.data.train_y[:n],
                               val_x=self.data.val_x[:chunk.spec.batch_size],
                               val_y=self.data.val_y[:chunk.spec.batch_size])
    seconds = {}
    for vectorize in population.VECTORIZE:
      for timed in (False, True):
        state = jax.tree_util.tree_map(jnp.copy, chunk.state)
        start = time.perf_counter()
        jax.block_until_ready(population.run_epoch(
            chunk.spec, state, chunk.hparams, probe, vectorize=vectorize,
            block=population.default_block(chunk.spec)))
        if timed:
          seconds[vectorize] = round(time.perf_counter() - start, 4)
    chunk.vectorize = min(seconds, key=seconds.get)
    entry["choice"], entry["seconds"] = chunk.vectorize, seconds
    self.programs.probed(chunk.spec, chunk.slots)
    self._note_vectorize(chunk, seconds)

  def _note_vectorize(self, chunk: Chunk, seconds: Mapping[str, float]) -> None:
    for member_id in chunk.ids:
      run = self.members[member_id]
      run.events.append({"epoch": run.epochs_run, "kind": "vectorize",
                         "choice": chunk.vectorize, "probe_seconds": seconds})

  def _may_revive(self) -> bool:
    """Whether the strategy can give a diverged member a new start at its next sync (PBT
    replaces diverged members first), so it waits, frozen, for that sync instead of retiring."""
    return self.strategy.sync_every() is not None

  def _after_epoch(self, run: MemberRun, values: Mapping[str, Any], seconds: float) -> None:
    run.wall_time += seconds
    if values["diverged"]:
      run.status = "diverged"
      run.reason = f"non-finite loss or parameters in epoch {run.epochs_run}"
      run.events.append({"epoch": run.epochs_run, "kind": "diverged"})
      return
    for metric in METRICS:
      run.history[metric].append(members_lib.finite(values[metric]))
    self._early_stop(run)

  def _early_stop(self, run: MemberRun) -> None:
    rule = self.early_stopping
    if rule.patience <= 0:
      return
    stop, run.best_monitor, run.since_best = members_lib.early_stop(
        run.history[rule.monitor][-1], run.best_monitor, run.since_best, rule)
    if stop:
      run.status = "stopped"
      run.reason = f"no {rule.monitor} improvement > {rule.min_delta} for {rule.patience} epochs"
      run.events.append({"epoch": run.epochs_run - 1, "kind": "stopped"})

  # ---------------------------------------------------------------------- strategy actions

  def _locate(self, member_id: int) -> tuple[Chunk, int]:
    for chunk in self.chunks:
      if member_id in chunk.ids:
        return chunk, chunk.index(member_id)
    raise KeyError(member_id)

  def apply(self, actions: Sequence[base.Action]) -> None:
    for action in actions:
      run = self.members[action.member_id]
      if isinstance(action, Stop):
        run.status = action.status
        run.reason = action.reason or None
        run.events.append({"epoch": run.epochs_run, "kind": action.status,
                           "reason": action.reason})
      elif isinstance(action, Extend):
        run.target = action.epochs
        run.events.append({"epoch": run.epochs_run, "kind": "promoted", "to": action.epochs,
                           "reason": action.reason})
      elif isinstance(action, Exploit):
        self._exploit(action)
      else:
        raise TypeError(f"unknown action {action!r}")

  def _exploit(self, action: Exploit) -> None:
    child_chunk, ci = self._locate(action.member_id)
    parent_chunk, pi = self._locate(action.parent_id)
    child = self.members[action.member_id]
    spec, row = member_lib.resolve(action.config, num_classes=self.dataset.num_classes,
                                   num_train=self.dataset.train.x.shape[0])
    spec = population.with_dtype(spec, self.dtype)
    if (not member_lib.fits(spec, child_chunk.spec) or child_chunk.spec != parent_chunk.spec):
      raise ValueError(f"exploit: member {action.member_id} cannot take a config with another "
                       "program (only numeric hyperparameters may change)")
    row = member_lib.fit_row(spec, row, child_chunk.spec)   # packed buckets: padded row
    keep = {"member_id", "seed"}
    row = {**row, "seed": child.row["seed"]}
    state = child_chunk.state
    if child.status == "diverged":
      # A new start from the parent's state: the flags that froze it are cleared, and the
      # epochs it did not train stay empty in its history, so it counts epochs like the others.
      gap = self.members[action.parent_id].epochs_run - child.epochs_run
      for values in child.history.values():
        values.extend([None] * gap)
      child.status, child.reason = "running", None
      state = state.replace(active=state.active.at[ci].set(True),
                            diverged=state.diverged.at[ci].set(False))
    child_chunk.state = state.replace(
        params=slots_lib.copy_slot(state.params, ci, parent_chunk.state.params, pi),
        batch_stats=slots_lib.copy_slot(state.batch_stats, ci, parent_chunk.state.batch_stats,
                                        pi),
        opt_state=slots_lib.copy_slot(state.opt_state, ci, parent_chunk.state.opt_state, pi),
        step=state.step.at[ci].set(parent_chunk.state.step[pi]))
    new_row = population.stack_rows([row], [action.member_id])
    child_chunk.hparams = {
        k: v if k in keep else v.at[ci].set(jnp.asarray(new_row[k][0]))
        for k, v in child_chunk.hparams.items()}
    child.row = row
    before = dict(child.trial.config)   # kept in the event: the lineage plot draws both sides
    child.trial = dataclasses.replace(child.trial, config=dict(action.config))
    child.events.append({"epoch": child.epochs_run, "kind": "exploit",
                         "parent": action.parent_id, "config": dict(action.config),
                         "previous": before, "reason": action.reason})

  # ------------------------------------------------------------------------- finishing

  def _finish_ready(self) -> list[MemberRun]:
    """Members at their target become complete; returns every newly finished member."""
    finished = []
    for chunk in self.chunks:
      for i in chunk.ids:
        run = self.members[i]
        if run.status == "running" and run.epochs_run >= run.target:
          run.status = "complete"
        if run.status != "running":
          finished.append(run)
    return finished

  def top_ids(self) -> set[int]:
    """Members (finished or live, not failed) whose best objective so far ranks in the top K,
    K = max(test_top, 1): the only ones whose best-epoch weights can still be needed. Best
    values only improve, so a member that falls out can come back only by improving."""
    return members_lib.top_ids(self.members, self.objective, max(self.test_top, 1))

  def _keep_best(self, chunk: Chunk, improved: Sequence[int]) -> None:
    """Copies to the host the weights of the chunk positions `improved` (whose objective just
    reached a new best) that rank in the top K; forgets weights that fell out of it."""
    if not improved:
      return
    top = self.top_ids()
    take = [i for i in improved if chunk.ids[i] in top]
    if take:
      # Every process takes part when the chunk spans several (a gather), and gets the copy.
      params, stats = multihost.to_host((slots_lib.take(chunk.state.params, take),
                                         slots_lib.take(chunk.state.batch_stats, take)))
      for j, i in enumerate(take):
        self._kept[chunk.ids[i]] = jax.tree_util.tree_map(lambda x: x[j:j + 1], (params, stats))
      self.best_copies += len(take)
    self._drop_kept(top)

  def _drop_kept(self, top: set[int] | None = None) -> None:
    top = self.top_ids() if top is None else top
    for member_id in list(self._kept):
      if member_id not in top:
        del self._kept[member_id]

  def _retire(self, finished: Sequence[MemberRun], why: str = "compaction") -> None:
    """The one retire path (early stopped, diverged, complete, pruned): the members are
    recorded, told to the strategy, their final state kept when asked (`keep_final`), and
    dropped from their chunks at once (a gather, in place), so they stop costing compute."""
    if not finished:
      return
    finished_ids = {r.trial.member_id for r in finished}
    self._drop_kept()
    if self.keep_final:
      for chunk in self.chunks:
        take = [i for i, m in enumerate(chunk.ids) if self.members[m].status == "complete"
                and m in finished_ids]
        if take:
          # (a gather across processes)
          host = multihost.to_host(slots_lib.take(chunk.state, take))
          for j, i in enumerate(take):
            self._final[chunk.ids[i]] = jax.tree_util.tree_map(lambda x: x[j:j + 1], host)
    records = [r.record(self.objective) for r in finished]
    self.on_record(records)
    for run in finished:
      self.strategy.tell(run.report())
    for position, chunk in enumerate(self.chunks):
      keep = [i for i, m in enumerate(chunk.ids) if m not in finished_ids]
      if len(keep) < len(chunk.ids) and keep:
        # Gathered into the smallest slot size that holds the rest, or a larger one compiled
        # already where padding costs less than a compile (see Programs.compact_slots); the
        # freed slots become inactive fillers.
        left = max(self.members[chunk.ids[i]].target - self.members[chunk.ids[i]].epochs_run
                   for i in keep)
        smaller = _gather(chunk, keep, self.programs.compact_slots(chunk.spec, len(keep), left))
        self._announce([smaller], why)
        chunk.ids, chunk.hparams, chunk.state = smaller.ids, smaller.hparams, smaller.state
        chunk.slots = smaller.slots
      elif not keep:
        chunk.ids = []
    self.chunks = [c for c in self.chunks if c.ids]

  def kept_weights(self, member_id: int) -> tuple[Any, Any] | None:
    """(params, batch_stats) of a top member at its best epoch, without the members axis;
    None when not kept (not in the top K)."""
    if member_id not in self._kept:
      return None
    return jax.tree_util.tree_map(lambda x: x[0], self._kept[member_id])

  def ranking(self) -> list[MemberRun]:
    """Finished, non-diverged members best first by the best validation objective."""
    return members_lib.ranking(self.members, self.objective)

  # ----------------------------------------------------------------------- checkpointing

  def state_dict(self) -> tuple[dict[str, Any], dict[str, Any]]:
    """(JSON-able bookkeeping, pytree of arrays): everything needed to continue exactly."""
    meta = {
        "phase": self.phase, "sync_at": self.sync_at, "strategy": self.strategy.state_dict(),
        "members": [members_lib.member_meta(self.members[i]) for i in sorted(self.members)],
        "chunks": [c.ids for c in self.chunks], "kept": sorted(self._kept),
        "chunk_bytes": [c.member_bytes for c in self.chunks],
        "chunk_vectorize": [c.vectorize for c in self.chunks],
        "chunk_slots": [c.slots for c in self.chunks],
        "plans": [p.to_json() for p in self.plans],
    }
    arrays = {"chunks": [{"hparams": c.hparams, "state": c.state} for c in self.chunks],
              "kept": [self._kept[i] for i in sorted(self._kept)]}
    if self._final:
      meta["final"] = sorted(self._final)
      arrays["final"] = [self._final[i] for i in sorted(self._final)]
    return meta, arrays

  def abstract_arrays(self, meta: Mapping[str, Any]) -> dict[str, Any]:
    """Shapes and dtypes of the arrays a checkpoint with this `meta` holds (restore target)."""
    members = {m["trial"]["member_id"]: members_lib.member_from_meta(m, self.dataset, self.dtype)
               for m in meta["members"]}

    def abstract(ids, slots):
      spec = members[ids[0]].spec
      hparams = jax.tree_util.tree_map(jnp.asarray, population.stack_rows(
          slots_lib.padded([members[i].row for i in ids], slots), slots_lib.padded(ids, slots)))
      state = jax.eval_shape(lambda h: population.init(spec, h, self.data), hparams)
      return jax.eval_shape(lambda h: h, hparams), state

    chunks = []
    for ids, slots in zip(meta["chunks"], _chunk_slots(meta)):
      hparams, state = abstract(ids, slots)
      chunks.append(self._placed({"hparams": hparams, "state": state}, slots))
    kept = []
    for member_id in meta["kept"]:
      _, state = abstract([member_id], 1)
      kept.append(self._placed((state.params, state.batch_stats), None))
    out = {"chunks": chunks, "kept": kept}
    if meta.get("final"):
      out["final"] = [self._placed(abstract([member_id], 1)[1], None)
                      for member_id in meta["final"]]
    return out

  def _placed(self, tree, num_members: int | None):
    """Restore targets carry where each array goes: with several processes Orbax must know the
    sharding (each process reads only its shards). `num_members` None: replicated."""
    if self.mesh is None:
      return tree
    split = mesh_lib.population_sharding(num_members or 1, self.mesh)
    replicated = jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec())

    def place(x):
      where = split if num_members and len(x.shape) > 0 else replicated
      return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=where)

    return jax.tree_util.tree_map(place, tree)

  def load_state_dict(self, meta: Mapping[str, Any], arrays: Mapping[str, Any]) -> None:
    self.phase, self.sync_at = meta["phase"], meta["sync_at"]
    self.strategy.load_state_dict(meta["strategy"])
    self.members = {m["trial"]["member_id"]: members_lib.member_from_meta(m, self.dataset,
                                                                         self.dtype)
                    for m in meta["members"]}
    self.chunks = [Chunk(self.members[ids[0]].spec, list(ids), dict(a["hparams"]), a["state"],
                         int(nbytes), vectorize, slots)
                   for ids, a, nbytes, vectorize, slots in zip(
                       meta["chunks"], arrays["chunks"], meta["chunk_bytes"],
                       meta["chunk_vectorize"], _chunk_slots(meta))]
    self._announce(self.chunks, "resume")
    # Kept and final weights live on the host, whatever the restore placed.
    self._kept = {i: tuple(multihost.to_host(tuple(a)))
                  for i, a in zip(meta["kept"], arrays["kept"])}
    self._final = dict(zip(meta.get("final", []),
                           multihost.to_host(list(arrays.get("final", [])))))
    self.plans = []
    self.restored_plans = list(meta["plans"])

  # ----------------------------------------------------------------------------- extending

  def extend(self, old_epochs: int, new_epochs: int) -> list[int]:
    """After a restore with a larger budget (sweeps.cli checks the strategy allows it).

    Members that completed `old_epochs` continue from their kept final state (optimizer state
    and counters included, so data order and schedule go on as if never stopped; the schedule
    keeps the horizon it was planned with) up to `new_epochs`; live members' targets are raised;
    a strategy with more to ask (more --trials) is asked again. Returns the continued ids.
    """
    continued = []
    if new_epochs > old_epochs:
      for run in self.members.values():
        if run.status == "running" and run.target == old_epochs:
          run.target = new_epochs
          run.trial = dataclasses.replace(run.trial, epochs=new_epochs)
      by_spec: dict[Any, list[int]] = {}
      for member_id in sorted(self._final):
        run = self.members[member_id]
        if run.status == "complete" and run.target == old_epochs:
          by_spec.setdefault(run.spec, []).append(member_id)
      for spec, ids in by_spec.items():
        for member_id in ids:
          run = self.members[member_id]
          run.status, run.target = "running", new_epochs
          run.trial = dataclasses.replace(run.trial, epochs=new_epochs)
          run.events.append({"epoch": run.epochs_run, "kind": "extended", "to": new_epochs})
        states = [self._final.pop(i) for i in ids]
        state = jax.tree_util.tree_map(lambda *xs: jnp.concatenate(xs), *states)
        state = state.replace(active=~state.diverged)   # finishing had cleared `active`
        hparams = jax.tree_util.tree_map(
            jnp.asarray, population.stack_rows([self.members[i].row for i in ids], ids))
        chunk = _gather(Chunk(spec, ids, hparams, state), list(range(len(ids))),
                        self.slot_size(len(ids)))   # padded to a slot size like every chunk
        self._announce([chunk], "extension")
        self.chunks.append(chunk)
        continued.extend(ids)
    if self.phase in ("test", "done") and (continued or not self.strategy.done()):
      self.phase = "ask"
    return continued

  # ------------------------------------------------------------------------------ the loop

  def run(self) -> list[MemberRun]:
    """Runs the strategy to the end (or on from a restored checkpoint); returns every member.

    The loop is a small state machine so that a checkpoint taken at any epoch boundary
    resumes to the same result: phase 'ask' (between phases), 'train' (chunks advancing to
    `sync_at`), 'done'.
    """
    self.programs.start()
    while self.phase != "done":
      if self.phase == "ask":
        trials = self.strategy.ask()
        if trials:
          self.start(trials)
        if not self.chunks:
          if self.strategy.done():
            self.phase = "test"
            break
          if not trials:
            raise RuntimeError(f"strategy {self.strategy.name} asked for nothing while nothing "
                               "is running and it is not done")
          continue
        # No save here: a resume from the previous checkpoint re-asks the same trials (the
        # strategy is deterministic) and re-initializes them identically.
        self._begin_phase()
      for chunk in list(self.chunks):
        self.train_chunk(chunk)
        # Progress on disk: a half-finished sweep can already be reported.
        self.on_record([self.members[i].record(self.objective) for i in chunk.ids])
      # Diverged members still in a chunk wait for this sync (see _may_revive): reported, so
      # the strategy can replace them; those it leaves are finished below.
      live = {m: self.members[m].report() for c in self.chunks for m in c.ids
              if self.members[m].status in ("running", "diverged")}
      self.apply(self.strategy.on_sync(live))
      self._retire(self._finish_ready())
      self.phase = "ask"
      self.checkpoint()   # counted like an epoch: saved when the interval is due
    if self.phase == "test":
      self.evaluate_test()
      self.phase = "done"
      self.checkpoint(force=True)
    return [self.members[i] for i in sorted(self.members)]

  def _begin_phase(self) -> None:
    """Fixes where this training phase ends: every live member's target, or the next multiple
    of the strategy's sync period (PBT) above the least-trained live member."""
    self.phase = "train"
    sync_every = self.strategy.sync_every()
    running = [self.members[i].epochs_run for c in self.chunks for i in c.ids
               if self.members[i].status == "running"]
    self.sync_at = (min(running) // sync_every + 1) * sync_every if sync_every and running else None

  def checkpoint(self, force: bool = False) -> None:
    """Hands the loop to the checkpoint hook (which decides whether a save is due)."""
    start = time.perf_counter()
    try:
      self.on_checkpoint(self, force)
      if self.stop_requested:
        self.on_checkpoint(self, True)
        raise Interrupted(self.stop_requested)
    finally:
      self.seconds["checkpoint"] += time.perf_counter() - start

  def evaluate_test(self) -> None:
    """The final, held-out evaluation of the test_top members (never used for selection), each
    with its weights from its best epoch."""
    test = self.dataset.test
    if self.test_top <= 0 or test.x.shape[0] == 0:
      return
    records = []
    for run in self.ranking()[:self.test_top]:
      member_id = run.trial.member_id
      if member_id not in self._kept:
        continue
      params, batch_stats = self._kept[member_id]
      hparams = jax.tree_util.tree_map(jnp.asarray, population.stack_rows([run.row], [member_id]))
      loss, acc = jax.device_get(slots_lib.evaluate_weights(
          run.spec, params, batch_stats, hparams, jnp.asarray(test.x),
          jnp.asarray(test.y, jnp.int32), self.data.mean, self.data.std))
      run.test = {"loss": members_lib.finite(loss[0]), "acc": members_lib.finite(acc[0])}
      records.append(run.record(self.objective))
    self.on_record(records)


def _chunk_slots(meta: Mapping[str, Any]) -> list[int]:
  """Each checkpointed chunk's slot size (checkpoints from before slots: its member count)."""
  return list(meta.get("chunk_slots") or [len(ids) for ids in meta["chunks"]])


class SimulatedOutOfMemory(MemoryError):
  """Raised in place of a real allocation failure when testing the back-off path."""


# How XLA words an allocation failure (GPU BFC allocator, CUDA, TPU compile and run); the
# status code alone is not enough: RESOURCE_EXHAUSTED also reports other exhausted resources.
_XLA_OUT_OF_MEMORY = ("out of memory", "ran out of memory", "failed to allocate",
                      "cuda_error_out_of_memory", "allocator ran out")


def is_out_of_memory(error: BaseException) -> bool:
  """An allocation failure from XLA (compile or run) or the simulated one; nothing else."""
  if isinstance(error, SimulatedOutOfMemory):
    return True
  if not isinstance(error, jax.errors.JaxRuntimeError):
    return False
  text = str(error)
  return (text.startswith("RESOURCE_EXHAUSTED")
          and any(words in text.lower() for words in _XLA_OUT_OF_MEMORY))


def _first_line(error: BaseException) -> str:
  return (str(error).strip().splitlines() or [type(error).__name__])[0][:300]


class Interrupted(Exception):
  """The loop stopped at an epoch boundary on request (SIGTERM/SIGINT) after checkpointing."""

