"""PBT lineage: who copied whom, and each hyperparameter of each member over time.

PBT replaces a member's weights with a better member's and perturbs its numeric
hyperparameters; the records keep every replacement as an "exploit" event (epoch, parent, the
config before and after). `pbt_lineage.png` draws the objective of every member per epoch with an
arrow from the parent's curve to the child's at each copy, and below it one panel per
hyperparameter that changed, as steps over epochs. Epochs are 1-based, as in every table: an
exploit after epoch e means the new values train from epoch e + 1.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

from matplotlib import cm
from matplotlib.figure import Figure

from sweeps import vocab
from sweeps.records import Record
from sweeps.reporting.params import NOT_HYPERPARAMETERS, is_number, looks_logarithmic


@dataclasses.dataclass(frozen=True)
class Copy:
  """One exploit: `child` took `parent`'s weights after `epoch` epochs (1-based, inclusive)."""
  epoch: int
  parent: int
  child: int


def copies(records: Sequence[Record]) -> list[Copy]:
  """Every exploit in the sweep, ordered by epoch then child."""
  out = [Copy(int(e["epoch"]), int(e["parent"]), r.member_id)
         for r in records for e in r.events if e.get("kind") == "exploit"]
  return sorted(out, key=lambda c: (c.epoch, c.child))


def value_paths(record: Record) -> dict[str, list[tuple[int, Any]]]:
  """{hyperparameter: [(first epoch, value), ...]} of one member: its starting value from epoch
  1, then each exploit's value from the epoch after it (1-based)."""
  exploits = [e for e in record.events if e.get("kind") == "exploit"]
  start = dict(exploits[0].get("previous") or exploits[0]["config"]) if exploits \
      else dict(record.params)
  paths = {k: [(1, v)] for k, v in start.items() if k not in NOT_HYPERPARAMETERS}
  for e in exploits:
    for k, v in e["config"].items():
      if k in NOT_HYPERPARAMETERS:
        continue
      path = paths.setdefault(k, [(1, None)])
      if path[-1][1] != v:
        path.append((int(e["epoch"]) + 1, v))
  return paths


def plot_pbt_lineage(records: Sequence[Record], path: str, *, objective: str = vocab.DEFAULT_OBJECTIVE) -> str:
  """Writes pbt_lineage.png (see the module docstring); returns `path`."""
  paths = {r.member_id: value_paths(r) for r in records}
  changing = sorted({k for p in paths.values() for k, steps in p.items()
                     if len(steps) > 1 and all(is_number(v) for _, v in steps)})
  fig = Figure(figsize=(11, 3.6 + 2.4 * len(changing)), layout="constrained")
  axes = fig.subplots(1 + len(changing), 1, sharex=True, squeeze=False)[:, 0]
  ids = sorted(paths)
  color = {m: cm.tab20(i % 20) for i, m in enumerate(ids)}
  by_id = {r.member_id: r for r in records}
  ax = axes[0]
  for r in records:
    xs = [e + 1 for e, _ in r.finite_values(objective)]
    ys = [v for _, v in r.finite_values(objective)]
    ax.plot(xs, ys, color=color[r.member_id], lw=1.4, label=f"member {r.member_id}")
  for c in copies(records):
    def at(member_id, epoch):
      history = by_id[member_id].history.get(objective, [])
      return history[epoch - 1] if 0 < epoch <= len(history) else None
    y0, y1 = at(c.parent, c.epoch), at(c.child, c.epoch + 1)
    if y0 is not None and y1 is not None:
      ax.annotate("", xy=(c.epoch + 1, y1), xytext=(c.epoch, y0),
                  arrowprops=dict(arrowstyle="->", color=color[c.parent], lw=1.2, alpha=0.8))
  ax.set_ylabel(objective)
  ax.set_title(f"PBT lineage: {len(copies(records))} copies (arrow: parent -> child, coloured "
               "by the parent)")
  if len(ids) <= 20:
    ax.legend(fontsize=7, ncol=2, loc="best")
  last = max((r.epochs_run for r in records), default=1)
  for ax, name in zip(axes[1:], changing):
    values = []
    for m in ids:
      steps = [(e, v) for e, v in paths[m].get(name, []) if v is not None]
      if not steps:
        continue
      xs = [e for e, _ in steps] + [by_id[m].epochs_run + 1]
      ys = [v for _, v in steps] + [steps[-1][1]]
      ax.step(xs, ys, where="post", color=color[m], lw=1.2)
      values += ys
    if values and min(values) > 0 and looks_logarithmic(sorted(set(values))):
      ax.set_yscale("log")
    ax.set_ylabel(name)
  axes[-1].set_xlabel("epoch (1-based)")
  axes[-1].set_xlim(0.8, last + 1.2)
  fig.savefig(path, dpi=110)
  return path
