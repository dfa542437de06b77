"""Compile-ahead (sweeps/ahead.py): the next bucket's programs compile on a background thread
while one trains; nothing compiles twice and no number changes."""

import collections
import threading

import jax
import numpy as np

from jaxnn import data, population
from sweeps import programs as programs_lib
from sweeps import run, space as space_lib, strategies
from sweeps.strategies import base

_COMPILE = "/jax/core/compile/backend_compile_duration"


def _sweep(compile_ahead: bool):
  """Three one-member buckets (three widths, --pack=off) from fresh jit caches: its records,
  summary, the backend compiles of the loop's programs by (thread kind, program) and the
  compiles the loop issued ahead."""
  jax.clear_caches()
  population._model.cache_clear()  # noqa: SLF001 - fresh programs, as a new process has
  programs_lib.PROGRAMS.clear()
  programs_lib.PROBED.clear()
  compiles = collections.Counter()

  def listen(event, duration, fun_name=None, **kwargs):
    del duration, kwargs
    if event == _COMPILE and fun_name in ("jit(init)", "jit(train_epoch)"):
      ahead = threading.current_thread().name.startswith(programs_lib.AHEAD_THREAD)
      compiles["ahead" if ahead else "inline", fun_name[4:-1]] += 1

  jax.monitoring.register_event_duration_secs_listener(listen)
  try:
    dataset = data.load("circle", val_fraction=0.2, seed=0, train_subset=301, val_subset=100)
    space = space_lib.parse(["model=mlp", "widths=grid([8], [16], [24])", "lr=0.1"])
    loop = run.SweepLoop(strategies.make_strategy("grid", space, base.Settings(epochs=2)),
                         dataset, test_top=0, pack="off", compile_ahead=compile_ahead)
    runs = loop.run()
  finally:
    jax.monitoring.unregister_event_duration_listener(listen)
  return runs, loop.summary(), compiles, loop.ahead.issued


def test_compile_ahead_compiles_the_next_buckets_once_and_changes_no_number():
  plain_runs, plain, plain_compiles, issued_off = _sweep(compile_ahead=False)
  runs, summary, compiles, issued = _sweep(compile_ahead=True)
  # The second and third buckets were compiled ahead, while the one before trained.
  assert issued_off == 0 and issued == 2
  assert plain_compiles == {("inline", "init"): 3, ("inline", "train_epoch"): 3}
  # Nothing compiled twice: the first bucket's programs inline, the next two ahead.
  assert compiles == {("inline", "init"): 1, ("inline", "train_epoch"): 1,
                      ("ahead", "init"): 2, ("ahead", "train_epoch"): 2}
  assert summary["programs_compiled"] == summary["programs_announced"] == 3
  assert plain["programs_compiled"] == plain["programs_announced"] == 3
  assert summary["traces"] == plain["traces"]
  # The overlapped share is not in the wall-time split.
  assert summary["compile_overlapped_seconds"] >= 0.0
  assert plain["compile_overlapped_seconds"] == 0.0
  for a, b in zip(plain_runs, runs):
    assert a.history.keys() == b.history.keys()
    for key in ("train_loss", "val_loss", "val_acc"):
      np.testing.assert_array_equal(np.asarray(a.history[key], float),
                                    np.asarray(b.history[key], float))
