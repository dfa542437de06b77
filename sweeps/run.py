"""The sweep loop: drives a strategy over populations of live members.

    ask -> plan -> init chunks -> train epoch by epoch until a sync point -> on_sync actions
        -> finished members recorded and told -> compaction -> ask again ...

A *chunk* here is a live population: one BucketSpec, a list of member ids, their stacked
hyperparameters and state on the device. Members leave a chunk when they finish (complete,
early-stopped, pruned, diverged); the chunk is compacted (a gather) once at least half of it is
finished, so dropped members stop costing compute. PBT exploits copy a parent's state into a
child's slot by indexing, also across chunks of the same bucket.

Metrics come to the host once per epoch per chunk (one device_get of a few [members] arrays).
The held-out test split is used only at the end, on the `test_top` best members by the
validation objective; their final states are kept on the host until then.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn import member as member_lib
from jaxnn import population
from launch import mesh as mesh_lib
from sweeps import plan as plan_lib
from sweeps.records import Record
from sweeps.strategies import base
from sweeps.strategies.base import Exploit, Extend, Report, Stop, Trial

METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "lr")


@dataclasses.dataclass(frozen=True)
class EarlyStopping:
  """Per-member early stopping on a validation metric (patience 0: off)."""
  patience: int = 0
  min_delta: float = 0.0
  monitor: str = "val_loss"


@dataclasses.dataclass
class MemberRun:
  """Host-side bookkeeping of one member: what becomes its record."""
  trial: Trial
  spec: member_lib.BucketSpec
  row: dict[str, Any]
  param_count: int
  history: dict[str, list[float | None]] = dataclasses.field(
      default_factory=lambda: {m: [] for m in METRICS})
  status: str = "running"
  target: int = 0
  wall_time: float = 0.0
  events: list[dict[str, Any]] = dataclasses.field(default_factory=list)
  since_best: int = 0
  best_monitor: float | None = None
  reason: str | None = None
  test: dict[str, float] | None = None

  @property
  def epochs_run(self) -> int:
    return len(self.history["val_acc"])

  def report(self) -> Report:
    return Report(self.trial.member_id, self.trial.config, self.epochs_run, self.history,
                  self.status)

  def record(self, objective: str) -> Record:
    best = _best_epoch(self.history, objective)
    return Record(
        member_id=self.trial.member_id, bucket=self.spec.name(), params=dict(self.trial.config),
        history={k: list(v) for k, v in self.history.items()}, epochs_run=self.epochs_run,
        best_epoch=best, status=self.status, wall_time=self.wall_time,
        param_count=self.param_count, test=self.test, events=list(self.events),
        seed=int(self.row["seed"]), group=self.trial.group, reason=self.reason)


def _finite(x) -> float | None:
  x = float(x)
  return x if math.isfinite(x) else None


def _best_epoch(history, objective) -> int | None:
  values = [(v, i) for i, v in enumerate(history[objective]) if v is not None]
  if not values:
    return None
  pick = max if base.OBJECTIVES[objective] == "maximize" else min
  return pick(values)[1]


@dataclasses.dataclass
class Chunk:
  """A live population of one bucket."""
  spec: member_lib.BucketSpec
  ids: list[int]
  hparams: dict[str, jax.Array]
  state: population.MemberState
  member_bytes: int = 0   # the planner's estimate, for memory back-off decisions
  vectorize: str | None = None   # 'vmap' or 'map' once chosen (see SweepLoop._choose_vectorize)

  def index(self, member_id: int) -> int:
    return self.ids.index(member_id)


def _take(tree, indices):
  idx = jnp.asarray(indices, jnp.int32)
  return jax.tree_util.tree_map(lambda x: x[idx], tree)


class SweepLoop:
  """Runs one strategy to the end over one data set. Pure engine: no flags, no printing."""

  def __init__(self, strategy: base.Strategy, dataset, *, objective: str = "val_acc",
               early_stopping: EarlyStopping = EarlyStopping(), test_top: int = 5,
               memory_budget_bytes: int | None = None,
               on_record: Callable[[list[Record]], None] | None = None,
               on_epoch: Callable[["SweepLoop", Chunk], None] | None = None,
               on_checkpoint: Callable[["SweepLoop", bool], None] | None = None,
               simulate_device_bytes: int | None = None, conv_vectorize: str = "auto",
               on_plan: Callable[[plan_lib.Plan], None] | None = None, pack: str = "auto"):
    self.strategy = strategy
    self.dataset = dataset
    # Several devices: each chunk's members are split over them ('members' mesh axis), the
    # data replicated; the same jitted programs then run SPMD.
    self.mesh = mesh_lib.member_mesh() if jax.device_count() > 1 else None
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
    self._kept: dict[int, tuple[Any, Any]] = {}   # member_id -> (params, batch_stats) on host

  # ------------------------------------------------------------------ planning and starting

  def plan(self, trials: Sequence[Trial]) -> plan_lib.Plan:
    x = self.dataset.train.x
    return plan_lib.make_plan(
        trials, num_classes=self.dataset.num_classes, input_shape=tuple(x.shape[1:]),
        input_dtype=str(x.dtype), num_train=x.shape[0], num_val=self.dataset.val.x.shape[0],
        memory_budget_bytes=self.memory_budget_bytes, pack=self.pack)

  def start(self, trials: Sequence[Trial]) -> None:
    plan = self.plan(trials)
    self.plans.append(plan)
    for bucket in plan.buckets:
      for chunk_members in bucket.chunks():
        ids = [m.trial.member_id for m in chunk_members]
        rows = [m.row for m in chunk_members]
        for m in chunk_members:
          self.members[m.trial.member_id] = MemberRun(
              m.trial, m.spec, m.row, m.param_count, target=m.trial.epochs)
        self.chunks.extend(self._init_chunks(bucket.spec, ids, rows, bucket.member_bytes))
    self.on_plan(plan)

  def _init_chunks(self, spec, ids, rows, member_bytes) -> list[Chunk]:
    """Initializes a chunk; on an allocation failure splits it in halves and retries."""
    try:
      self._check_memory(member_bytes * len(ids))
      hparams = jax.tree_util.tree_map(jnp.asarray, population.stack_rows(rows, ids))
      return [Chunk(spec, ids, hparams, population.init(spec, hparams, self.data), member_bytes)]
    except Exception as e:  # noqa: BLE001 - only allocation failures are handled
      if not is_out_of_memory(e):
        raise
      if len(ids) == 1:
        self._fail(ids[0], f"out of memory even alone: {_first_line(e)}")
        return []
      half = len(ids) // 2
      self._note_split(ids, half, e)
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
    (a gather of its members' states) and each half retried, down to single members, which are
    then recorded as failed with the reason."""
    try:
      self._train_chunk(chunk)
    except Exception as e:  # noqa: BLE001 - only allocation failures are handled
      if not is_out_of_memory(e):
        raise
      position = self.chunks.index(chunk)
      if len(chunk.ids) == 1:
        self.chunks.pop(position)
        self._fail(chunk.ids[0], f"out of memory even alone: {_first_line(e)}")
        return
      half = len(chunk.ids) // 2
      self._note_split(chunk.ids, half, e)
      parts = [Chunk(chunk.spec, chunk.ids[a:b], _take(chunk.hparams, list(range(a, b))),
                     _take(chunk.state, list(range(a, b))), chunk.member_bytes, chunk.vectorize)
               for a, b in ((0, half), (half, len(chunk.ids)))]
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
      self._check_memory(chunk.member_bytes * len(chunk.ids))
      if self.mesh is not None:   # no copy when already placed
        chunk.hparams, chunk.state = mesh_lib.place_population(chunk.hparams, chunk.state,
                                                               self.mesh)
      self._choose_vectorize(chunk)
      chunk.state = population.set_active(chunk.state, jnp.asarray(wants))
      start = time.perf_counter()
      chunk.state, metrics = population.train_epoch(chunk.spec, chunk.state, chunk.hparams,
                                                    self.data, vectorize=chunk.vectorize)
      host = jax.device_get({**metrics, "diverged": chunk.state.diverged})  # one sync per epoch
      share = (time.perf_counter() - start) / max(int(wants.sum()), 1)
      for i, run in enumerate(runs):
        if wants[i]:
          self._after_epoch(run, {k: host[k][i] for k in host}, share)
      self.on_epoch(self, chunk)
      if self._retire_stopped(chunk):
        runs = [self.members[i] for i in chunk.ids]
      self.checkpoint()

  PROBE_BATCHES = 8

  def _choose_vectorize(self, chunk: Chunk) -> None:
    """Picks vmap or lax.map for a chunk, once. vmap makes convolutions grouped convolutions,
    which can be slower than running the members one after another, so for convolutional
    buckets ('auto') both are timed on a probe epoch of a few batches (on a copy of the state,
    after a warm-up call that compiles) and the faster is kept and recorded as an event."""
    if chunk.vectorize is not None:
      return
    mode = self.conv_vectorize
    if self.mesh is not None:   # members split over devices: lax.map would gather them all
      mode = "vmap"
    elif len(chunk.ids) == 1:   # one member: the plain, unbatched program (vmap of one
      chunk.vectorize = "map"   # member still batches every matmul and conv)
      return
    if chunk.spec.model == "mlp" or mode != "auto":
      chunk.vectorize = "vmap" if chunk.spec.model == "mlp" or mode == "auto" else mode
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
        jax.block_until_ready(population.train_epoch(chunk.spec, state, chunk.hparams, probe,
                                                     vectorize=vectorize))
        if timed:
          seconds[vectorize] = round(time.perf_counter() - start, 4)
    chunk.vectorize = min(seconds, key=seconds.get)
    for member_id in chunk.ids:
      run = self.members[member_id]
      run.events.append({"epoch": run.epochs_run, "kind": "vectorize",
                         "choice": chunk.vectorize, "probe_seconds": seconds})

  def _retire_stopped(self, chunk: Chunk) -> bool:
    """Once at least half of a chunk has stopped early or diverged, those members are recorded,
    told to the strategy and dropped from the chunk (a gather), so they stop costing compute.
    The chunk object is updated in place. Returns True if it shrank."""
    gone = [i for i, m in enumerate(chunk.ids)
            if self.members[m].status in ("stopped", "diverged")]
    if len(chunk.ids) < 2 or 2 * len(gone) < len(chunk.ids) or len(gone) == len(chunk.ids):
      return False
    runs = [self.members[chunk.ids[i]] for i in gone]
    self._keep_for_test(chunk, runs)
    self.on_record([r.record(self.objective) for r in runs])
    for run in runs:
      self.strategy.tell(run.report())
    live = [i for i in range(len(chunk.ids)) if i not in gone]
    chunk.ids = [chunk.ids[i] for i in live]
    chunk.hparams = _take(chunk.hparams, live)
    chunk.state = _take(chunk.state, live)
    return True

  def _after_epoch(self, run: MemberRun, values: Mapping[str, Any], seconds: float) -> None:
    run.wall_time += seconds
    if values["diverged"]:
      run.status = "diverged"
      run.reason = f"non-finite loss or parameters in epoch {run.epochs_run}"
      run.events.append({"epoch": run.epochs_run, "kind": "diverged"})
      return
    for metric in METRICS:
      run.history[metric].append(_finite(values[metric]))
    self._early_stop(run)

  def _early_stop(self, run: MemberRun) -> None:
    rule = self.early_stopping
    if rule.patience <= 0:
      return
    value = run.history[rule.monitor][-1]
    if value is None:
      return
    sign = 1.0 if base.OBJECTIVES[rule.monitor] == "maximize" else -1.0
    if run.best_monitor is None or sign * (value - run.best_monitor) > rule.min_delta:
      run.best_monitor, run.since_best = value, 0
      return
    run.since_best += 1
    if run.since_best >= rule.patience:
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
    spec, row = member_lib.resolve(action.config, num_classes=self.dataset.num_classes)
    if (not member_lib.fits(spec, child_chunk.spec) or child_chunk.spec != parent_chunk.spec):
      raise ValueError(f"exploit: member {action.member_id} cannot take a config with another "
                       "program (only numeric hyperparameters may change)")
    row = member_lib.fit_row(spec, row, child_chunk.spec)   # packed buckets: padded row
    keep = {"member_id", "seed"}
    row = {**row, "seed": child.row["seed"]}
    child_chunk.state = child_chunk.state.replace(
        params=_copy_slot(child_chunk.state.params, ci, parent_chunk.state.params, pi),
        batch_stats=_copy_slot(child_chunk.state.batch_stats, ci, parent_chunk.state.batch_stats, pi),
        opt_state=_copy_slot(child_chunk.state.opt_state, ci, parent_chunk.state.opt_state, pi),
        step=child_chunk.state.step.at[ci].set(parent_chunk.state.step[pi]))
    new_row = population.stack_rows([row], [action.member_id])
    child_chunk.hparams = {
        k: v if k in keep else v.at[ci].set(jnp.asarray(new_row[k][0]))
        for k, v in child_chunk.hparams.items()}
    child.row = row
    child.trial = dataclasses.replace(child.trial, config=dict(action.config))
    child.events.append({"epoch": child.epochs_run, "kind": "exploit",
                         "parent": action.parent_id, "config": dict(action.config),
                         "reason": action.reason})

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

  def _keep_for_test(self, chunk: Chunk, runs: Sequence[MemberRun]) -> None:
    """Holds (on host) the final state of finished members that are in the test_top now;
    only those are copied off the device."""
    if self.test_top <= 0:
      return
    allowed = {r.trial.member_id for r in self.ranking()[:self.test_top]}
    for run in runs:
      member_id = run.trial.member_id
      if member_id in allowed and run.status in ("complete", "stopped") and run.epochs_run:
        i = chunk.index(member_id)
        self._kept[member_id] = jax.device_get(
            (_take(chunk.state.params, [i]), _take(chunk.state.batch_stats, [i])))
    for member_id in list(self._kept):
      if member_id not in allowed:
        del self._kept[member_id]

  def _compact(self, chunk: Chunk, force: bool) -> Chunk | None:
    live = [i for i, m in enumerate(chunk.ids) if self.members[m].status == "running"]
    if not live:
      return None
    if not force and len(live) * 2 > len(chunk.ids):
      return chunk
    if len(live) == len(chunk.ids):
      return chunk
    return Chunk(chunk.spec, [chunk.ids[i] for i in live], _take(chunk.hparams, live),
                 _take(chunk.state, live), chunk.member_bytes, chunk.vectorize)

  def _retire(self, finished: Sequence[MemberRun]) -> None:
    if not finished:
      return
    finished_ids = {r.trial.member_id for r in finished}
    for chunk in self.chunks:
      self._keep_for_test(chunk, [r for r in finished if r.trial.member_id in chunk.ids])
    records = [r.record(self.objective) for r in finished]
    self.on_record(records)
    for run in finished:
      self.strategy.tell(run.report())
    self.chunks = [c for c in (self._compact(c, force=True) for c in self.chunks) if c is not None]
    assert not any(i in finished_ids for c in self.chunks for i in c.ids)

  def ranking(self) -> list[MemberRun]:
    """Finished, non-diverged members best first by the best validation objective."""
    sign = 1.0 if base.OBJECTIVES[self.objective] == "maximize" else -1.0
    scored = []
    for run in self.members.values():
      values = [v for v in run.history[self.objective] if v is not None]
      if run.status in ("complete", "stopped", "pruned") and values:
        scored.append((-sign * (max(values) if sign > 0 else min(values)), run.trial.member_id, run))
    return [run for *_, run in sorted(scored, key=lambda t: t[:2])]

  # ----------------------------------------------------------------------- checkpointing

  def state_dict(self) -> tuple[dict[str, Any], dict[str, Any]]:
    """(JSON-able bookkeeping, pytree of arrays): everything needed to continue exactly."""
    meta = {
        "phase": self.phase, "sync_at": self.sync_at, "strategy": self.strategy.state_dict(),
        "members": [_member_meta(self.members[i]) for i in sorted(self.members)],
        "chunks": [c.ids for c in self.chunks], "kept": sorted(self._kept),
        "chunk_bytes": [c.member_bytes for c in self.chunks],
        "chunk_vectorize": [c.vectorize for c in self.chunks],
        "plans": [p.to_json() for p in self.plans],
    }
    arrays = {"chunks": [{"hparams": c.hparams, "state": c.state} for c in self.chunks],
              "kept": [self._kept[i] for i in sorted(self._kept)]}
    return meta, arrays

  def abstract_arrays(self, meta: Mapping[str, Any]) -> dict[str, Any]:
    """Shapes and dtypes of the arrays a checkpoint with this `meta` holds (restore target)."""
    members = {m["trial"]["member_id"]: _member_from_meta(m, self.dataset.num_classes)
               for m in meta["members"]}

    def abstract(ids):
      spec = members[ids[0]].spec
      hparams = jax.tree_util.tree_map(
          jnp.asarray, population.stack_rows([members[i].row for i in ids], ids))
      state = jax.eval_shape(lambda h: population.init(spec, h, self.data), hparams)
      return jax.eval_shape(lambda h: h, hparams), state

    chunks = []
    for ids in meta["chunks"]:
      hparams, state = abstract(ids)
      chunks.append({"hparams": hparams, "state": state})
    kept = []
    for member_id in meta["kept"]:
      _, state = abstract([member_id])
      kept.append((state.params, state.batch_stats))
    return {"chunks": chunks, "kept": kept}

  def load_state_dict(self, meta: Mapping[str, Any], arrays: Mapping[str, Any]) -> None:
    self.phase, self.sync_at = meta["phase"], meta["sync_at"]
    self.strategy.load_state_dict(meta["strategy"])
    self.members = {m["trial"]["member_id"]: _member_from_meta(m, self.dataset.num_classes)
                    for m in meta["members"]}
    self.chunks = [Chunk(self.members[ids[0]].spec, list(ids), dict(a["hparams"]), a["state"],
                         int(nbytes), vectorize)
                   for ids, a, nbytes, vectorize in zip(meta["chunks"], arrays["chunks"],
                                                        meta["chunk_bytes"],
                                                        meta["chunk_vectorize"])]
    self._kept = {i: tuple(a) for i, a in zip(meta["kept"], arrays["kept"])}
    self.plans = []
    self.restored_plans = list(meta["plans"])

  # ------------------------------------------------------------------------------ the loop

  def run(self) -> list[MemberRun]:
    """Runs the strategy to the end (or on from a restored checkpoint); returns every member.

    The loop is a small state machine so that a checkpoint taken at any epoch boundary
    resumes to the same result: phase 'ask' (between phases), 'train' (chunks advancing to
    `sync_at`), 'done'.
    """
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
      live = {m: self.members[m].report() for c in self.chunks for m in c.ids
              if self.members[m].status == "running"}
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
    self.on_checkpoint(self, force)
    if self.stop_requested:
      self.on_checkpoint(self, True)
      raise Interrupted(self.stop_requested)

  def evaluate_test(self) -> None:
    """The final, held-out evaluation of the test_top members (never used for selection)."""
    test = self.dataset.test
    if not self._kept or test.x.shape[0] == 0:
      return
    records = []
    for member_id, (params, batch_stats) in sorted(self._kept.items()):
      run = self.members[member_id]
      hparams = jax.tree_util.tree_map(jnp.asarray, population.stack_rows([run.row], [member_id]))
      state = population.MemberState(
          params=params, batch_stats=batch_stats, opt_state=None, step=jnp.zeros(1, jnp.int32),
          epoch=jnp.zeros(1, jnp.int32), active=jnp.zeros(1, bool), diverged=jnp.zeros(1, bool))
      loss, acc = jax.device_get(population.evaluate(
          run.spec, state, hparams, jnp.asarray(test.x), jnp.asarray(test.y, jnp.int32),
          self.data.mean, self.data.std))
      run.test = {"loss": _finite(loss[0]), "acc": _finite(acc[0])}
      records.append(run.record(self.objective))
    self.on_record(records)


_MEMBER_FIELDS = ("row", "param_count", "history", "status", "target", "wall_time", "events",
                  "since_best", "best_monitor", "reason", "test")


def _member_meta(run: MemberRun) -> dict[str, Any]:
  meta = {k: getattr(run, k) for k in _MEMBER_FIELDS}
  meta["trial"] = dataclasses.asdict(run.trial)
  meta["spec"] = member_lib.spec_to_json(run.spec)   # the bucket's (packed) spec
  return meta


def _member_from_meta(meta: Mapping[str, Any], num_classes: int) -> MemberRun:
  trial = Trial(**meta["trial"])
  if "spec" in meta:
    spec = member_lib.spec_from_json(meta["spec"])
  else:   # a checkpoint written before packing: the member's own spec
    spec, _ = member_lib.resolve(trial.config, num_classes=num_classes)
  return MemberRun(trial=trial, spec=spec, **{k: meta[k] for k in _MEMBER_FIELDS})


class SimulatedOutOfMemory(MemoryError):
  """Raised in place of a real allocation failure when testing the back-off path."""


def is_out_of_memory(error: BaseException) -> bool:
  """An allocation failure from XLA (compile or run) or the simulated one."""
  return isinstance(error, MemoryError) or "RESOURCE_EXHAUSTED" in str(error)


def _first_line(error: BaseException) -> str:
  return (str(error).strip().splitlines() or [type(error).__name__])[0][:300]


class Interrupted(Exception):
  """The loop stopped at an epoch boundary on request (SIGTERM/SIGINT) after checkpointing."""


def _copy_slot(dst_tree, di, src_tree, si):
  return jax.tree_util.tree_map(lambda d, s: d.at[di].set(s[si]), dst_tree, src_tree)
