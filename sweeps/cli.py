"""The flags every sweep entry point shares, and `main` that turns them into a sweep.

Entry points (`python -m sweeps.cifar`, `sweeps.mnist`, ...) only pick the default data set:

    python -m sweeps.cifar --flagfile=sweeps/flags/cifar_mlp_random.flags --workdir=/tmp/w

Flags are read in order (flagfile first, then the command line), so a command-line `--space`
line for a parameter replaces the flagfile's. Everything is validated before any compute; a bad
value exits with status 2 and one line per problem, and nothing is written to the workdir.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys
import time
from typing import Any, Sequence

from absl import app, flags

FLAGS = flags.FLAGS


def define_flags(default_dataset: str, flag_values: flags.FlagValues = FLAGS) -> None:
  """Defines the sweep flags on `flag_values` (the global FLAGS for the entry points)."""
  _define(flag_values, flags.DEFINE_string, "dataset", default_dataset, "Data set name (see jaxnn.data).")
  _define(flag_values, flags.DEFINE_string, "data_dir", None, "Folder with offline data (official archives, image "
                      "folders); default $JAXNN_DATA_DIR, then tensorflow-datasets.")
  _define(flag_values, flags.DEFINE_string, "workdir", None, "Where the sweep writes config, plan, records, reports.")
  _define(flag_values, flags.DEFINE_string, "strategy", "grid", "grid | random | bayes | hyperband | "
                      "successive_halving | pbt | ablation")
  _define(flag_values, flags.DEFINE_multi_string, "space", [], "NAME=SPEC [if CONDITION]; see sweeps/space.py.")
  _define(flag_values, flags.DEFINE_integer, "trials", 20, "Budget: configurations to try (random, bayes).")
  _define(flag_values, flags.DEFINE_integer, "epochs", 10, "Budget: epochs per member (max epochs for hyperband/pbt).")
  _define(flag_values, flags.DEFINE_integer, "seed", 0, "Seeds the strategy, the data split and every member.")
  _define(flag_values, flags.DEFINE_integer, "batch", 16, "Members asked at once (bayes) / population size (pbt).")
  _define(flag_values, flags.DEFINE_integer, "eta", 3, "Reduction factor of successive halving / Hyperband.")
  _define(flag_values, flags.DEFINE_integer, "min_epochs", 1, "Smallest budget of a Hyperband rung.")
  _define(flag_values, flags.DEFINE_integer, "pbt_interval", 2, "Epochs between PBT exploit steps.")
  _define(flag_values, flags.DEFINE_float, "pbt_fraction", 0.25, "Fraction of the PBT population replaced each time.")
  _define(flag_values, flags.DEFINE_string, "sampler", "tpe", "Bayesian sampler: tpe | gp | cmaes.")
  _define(flag_values, flags.DEFINE_integer, "seeds", 3, "Ablation: repeats of every variant.")
  _define(flag_values, flags.DEFINE_list, "cross", [], "Ablation: factors crossed into a grid (e.g. optimizer,activation).")
  _define(flag_values, flags.DEFINE_string, "objective", "val_acc", "val_acc (maximized) or val_loss (minimized).")
  _define(flag_values, flags.DEFINE_integer, "patience", 0, "Early stopping patience in epochs (0: off).")
  _define(flag_values, flags.DEFINE_float, "min_delta", 0.0, "Early stopping: smallest improvement that counts.")
  _define(flag_values, flags.DEFINE_string, "monitor", "val_loss", "Early stopping metric: val_loss or val_acc.")
  _define(flag_values, flags.DEFINE_float, "val_fraction", 0.2, "Validation share carved from train (stratified).")
  _define(flag_values, flags.DEFINE_integer, "train_subset", None, "Use only this many training examples.")
  _define(flag_values, flags.DEFINE_integer, "val_subset", None, "Use only this many validation examples.")
  _define(flag_values, flags.DEFINE_integer, "test_subset", None, "Use only this many test examples.")
  _define(flag_values, flags.DEFINE_integer, "test_top", 5, "Best members re-evaluated on the held-out test split.")
  _define(flag_values, flags.DEFINE_integer, "top", 10, "Rows of the final table.")
  _define(flag_values, flags.DEFINE_float, "memory_budget_mb", None, "Device memory to plan for (default: detected).")
  _define(flag_values, flags.DEFINE_bool, "dry_run", False, "Print the plan (buckets, members, memory, compiles) "
                    "and exit without training.")
  _define(flag_values, flags.DEFINE_integer, "checkpoint_every_epochs", 5,
          "Checkpoint after this many chunk-epochs (and at every phase boundary).")
  _define(flag_values, flags.DEFINE_float, "checkpoint_every_minutes", 10.0,
          "Checkpoint at least this often while training.")
  _define(flag_values, flags.DEFINE_integer, "keep_checkpoints", 3, "Checkpoints kept.")
  _define(flag_values, flags.DEFINE_float, "simulate_device_mb", None,
          "Testing aid: treat a chunk whose estimated memory exceeds this as an allocation "
          "failure (exercises the split-and-retry path on machines that never run out).")
  _define(flag_values, flags.DEFINE_enum, "conv_vectorize", "auto", ["auto", "vmap", "map"],
          "How members of a convolutional bucket run side by side: jax.vmap, lax.map, or auto "
          "(time both on a probe epoch of a few batches and keep the faster).")
  _define(flag_values, flags.DEFINE_string, "pack", "auto",
          "auto | off. auto: MLP members of different depths, widths and activations share one "
          "compiled program (padded and masked) where the backend's cost model says it pays; "
          "off: one program per distinct shape.")
  _define(flag_values, flags.DEFINE_string, "study_storage", None,
          "Where the Optuna study of the results goes: any SQLAlchemy URL (e.g. "
          "postgresql://... for many hosts); default sqlite:///WORKDIR/report/study.db.")
  _define(flag_values, flags.DEFINE_bool, "progress", True, "Show progress bars (--noprogress to silence).")



def _define(flag_values, define, *args):
  define(*args, flag_values=flag_values)


# Flags that change what the sweep computes (a resumed sweep must keep them); the others
# (progress, top, workdir, data_dir, dry_run) only change how it is shown or where files are.
SEARCH_FLAGS = ("dataset", "strategy", "space", "trials", "epochs", "seed", "batch", "eta",
                "min_epochs", "pbt_interval", "pbt_fraction", "sampler", "seeds", "cross",
                "objective", "patience", "min_delta", "monitor", "val_fraction", "train_subset",
                "val_subset", "test_subset", "test_top")


# Flags a resumed sweep may change: where files are, how progress shows, how often to save.
DISPLAY_FLAGS = ("workdir", "data_dir", "dry_run", "progress", "top", "memory_budget_mb",
                 "checkpoint_every_epochs", "checkpoint_every_minutes", "keep_checkpoints",
                 "simulate_device_mb", "study_storage", "conv_vectorize", "pack")


class UsageError(ValueError):
  """Bad flags: printed as one line each, exit status 2."""


@dataclasses.dataclass(frozen=True)
class SweepConfig:
  """The validated, frozen description of one sweep (what config.json holds)."""
  values: tuple[tuple[str, Any], ...]

  def __getattr__(self, name):
    for key, value in object.__getattribute__(self, "values"):
      if key == name:
        return value
    raise AttributeError(name)

  def to_json(self) -> dict[str, Any]:
    return dict(self.values)


def config_from_flags(flag_values: flags.FlagValues = FLAGS) -> SweepConfig:
  names = SEARCH_FLAGS + DISPLAY_FLAGS
  values = {name: flag_values[name].value for name in names}
  values["space"] = list(values["space"])
  values["cross"] = list(values["cross"])
  return SweepConfig(tuple(sorted(values.items())))


def config_from_argv(argv: Sequence[str], default_dataset: str = "mnist") -> SweepConfig:
  """Parses command-line style arguments (flagfiles included) without touching global flags:
  what notebooks and tests use to build a sweep exactly as the CLI would."""
  flag_values = flags.FlagValues()
  define_flags(default_dataset, flag_values)
  flag_values(["sweep"] + list(argv))
  return config_from_flags(flag_values)


def validate(cfg: SweepConfig):
  """Checks everything that can be checked before data or compute; returns (space, strategy).

  Raises:
    UsageError: with one line per problem found.
  """
  from jaxnn import data
  import jaxnn.data.registry  # noqa: F401  (data.registry.resolve checks names)
  from sweeps import space as space_lib
  from sweeps import strategies
  from sweeps.strategies import base

  problems = []

  def need(ok, message):
    if not ok:
      problems.append(message)

  need(cfg.strategy in strategies.STRATEGIES,
       f"--strategy: got {cfg.strategy!r}; allowed: {', '.join(sorted(strategies.STRATEGIES))}")
  need(cfg.objective in base.OBJECTIVES,
       f"--objective: got {cfg.objective!r}; allowed: {', '.join(base.OBJECTIVES)}")
  need(cfg.monitor in base.OBJECTIVES,
       f"--monitor: got {cfg.monitor!r}; allowed: {', '.join(base.OBJECTIVES)}")
  for name, low in (("trials", 1), ("epochs", 1), ("batch", 1), ("eta", 2), ("min_epochs", 1),
                    ("pbt_interval", 1), ("seeds", 1), ("seed", 0), ("patience", 0),
                    ("test_top", 0), ("top", 1)):
    value = getattr(cfg, name)
    need(value >= low, f"--{name}: got {value}; allowed: an integer >= {low}")
  for name in ("train_subset", "val_subset", "test_subset"):
    value = getattr(cfg, name)
    need(value is None or value >= 1, f"--{name}: got {value}; allowed: an integer >= 1")
  need(0.0 < cfg.val_fraction < 1.0,
       f"--val_fraction: got {cfg.val_fraction}; allowed: a number in (0, 1)")
  need(0.0 < cfg.pbt_fraction <= 0.5,
       f"--pbt_fraction: got {cfg.pbt_fraction}; allowed: a number in (0, 0.5]")
  need(cfg.min_delta >= 0, f"--min_delta: got {cfg.min_delta}; allowed: a number >= 0")
  need(cfg.memory_budget_mb is None or cfg.memory_budget_mb > 0,
       f"--memory_budget_mb: got {cfg.memory_budget_mb}; allowed: a number > 0")
  need(cfg.pack in ("auto", "off"), f"--pack: got {cfg.pack!r}; allowed: auto, off")
  need(cfg.workdir or cfg.dry_run, "--workdir: required (where the sweep writes its results)")
  try:
    data.registry.resolve(cfg.dataset, cfg.data_dir)
  except ValueError as e:
    problems.append(f"--dataset: {e}")
  if cfg.data_dir is not None:
    need(os.path.isdir(cfg.data_dir), f"--data_dir: {cfg.data_dir!r} is not a folder")
  if not cfg.space:
    problems.append("--space: the search space is empty; give at least one --space=NAME=SPEC")
  space = strategy = None
  try:
    space = space_lib.parse(cfg.space)
  except space_lib.SpaceError as e:
    problems.append(f"--space: {e}")
  if space is not None and not problems:
    try:
      strategy = strategies.make_strategy(cfg.strategy, space, settings(cfg))
      _check_member_configs(space, strategy, cfg)
    except ValueError as e:
      problems.append(f"--space: {e}" if not str(e).startswith("--") else str(e))
  if problems:
    raise UsageError("\n".join(problems))
  return space, strategy


def settings(cfg: SweepConfig):
  from sweeps.strategies import base
  fields = {f.name for f in dataclasses.fields(base.Settings)}
  values = {k: v for k, v in cfg.to_json().items() if k in fields}
  if "cross" in values:
    values["cross"] = tuple(values["cross"])
  return base.Settings(**values)


def _check_member_configs(space, strategy, cfg) -> None:
  """Every config the space can produce must be trainable: check a sample of them now."""
  import numpy as np
  from jaxnn import member
  from sweeps.space import RandomSuggest

  rng = np.random.default_rng(cfg.seed)
  for _ in range(16):
    config = space.sample(RandomSuggest(rng))
    config.setdefault("epochs", cfg.epochs)
    try:
      member.resolve(config, num_classes=10)
    except member.ConfigError as e:
      raise ValueError(str(e)) from None


# Shapes of the registered sets, so --dry_run can plan where the data are not (yet) present:
# (example shape, classes, official train size, official test size).
KNOWN_SHAPES = {
    "cifar10": ((32, 32, 3), 10, 50000, 10000), "cifar100": ((32, 32, 3), 100, 50000, 10000),
    "mnist": ((28, 28, 1), 10, 60000, 10000), "fashion_mnist": ((28, 28, 1), 10, 60000, 10000),
    "kmnist": ((28, 28, 1), 10, 60000, 10000), "kuzushiji49": ((28, 28, 1), 49, 232365, 38547),
}


def _placeholder(cfg):
  """Zero-filled splits with the real shapes and sizes (only for planning)."""
  import numpy as np
  from jaxnn import data
  shape, classes, n_train, n_test = KNOWN_SHAPES[cfg.dataset]
  n_val = int(round(n_train * cfg.val_fraction))
  sizes = (min(n_train - n_val, cfg.train_subset or n_train), min(n_val, cfg.val_subset or n_val),
           min(n_test, cfg.test_subset or n_test))

  def split(n):
    return data.Split(np.zeros((n,) + shape, np.uint8), np.zeros(n, np.int32))

  return data.Dataset(cfg.dataset, split(sizes[0]), split(sizes[1]), split(sizes[2]), classes,
                      tuple(map(str, range(classes))), np.zeros(shape[-1], np.float32),
                      np.ones(shape[-1], np.float32), source="placeholder (dry run)")


def _write_json(path: str, obj: Any) -> None:
  from sweeps.records import atomic_write_text
  atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=True, default=str) + "\n")


def previous_config(workdir: str | None) -> dict[str, Any] | None:
  path = os.path.join(workdir, "config.json") if workdir else None
  if not path or not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def check_resume(cfg: SweepConfig) -> bool:
  """True when the workdir holds this same sweep (resume it); raises UsageError listing what
  differs when it holds another one."""
  old = previous_config(cfg.workdir)
  if old is None or cfg.dry_run:
    return False
  new = cfg.to_json()
  changed = [f"--{k}: {old.get(k)!r} -> {new[k]!r}" for k in SEARCH_FLAGS if old.get(k) != new[k]]
  if changed:
    raise UsageError(f"--workdir: {cfg.workdir} holds a different sweep; resuming would change "
                     f"{'; '.join(changed)} (use another --workdir)")
  return True


def run_sweep(cfg: SweepConfig, space, strategy, *, out=sys.stdout) -> list[Any]:
  """Loads data, plans, trains, records and reports one sweep (resuming it when the workdir
  holds its checkpoints). Returns the member runs."""
  from jaxnn import data
  from sweeps import checkpoint as checkpoint_lib
  from sweeps import progress as progress_lib
  from sweeps import records as records_lib
  from sweeps import report as report_lib
  from sweeps.run import EarlyStopping, SweepLoop

  start = time.time()
  resuming = check_resume(cfg)
  if cfg.dry_run and cfg.dataset in KNOWN_SHAPES:
    dataset = _placeholder(cfg)   # planning needs shapes only: no decoding for a dry run
  else:
    dataset = data.load(cfg.dataset, cfg.data_dir, val_fraction=cfg.val_fraction, seed=cfg.seed,
                        train_subset=cfg.train_subset, val_subset=cfg.val_subset,
                        test_subset=cfg.test_subset)
  sizes = dataset.sizes()
  print(f"data: {cfg.dataset} train {sizes['train']} / val {sizes['val']} / test {sizes['test']}, "
        f"{dataset.num_classes} classes, input {tuple(dataset.train.x.shape[1:])}"
        + (" (shapes only, not loaded)" if dataset.source.startswith("placeholder") else ""),
        file=out)
  budget = int(cfg.memory_budget_mb * 2**20) if cfg.memory_budget_mb else None
  stopping = EarlyStopping(cfg.patience, cfg.min_delta, cfg.monitor)

  if cfg.dry_run:
    trials = strategy.ask()
    loop = SweepLoop(strategy, dataset, objective=cfg.objective, early_stopping=stopping,
                     memory_budget_bytes=budget, pack=cfg.pack)
    plan = loop.plan(trials)
    print(f"strategy {cfg.strategy}: first ask = {len(trials)} members", file=out)
    print(plan.summary(), file=out)
    return []

  workdir = cfg.workdir
  checkpointer = checkpoint_lib.SweepCheckpointer(
      workdir, every_epochs=cfg.checkpoint_every_epochs,
      every_minutes=cfg.checkpoint_every_minutes, keep=cfg.keep_checkpoints)
  bar = progress_lib.SweepProgress(enabled=cfg.progress, total_epochs=None)

  def on_record(records):
    records_lib.append_records(workdir, records)
    bar.finished(records)

  loop = SweepLoop(
      strategy, dataset, objective=cfg.objective, early_stopping=stopping,
      test_top=cfg.test_top, memory_budget_bytes=budget, on_record=on_record,
      on_epoch=bar.epoch, on_checkpoint=checkpointer,
      simulate_device_bytes=int(cfg.simulate_device_mb * 2**20) if cfg.simulate_device_mb else None,
      conv_vectorize=cfg.conv_vectorize, pack=cfg.pack)
  plans: list[Any] = []
  if resuming and checkpointer.restore(loop):
    plans = list(loop.restored_plans)
    done = sum(m.status != "running" for m in loop.members.values())
    print(f"resuming {workdir}: checkpoint {checkpointer.step}, phase {loop.phase}, "
          f"{done}/{len(loop.members)} members finished", file=out)
  def on_plan(plan):
    # Called once every config of the plan resolved and its chunks exist: only now is anything
    # written, so bad input leaves the workdir untouched.
    if not plans:
      os.makedirs(workdir, exist_ok=True)
      _write_json(os.path.join(workdir, "config.json"),
                  {**cfg.to_json(), "name": os.path.basename(os.path.abspath(workdir)),
                   "data_sizes": sizes})
      print(plan.summary(), file=out)
    plans.append(plan.to_json())
    _write_json(os.path.join(workdir, "plan.json"), plans)

  loop.on_plan = on_plan
  previous = {sig: signal.signal(sig, _request_stop(loop)) for sig in (signal.SIGTERM, signal.SIGINT)}
  try:
    runs = loop.run()
  finally:
    for sig, handler in previous.items():
      signal.signal(sig, handler)
    bar.close()
    checkpointer.close()
  report_lib.write_reports(workdir, top=cfg.top, storage=cfg.study_storage)
  records = records_lib.read_records(workdir)
  print(report_lib.summary_text(records, objective=cfg.objective, top=cfg.top), file=out)
  print(f"sweep: {len(runs)} members in {time.time() - start:.1f} s; results in {workdir}",
        file=out)
  if checkpointer.saves:
    print(f"checkpoints: {checkpointer.saves} saves, {checkpointer.seconds_saving:.2f} s "
          "in the training thread", file=out)
  return runs


def _request_stop(loop):
  def handler(signum, frame):
    del frame
    loop.stop_requested = signal.Signals(signum).name
  return handler


def main(argv: Sequence[str]) -> None:
  from absl import logging
  logging.set_verbosity(logging.WARNING)   # keep jax's backend probing out of the output
  if len(argv) > 1:
    print(f"error: unexpected arguments {' '.join(argv[1:])!r}", file=sys.stderr)
    sys.exit(2)
  from launch import multihost
  multihost.initialize_from_env()   # a no-op unless JAX_COORDINATOR_ADDRESS etc. are set
  cfg = config_from_flags()
  try:
    space, strategy = validate(cfg)
  except UsageError as e:
    print(str(e), file=sys.stderr)
    sys.exit(2)
  from jaxnn.data import DataNotFoundError
  from jaxnn.member import ConfigError
  from sweeps.run import Interrupted
  try:
    run_sweep(cfg, space, strategy)
  except UsageError as e:
    print(str(e), file=sys.stderr)
    sys.exit(2)
  except (DataNotFoundError, ConfigError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  except Interrupted as e:
    print(f"stopped by {e}: checkpoint saved in {cfg.workdir}; run the same command again to "
          "resume", file=sys.stderr)
    sys.exit(130 if str(e) == "SIGINT" else 143)


def entry_point(default_dataset: str) -> None:
  """What `python -m sweeps.<name>` runs."""
  define_flags(default_dataset)
  app.run(main)
