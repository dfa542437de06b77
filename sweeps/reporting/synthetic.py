"""A fake but plausible sweep, to preview and test reports without training anything.

    python -m sweeps.reporting.synthetic /tmp/fake_sweep && python -m sweeps.report /tmp/fake_sweep

Curves are seeded random functions of the hyperparameters (a learning rate near 3e-3 and adam
do best), with the cases a report must handle: a member that diverges (losses blow up, then
null), one pruned by the strategy, one stopped early, one still running; ablation variants
repeated over seeds, one-factor-at-a-time or crossed.
"""

from __future__ import annotations

import math
import sys
from typing import Sequence

import numpy as np

from sweeps import vocab
from sweeps.records import Record, append_records, atomic_write_json

OPTIMIZERS = ("sgd", "adam", "rmsprop")
WIDTHS = ((64,), (128, 64), (256, 128))


def _curves(rng: np.random.Generator, quality: float, epochs: int) -> dict[str, list[float]]:
  """Saturating accuracy towards `quality` (0..1) and a matching decaying loss."""
  t = np.arange(1, epochs + 1)
  speed = rng.uniform(1.5, 4.0)
  val_acc = 0.1 + (quality - 0.1) * (1 - np.exp(-t / speed)) + rng.normal(0, 0.006, epochs)
  train_acc = np.minimum(val_acc + 0.02 * t / epochs + rng.normal(0, 0.004, epochs), 1.0)
  val_loss = 2.3 * np.exp(-t / speed) + (1.05 - quality) * 1.2 + rng.normal(0, 0.01, epochs)
  train_loss = np.maximum(val_loss - 0.05 * t / epochs, 0.01)
  return {vocab.TRAIN_LOSS: train_loss.tolist(), vocab.TRAIN_ACC: train_acc.tolist(),
          vocab.VAL_LOSS: val_loss.tolist(), vocab.VAL_ACC: np.clip(val_acc, 0, 1).tolist()}


def _best_epoch(val_acc: Sequence[float | None]) -> int | None:
  finite = [(v, -i) for i, v in enumerate(val_acc) if v is not None]
  return -max(finite)[1] if finite else None


def sweep_records(n_members: int = 12, epochs: int = 8, seed: int = 0) -> list[Record]:
  """A random-search-like sweep; members 3, 5, 7 and the last are diverged, pruned, stopped
  early and running respectively (when they exist)."""
  rng = np.random.default_rng(seed)
  records = []
  for member_id in range(n_members):
    lr = float(10 ** rng.uniform(-4, -1))
    optimizer = OPTIMIZERS[member_id % len(OPTIMIZERS)]
    widths = list(WIDTHS[int(rng.integers(len(WIDTHS)))])
    dropout = float(rng.uniform(0.0, 0.5))
    batch_size = int(rng.choice([32, 64, 128]))
    quality = (0.93 - 0.07 * abs(math.log10(lr) + 2.5) - 0.04 * (optimizer == "sgd")
               - 0.05 * dropout + 0.01 * len(widths))
    history = _curves(rng, float(np.clip(quality, 0.2, 0.99)), epochs)
    history[vocab.LR] = [lr * 0.5 ** (e // 4) for e in range(epochs)]
    status, epochs_run, events, reason = vocab.COMPLETE, epochs, [], None
    if member_id == 3:  # diverged: the loss explodes, then turns non-finite
      status, epochs_run, reason = vocab.DIVERGED, 5, "non-finite train loss at epoch 4"
      history[vocab.TRAIN_LOSS][2:5] = [60.0, 4e3, None]
      history[vocab.VAL_LOSS][2:5] = [80.0, 9e3, None]
      history[vocab.VAL_ACC][2:5] = [0.1, 0.1, None]
      history[vocab.TRAIN_ACC][2:5] = [0.1, 0.1, None]
      events = [{"epoch": 4, "kind": vocab.DIVERGED}]
    elif member_id == 5:
      status, epochs_run, events = vocab.PRUNED, 3, [{"epoch": 2, "kind": "halved"}]
    elif member_id == 7:
      status, epochs_run, events = vocab.STOPPED, 6, [{"epoch": 5, "kind": vocab.STOPPED}]
    elif member_id == n_members - 1 and n_members > 8:
      status, epochs_run = vocab.RUNNING, 4
    history = {k: v[:epochs_run] for k, v in history.items()}
    done = status in (vocab.COMPLETE, vocab.STOPPED)
    records.append(Record(
        member_id=member_id, bucket=f"mlp{'x'.join(map(str, widths))}-{optimizer}",
        params={"lr": lr, "optimizer": optimizer, "widths": widths, "dropout": dropout,
                "batch_size": batch_size, "activation": "relu"},
        history=history, epochs_run=epochs_run, best_epoch=_best_epoch(history[vocab.VAL_ACC]),
        status=status, wall_time=round(float(rng.uniform(20, 40)) * epochs_run / epochs, 2),
        param_count=784 * widths[0] + sum(a * b for a, b in zip(widths, widths[1:])) + 10,
        test={"loss": history[vocab.VAL_LOSS][-1] + 0.02, "acc": history[vocab.VAL_ACC][-1] - 0.01}
        if done else None,
        events=events, seed=member_id, reason=reason))
  return records


def ablation_records(variants: dict[str, float] | None = None, seeds: int = 4, epochs: int = 6,
                     seed: int = 0, first_member_id: int = 0) -> list[Record]:
  """Variants (group -> accuracy shift from the baseline) repeated over `seeds` seeds.

  A seed's curve shape and noise are shared by every variant (same initialization and data
  order), so the paired difference sees the shift and little else.
  """
  variants = variants or {vocab.BASELINE: 0.0, "optimizer=adam": 0.012, "activation=tanh": -0.02,
                          "dropout=0.5": -0.004, "lr=0": -0.78}
  rng = np.random.default_rng(seed)
  seed_effect = rng.normal(0, 0.01, seeds)
  records = []
  member_id = first_member_id
  for group, shift in variants.items():
    for s in range(seeds):
      quality = float(np.clip(0.9 + shift + seed_effect[s], 0.1, 1.0))
      history = _curves(np.random.default_rng([seed, s]), quality, epochs)
      params = {"lr": 0.0 if group == "lr=0" else 0.01, "optimizer": "sgd", "activation": "relu",
                "dropout": 0.2, "seed": s}
      for name, level in _factors(group).items():
        params[name] = _parse_level(level)
      records.append(Record(
          member_id=member_id, bucket=f"ablation-{params['optimizer']}-{params['activation']}",
          params=params, history=history, epochs_run=epochs,
          best_epoch=_best_epoch(history[vocab.VAL_ACC]), status=vocab.COMPLETE, wall_time=10.0,
          param_count=101_770, test=None, seed=s, group=group))
      member_id += 1
  return records


def crossed_records(seeds: int = 3, seed: int = 1) -> list[Record]:
  """optimizer x activation, every cell over `seeds` seeds (a grid table's input)."""
  shifts = {}
  for i, opt in enumerate(("sgd", "adam", "rmsprop")):
    for j, act in enumerate(("relu", "tanh")):
      shifts[f"optimizer={opt},activation={act}"] = 0.01 * i - 0.015 * j
  return ablation_records(shifts, seeds=seeds, seed=seed)


def _factors(group: str) -> dict[str, str]:
  return dict(p.split("=", 1) for p in group.split(",") if "=" in p)


def _parse_level(level: str):
  try:
    return float(level) if "." in level or level.isdigit() else level
  except ValueError:
    return level


def write_fake_sweep(workdir: str, *, ablation: bool = False) -> list[Record]:
  """Writes config.json and records.jsonl of a fake sweep into `workdir`."""
  records = sweep_records()
  if ablation:
    records += ablation_records(first_member_id=len(records))
  atomic_write_json(f"{workdir}/config.json", {"name": "fake", "objective": vocab.DEFAULT_OBJECTIVE})
  append_records(workdir, records)
  return records


if __name__ == "__main__":
  write_fake_sweep(sys.argv[1], ablation="--ablation" in sys.argv)
