"""Progress for long sweeps: one tqdm bar per sweep, quiet when not a TTY or with --noprogress.

The bar counts member-epochs and shows members alive, members finished and the best validation
accuracy so far; tqdm estimates the rate and remaining time from it.
"""

from __future__ import annotations

import sys
from typing import Any, Sequence

from tqdm.auto import tqdm


class SweepProgress:
  def __init__(self, *, enabled: bool = True, total_epochs: int | None = None, stream=None):
    stream = stream or sys.stderr
    self.enabled = enabled and hasattr(stream, "isatty") and stream.isatty()
    self.bar = tqdm(total=total_epochs, unit="member-epoch", file=stream, dynamic_ncols=True,
                    disable=not self.enabled)
    self.finished_count = 0
    self.best = None

  def epoch(self, loop, chunk) -> None:
    """Called after every epoch of a chunk."""
    if not self.enabled:
      return
    runs = [loop.members[i] for i in chunk.ids]
    alive = sum(r.status == "running" for r in runs)
    self.bar.update(alive)
    for r in runs:
      accs = [a for a in r.history["val_acc"] if a is not None]
      if accs and (self.best is None or max(accs) > self.best):
        self.best = max(accs)
    self.bar.set_postfix_str(
        f"bucket {chunk.spec.name()[:40]} | alive {alive}/{len(runs)} | "
        f"finished {self.finished_count} | best val_acc "
        f"{'-' if self.best is None else f'{self.best:.4f}'}")

  def finished(self, records: Sequence[Any]) -> None:
    self.finished_count += sum(r.status != "running" for r in records)

  def close(self) -> None:
    self.bar.close()
