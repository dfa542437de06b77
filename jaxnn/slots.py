"""Population surgery: pure functions on a population's stacked rows (hparams, MemberState).

A population is a pytree whose every leaf has a leading [slots] axis. The sweep loop reshapes
populations while they train: it keeps some members (a gather), pads a short population with
inactive fillers so it reuses a compiled program, copies one member's state into another's slot
(PBT's exploit) and evaluates kept weights. Each of those is a function here, with no host
state: the loop (sweeps/run.py) decides when; these say how.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp

from jaxnn import population


def take(tree, indices):
  """The rows `indices` of every leaf (a gather along the members axis)."""
  idx = jnp.asarray(indices, jnp.int32)
  return jax.tree_util.tree_map(lambda x: x[idx], tree)


def padded(items: Sequence[Any], slots: int) -> list[Any]:
  """`items` then copies of its first until `slots` long: the filler slots."""
  return list(items) + [items[0]] * (slots - len(items))


def stacked(rows: Sequence[Any], ids: Sequence[int], slots: int | None = None):
  """The device hparams of `rows` (member `ids`), padded with fillers to `slots`."""
  slots = slots or len(ids)
  return jax.tree_util.tree_map(jnp.asarray, population.stack_rows(padded(rows, slots),
                                                                   padded(ids, slots)))


def set_slot(hparams, i: int, row: Any, member_id: int, keep=("member_id", "seed")):
  """`hparams` whose slot `i` holds `row` (PBT's exploit), except the fields `keep`."""
  new = population.stack_rows([row], [member_id])
  return {k: v if k in keep else v.at[i].set(jnp.asarray(new[k][0])) for k, v in hparams.items()}


def without_fillers(state: population.MemberState, members: int) -> population.MemberState:
  """Slots from `members` on never update (and were never told anything)."""
  return state.replace(active=state.active & (jnp.arange(state.active.shape[0]) < members))


def gather(hparams, state: population.MemberState, positions: Sequence[int], slots: int):
  """(hparams, state) of the members at `positions`, padded with fillers to `slots`."""
  idx = padded(list(positions), slots)
  return take(hparams, idx), without_fillers(take(state, idx), len(positions))


def copy_slot(dst_tree, di, src_tree, si):
  """`dst_tree` with its slot `di` replaced by `src_tree`'s slot `si`."""
  return jax.tree_util.tree_map(lambda d, s: d.at[di].set(s[si]), dst_tree, src_tree)


def copy_member(state: population.MemberState, di: int, src: population.MemberState, si: int,
                revive: bool = False) -> population.MemberState:
  """`state` whose slot `di` goes on from `src`'s slot `si` (PBT's exploit): parameters, batch
  statistics, optimizer state and step counter are copied; the epoch counter (so the data
  order) stays the member's own. `revive`: a diverged member also loses the flags that froze
  it."""
  if revive:
    state = state.replace(active=state.active.at[di].set(True),
                          diverged=state.diverged.at[di].set(False))
  return state.replace(
      params=copy_slot(state.params, di, src.params, si),
      batch_stats=copy_slot(state.batch_stats, di, src.batch_stats, si),
      opt_state=copy_slot(state.opt_state, di, src.opt_state, si),
      step=state.step.at[di].set(src.step[si]))


def evaluate_weights(spec, params, batch_stats, hparams, x, y, mean, std,
                     evaluate=population.evaluate):
  """(loss, acc) [members] of given weights (no optimizer state) on (x, y), by `evaluate`
  (`population.evaluate`, or what a sweep loop was given to train with)."""
  members = jax.tree_util.tree_leaves(hparams)[0].shape[0]
  state = population.MemberState(
      params=params, batch_stats=batch_stats, opt_state=None,
      step=jnp.zeros(members, jnp.int32), epoch=jnp.zeros(members, jnp.int32),
      active=jnp.zeros(members, bool), diverged=jnp.zeros(members, bool))
  return evaluate(spec, state, hparams, x, y, mean, std)
