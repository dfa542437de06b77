"""Orbax checkpoints of a whole sweep, so a kill at any moment loses at most a few epochs.

A checkpoint holds two items, written together under Orbax's commit protocol (a temporary
directory renamed into place when complete, so a kill mid-write leaves the previous checkpoint
intact and the partial one ignored):
  * `arrays`: every live chunk's stacked hyperparameters and population state (params, batch
    statistics, optimizer state, step and epoch counters, active/diverged flags) and the final
    weights kept for the test evaluation;
  * `meta` (JSON): the loop's phase, every member's bookkeeping (history, status, early-stopping
    counters, events), the chunk layout and the strategy's state_dict (Optuna study included).
The data position needs no saving: each epoch's permutation is a function of (seed, member id,
epoch), and the epoch counter is in the state.

Saves are paced by time, not by count: by default at most about `budget` (2%) of wall time goes to
saving. A save is due every `every_minutes` (default 10; when not given, stretched so that the
last save's cost stays within the budget), at a phase boundary (Hyperband rung, PBT sync, a new
ask) once the time since the last save is at least cost / budget, once when the sweep is done,
and, only when `every_epochs` is given, every `every_epochs` chunk-epochs (a phase boundary counts
as one). The clock is injectable, so tests decide "time" without waiting. Nothing is lost by
saving rarely: everything between two saves is a deterministic function of the first, so a resume
replays it to the same numbers. Orbax writes in the background (async); only the copy of the
arrays to host memory blocks training. The last `keep` checkpoints are kept while the sweep runs,
only the last one once it is finished (`prune`).
"""

from __future__ import annotations

import json
import math
import os
import time

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from sweeps import vocab

CHECKPOINT_DIR = "checkpoints"


class SweepCheckpointer:
  """Saves and restores a `SweepLoop` (sweeps/run.py) in `workdir/checkpoints`."""

  DEFAULT_MINUTES = 10.0

  def __init__(self, workdir: str, *, every_epochs: int | None = None,
               every_minutes: float | None = None, keep: int = 3, asynchronous: bool = True,
               budget: float = 0.02, clock=time.monotonic):
    self.directory = os.path.abspath(os.path.join(workdir, CHECKPOINT_DIR))
    self.every_epochs = every_epochs
    self.fixed_interval = every_minutes is not None   # given: kept exactly
    self.every_seconds = (self.DEFAULT_MINUTES if every_minutes is None else every_minutes) * 60.0
    self.budget = budget
    self.clock = clock
    self.last_cost = 0.0   # seconds the last save blocked training
    self.options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, enable_async_checkpointing=asynchronous, create=True,
        cleanup_tmp_directories=True)
    self._manager = None   # made on first use: nothing is written for a sweep that never starts
    self.step = 0
    self.epochs_since = 0
    self.last_time = clock()
    self.saves = 0
    self.seconds_saving = 0.0

  @property
  def manager(self) -> ocp.CheckpointManager:
    if self._manager is None:
      self._manager = ocp.CheckpointManager(self.directory, options=self.options)
      self.step = self._manager.latest_step() or 0
    return self._manager

  def __call__(self, loop, force: bool) -> None:
    """The loop's checkpoint hook: called after every chunk-epoch and at phase boundaries
    (where `loop.phase` is 'ask')."""
    if force or self.due(boundary=getattr(loop, "phase", None) == vocab.ASK):
      self.save(loop)

  def due(self, boundary: bool) -> bool:
    """Counts one chunk-epoch (or phase boundary) and says whether a save is due now."""
    self.epochs_since += 1
    if self.every_epochs is not None and self.epochs_since >= self.every_epochs:
      return True
    elapsed = self.clock() - self.last_time
    affordable = self.last_cost / self.budget   # the wait that keeps saving within the budget
    interval = self.every_seconds if self.fixed_interval else max(self.every_seconds, affordable)
    return elapsed >= interval or (boundary and elapsed >= affordable)

  def save(self, loop) -> None:
    start = time.perf_counter()
    meta, arrays = loop.state_dict()
    # Orbax serializes in a background thread while training goes on: snapshot the bookkeeping
    # now (its lists are appended to every epoch). Arrays are immutable; buffers a later step
    # donates stay alive until the pending device->host copy completes.
    meta = json.loads(json.dumps(meta))
    manager = self.manager   # first use reads the latest step
    self.step += 1
    manager.save(self.step, args=ocp.args.Composite(
        arrays=ocp.args.StandardSave(_without_empty(arrays)), meta=ocp.args.JsonSave(meta)))
    self.epochs_since = 0
    self.last_time = self.clock()
    self.saves += 1
    self.last_cost = time.perf_counter() - start
    self.seconds_saving += self.last_cost

  def restore(self, loop) -> bool:
    """Loads the latest checkpoint into `loop`; False when there is none."""
    if not os.path.isdir(self.directory):
      return False
    step = self.manager.latest_step()
    if step is None:
      return False
    meta = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
    target = loop.abstract_arrays(meta)
    arrays = self.manager.restore(step, args=ocp.args.Composite(
        arrays=ocp.args.StandardRestore(_without_empty(target))))["arrays"]
    loop.load_state_dict(meta, _with_empty(target, arrays))
    self.step = step
    return True

  def prune(self) -> None:
    """A finished sweep keeps only its latest checkpoint. At the end no chunk is live, so that
    one holds the bookkeeping (members, strategy, plans) and the best-epoch weights of the top
    members: what a resume (to report again, or to extend --trials) and the export need."""
    if self._manager is None and not os.path.isdir(self.directory):
      return
    manager = self.manager
    manager.wait_until_finished()
    latest = manager.latest_step()
    for step in manager.all_steps():
      if step != latest:
        manager.delete(step)

  def close(self) -> None:
    """Waits for a background write to finish (call before the process exits)."""
    if self._manager is not None:
      self._manager.wait_until_finished()
      self._manager.close()


def _is_empty(x) -> bool:
  return math.prod(x.shape) == 0


def _without_empty(tree):
  """Orbax refuses zero-size arrays (e.g. no milestones, no dropout sites): leave them out."""
  return jax.tree_util.tree_map(lambda x: None if _is_empty(x) else x, tree)


def _with_empty(target, restored):
  """Puts the zero-size arrays of `target` back around the restored ones."""
  leaves, treedef = jax.tree_util.tree_flatten(target)
  kept = iter(jax.tree_util.tree_leaves(restored))
  full = [jnp.zeros(t.shape, t.dtype) if _is_empty(t) else next(kept) for t in leaves]
  return jax.tree_util.tree_unflatten(treedef, full)
