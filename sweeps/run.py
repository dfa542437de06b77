"""The sweep loop: drives a strategy over populations of live members. It only schedules.

    ask -> plan -> lay out chunks -> init each chunk as it first trains, train it epoch by epoch
        until a sync point -> on_sync actions
        -> finished members recorded and told -> compaction -> ask again ...

A *chunk* (sweeps/chunks.py) is a live population: one BucketSpec, a list of member ids, their
stacked hyperparameters and state on the device, at a slot size from sweeps/plan.py padded with
inactive fillers, so a chunk that shrinks or starts short reuses a compiled program. Members
leave a chunk through one path, `_retire`: early-stopped (and, unless the strategy may revive
them, diverged) members at the end of the epoch they stopped in, the others at the sync; the
chunk is compacted at once (a gather), so retired members stop costing compute. PBT exploits
copy a parent's state into a child's slot, also across chunks of the same bucket; a diverged
member waits, frozen, for the next PBT sync, where it is replaced first. An allocation failure,
at init or in an epoch, takes one path too (`_back_off`, rules in sweeps/oom.py).

Metrics come to the host once per epoch per chunk (one device_get of a few [members] arrays).
The held-out test split is used only at the end, on the `test_top` best members by the
validation objective, with each member's weights from its BEST epoch (sweeps/kept.py).

The rooms this module calls: `trainer` (default `jaxnn.population`: init, run an epoch,
evaluate), `jaxnn/slots.py` (population surgery), `sweeps/members.py` (member bookkeeping:
histories, early stopping, ranking), `sweeps/kept.py` (weights kept on the host),
`sweeps/oom.py` (allocation failures), `sweeps/vectorize.py` (vmap or lax.map),
`sweeps/programs.py` (programs announced and counted), `sweeps/ahead.py` (the next chunk's
programs compiled while one trains), `sweeps/loop_state.py` (what a checkpoint holds).
"""

from __future__ import annotations

import functools
import time
from typing import Any, Callable, Mapping, Sequence

import jax.numpy as jnp
import numpy as np

from jaxnn import population
from jaxnn import slots as slots_lib
from launch import mesh as mesh_lib
from launch import multihost
from sweeps import ahead as ahead_lib
from sweeps import chunks as chunks_lib
from sweeps import kept as kept_lib
from sweeps import loop_state
from sweeps import members as members_lib
from sweeps import oom
from sweeps import plan as plan_lib
from sweeps import programs as programs_lib
from sweeps import vectorize as vectorize_lib
from sweeps import vocab
from sweeps.chunks import Chunk, gather
from sweeps.members import EarlyStopping, MemberRun
from sweeps.oom import SimulatedOutOfMemory, is_out_of_memory  # noqa: F401  (public names)
from sweeps.records import Record
from sweeps.strategies import base
from sweeps.strategies.base import Exploit, Extend, Stop, Trial


class SweepLoop:
  """Runs one strategy to the end over one data set. Pure engine: no flags, no printing.

  Args:
    trainer: what runs a population: `jaxnn.population` (the default), or any object with its
      `init(spec, hparams, data)`, `run_epoch(spec, state, hparams, data, vectorize=, block=,
      retryable=)` and `evaluate(spec, state, hparams, x, y, mean, std)`. Strategy tests pass
      a stub whose metrics are a known function of each member's hyperparameters.
    compile_ahead: compile the next chunk's programs on a background thread while one trains
      (sweeps/ahead.py; one process on one device, the default trainer only).
  """

  def __init__(self, strategy: base.Strategy, dataset, *, objective: str = vocab.DEFAULT_OBJECTIVE,
               early_stopping: EarlyStopping = EarlyStopping(), test_top: int = 5,
               memory_budget_bytes: int | None = None,
               on_record: Callable[[list[Record]], None] | None = None,
               on_epoch: Callable[["SweepLoop", Chunk], None] | None = None,
               on_checkpoint: Callable[["SweepLoop", bool], None] | None = None,
               simulate_device_bytes: int | None = None, conv_vectorize: str = "auto",
               on_plan: Callable[[plan_lib.Plan], None] | None = None, dtype: str = "float32",
               pack: str = "auto", trainer: Any = population, compile_ahead: bool = True):
    self.strategy = strategy
    self.trainer = trainer
    self.dtype = dtype   # compute dtype of every bucket (population.with_dtype)
    self.dataset = dataset
    self.mesh, self.data = chunks_lib.place_data(dataset)
    self.devices = self.mesh.size if self.mesh is not None else 1
    self.objective = objective
    self.early_stopping = early_stopping
    self.test_top = test_top
    self.memory_budget_bytes = memory_budget_bytes
    self.on_record = on_record or (lambda records: None)
    self.on_epoch = on_epoch or (lambda loop, chunk: None)
    self.on_checkpoint = on_checkpoint or (lambda loop, force: None)
    self.on_plan = on_plan or (lambda plan: None)   # after a plan's chunks are laid out
    self.phase = vocab.ASK        # ASK | TRAIN | TEST | DONE (vocab)
    self.sync_at: int | None = None
    self.stop_requested: str | None = None   # set by a signal handler: checkpoint and stop
    self.simulate_device_bytes = simulate_device_bytes
    self.pack = pack   # 'auto' | 'off': may members of different MLP shapes share a program
    self.restored_plans: list[dict[str, Any]] = []
    self.members: dict[int, MemberRun] = {}
    self.chunks: list[Chunk] = []
    self.plans: list[plan_lib.Plan] = []
    self.kept = kept_lib.Kept(keep_final="epochs" in getattr(strategy, "extends", ()))
    self.on_announce: Callable[[str], None] = lambda line: None   # compiles not in a plan
    self._mode = functools.partial(vectorize_lib.mode, sharded=self.mesh is not None,
                                   conv_vectorize=conv_vectorize)
    self.programs = programs_lib.Programs(self.data, self.devices, self._mode)
    self.ahead = ahead_lib.Ahead(
        compile_ahead and self.mesh is None and trainer is population, self.data, self.programs,
        self._mode, lambda ids: [self.members[i].row for i in ids])
    self.seconds = {"checkpoint": 0.0}

  def slot_size(self, members: int) -> int:
    return plan_lib.slot_size(members, self.devices)

  def _announce(self, chunks: Sequence[Chunk], why: str) -> None:
    """Announces the compiles a change of chunk sizes (compaction, split, resume) will cause."""
    line = self.programs.announce(chunks, why)
    if line:
      self.on_announce(line)

  def summary(self) -> dict[str, Any]:
    """What this process did, counted (not estimated): members, programs traced, seconds."""
    return self.programs.summary(len(self.members), self.seconds["checkpoint"],
                                 self.ahead.waited)

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
    """Plans `trials` and lays out their chunks, not yet initialized: each chunk is initialized
    (and its init program compiled) just before it first trains (`train_chunk`), so the first
    results come after one bucket's compiles, not after every bucket's."""
    plan = self.plan(trials)
    self.plans.append(plan)
    self.programs.announced += plan.compile_count()
    for bucket in plan.buckets:
      for chunk_members, slots in zip(bucket.chunks(), bucket.slots()):
        ids = [m.trial.member_id for m in chunk_members]
        for m in chunk_members:
          self.members[m.trial.member_id] = MemberRun(
              m.trial, population.with_dtype(m.spec, self.dtype), m.row, m.param_count,
              target=m.trial.epochs)
        self.chunks.append(Chunk(population.with_dtype(bucket.spec, self.dtype), ids, {}, None,
                                 bucket.member_bytes, slots=slots))
    self.on_plan(plan)

  def init_chunk(self, chunk: Chunk) -> list[Chunk]:
    """`chunk` initialized in place in `self.chunks` (a no-op when it is): the chunks it
    became (one, or the parts an allocation failure at init left; none if all failed)."""
    if chunk.state is not None:
      return [chunk]
    self.ahead.wait(chunk.spec, chunk.slots)   # its programs may be compiling ahead
    position = self.chunks.index(chunk)
    parts = self._init_chunks(chunk.spec, chunk.ids, [self.members[i].row for i in chunk.ids],
                              chunk.member_bytes, chunk.slots)
    self.chunks[position:position + 1] = parts
    return parts

  def _init_chunks(self, spec, ids, rows, member_bytes, slots=None) -> list[Chunk]:
    """Initializes a chunk padded to `slots` (default: its own slot size); on an allocation
    failure backs off (`_back_off`) and initializes what that leaves."""
    slots = slots or self.slot_size(len(ids))
    try:
      oom.check_memory(member_bytes * slots, self.simulate_device_bytes)
      hparams = slots_lib.stacked(rows, ids, slots)
      state = slots_lib.without_fillers(self.trainer.init(spec, hparams, self.data), len(ids))
      return [Chunk(spec, ids, hparams, state, member_bytes, slots=slots)]
    except Exception as e:  # noqa: BLE001 - only allocation failures are handled
      parts = self._back_off(Chunk(spec, ids, {}, None, member_bytes, slots=slots), e)
      row_of = dict(zip(ids, rows))
      return [c for part in parts
              for c in self._init_chunks(spec, part.ids, [row_of[i] for i in part.ids],
                                         member_bytes)]

  def _back_off(self, chunk: Chunk, error: Exception) -> list[Chunk]:
    """The one out-of-memory path (init or epoch; other errors are raised again): the chunks
    to retry `chunk` as, from the state before: without its fillers, or its two halves; none
    when its members fail (alone, or halves that would not shrink), recorded with the reason.
    A chunk without state (at init) gives its parts without state too."""
    if not oom.is_out_of_memory(error):
      raise error
    ids, n = chunk.ids, len(chunk.ids)
    why, bounds = oom.back_off(n, chunk.slots, self.devices)
    for member_id in ids:
      run = self.members[member_id]
      if why == oom.FAIL:
        self._fail(member_id, f"out of memory even alone: {oom.first_line(error)}")
      elif why == oom.SPLIT:
        run.events.append(oom.split_event(run.epochs_run, n, error))
    parts = [gather(chunk, list(range(a, b)), self.slot_size(b - a)) if chunk.state is not None
             else Chunk(chunk.spec, ids[a:b], {}, None, chunk.member_bytes,
                        slots=self.slot_size(b - a))
             for a, b in bounds]
    # (the program of the failed size may now never be traced: announced, not compiled)
    self._announce(parts, why)
    return parts

  def _fail(self, member_id: int, reason: str) -> None:
    run = self.members[member_id]
    members_lib.fail(run, reason)
    self.on_record([run.record(self.objective)])
    self.strategy.tell(run.report())

  # ------------------------------------------------------------------------------ training

  def train_chunk(self, chunk: Chunk) -> None:
    """Trains a chunk to the phase's end; on an allocation failure backs off (`_back_off`)
    and trains each part from the state before the failed epoch. A chunk not yet initialized
    is initialized first (`init_chunk`)."""
    if chunk.state is None:
      for part in self.init_chunk(chunk):
        self.train_chunk(part)
      return
    try:
      self._train_chunk(chunk)
    except Exception as e:  # noqa: BLE001 - only allocation failures are handled
      position = self.chunks.index(chunk)
      parts = self._back_off(chunk, e)
      self.chunks[position:position + 1] = parts
      for part in parts:
        self.train_chunk(part)

  def _train_chunk(self, chunk: Chunk) -> None:
    runs = [self.members[i] for i in chunk.ids]
    sync_at = self.sync_at
    while True:
      wants = np.array([members_lib.wants_epoch(r, sync_at) for r in runs])
      if not wants.any():
        return
      wants = np.pad(wants, (0, chunk.slots - len(runs)))   # fillers never train
      if self.mesh is not None:   # no copy when already placed
        chunk.hparams, chunk.state = mesh_lib.place_population(chunk.hparams, chunk.state,
                                                               self.mesh)
      vectorize_lib.choose(chunk, self.programs, self.data, self._mode, runs,
                           self.trainer.run_epoch)
      chunk.state = population.set_active(chunk.state, jnp.asarray(wants))
      start = time.perf_counter()
      # Not donated: if the epoch fails to allocate, chunk.state is still the state before it.
      state, metrics = self.trainer.run_epoch(
          chunk.spec, chunk.state, chunk.hparams, self.data, vectorize=chunk.vectorize,
          block=population.default_block(chunk.spec), retryable=True)
      # A simulated failure lands where a real one does: after the program was called.
      oom.check_memory(chunk.member_bytes * chunk.slots, self.simulate_device_bytes)
      chunk.state = state
      # One sync per epoch; with several processes a collective that gathers every member's
      # metrics into every process (each process then takes the same decisions).
      host = multihost.to_host({**metrics, vocab.DIVERGED: chunk.state.diverged})
      share = (time.perf_counter() - start) / max(int(wants.sum()), 1)
      for i, run in enumerate(runs):
        if wants[i]:
          members_lib.after_epoch(run, {k: host[k][i] for k in host}, share, self.early_stopping)
      improved = [i for i, run in enumerate(runs)
                  if wants[i] and members_lib.improved(run, self.objective)]
      if improved:
        self.kept.keep_best(chunk, improved, self.top_ids())
      self.on_epoch(self, chunk)
      gone = [r for r in runs if r.status == vocab.STOPPED
              or (r.status == vocab.DIVERGED and not self._may_revive())]
      if gone:   # (an emptied chunk ends the loop: no member wants an epoch)
        self._retire(gone, why="early-stopping compaction")
        runs = [self.members[i] for i in chunk.ids]
      self.checkpoint()

  def _may_revive(self) -> bool:
    """Whether the strategy can give a diverged member a new start at its next sync (PBT
    replaces diverged members first), so it waits, frozen, for that sync instead of retiring."""
    return self.strategy.sync_every() is not None

  # ---------------------------------------------------------------------- strategy actions

  def apply(self, actions: Sequence[base.Action]) -> None:
    for action in actions:
      run = self.members[action.member_id]
      if isinstance(action, Stop):
        members_lib.stopped(run, action.status, action.reason)
      elif isinstance(action, Extend):
        members_lib.promoted(run, action.epochs, action.reason)
      elif isinstance(action, Exploit):
        self._exploit(action)
      else:
        raise TypeError(f"unknown action {action!r}")

  def _exploit(self, action: Exploit) -> None:
    child_chunk, ci = chunks_lib.locate(self.chunks, action.member_id)
    parent_chunk, pi = chunks_lib.locate(self.chunks, action.parent_id)
    child = self.members[action.member_id]
    if child_chunk.spec != parent_chunk.spec:
      raise ValueError(f"exploit: member {action.member_id} cannot take a config with another "
                       "program (only numeric hyperparameters may change)")
    row = members_lib.exploit_row(child, action.config, child_chunk.spec, self.dataset,
                                  self.dtype)
    child_chunk.state = slots_lib.copy_member(child_chunk.state, ci, parent_chunk.state, pi,
                                              revive=child.status == vocab.DIVERGED)
    child_chunk.hparams = slots_lib.set_slot(child_chunk.hparams, ci, row, action.member_id)
    members_lib.exploited(child, self.members[action.parent_id], row, action.config,
                          action.reason)

  # ------------------------------------------------------------------------- finishing

  def top_ids(self) -> set[int]:
    """Members (finished or live, not failed) whose best objective so far ranks in the top K,
    K = max(test_top, 1): the only ones whose best-epoch weights can still be needed. Best
    values only improve, so a member that falls out can come back only by improving."""
    return members_lib.top_ids(self.members, self.objective, max(self.test_top, 1))

  def _retire(self, finished: Sequence[MemberRun], why: str = "compaction") -> None:
    """The one retire path (early stopped, diverged, complete, pruned): the members are
    recorded, told to the strategy, their final state kept when asked (sweeps/kept.py), and
    dropped from their chunks at once (a gather, in place), so they stop costing compute."""
    if not finished:
      return
    finished_ids = {r.trial.member_id for r in finished}
    self.kept.drop(self.top_ids())
    for chunk in self.chunks:
      self.kept.keep_finals(chunk, [i for i, m in enumerate(chunk.ids) if m in finished_ids
                                    and self.members[m].status == vocab.COMPLETE])
    records = [r.record(self.objective) for r in finished]
    self.on_record(records)
    for run in finished:
      self.strategy.tell(run.report())
    for chunk in self.chunks:
      keep = [i for i, m in enumerate(chunk.ids) if m not in finished_ids]
      if len(keep) < len(chunk.ids) and keep:
        # Gathered into the smallest slot size that holds the rest, or a larger one compiled
        # already where padding costs less than a compile (see Programs.compact_slots); the
        # freed slots become inactive fillers.
        left = max(self.members[chunk.ids[i]].target - self.members[chunk.ids[i]].epochs_run
                   for i in keep)
        smaller = gather(chunk, keep, self.programs.compact_slots(chunk.spec, len(keep), left))
        self._announce([smaller], why)
        chunk.ids, chunk.hparams, chunk.state = smaller.ids, smaller.hparams, smaller.state
        chunk.slots = smaller.slots
      elif not keep:
        chunk.ids = []
    self.chunks = [c for c in self.chunks if c.ids]

  def kept_weights(self, member_id: int) -> tuple[Any, Any] | None:
    """(params, batch_stats) of a top member at its best epoch, without the members axis;
    None when not kept (not in the top K)."""
    return self.kept.weights(member_id)

  def ranking(self) -> list[MemberRun]:
    """Finished, non-diverged members best first by the best validation objective."""
    return members_lib.ranking(self.members, self.objective)

  # --------------------------------------------------------------- checkpointing, extending

  def state_dict(self) -> tuple[dict[str, Any], dict[str, Any]]:
    """(JSON-able bookkeeping, pytree of arrays): everything needed to continue exactly."""
    return loop_state.state_dict(self)

  def abstract_arrays(self, meta: Mapping[str, Any]) -> dict[str, Any]:
    """Shapes and dtypes of the arrays a checkpoint with this `meta` holds (restore target)."""
    return loop_state.abstract_arrays(self, meta)

  def load_state_dict(self, meta: Mapping[str, Any], arrays: Mapping[str, Any]) -> None:
    loop_state.load_state_dict(self, meta, arrays)

  def extend(self, old_epochs: int, new_epochs: int) -> list[int]:
    """After a restore with a larger budget (sweeps.cli checks the strategy allows it).

    Members that completed `old_epochs` continue from their kept final state (optimizer state
    and counters included, so data order and schedule go on as if never stopped; the schedule
    keeps the horizon it was planned with) up to `new_epochs`; live members' targets are raised;
    a strategy with more to ask (more --trials) is asked again. Returns the continued ids.
    """
    return loop_state.extend(self, old_epochs, new_epochs)

  # ------------------------------------------------------------------------------ the loop

  def run(self) -> list[MemberRun]:
    """Runs the strategy to the end (or on from a restored checkpoint); returns every member.

    The loop is a small state machine so that a checkpoint taken at any epoch boundary
    resumes to the same result: phase 'ask' (between phases), 'train' (chunks advancing to
    `sync_at`), 'done'.
    """
    self.programs.start()
    try:
      self._run()
    finally:
      self.ahead.close()
    return [self.members[i] for i in sorted(self.members)]

  def _run(self) -> None:
    while self.phase != vocab.DONE:
      if self.phase == vocab.ASK:
        trials = self.strategy.ask()
        if trials:
          self.start(trials)
        if not self.chunks:
          if self.strategy.done():
            self.phase = vocab.TEST
            break
          if not trials:
            raise RuntimeError(f"strategy {self.strategy.name} asked for nothing while nothing "
                               "is running and it is not done")
          continue
        # No save here: a resume from the previous checkpoint re-asks the same trials (the
        # strategy is deterministic) and re-initializes them identically.
        self._begin_phase()
      order = list(self.chunks)
      for k, chunk in enumerate(order):
        # This chunk's own compile (if issued ahead) ends first: `issue` skips while one is in
        # flight, so on a slow machine the next program would otherwise never be issued.
        self.ahead.wait(chunk.spec, chunk.slots)
        self.ahead.issue(order[k + 1:])   # the next new program compiles while this trains
        self.train_chunk(chunk)
        # Progress on disk: a half-finished sweep can already be reported.
        self.on_record([self.members[i].record(self.objective) for i in chunk.ids])
      # Diverged members still in a chunk wait for this sync (see _may_revive): reported, so
      # the strategy can replace them; those it leaves are finished below.
      live = {m: self.members[m].report() for c in self.chunks for m in c.ids
              if self.members[m].status in (vocab.RUNNING, vocab.DIVERGED)}
      self.apply(self.strategy.on_sync(live))
      self._retire(members_lib.finish([self.members[i] for c in self.chunks for i in c.ids]))
      self.phase = vocab.ASK
      self.checkpoint()   # counted like an epoch: saved when the interval is due
    if self.phase == vocab.TEST:
      self.evaluate_test()
      self.phase = vocab.DONE
      self.checkpoint(force=True)

  def _begin_phase(self) -> None:
    """Fixes where this training phase ends: every live member's target, or the next multiple
    of the strategy's sync period (PBT) above the least-trained live member."""
    self.phase = vocab.TRAIN
    sync_every = self.strategy.sync_every()
    running = [self.members[i].epochs_run for c in self.chunks for i in c.ids
               if self.members[i].status == vocab.RUNNING]
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
    self.on_record([run.record(self.objective) for run in self.ranking()[:self.test_top]
                    if self.kept.test(run, test.x, test.y, self.data, self.trainer.evaluate)])


class Interrupted(Exception):
  """The loop stopped at an epoch boundary on request (SIGTERM/SIGINT) after checkpointing."""
