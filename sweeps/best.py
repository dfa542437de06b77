"""The winner of a finished sweep, out: `best.flags`, `best.json` and its weights in `best/`.

    python -m sweeps.mnist --flagfile=WORKDIR/best.flags --workdir=WORKDIR/solo

trains the best member alone and reproduces its curve, randomness included: the flagfile fixes
every hyperparameter of the member (a one-point grid), the data flags (seed, split, subsets) and
the member's id (`--member_id_offset`), since every random draw is fold_in(key(seed), member_id).
The weights in `best/` are those of the member's BEST epoch (by the objective), written by
`jaxnn.export.save`; `jaxnn.export.load(WORKDIR + "/best")` gives a model ready to predict.
"""

from __future__ import annotations

import os
import re
from typing import Any, Mapping

from jaxnn import export
from sweeps import records as records_lib
from sweeps import vocab

FLAGS_FILE = "best.flags"
JSON_FILE = "best.json"
WEIGHTS_DIR = "best"

# Which entry point to name in the command (the flagfile sets --dataset, so any one works).
ENTRY_POINTS = {"cifar10": "cifar", "cifar100": "cifar", "mnist": "mnist",
                "fashion_mnist": "fashion_mnist", "kmnist": "kuzushiji", "kuzushiji49": "kuzushiji",
                "circle": "toy", "xor": "toy", "gauss": "toy", "spiral": "toy"}
# Flags copied as they were: the data the member saw, and the early stopping that ended it.
_COPIED = ("dataset", "data_dir", "seed", "val_fraction", "train_subset", "val_subset",
           "test_subset", "objective", "patience", "min_delta", "monitor")


def entry_point(dataset: str) -> str:
  return "sweeps." + ENTRY_POINTS.get(dataset, "mnist")


def space_value(value: Any) -> str:
  """A config value as a fixed `--space` SPEC that reads back to the same value."""
  if isinstance(value, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.\-:/]*", value) \
      and value.lower() not in ("true", "false"):
    return value
  return repr(value)


def flagfile_text(config: Mapping[str, Any], member: records_lib.Record, note: str) -> str:
  """The flagfile that trains `member` alone, as in the sweep `config` (config.json)."""
  lines = [f"# {note}", f"#   python -m {entry_point(config['dataset'])} "
           f"--flagfile=best.flags --workdir=DIR", "--strategy=grid", "--test_top=1",
           f"--member_id_offset={member.member_id}"]
  for name in _COPIED:
    if config.get(name) is not None:
      lines.append(f"--{name}={config[name]}")
  for name, value in records_lib.to_jsonable(member.params).items():
    lines.append(f"--space={name}={space_value(value)}")
  return "\n".join(lines) + "\n"


def write(workdir: str, config: Mapping[str, Any], loop) -> dict[str, Any] | None:
  """Writes best.flags, best.json and best/ for the best member of a finished `loop`.

  Args:
    workdir: the sweep's folder.
    config: the sweep's config.json as a dict.
    loop: the finished sweeps.run.SweepLoop (its ranking and kept best-epoch weights).

  Returns:
    best.json's content, or None when no member finished with a finite objective.
  """
  ranking = loop.ranking()
  if not ranking:
    return None
  run = ranking[0]
  record = run.record(loop.objective)
  epoch = record.best_epoch
  value = record.history[loop.objective][epoch]
  exploits = [e["epoch"] for e in record.events if e.get("kind") == "exploit"]
  name = config.get("name") or os.path.basename(os.path.abspath(workdir))
  # "after N epochs" reads the same whichever epoch convention a table uses.
  note = (f"best member {record.member_id} of sweep {name}: {loop.objective} {value:.4f} after "
          f"{epoch + 1} of its {record.epochs_run} epochs")
  command = (f"python -m {entry_point(config['dataset'])} "
             f"--flagfile={os.path.join(workdir, FLAGS_FILE)} --workdir=DIR")
  info: dict[str, Any] = {
      "member_id": record.member_id, "objective": loop.objective, "value": value,
      "best_epoch": epoch, "epochs_to_best": epoch + 1, "epochs_run": record.epochs_run, "status": record.status,
      "bucket": record.bucket, "config": record.params, "seed": record.seed,
      "test": record.test, "history": record.history, "sweep": name,
      "strategy": config.get("strategy"), "dataset": config.get("dataset"),
      "command": command, "weights": WEIGHTS_DIR if loop.kept_weights(record.member_id) else None,
      "reproducible": not exploits,
  }
  planned = record.params.get("epochs")
  if isinstance(planned, int) and record.epochs_run < planned and record.status != vocab.STOPPED:
    info["note"] = (f"the sweep ended this member after {record.epochs_run} of its {planned} "
                    f"planned epochs ({record.status}); best.flags trains all {planned}, whose "
                    f"first {record.epochs_run} are its curve")
  if exploits:
    info["note"] = (f"PBT replaced this member's weights and config at epochs {exploits}: "
                    "best.flags trains its final config from scratch, not its schedule")
  records_lib.atomic_write_text(os.path.join(workdir, FLAGS_FILE),
                                flagfile_text(config, record, note))
  kept = loop.kept_weights(record.member_id)
  if kept is not None:
    data = loop.dataset
    export.save(os.path.join(workdir, WEIGHTS_DIR), export.ExportedModel(
        config=records_lib.to_jsonable(record.params), member_id=record.member_id,
        params=kept[0], batch_stats=kept[1], mean=data.mean, std=data.std,
        num_classes=data.num_classes, class_names=tuple(data.class_names),
        info={k: info[k] for k in ("sweep", "objective", "value", "best_epoch", "dataset")}))
  records_lib.atomic_write_json(os.path.join(workdir, JSON_FILE), info)
  return info
