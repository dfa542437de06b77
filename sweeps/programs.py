"""Program accounting: which compiled programs a sweep will need, announced before they are
traced, and what this process really traced and spent compiling (counted, not estimated).

The jit caches are process-wide, so what is compiled is too (`PROGRAMS`, `PROBED`); what one
loop has announced and counted is a `Programs` the loop owns.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Sequence

import jax

from jaxnn import population
from sweeps import plan as plan_lib

# The jit caches are process-wide, so what is compiled is too: program key -> what was traced for
# it ({"traced": vectorize modes run on the full data, "choice"/"seconds": the conv probe's}).
# The loop predicts a plan's compiles from it; keys: see Programs.key.
PROGRAMS: dict[tuple, dict[str, Any]] = {}
PROBED: set[tuple] = set()   # probe programs traced (spec, slots, devices, probe data shapes)

# Batches of the probe epoch that times vmap against lax.map for a convolutional bucket.
PROBE_BATCHES = 8

# The durations jax reports for tracing, lowering and backend compilation, summed.
_COMPILE_EVENTS = ("/jax/core/compile/jaxpr_trace_duration",
                   "/jax/core/compile/jaxpr_to_mlir_module_duration",
                   "/jax/core/compile/backend_compile_duration")
# Threads whose name starts with this compile ahead (sweeps/ahead.py): their seconds overlap
# training and are counted apart.
AHEAD_THREAD = "compile-ahead"
_COMPILE_SECONDS = {"inline": 0.0, "ahead": 0.0}
_LISTENING = []


def compile_seconds(ahead: bool = False) -> float:
  """Seconds this process has spent tracing and compiling (jax's own monitoring events): in
  the threads that then run the programs, or (`ahead`) on the compile-ahead thread."""
  if not _LISTENING:
    def listener(event, duration, **kwargs):
      del kwargs
      if event in _COMPILE_EVENTS:
        where = ("ahead" if threading.current_thread().name.startswith(AHEAD_THREAD)
                 else "inline")
        _COMPILE_SECONDS[where] += duration
    jax.monitoring.register_event_duration_secs_listener(listener)
    _LISTENING.append(listener)
  return _COMPILE_SECONDS["ahead" if ahead else "inline"]


def _entry(key: tuple) -> dict[str, Any]:
  return PROGRAMS.setdefault(key, {"traced": set(), "choice": None, "seconds": None})


class Programs:
  """One loop's program accounting over its placed data and device count.

  `mode(spec, slots)` is the loop's vectorization rule for a chunk not yet chosen ('vmap',
  'map', or 'auto': probed).
  """

  def __init__(self, data: population.DeviceData, devices: int,
               mode: Callable[[Any, int], str]):
    self.data = data
    self.devices = devices
    self._mode = mode
    self.announced = 0
    self._pending = {"traced": {}, "choice": {}, "probed": set()}   # announced, not yet traced
    self._counted: dict[str, Any] | None = None

  def key(self, spec, slots: int) -> tuple:
    data = tuple((tuple(x.shape), str(x.dtype)) for x in self.data)
    return (spec, slots, self.devices, data)

  def probe_key(self, spec, slots: int) -> tuple:
    n = min(self.data.train_x.shape[0], PROBE_BATCHES * spec.batch_size)
    return (spec, slots, self.devices, n, min(self.data.val_x.shape[0], spec.batch_size),
            self.data.train_x.shape[1:], str(self.data.train_x.dtype))

  def entry(self, spec, slots: int) -> dict[str, Any]:
    """What was traced and chosen for this program (created empty)."""
    return _entry(self.key(spec, slots))

  def traced(self, spec, slots: int, vectorize: str) -> None:
    """Records that a chunk of (spec, slots) runs (so has traced) with `vectorize`."""
    _entry(self.key(spec, slots))["traced"].add(vectorize)
    if vectorize == "map" and population.default_block(spec) is not None:
      _entry(self.key(spec, 1))["traced"].add("map")

  def probed(self, spec, slots: int) -> None:
    PROBED.add(self.probe_key(spec, slots))

  def new(self, shapes: Sequence[tuple[Any, int, str | None]]) -> int:
    """How many train programs running chunks of these (spec, slots, vectorize or None) will
    trace, given what this process has traced or already announced: one per new (program,
    vectorization), plus the two probe programs of an 'auto' conv bucket whose choice is not
    made yet. What it counts is announced: counted once."""
    pending = self._pending
    count = 0
    for spec, slots, vectorize in shapes:
      key = self.key(spec, slots)
      known = PROGRAMS.get(key, {})
      mode = vectorize or self._mode(spec, slots)
      if mode == "auto":
        choice = known.get("choice") or pending["choice"].get(key)
        if choice is None:
          probe = self.probe_key(spec, slots)
          if probe not in PROBED and probe not in pending["probed"]:
            count += 2
            pending["probed"].add(probe)
          choice = pending["choice"][key] = "?"
        mode = choice
      if mode == "map" and population.default_block(spec) is not None:
        # Blocked 'map' issues each member alone: one program whatever the chunk's size.
        key = self.key(spec, 1)
        known = PROGRAMS.get(key, {})
      traced = pending["traced"].setdefault(key, set())
      if mode not in traced and mode not in known.get("traced", ()):
        traced.add(mode)
        count += 1
    return count

  def _known(self, spec, slots: int) -> bool:
    """Whether the program of (spec, slots) is traced or announced already."""
    key = self.key(spec, slots)
    return bool(PROGRAMS.get(key, {}).get("traced") or self._pending["traced"].get(key))

  def compact_slots(self, spec, members: int, epochs_left: int,
                    backend: str | None = None) -> int:
    """The slot size a chunk of `spec` shrinking to `members` runs at for its last
    `epochs_left` epochs: the smallest larger size of this program that is compiled (or
    announced) already, when the cost model (`plan.cost_model`) says its padded compute costs
    less than compiling the right size (CPU, small models: nearly always), else the right size
    (`plan.slot_size`). Hyperband's rungs and early-stopping retirement then reuse the bucket's
    one program."""
    fit = plan_lib.slot_size(members, self.devices)
    larger = sorted(n for n in self._slots_of(spec) if n > fit)
    if self._known(spec, fit) or not larger:
      return fit
    model = plan_lib.cost_model(backend)
    shapes = dict(input_shape=tuple(self.data.train_x.shape[1:]), num_classes=spec.num_classes,
                  num_train=self.data.train_x.shape[0], num_val=self.data.val_x.shape[0])
    padding = epochs_left * (model.epoch(spec, larger[0], **shapes)
                             - model.epoch(spec, fit, **shapes))
    return larger[0] if padding < model.compile(spec, fit) else fit

  def _slots_of(self, spec) -> set[int]:
    data = self.key(spec, 0)[3]
    known = {k[1] for k, v in PROGRAMS.items()
             if k[0] == spec and k[2] == self.devices and k[3] == data and v.get("traced")}
    return known | {k[1] for k, v in self._pending["traced"].items() if k[0] == spec and v}

  def announce(self, chunks: Sequence[Any], why: str) -> str | None:
    """Counts the compiles a change of chunk sizes (compaction, split, resume) will cause; the
    line that announces them, or None when there are none."""
    count = self.new([(c.spec, c.slots, c.vectorize) for c in chunks])
    if not count:
      return None
    self.announced += count
    sizes = ", ".join(f"{len(c.ids)}->{c.slots}" for c in chunks)
    return (f"{why}: chunks [{sizes}] slots, {count} new compiled "
            f"program{'s' if count > 1 else ''}")

  def start(self) -> None:
    """Starts counting (once per loop: a resumed run counts on)."""
    if self._counted is None:
      self._counted = {"start": time.perf_counter(), "compile": compile_seconds(),
                       "ahead": compile_seconds(ahead=True),
                       "traces": dict(population.TRACE_COUNTS)}

  def summary(self, members: int, checkpoint_seconds: float,
              waited_seconds: float = 0.0) -> dict[str, Any]:
    """What this process did, counted (not estimated): members, programs traced, seconds.

    compile_seconds is what compiling cost the sweep's wall time: compiles in the loop's own
    thread plus `waited_seconds` (the loop waiting for a compile-ahead to finish);
    compile_overlapped_seconds, the compile-ahead thread's seconds, ran while members trained
    (less what was waited for) and are not part of the wall-time split.
    """
    counted = self._counted
    traces = dict(population.TRACE_COUNTS)
    wall = time.perf_counter() - counted["start"] if counted else 0.0
    compiled = {k: traces.get(k, 0) - (counted["traces"].get(k, 0) if counted else 0)
                for k in ("init", "train_epoch", "finish_epoch", "evaluate")}
    inline = compile_seconds() - (counted["compile"] if counted else compile_seconds())
    ahead = (compile_seconds(ahead=True)
             - (counted["ahead"] if counted else compile_seconds(ahead=True)))
    compile_s = inline + waited_seconds
    # An epoch program is one train_epoch, or (CPU convolutions, in blocks) the blocks that end
    # in one finish_epoch: each epoch procedure compiled counts once.
    return {"members": members,
            "programs_compiled": compiled["train_epoch"] + compiled["finish_epoch"],
            "programs_announced": self.announced, "traces": compiled,
            "compile_seconds": round(compile_s, 3),
            "compile_overlapped_seconds": round(max(ahead - waited_seconds, 0.0), 3),
            "checkpoint_seconds": round(checkpoint_seconds, 3),
            "train_seconds": round(max(wall - compile_s - checkpoint_seconds, 0.0), 3),
            "wall_seconds": round(wall, 3), "devices": self.devices}
