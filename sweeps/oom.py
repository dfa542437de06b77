"""Out-of-memory: what counts as an allocation failure, and how a chunk backs off from one.

An allocation failure at init or in an epoch has one answer, wherever it happens: shed the
chunk's fillers (run it at its own slot size), else split it in halves and retry each from the
state before, down to single members, which are then failed with the reason. `back_off` says
which; the loop (sweeps/run.py) carries it out.
"""

from __future__ import annotations

import jax

from sweeps import plan as plan_lib


class SimulatedOutOfMemory(MemoryError):
  """Raised in place of a real allocation failure when testing the back-off path."""


# How XLA words an allocation failure (GPU BFC allocator, CUDA, TPU compile and run); the
# status code alone is not enough: RESOURCE_EXHAUSTED also reports other exhausted resources.
_XLA_OUT_OF_MEMORY = ("out of memory", "ran out of memory", "failed to allocate",
                      "cuda_error_out_of_memory", "allocator ran out")


def is_out_of_memory(error: BaseException) -> bool:
  """An allocation failure from XLA (compile or run) or the simulated one; nothing else."""
  if isinstance(error, SimulatedOutOfMemory):
    return True
  if not isinstance(error, jax.errors.JaxRuntimeError):
    return False
  text = str(error)
  return (text.startswith("RESOURCE_EXHAUSTED")
          and any(words in text.lower() for words in _XLA_OUT_OF_MEMORY))


def first_line(error: BaseException) -> str:
  return (str(error).strip().splitlines() or [type(error).__name__])[0][:300]


def check_memory(nbytes: int, simulate_device_bytes: int | None) -> None:
  """Raises the simulated failure when `nbytes` exceed a simulated device (None: no check)."""
  if simulate_device_bytes is not None and nbytes > simulate_device_bytes:
    raise SimulatedOutOfMemory(
        f"RESOURCE_EXHAUSTED: simulated: {nbytes / 2**20:.1f} MiB needed, "
        f"{simulate_device_bytes / 2**20:.1f} MiB available")


# Why a chunk is retried as it is (the words its announcement line starts with).
SHED, SPLIT, FAIL = "out-of-memory retry without fillers", "out-of-memory split", "fail"


def back_off(members: int, slots: int, devices: int) -> tuple[str, list[tuple[int, int]]]:
  """What a chunk of `members` members at `slots` slots does after an allocation failure, and
  the [start, end) member ranges it is retried as: SHED its fillers (its own slot size is
  smaller; one range), SPLIT in halves (members // 2 and the rest), or FAIL its members (alone,
  or halves that would not run at fewer slots; no range)."""
  if plan_lib.slot_size(members, devices) < slots:
    return SHED, [(0, members)]
  if members == 1 or plan_lib.slot_size(members - members // 2, devices) >= slots:
    return FAIL, []
  return SPLIT, [(0, members // 2), (members // 2, members)]


def split_event(epoch: int, members: int, error: BaseException) -> dict:
  """The event each member of a split chunk records."""
  half = members // 2
  return {"epoch": epoch, "kind": "split",
          "reason": f"chunk of {members} out of memory, retried as {half}+{members - half}: "
                    f"{first_line(error)}"}
