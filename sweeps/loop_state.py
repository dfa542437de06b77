"""What a checkpoint of the sweep loop holds, and how the loop is rebuilt from it.

`state_dict` splits a `SweepLoop` (sweeps/run.py) into JSON-able bookkeeping (`meta`: phase,
strategy state, every member's record so far, the chunk layout, the plans) and a pytree of
arrays (every chunk's hyperparameters and population state, the kept weights);
`abstract_arrays` gives the shapes, dtypes and placement a restore needs, from `meta` alone;
`load_state_dict` puts both back, and `extend` raises a restored sweep's epoch budget. When and
where checkpoints are written is sweeps/checkpoint.py.
"""

from __future__ import annotations

from typing import Any, Mapping

import jax

from jaxnn import slots as slots_lib
from launch import mesh as mesh_lib
from launch import multihost
from sweeps import members as members_lib
from sweeps import vocab
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
      # Chunks not yet initialized (they init as they first train) hold no arrays: a resume
      # initializes them then, to the same numbers (init depends on hparams only).
      "chunk_ready": [c.state is not None for c in loop.chunks],
      "plans": [p.to_json() for p in loop.plans],
  }
  arrays = {"chunks": [{"hparams": c.hparams, "state": c.state} for c in loop.chunks
                       if c.state is not None],
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
    hparams = slots_lib.stacked([members[i].row for i in ids], ids, slots)
    state = jax.eval_shape(lambda h: loop.trainer.init(spec, h, loop.data), hparams)
    return jax.eval_shape(lambda h: h, hparams), state

  chunks = []
  for ids, slots, ready in zip(meta["chunks"], chunk_slots(meta), chunk_ready(meta)):
    if not ready:
      continue
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
  stored = iter(arrays["chunks"])
  loop.chunks = []
  for ids, nbytes, vectorize, slots, ready in zip(
      meta["chunks"], meta["chunk_bytes"], meta["chunk_vectorize"], chunk_slots(meta),
      chunk_ready(meta)):
    a = next(stored) if ready else {"hparams": {}, "state": None}
    loop.chunks.append(Chunk(loop.members[ids[0]].spec, list(ids), dict(a["hparams"]),
                             a["state"], int(nbytes), vectorize, slots))
  loop._announce(loop.chunks, "resume")
  # Kept and final weights live on the host, whatever the restore placed.
  loop.kept.best = {i: tuple(multihost.to_host(tuple(a)))
                    for i, a in zip(meta["kept"], arrays["kept"])}
  loop.kept.final = dict(zip(meta.get("final", []),
                             multihost.to_host(list(arrays.get("final", [])))))
  loop.plans = []
  loop.restored_plans = list(meta["plans"])


def extend(loop, old_epochs: int, new_epochs: int) -> list[int]:
  """`loop` (restored) with its budget raised from `old_epochs` to `new_epochs`: see
  `SweepLoop.extend`. Returns the ids of the completed members that continue."""
  continued = []
  if new_epochs > old_epochs:
    for run in loop.members.values():
      if run.status == vocab.RUNNING and run.target == old_epochs:
        members_lib.extended(run, new_epochs)
    by_spec: dict[Any, list[int]] = {}
    for member_id in sorted(loop.kept.final):
      run = loop.members[member_id]
      if run.status == vocab.COMPLETE and run.target == old_epochs:
        by_spec.setdefault(run.spec, []).append(member_id)
    for spec, ids in by_spec.items():
      for member_id in ids:
        members_lib.extended(loop.members[member_id], new_epochs)
      chunk = loop.kept.resume(spec, ids, [loop.members[i].row for i in ids],
                               loop.slot_size(len(ids)))
      loop._announce([chunk], "extension")
      loop.chunks.append(chunk)
      continued.extend(ids)
  if loop.phase in (vocab.TEST, vocab.DONE) and (continued or not loop.strategy.done()):
    loop.phase = vocab.ASK
  return continued


def chunk_slots(meta: Mapping[str, Any]) -> list[int]:
  """Each checkpointed chunk's slot size (checkpoints from before slots: its member count)."""
  return list(meta.get("chunk_slots") or [len(ids) for ids in meta["chunks"]])


def chunk_ready(meta: Mapping[str, Any]) -> list[bool]:
  """Whether each checkpointed chunk was initialized (checkpoints from before lazy init: all)."""
  return list(meta.get("chunk_ready") or [True] * len(meta["chunks"]))
