"""`python -m sweeps.retrain WORKDIR [--top=K] [--seeds=N] [--epochs=E]`: the top K configs of
a finished (or running) sweep, retrained on train+val over N seeds and evaluated on test.

Selection is over: the validation split has done its job, so each config is retrained on the
union of the sweep's train and validation examples (the very examples the sweep used: same
--seed, --val_fraction and subsets; normalization statistics recomputed on the union) with no
validation split at all, for E epochs (default: the config's own planned epochs, so its schedule
is unchanged). Seed i of a config is its sweep seed + i (seed 0 repeats the sweep's draws) and
keeps its member id, since randomness is fold_in(key(seed), member_id). Members that share a
program train side by side as one population, as in the sweep.

Writes WORKDIR/retrain/runs.csv (one row per config and seed), summary.csv and summary.json
(one row per config: mean test accuracy and loss over seeds with a 95% interval), and prints
the summary. The interval is the Student-t interval of the mean over seeds, clipped to [0, 1]
for accuracy: with few seeds the t interval of a mean near 1 runs past the bound that accuracy
cannot cross, and clipping keeps every number shown a possible accuracy (the interval is then
conservative on that side, never narrower than the t interval inside the bound).
"""

from __future__ import annotations

import collections
import csv
import io
import math
import os
import sys
from typing import Any, Mapping, Sequence

import numpy as np

from sweeps import vocab

RETRAIN_DIR = "retrain"


def train_val_dataset(config: Mapping[str, Any]):
  """The sweep's data with validation folded into training: train = train + val, val empty."""
  from jaxnn import data
  dataset = data.load(config["dataset"], config.get("data_dir"),
                      val_fraction=config["val_fraction"], seed=config["seed"],
                      train_subset=config.get("train_subset"), val_subset=config.get("val_subset"),
                      test_subset=config.get("test_subset"))
  x = np.concatenate([dataset.train.x, dataset.val.x])
  y = np.concatenate([dataset.train.y, dataset.val.y])
  mean, std = data.channel_stats(x)
  return data.Dataset(dataset.name, data.Split(x, y), data.Split(x[:0], y[:0]), dataset.test,
                      dataset.num_classes, dataset.class_names, mean, std,
                      source=f"{dataset.source} (train+val)")


def interval(values: Sequence[float], bounded: bool) -> tuple[float, float, float]:
  """(mean, low, high): the 95% Student-t interval over seeds, clipped to [0, 1] if `bounded`
  (accuracy), else to [0, inf) (a loss). NaN bounds for fewer than two values."""
  from sweeps.reporting import stats
  finite = [v for v in values if v is not None and math.isfinite(v)]
  mean, _, low, high = stats.mean_ci(finite)
  if not math.isnan(low):
    low, high = max(low, 0.0), min(high, 1.0) if bounded else high
  return mean, low, high


def retrain(workdir: str, *, top: int = 3, seeds: int = 3, epochs: int | None = None,
            out=None) -> list[dict[str, Any]]:
  """Retrains the top `top` configs of the sweep in `workdir` on train+val; see the module doc.

  Returns:
    The summary rows (one per config, best first by the sweep's objective).

  Raises:
    ValueError: no sweep in `workdir`, no finished member to retrain, or bad arguments.
  """
  import jax
  import jax.numpy as jnp
  from jaxnn import member as member_lib
  from jaxnn import population
  from sweeps import records as records_lib

  out = out or sys.stdout
  config = records_lib.read_config(workdir)
  if not config:
    raise ValueError(f"WORKDIR: {workdir} holds no sweep (config.json missing)")
  for name, value in (("top", top), ("seeds", seeds)):
    if value < 1:
      raise ValueError(f"--{name}: got {value}; allowed: an integer >= 1")
  if epochs is not None and epochs < 1:
    raise ValueError(f"--epochs: got {epochs}; allowed: an integer >= 1")
  objective = config.get("objective", vocab.DEFAULT_OBJECTIVE)
  ranked = [r for r in records_lib.sort_by_objective(records_lib.read_records(workdir), objective)
            if r.status in vocab.RANKED_STATUSES and r.objective_value(objective)
            is not None][:top]
  if not ranked:
    raise ValueError(f"WORKDIR: {workdir} has no finished member to retrain")
  dataset = train_val_dataset(config)
  device = population.device_data(dataset)
  test_x, test_y = jnp.asarray(dataset.test.x), jnp.asarray(dataset.test.y, jnp.int32)

  jobs = []   # (rank, record, seed index, config)
  for rank, record in enumerate(ranked, start=1):
    base = records_lib.to_jsonable(record.params)
    n_epochs = int(epochs or base.get("epochs") or record.epochs_run)
    for i in range(seeds):
      jobs.append((rank, record, i, {**base, "seed": int(base.get("seed", 0)) + i,
                                     "epochs": n_epochs}))
  groups = collections.defaultdict(list)   # (spec, epochs) -> jobs: one program per group
  for job in jobs:
    spec, row = member_lib.resolve(job[3], num_classes=dataset.num_classes,
                                   num_train=dataset.train.x.shape[0])
    groups[(spec, job[3]["epochs"])].append((job, row))
  results = []
  for (spec, n_epochs), members in groups.items():
    rows = [row for _, row in members]
    ids = [job[1].member_id for job, _ in members]
    state, history = population.train(spec, rows, ids, device, n_epochs)
    hparams = jax.tree_util.tree_map(jnp.asarray, population.stack_rows(rows, ids))
    loss, acc = jax.device_get(population.evaluate(spec, state, hparams, test_x, test_y,
                                                   device.mean, device.std))
    for k, ((rank, record, i, cfg), _) in enumerate(members):
      bad = bool(history[vocab.DIVERGED][k])
      results.append({"rank": rank, "member_id": record.member_id, "seed": cfg["seed"],
                      "epochs": n_epochs, "test_acc": None if bad else float(acc[k]),
                      "test_loss": None if bad else float(loss[k]),
                      vocab.TRAIN_ACC: float(history[vocab.TRAIN_ACC][k, -1]), vocab.DIVERGED: bad})
  results.sort(key=lambda r: (r["rank"], r["seed"]))

  summary = []
  for rank, record in enumerate(ranked, start=1):
    mine = [r for r in results if r["rank"] == rank]
    acc_mean, acc_low, acc_high = interval([r["test_acc"] for r in mine], bounded=True)
    loss_mean, loss_low, loss_high = interval([r["test_loss"] for r in mine], bounded=False)
    summary.append({
        "rank": rank, "member_id": record.member_id, "sweep_" + objective:
        record.objective_value(objective), "seeds": len(mine),
        vocab.DIVERGED: sum(r[vocab.DIVERGED] for r in mine), "epochs": mine[0]["epochs"],
        "test_acc_mean": acc_mean, "test_acc_low": acc_low, "test_acc_high": acc_high,
        "test_loss_mean": loss_mean, "test_loss_low": loss_low, "test_loss_high": loss_high,
        "config": records_lib.to_jsonable(record.params)})
  folder = os.path.join(workdir, RETRAIN_DIR)
  records_lib.atomic_write_text(os.path.join(folder, "runs.csv"), _csv(results))
  records_lib.atomic_write_text(os.path.join(folder, "summary.csv"), _csv(
      [{k: v for k, v in s.items() if k != "config"} for s in summary]))
  records_lib.atomic_write_json(os.path.join(folder, "summary.json"),
                                {"train": "train+val", "train_size": int(dataset.train.y.size),
                                 "test_size": int(dataset.test.y.size),
                                 "interval": "95% Student-t over seeds, accuracy clipped to [0, 1]",
                                 "configs": summary, "runs": results})
  print(format_summary(summary, objective, dataset.train.y.size, dataset.test.y.size), file=out)
  print(f"retrain: results in {folder}", file=out)
  return summary


def format_summary(summary: Sequence[Mapping[str, Any]], objective: str, n_train: int,
                   n_test: int) -> str:
  from sweeps.reporting.table import render_text_table

  def num(v):
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"

  header = ("rank", "member", f"sweep {objective}", "seeds", "epochs", "test_acc",
            "95% interval", "test_loss")
  rows = [(str(s["rank"]), str(s["member_id"]), num(s["sweep_" + objective]),
           str(s["seeds"]) + (f" ({s[vocab.DIVERGED]} diverged)" if s[vocab.DIVERGED] else ""),
           str(s["epochs"]), num(s["test_acc_mean"]),
           f"[{num(s['test_acc_low'])}, {num(s['test_acc_high'])}]", num(s["test_loss_mean"]))
          for s in summary]
  title = (f"top {len(summary)} configs retrained on train+val ({n_train} examples), "
           f"test on {n_test}: mean over seeds, 95% t interval (accuracy clipped to [0, 1])")
  return title + "\n" + render_text_table(header, rows, (True, True, True, True, True, True,
                                                         False, True))


def _csv(rows: Sequence[Mapping[str, Any]]) -> str:
  if not rows:
    return ""
  buffer = io.StringIO()
  writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
  writer.writeheader()
  writer.writerows(rows)
  return buffer.getvalue()


def main(argv: Sequence[str]) -> int:
  from absl import flags
  flag_values = flags.FlagValues()
  flags.DEFINE_integer("top", 3, "Configs to retrain: the best K of the sweep.",
                       flag_values=flag_values)
  flags.DEFINE_integer("seeds", 3, "Seeds per config (seed i = the config's seed + i).",
                       flag_values=flag_values)
  flags.DEFINE_integer("epochs", None, "Epochs (default: each config's planned epochs).",
                       flag_values=flag_values)
  try:
    rest = flag_values(["retrain", *argv])[1:]
  except flags.Error as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  if len(rest) != 1:
    print("usage: python -m sweeps.retrain WORKDIR [--top=K] [--seeds=N] [--epochs=E]",
          file=sys.stderr)
    return 2
  import jaxnn
  jaxnn.configure()   # the library's JAX settings, as in the sweep
  try:
    retrain(rest[0], top=flag_values.top, seeds=flag_values.seeds, epochs=flag_values.epochs)
  except ValueError as e:
    print(str(e), file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
