"""Compile-ahead: the next chunk's programs compile on a background thread while one trains.

Why: the loop initializes (and so compiles) each chunk just before it first trains. A sweep of
many buckets then alternates: compile (XLA compiles on one core while the other idles), train,
compile, train. Issued for the next chunk when one starts training, the compile overlaps that
training; the jit caches are process-wide, so the chunk later finds its `init` and epoch
programs compiled and traces nothing new (counted programs still equal the announced ones).

Only what is already decided is compiled ahead: one process on one device (a mesh places
hparams and state at call time), and the epoch program only where it is one program with a
known vectorization (MLPs; a convolutional bucket after its vmap/map probe). CPU convolutions,
whose epochs run in blocks from Python, get their `init` compiled ahead. Before a chunk
initializes, the loop waits for its program's compile (`wait`), so nothing compiles twice; that
wait counts as compile time in the sweep's summary (`waited`).
"""

from __future__ import annotations

import concurrent.futures
import time
from typing import Any, Callable, Iterable, Sequence

from jaxnn import population
from jaxnn import slots as slots_lib
from sweeps import programs as programs_lib
from sweeps import vectorize as vectorize_lib


class Ahead:
  """One loop's compile-ahead: at most one compile in flight, keyed by (spec, slots).

  Args:
    enabled: False: every method is a no-op (the loop compiles inline, as before).
    data: the loop's placed device data.
    programs: the loop's program accounting (what is traced already, conv choices).
    mode: the loop's vectorization rule, `mode(spec, slots)` -> 'vmap' | 'map' | 'auto'.
    rows_of: member ids -> their config rows.
  """

  def __init__(self, enabled: bool, data: population.DeviceData,
               programs: programs_lib.Programs, mode: Callable[[Any, int], str],
               rows_of: Callable[[Sequence[int]], list[Any]]):
    self.enabled = enabled
    self.data = data
    self.programs = programs
    self.mode = mode
    self.rows_of = rows_of
    self.waited = 0.0      # seconds the loop waited for a compile it needed
    self.issued = 0        # compiles issued (init + epoch program of one chunk each)
    self._futures: dict[tuple, concurrent.futures.Future] = {}
    self._executor: concurrent.futures.ThreadPoolExecutor | None = None

  def issue(self, upcoming: Iterable[Any]) -> None:
    """Starts compiling the programs of the first chunk in `upcoming` (chunks in training
    order) that is not initialized and whose programs are neither compiled nor in flight;
    nothing while a compile is still in flight."""
    if not self.enabled or any(not f.done() for f in self._futures.values()):
      return
    for chunk in upcoming:
      key = (chunk.spec, chunk.slots)
      if chunk.state is not None or key in self._futures:
        continue
      if self.programs.entry(*key)["traced"]:
        continue   # a chunk of this program has run: its programs are compiled
      vectorize = self._vectorize(chunk.spec, chunk.slots)
      hparams = slots_lib.stacked(self.rows_of(chunk.ids), chunk.ids, chunk.slots)
      if self._executor is None:
        self._executor = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix=programs_lib.AHEAD_THREAD)
      self._futures[key] = population.compile_ahead(
          chunk.spec, hparams, self.data, vectorize or "vmap", epoch=vectorize is not None,
          retryable=True, executor=self._executor)
      self.issued += 1
      return

  def wait(self, spec, slots: int) -> None:
    """Before a chunk of (spec, slots) initializes: waits for its programs' compile, if one
    was issued. A compile that failed is ignored: the chunk compiles inline and meets the
    error (an allocation failure, say) where the loop handles it."""
    future = self._futures.pop((spec, slots), None)
    if future is None:
      return
    start = time.perf_counter()
    try:
      future.result()
    except Exception:  # noqa: BLE001 - raised again, where it is handled, by the inline compile
      pass
    self.waited += time.perf_counter() - start

  def close(self) -> None:
    """Stops the thread when the loop's run ends (finished, interrupted or failed): a compile
    not started is dropped, one running is waited for (XLA cannot be interrupted)."""
    if self._executor is not None:
      self._executor.shutdown(wait=True, cancel_futures=True)
      self._executor = None
    self._futures.clear()

  def _vectorize(self, spec, slots: int) -> str | None:
    """The vectorization a chunk of (spec, slots) will run with, where it is decided and its
    epoch is one program; None otherwise (then only `init` is compiled ahead)."""
    if population.default_block(spec) is not None:
      return None
    return vectorize_lib.decided(self.mode, spec, slots, self.programs.entry(spec, slots))
