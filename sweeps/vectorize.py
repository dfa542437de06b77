"""vmap or lax.map: how the members of a chunk run side by side.

vmap makes convolutions grouped convolutions, which can be slower than running the members one
after another, so for convolutional buckets ('auto') both are timed on a probe epoch of a few
batches (on a copy of the state, after a warm-up call that compiles) and the faster is kept and
recorded as an event; later chunks of the same program (same slot size) take the same choice.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp

from jaxnn import member as member_lib
from jaxnn import population
from sweeps import programs as programs_lib

EVENT = "vectorize"


def mode(spec, slots: int, *, sharded: bool, conv_vectorize: str) -> str:
  """How a chunk of `slots` runs: 'vmap', 'map', or 'auto' (probed; conv buckets only)."""
  if sharded:   # members split over devices: lax.map would gather them all
    return "vmap"
  if slots == 1:   # one member: the plain, unbatched program (vmap of one member still
    return "map"   # batches every matmul and conv)
  convolutional = member_lib.models.model_entry(spec.model).convolutional
  if not convolutional or conv_vectorize == "auto":
    return "auto" if convolutional else "vmap"
  return conv_vectorize


def choose(chunk, programs: programs_lib.Programs, data: population.DeviceData,
           rule: Callable[[Any, int], str], runs: Sequence[Any],
           run_epoch: Callable = population.run_epoch) -> None:
  """Sets `chunk.vectorize` once per program (`rule`: `mode` bound to the loop's settings),
  probing 'auto' with `run_epoch`; `runs` (the chunk's members) record the choice."""
  entry = programs.entry(chunk.spec, chunk.slots)
  if chunk.vectorize is None:
    _pick(chunk, entry, programs, data, rule, runs, run_epoch)
  programs.traced(chunk.spec, chunk.slots, chunk.vectorize)


def decided(rule: Callable[[Any, int], str], spec, slots: int,
            entry: Mapping[str, Any]) -> str | None:
  """How a chunk of (spec, slots) runs where that is known already: `rule`'s fixed choice, or
  the choice a probe of this program made (`entry`, its Programs entry); None while 'auto' is
  not probed yet."""
  chosen = rule(spec, slots)
  return entry["choice"] if chosen == "auto" else chosen


def _pick(chunk, entry, programs, data, rule, runs, run_epoch) -> None:
  chunk.vectorize = decided(rule, chunk.spec, chunk.slots, entry)
  if chunk.vectorize is not None:
    if entry["choice"] is not None:   # probed for an earlier chunk of this program
      _note(chunk, runs, entry["seconds"])
    return
  n = min(data.train_x.shape[0], programs_lib.PROBE_BATCHES * chunk.spec.batch_size)
  probe = data._replace(train_x=data.train_x[:n], train_y=data.train_y[:n],
                        val_x=data.val_x[:chunk.spec.batch_size],
                        val_y=data.val_y[:chunk.spec.batch_size])
  seconds = {}
  for vectorize in population.VECTORIZE:
    for timed in (False, True):
      state = jax.tree_util.tree_map(jnp.copy, chunk.state)
      start = time.perf_counter()
      jax.block_until_ready(run_epoch(
          chunk.spec, state, chunk.hparams, probe, vectorize=vectorize,
          block=population.default_block(chunk.spec)))
      if timed:
        seconds[vectorize] = round(time.perf_counter() - start, 4)
  chunk.vectorize = min(seconds, key=seconds.get)
  entry["choice"], entry["seconds"] = chunk.vectorize, seconds
  programs.probed(chunk.spec, chunk.slots)
  _note(chunk, runs, seconds)


def _note(chunk, runs, seconds: Mapping[str, float]) -> None:
  for run in runs:
    run.events.append({"epoch": run.epochs_run, "kind": EVENT,
                       "choice": chunk.vectorize, "probe_seconds": seconds})
