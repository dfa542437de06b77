"""What a checkpoint of the sweep loop holds, and how the loop is rebuilt from it.

`state_dict` splits a `SweepLoop` (sweeps/run.py) into JSON-able bookkeeping (`meta`: phase,
strategy state, every member's record so far, the chunk layout, the plans) and a pytree of
arrays (every chunk's hyperparameters and population state, the kept weights);
`abstract_arrays` gives the shapes, dtypes and placement a restore needs, from `meta` alone;
`load_state_dict` puts both back. When and where checkpoints are written is sweeps/checkpoint.py.
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp

from jaxnn import population
from jaxnn import slots as slots_lib
from launch import mesh as mesh_lib
from launch import multihost
from sweeps import members as members_lib
from sweeps.chunks import Chunk


def state_dict(loop) -> tuple[dict[str, Any], dict[str, Any]]:
  """(JSON-able bookkeeping, pytree of arrays): everything needed to continue exactly."""
  kept = loop.kept
  meta = {
      "phase": loop.phase, "sync_at": loop.sync_at, "strategy": loop.strategy.state_dict(),
      "members": [members_lib.member_meta(loop.members[i]) for i in sorted(loop.members)],
      "chunks": [c.ids for c in loop.chunks], "kept": sorted(kept.best),
      "chunk_bytes": [c.member_bytes for c in loop.chunks],
      "chunk_vectorize": [c.vectorize for c in loop.chunks],
      "chunk_slots": [c.slots for c in loop.chunks],
      "plans": [p.to_json() for p in loop.plans],
  }
  arrays = {"chunks": [{"hparams": c.hparams, "state": c.state} for c in loop.chunks],
            "kept": [kept.best[i] for i in sorted(kept.best)]}
  if kept.final:
    meta["final"] = sorted(kept.final)
    arrays["final"] = [kept.final[i] for i in sorted(kept.final)]
  return meta, arrays


def _members(loop, meta: Mapping[str, Any]) -> dict[int, members_lib.MemberRun]:
  return {m["trial"]["member_id"]: members_lib.member_from_meta(m, loop.dataset, loop.dtype)
          for m in meta["members"]}


def abstract_arrays(loop, meta: Mapping[str, Any]) -> dict[str, Any]:
  """Shapes and dtypes of the arrays a checkpoint with this `meta` holds (restore target)."""
  members = _members(loop, meta)

  def abstract(ids, slots):
    spec = members[ids[0]].spec
    hparams = jax.tree_util.tree_map(jnp.asarray, population.stack_rows(
        slots_lib.padded([members[i].row for i in ids], slots), slots_lib.padded(ids, slots)))
    state = jax.eval_shape(lambda h: loop.trainer.init(spec, h, loop.data), hparams)
    return jax.eval_shape(lambda h: h, hparams), state

  chunks = []
  for ids, slots in zip(meta["chunks"], chunk_slots(meta)):
    hparams, state = abstract(ids, slots)
    chunks.append(_placed(loop.mesh, {"hparams": hparams, "state": state}, slots))
  kept = []
  for member_id in meta["kept"]:
    _, state = abstract([member_id], 1)
    kept.append(_placed(loop.mesh, (state.params, state.batch_stats), None))
  out = {"chunks": chunks, "kept": kept}
  if meta.get("final"):
    out["final"] = [_placed(loop.mesh, abstract([member_id], 1)[1], None)
                    for member_id in meta["final"]]
  return out


def _placed(mesh, tree, num_members: int | None):
  """Restore targets carry where each array goes: with several processes Orbax must know the
  sharding (each process reads only its shards). `num_members` None: replicated."""
  if mesh is None:
    return tree
  split = mesh_lib.population_sharding(num_members or 1, mesh)
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())

  def place(x):
    where = split if num_members and len(x.shape) > 0 else replicated
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=where)

  return jax.tree_util.tree_map(place, tree)


def load_state_dict(loop, meta: Mapping[str, Any], arrays: Mapping[str, Any]) -> None:
  """Puts `loop` back where `state_dict` found it."""
  loop.phase, loop.sync_at = meta["phase"], meta["sync_at"]
  loop.strategy.load_state_dict(meta["strategy"])
  loop.members = _members(loop, meta)
  loop.chunks = [Chunk(loop.members[ids[0]].spec, list(ids), dict(a["hparams"]), a["state"],
                       int(nbytes), vectorize, slots)
                 for ids, a, nbytes, vectorize, slots in zip(
                     meta["chunks"], arrays["chunks"], meta["chunk_bytes"],
                     meta["chunk_vectorize"], chunk_slots(meta))]
  loop._announce(loop.chunks, "resume")
  # Kept and final weights live on the host, whatever the restore placed.
  loop.kept.best = {i: tuple(multihost.to_host(tuple(a)))
                    for i, a in zip(meta["kept"], arrays["kept"])}
  loop.kept.final = dict(zip(meta.get("final", []),
                             multihost.to_host(list(arrays.get("final", [])))))
  loop.plans = []
  loop.restored_plans = list(meta["plans"])


def chunk_slots(meta: Mapping[str, Any]) -> list[int]:
  """Each checkpointed chunk's slot size (checkpoints from before slots: its member count)."""
  return list(meta.get("chunk_slots") or [len(ids) for ids in meta["chunks"]])
