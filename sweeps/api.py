"""The sweep engine from Python: build a config, validate it, run it, read its records.

What notebooks and benchmarks use instead of the command line. The same option table
(sweeps/config.py) and the same checks as the CLI apply, so a config that `make_config` accepts
is exactly one that `python -m sweeps.<entry>` accepts:

    from sweeps import api
    cfg = api.make_config(dataset="circle", workdir="/tmp/sweep", strategy="random", trials=8,
                          epochs=5, space={"model": "mlp", "widths": "[16]",
                                           "lr": "loguniform(1e-3, 0.3)"})
    records = api.run(cfg)          # one Record per member, best first is `api.best(records)`

Bad values raise `api.UsageError` with one line per problem, before any data or compute.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Mapping, Sequence

from sweeps import config as config_lib
from sweeps import vocab

UsageError = config_lib.UsageError
SweepConfig = config_lib.SweepConfig
OPTIONS = config_lib.OPTIONS


def _space_lines(space: Sequence[str] | Mapping[str, Any] | str) -> list[str]:
  """--space lines from a list of lines, one line, or {name: spec} (a spec given as a Python
  value is written as its literal)."""
  if isinstance(space, str):
    return [space]
  if isinstance(space, Mapping):
    return [f"{k}={v if isinstance(v, str) else repr(v)}" for k, v in space.items()]
  return list(space)


def make_config(**options: Any) -> SweepConfig:
  """A validated config from keyword arguments named like the flags (see `OPTIONS`).

  Args:
    **options: any option of the table; `space` may also be a dict {name: spec}; `cross` a
      list or a comma-separated string.

  Returns:
    The frozen config (validated: see `validate` for what is checked).

  Raises:
    UsageError: unknown option names (with the nearest) or bad values, one line each.
  """
  if "space" in options:
    options["space"] = _space_lines(options["space"])
  cfg = config_lib.make(**options)
  validate(cfg)
  return cfg


def config_from_argv(argv: Sequence[str], default_dataset: str = "mnist") -> SweepConfig:
  """A config from command-line style arguments (flagfiles included), exactly as the CLI reads
  them; not yet validated."""
  from sweeps import cli
  return cli.config_from_argv(argv, default_dataset)


def validate(cfg: SweepConfig):
  """Checks everything that can be checked before data or compute: option bounds, the data set
  name, the workdir, the study storage, the space and every config it can produce.

  Returns:
    (space, strategy) ready to run.

  Raises:
    UsageError: one line per problem.
  """
  from sweeps import cli
  return cli.validate(cfg)


def run(cfg: SweepConfig, *, out=None) -> list[Any]:
  """Runs (or resumes) the sweep and returns its records (`sweeps.records.Record`, one per
  member, by member id); a dry run prints the plan and returns [].

  Args:
    cfg: from `make_config` or `config_from_argv`.
    out: where the plan and the final table are printed (default stdout).
  """
  from sweeps import cli
  space, strategy = validate(cfg)
  runs = cli.run_sweep(cfg, space, strategy, out=out or sys.stdout)
  if cfg.dry_run:
    return []
  del runs
  return records(cfg.workdir)


def sweep(**options: Any) -> list[Any]:
  """`run(make_config(**options))` with the plan and table printed."""
  return run(make_config(**options))


def records(workdir: str) -> list[Any]:
  """The records of the sweep in `workdir`: one per member (its last), by member id."""
  from sweeps import records as records_lib
  return records_lib.read_records(workdir)


def best(records_: Sequence[Any], objective: str = vocab.DEFAULT_OBJECTIVE) -> Any:
  """The record with the best value of `objective` (val_acc maximized, val_loss minimized)."""
  sign = 1.0 if vocab.OBJECTIVES[objective] == vocab.MAXIMIZE else -1.0

  def score(r):
    values = [v for v in r.history.get(objective, []) if v is not None and v == v]
    return sign * (max(values) if sign > 0 else min(values)) if values else float("-inf")

  return max(records_, key=score)


def reports_dir(workdir: str) -> str:
  """Where the table, CSV, plots and study of a sweep are written."""
  return os.path.join(workdir, "report")
