"""Weights the sweep keeps on the host, and only those that can still be needed.

* best: each top member's (params, batch_stats) at its BEST epoch, for the final test
  evaluation and the export. Copied off the device only when a member's objective improves
  while it ranks in the current top K (K = max(test_top, 1)): a member outside the top K can
  enter it only by improving, and then it is copied; weights that fall out are forgotten.
* final: the final MemberState of members that completed their budget, kept only for
  strategies whose --epochs a resume may raise (they continue from it): a finished sweep's
  checkpoint then holds what one taken while all of them trained held, no more.

Every entry keeps a leading members axis of 1 (the form a population has).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp

from jaxnn import population
from jaxnn import slots as slots_lib
from launch import multihost
from sweeps import chunks as chunks_lib
from sweeps import members as members_lib


def _rows(host, count: int) -> list[Any]:
  return [jax.tree_util.tree_map(lambda x: x[j:j + 1], host) for j in range(count)]


class Kept:
  """The host copies of one loop: `best` and `final`, member_id -> weights or state."""

  def __init__(self, keep_final: bool):
    self.keep_final = keep_final
    self.best: dict[int, tuple[Any, Any]] = {}
    self.final: dict[int, Any] = {}
    self.copies = 0   # members' best-epoch weights copied to the host (a cost figure)

  def keep_best(self, chunk, positions: Sequence[int], top: set[int]) -> None:
    """Copies the weights of the chunk `positions` whose member is in `top`; forgets the
    weights of members that fell out of `top`."""
    take = [i for i in positions if chunk.ids[i] in top]
    if take:
      # Every process takes part when the chunk spans several (a gather), and gets the copy.
      host = multihost.to_host((slots_lib.take(chunk.state.params, take),
                                slots_lib.take(chunk.state.batch_stats, take)))
      for i, weights in zip(take, _rows(host, len(take))):
        self.best[chunk.ids[i]] = weights
      self.copies += len(take)
    self.drop(top)

  def drop(self, top: set[int]) -> None:
    for member_id in list(self.best):
      if member_id not in top:
        del self.best[member_id]

  def keep_finals(self, chunk, positions: Sequence[int]) -> None:
    """Keeps the whole state of the chunk `positions` (members that completed)."""
    if self.keep_final and positions:
      host = multihost.to_host(slots_lib.take(chunk.state, positions))   # (a gather)
      for i, state in zip(positions, _rows(host, len(positions))):
        self.final[chunk.ids[i]] = state

  def resume(self, spec, ids: list[int], rows, slots: int):
    """A chunk (padded to `slots`) of the completed members `ids` going on from their final
    states, which leave `final` (a resume with a larger --epochs)."""
    states = [self.final.pop(i) for i in ids]
    state = jax.tree_util.tree_map(lambda *xs: jnp.concatenate(xs), *states)
    state = state.replace(active=~state.diverged)   # finishing had cleared `active`
    hparams = slots_lib.stacked(rows, ids)
    return chunks_lib.gather(chunks_lib.Chunk(spec, ids, hparams, state), list(range(len(ids))),
                             slots)

  def weights(self, member_id: int) -> tuple[Any, Any] | None:
    """(params, batch_stats) of a top member at its best epoch, without the members axis;
    None when not kept (not in the top K)."""
    if member_id not in self.best:
      return None
    return jax.tree_util.tree_map(lambda x: x[0], self.best[member_id])

  def test(self, run, x, y, data: population.DeviceData,
           evaluate: Callable = population.evaluate) -> bool:
    """Evaluates a member's kept best weights on the test split (x, y) into `run.test`; False
    when none are kept (not in the top K)."""
    member_id = run.trial.member_id
    if member_id not in self.best:
      return False
    params, batch_stats = self.best[member_id]
    hparams = slots_lib.stacked([run.row], [member_id])
    loss, acc = jax.device_get(slots_lib.evaluate_weights(
        run.spec, params, batch_stats, hparams, jnp.asarray(x), jnp.asarray(y, jnp.int32),
        data.mean, data.std, evaluate=evaluate))
    run.test = {"loss": members_lib.finite(loss[0]), "acc": members_lib.finite(acc[0])}
    return True
