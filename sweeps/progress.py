"""Progress for long sweeps: a tqdm bar for the sweep and one for the chunk in training, quiet
when stderr is not a TTY or with --noprogress.

The sweep bar counts member-epochs against the sweep's total and shows members finished and the
best validation accuracy so far; the bucket bar counts the chunk's epochs up to its target, with
members alive; tqdm estimates rates and remaining time (the ETA) from both.

The total is every known member's epoch target (a finished member counts the epochs it ran,
so early stopping and pruning shrink it) plus, for strategies that ask in batches (bayes:
`--trials`, PBT: `--batch`), the members not asked yet at `--epochs` each. Hyperband's total
grows as it promotes: its ETA is to the end of what is decided so far.
"""

from __future__ import annotations

import sys
from typing import Any, Sequence

from tqdm.auto import tqdm

from sweeps import vocab


class SweepProgress:
  def __init__(self, *, enabled: bool = True, total_epochs: int | None = None, stream=None,
               expected_members: int | None = None, epochs: int = 0):
    self.stream = stream or sys.stderr
    self.enabled = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
    self.total_epochs = total_epochs
    self.expected_members = expected_members   # members the strategy will ask in all, if known
    self.epochs = epochs
    self.bar = self.bucket_bar = None   # made at the first epoch, after the plan is printed
    self.current_chunk = None
    self.finished_ids: set[int] = set()
    self.best = None

  def epoch(self, loop, chunk) -> None:
    """Called after every epoch of a chunk."""
    if not self.enabled:
      return
    done = sum(r.epochs_run for r in loop.members.values())
    if self.bar is None:   # a resumed sweep starts where it was
      self.bar = tqdm(total=self.total(loop), initial=done, unit="member-epoch",
                      file=self.stream, dynamic_ncols=True)
      self.bucket_bar = tqdm(total=1, unit="epoch", file=self.stream, dynamic_ncols=True,
                             position=1, leave=False)
    runs = [loop.members[i] for i in chunk.ids]
    alive = sum(r.status == vocab.RUNNING for r in runs)
    self.bar.total = self.total(loop)
    self.bar.update(done - self.bar.n)
    if self.current_chunk != id(chunk):
      self.current_chunk = id(chunk)
      self.bucket_bar.reset(total=max(r.target for r in runs))
      self.bucket_bar.set_description_str(chunk.spec.name()[:48])
    self.bucket_bar.n = max(r.epochs_run for r in runs)
    self.bucket_bar.set_postfix_str(f"alive {alive}/{len(runs)}")
    for r in runs:
      accs = [a for a in r.history[vocab.VAL_ACC] if a is not None]
      if accs and (self.best is None or max(accs) > self.best):
        self.best = max(accs)
    self.bar.set_postfix_str(
        f"finished {len(self.finished_ids)} | best val_acc "
        f"{'-' if self.best is None else f'{self.best:.4f}'}")

  def total(self, loop) -> int:
    """Member-epochs of the whole sweep as far as they are known now (see the docstring)."""
    if self.total_epochs is not None:
      return self.total_epochs
    known = sum(r.target if r.status == vocab.RUNNING else r.epochs_run
                for r in loop.members.values())
    missing = max((self.expected_members or 0) - len(loop.members), 0) * self.epochs
    return known + missing

  def finished(self, records: Sequence[Any]) -> None:
    self.finished_ids.update(r.member_id for r in records if r.status != vocab.RUNNING)

  def close(self) -> None:
    for bar in (self.bucket_bar, self.bar):
      if bar is not None:
        bar.close()
