"""Everything a sweep reports, rendered from its workdir alone.

    python -m sweeps.report WORKDIR [--top 10] [--study_storage URL] [--compare OTHER_WORKDIR]

re-renders WORKDIR/report/ from `config.json` and `records.jsonl`, so it works on a finished
sweep, on one still running (members with status "running" are included) and on one that
crashed. It prints the best members; with --compare it also prints the best member of another
sweep beside this one's and the difference of their best objective.

The workdir contract (written by the engine):
  * config.json: the resolved sweep config; read here: "objective" ("val_acc", maximized, by
    default; "val_loss" is minimized), "name" (the study name; default the directory name) and
    optionally "study_storage" (an SQLAlchemy URL).
  * records.jsonl: `sweeps.records.Record` lines, the last line per member wins.

What lands in WORKDIR/report/:
  results.csv, results.jsonl   one row per member (`sweeps.reporting.table`)
  summary.txt                  the top table, and for ablations the variant table and grid
  study.db                     the Optuna study (unless another storage is given)
  tensorboard/                 per-member scalars and the HParams dashboard
  learning_curves.png, parallel_coordinates.png, importance.png
  ablation.csv, ablation.png   only for an ablation (not for Hyperband's brackets)
  pbt_lineage.png              only for PBT: who copied whom, each hyperparameter over time
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Sequence

from sweeps import vocab
from sweeps.records import (Record, atomic_write_text, objective_direction, read_config,
                            read_records, sort_by_objective)
from sweeps.reporting import lineage, plots, stats, study, table, tensorboard
from sweeps.reporting.params import format_value

REPORT_DIR = "report"
DEFAULT_OBJECTIVE = vocab.DEFAULT_OBJECTIVE
# What write_reports can render; the results table and summary are always written.
ARTIFACTS = ("study", "tensorboard", "plots")


def report_dir(workdir: str) -> str:
  """Where a sweep's reports live: WORKDIR/report."""
  return os.path.join(workdir, REPORT_DIR)


def sweep_objective(config: dict[str, Any]) -> str:
  """The metric a sweep ranks by (config "objective", default val_acc)."""
  return config.get("objective") or DEFAULT_OBJECTIVE


def sweep_name(workdir: str, config: dict[str, Any]) -> str:
  """The sweep's name (config "name", default the workdir's directory name)."""
  return config.get("name") or os.path.basename(os.path.abspath(workdir))


def summary_text(records: Sequence[Record], *, objective: str = DEFAULT_OBJECTIVE, top: int = 10,
                 name: str = "", baseline: str = stats.BASELINE) -> str:
  """The text report: status counts, the top table, and the ablation tables if any."""
  counts: dict[str, int] = {}
  for r in records:
    counts[r.status] = counts.get(r.status, 0) + 1
  head = f"sweep {name}: {len(records)} members" + (
      " (" + ", ".join(f"{n} {s}" for s, n in counts.items()) + ")" if counts else "")
  parts = [head, table.format_table(records, top, objective=objective)]
  if stats.is_ablation(records):
    rows = stats.ablation_table(records, baseline)
    parts.append("ablation (95% CI over seeds: Student t, on the logit scale for accuracy; "
                 "diff: paired by seed)\n"
                 + stats.format_ablation_table(rows))
    for value in ("mean_acc", "mean_loss"):
      grid = stats.format_grid(rows, value=value)
      if grid:
        parts.append(grid)
  return "\n\n".join(parts)


def write_reports(workdir: str, *, top: int = 10, storage: str | None = None,
                  records: Sequence[Record] | None = None, config: dict[str, Any] | None = None,
                  baseline: str = stats.BASELINE, importance: str = "ped_anova",
                  highlight: int = 5, include: Sequence[str] = ARTIFACTS) -> dict[str, str]:
  """Renders every report of a sweep into WORKDIR/report/.

  Args:
    workdir: the sweep directory.
    top: rows of the top table.
    storage: the Optuna storage URL; default config "study_storage", else
      sqlite:///WORKDIR/report/study.db.
    records: the members, if the caller has them (else read from records.jsonl).
    config: the sweep config, if the caller has it (else read from config.json).
    baseline: the ablation variant paired differences are taken against.
    importance: the importance evaluator's name (see `plots.IMPORTANCE_EVALUATORS`).
    highlight: members coloured and labelled in the learning curves (at most `top`).
    include: which of ARTIFACTS to render besides the tables. The Optuna export costs about a
      millisecond per stored value (Optuna's RDB storage issues a few queries per parameter,
      attribute and intermediate value), so a loop that re-renders often may leave "study"
      out until the end.

  Returns:
    {artifact name: path} of what was written.
  """
  unknown = sorted(set(include) - set(ARTIFACTS))
  if unknown:
    raise ValueError(f"include: unknown {unknown[0]!r}; known: {', '.join(ARTIFACTS)}")
  config = read_config(workdir) if config is None else config
  records = read_records(workdir) if records is None else list(records)
  objective = sweep_objective(config)
  name = sweep_name(workdir, config)
  out = report_dir(workdir)
  os.makedirs(out, exist_ok=True)
  written: dict[str, str] = {}
  written["csv"], written["jsonl"] = table.write_results(records, out, objective)
  written["summary"] = os.path.join(out, "summary.txt")
  atomic_write_text(written["summary"], summary_text(
      records, objective=objective, top=top, name=name, baseline=baseline) + "\n")
  if not records:
    return written
  ablation = stats.is_ablation(records)   # Hyperband's brackets are groups too, not variants
  if ablation:
    columns = [f.name for f in dataclasses.fields(stats.AblationRow)]
    written["ablation_csv"] = os.path.join(out, "ablation.csv")
    atomic_write_text(written["ablation_csv"], table.results_csv_text(
        stats.ablation_rows_as_dicts(stats.ablation_table(records, baseline)), columns))

  if "study" in include:
    # A worker of a shared study (config "study_name") keeps its own export in its workdir:
    # the shared storage holds the live study, never a copy per worker.
    shared = config.get("study_name")
    storage = storage or (None if shared else config.get("study_storage")) or \
        study.default_storage(workdir)
    study.export_study(records, storage, name, objective_direction(objective),
                       objective=objective, space=config.get("space"))
    written["study"] = storage
  if "tensorboard" in include:
    written["tensorboard"] = tensorboard.write_tensorboard(
        records, os.path.join(out, "tensorboard"))
  if "plots" in include:
    written["learning_curves"] = plots.plot_learning_curves(
        records, os.path.join(out, "learning_curves.png"), objective=objective,
        top=min(top, highlight))
    written["parallel_coordinates"] = plots.plot_parallel_coordinates(
        records, os.path.join(out, "parallel_coordinates.png"), objective=objective)
    written["importance"] = plots.plot_importance(
        records, os.path.join(out, "importance.png"), objective=objective, evaluator=importance)
    if ablation:
      written["ablation"] = plots.plot_ablation(
          records, os.path.join(out, "ablation.png"), baseline=baseline)
    if lineage.copies(records):
      written["pbt_lineage"] = lineage.plot_pbt_lineage(
          records, os.path.join(out, "pbt_lineage.png"), objective=objective)
  return written


def compare_text(workdir_a: str, workdir_b: str) -> str:
  """Two sweeps' best members side by side and the difference of their best objective.

  Both are ranked by the first sweep's objective (a note says so if the second differs).
  """
  config_a, config_b = read_config(workdir_a), read_config(workdir_b)
  objective = sweep_objective(config_a)
  sweeps = [(sweep_name(w, c), read_records(w)) for w, c in
            ((workdir_a, config_a), (workdir_b, config_b))]
  bests = [sort_by_objective(rs, objective)[0] if rs else None for _, rs in sweeps]

  def member_rows(best: Record | None, records: Sequence[Record]) -> dict[str, str]:
    if best is None:
      return {"members": "0"}
    row = {
        "members": str(len(records)),
        "best member": str(best.member_id),
        f"best {objective}": format_value(best.objective_value(objective)),
        "status": best.status,
        "best epoch (1-based)": format_value(_plus_one(best.best_epoch_for(objective))),
        "epochs run": str(best.epochs_run),
        "val_acc / val_loss": f"{format_value(best.best_val_acc)} / "
                              f"{format_value(best.best_val_loss)}",
        "test_acc": format_value(best.test_acc),
        "parameters": str(best.param_count),
        "wall time (s)": f"{best.wall_time:.1f}",
    }
    row.update({f"  {k}": format_value(v, 30) for k, v in best.params.items()})
    return row

  columns = [member_rows(b, rs) for b, (_, rs) in zip(bests, sweeps)]
  keys = list(dict.fromkeys([*columns[0], *columns[1]]))
  body = []
  for key in keys:
    a, b = columns[0].get(key, "-"), columns[1].get(key, "-")
    body.append([key, a, b, "" if a == b else "≠"])
  header = ["", sweeps[0][0], sweeps[1][0], ""]
  lines = [f"best members by {objective} ({objective_direction(objective)})",
           table.render_text_table(header, body, [False, False, False, False])]
  if sweep_objective(config_b) != objective:
    lines.append(f"note: {sweeps[1][0]} was run with objective {sweep_objective(config_b)}; "
                 f"ranked here by {objective}")
  values = [b.objective_value(objective) if b else None for b in bests]
  if None not in values:
    diff = values[1] - values[0]
    better = (diff > 0) == (objective_direction(objective) == vocab.MAXIMIZE)
    verdict = "equal" if diff == 0 else f"{sweeps[1][0] if better else sweeps[0][0]} is better"
    lines.append(f"difference of best {objective} ({sweeps[1][0]} - {sweeps[0][0]}): "
                 f"{diff:+.4f} ({verdict})")
  return "\n".join(lines)


def _plus_one(epoch: int | None) -> int | None:
  return None if epoch is None else epoch + 1


def merge_workdirs(workdirs: Sequence[str], out: str) -> list[Record]:
  """Writes the records of several workers of one shared study into `out` (config of the
  first, named after `out`). Member ids are trial numbers of the study, unique across workers;
  where two workdirs hold the same member, a finished record wins over a running one.

  Raises:
    ValueError: a workdir without records, or workers of different studies.
  """
  from sweeps.records import append_records, atomic_write_json
  merged: dict[int, Record] = {}
  names = set()
  for workdir in workdirs:
    records = read_records(workdir)
    if not records:
      raise ValueError(f"--merge: {workdir} holds no records.jsonl")
    names.add(read_config(workdir).get("study_name"))
    for record in records:
      old = merged.get(record.member_id)
      if old is None or old.status == vocab.RUNNING:
        merged[record.member_id] = record
  if len(names) != 1:
    raise ValueError(f"--merge: the workdirs belong to different studies: {sorted(map(str, names))}")
  os.makedirs(out, exist_ok=True)
  config = {**read_config(workdirs[0]), "name": os.path.basename(os.path.abspath(out)),
            "merged_from": [os.path.abspath(w) for w in workdirs]}
  atomic_write_json(os.path.join(out, "config.json"), config)
  path = os.path.join(out, "records.jsonl")
  if os.path.exists(path):
    os.remove(path)
  records = [merged[k] for k in sorted(merged)]
  append_records(out, records)
  return records


def define_flags() -> None:
  """Defines the CLI flags (only when run as a program, so importing this module defines none
  and an engine that imports `write_reports` keeps its own --study_storage)."""
  from absl import flags
  flags.DEFINE_integer("top", 10, "Rows of the top table (the curves highlight at most 5).")
  flags.DEFINE_string("compare", None, "Another sweep's workdir to compare the best member with.")
  flags.DEFINE_string("study_storage", None, "Optuna storage URL (any SQLAlchemy URL); default "
                      "config.json's study_storage, else sqlite:///WORKDIR/report/study.db.")
  flags.DEFINE_list("merge", [], "Workdirs of the workers of one shared study (--study_name): "
                    "their records are merged into WORKDIR (created) and rendered together.")
  flags.DEFINE_string("importance", "ped_anova",
                      f"Importance evaluator: {', '.join(plots.IMPORTANCE_EVALUATORS)}.")


def main(argv: Sequence[str]) -> None:
  """The CLI: re-render WORKDIR's reports, print them, optionally compare with another sweep."""
  import optuna
  from absl import app, flags
  FLAGS = flags.FLAGS
  if len(argv) != 2:
    raise app.UsageError("usage: python -m sweeps.report WORKDIR [--top K] [--compare OTHER]")
  workdir = argv[1]
  merge = FLAGS.merge if "merge" in FLAGS else []   # (a caller may define only the old flags)
  if merge:
    try:
      merge_workdirs(merge, workdir)
    except ValueError as e:
      raise app.UsageError(str(e)) from None
  if not os.path.isdir(workdir):
    raise app.UsageError(f"WORKDIR: no such directory: {workdir}")
  try:
    plots.IMPORTANCE_EVALUATORS.check(FLAGS.importance)
  except ValueError as e:
    raise app.UsageError(str(e)) from None
  optuna.logging.set_verbosity(optuna.logging.WARNING)
  written = write_reports(workdir, top=FLAGS.top, storage=FLAGS.study_storage,
                          importance=FLAGS.importance)
  with open(written["summary"], encoding="utf-8") as f:
    print(f.read(), end="")
  print(f"\nreports in {report_dir(workdir)}: " + ", ".join(sorted(written)))
  if FLAGS.compare:
    print()
    print(compare_text(workdir, FLAGS.compare))


if __name__ == "__main__":
  from absl import app
  define_flags()
  app.run(main)
