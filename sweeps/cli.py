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

from sweeps import config as config_lib
from sweeps import vocab

FLAGS = flags.FLAGS


def define_flags(default_dataset: str, flag_values: flags.FlagValues = FLAGS) -> None:
  """Defines one absl flag per option of the table in sweeps/config.py on `flag_values` (the
  global FLAGS for the entry points); `default_dataset` is the entry point's --dataset."""
  for option in config_lib.OPTIONS:
    default = default_dataset if option.name == "dataset" else option.default
    if option.multi:
      define = flags.DEFINE_multi_string
    elif option.list_:
      define = flags.DEFINE_list
    elif option.type is bool:
      define = flags.DEFINE_bool
    elif option.type is int:
      define = flags.DEFINE_integer
    elif option.type is float:
      define = flags.DEFINE_float
    elif isinstance(option.choices, tuple):
      flags.DEFINE_enum(option.name, default, list(option.choices), option.help,
                        flag_values=flag_values)
      continue
    else:
      define = flags.DEFINE_string
    define(option.name, default, option.help, flag_values=flag_values)


# Kept for code that imported them from here; the table in sweeps/config.py is the source.
SEARCH_FLAGS = config_lib.SEARCH_OPTIONS
DISPLAY_FLAGS = config_lib.DISPLAY_OPTIONS
UsageError = config_lib.UsageError
SweepConfig = config_lib.SweepConfig


def config_from_flags(flag_values: flags.FlagValues = FLAGS) -> SweepConfig:
  return config_lib.make(**{o.name: flag_values[o.name].value for o in config_lib.OPTIONS})


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
  from jaxnn import data, member
  import jaxnn.data.registry  # noqa: F401  (data.registry.resolve checks names)
  from sweeps import space as space_lib
  from sweeps import strategies

  problems = []

  def need(ok, message):
    if not ok:
      problems.append(message)

  problems.extend(config_lib.option_problems(cfg))   # types, bounds, allowed values
  problems.extend(dtype_problems(cfg.dtype))
  need(cfg.workdir or cfg.dry_run, "--workdir: required (where the sweep writes its results)")
  if cfg.workdir and not cfg.dry_run:
    problems.extend(_workdir_problems(cfg.workdir))
  if cfg.study_storage and not cfg.dry_run:
    problems.extend(_storage_problems(cfg.study_storage))
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
    space_lib.check_fields(space, member.known_fields())
  except space_lib.SpaceError as e:
    problems.append(f"--space: {e}")
  if space is not None and not problems and cfg.strategy in strategies.STRATEGIES:
    try:
      strategy = strategies.make_strategy(cfg.strategy, space, settings(cfg))
      _check_member_configs(space, strategy, cfg)
    except ValueError as e:
      problems.append(f"--space: {e}" if not str(e).startswith("--") else str(e))
  if problems:
    raise UsageError("\n".join(problems))
  return space, strategy


def dtype_problems(dtype: str, backend: str | None = None,
                   compute_capability: str | None = None) -> list[str]:
  """Why --dtype=bfloat16 cannot be used here (empty if it can): it is refused where it is
  slower than float32: the CPU backend (measured on the 2-core CPU: bf16 matmuls 100-160
  GFLOP/s vs 150-195 for float32) and GPUs without bf16 tensor cores (compute capability < 8.0).
  Unknown values are option_problems' to report."""
  if dtype != "bfloat16":
    return []
  import jax
  backend = backend or jax.default_backend()
  if backend == "cpu":
    return ["--dtype: bfloat16 is slower than float32 on the CPU backend; use it on a GPU or TPU"]
  if compute_capability is None and backend in ("gpu", "cuda"):
    compute_capability = getattr(jax.devices()[0], "compute_capability", None)
  if compute_capability is not None and float(compute_capability) < 8.0:
    return [f"--dtype: bfloat16 needs a GPU with bf16 units (compute capability >= 8.0); this "
            f"one has {compute_capability}"]
  return []


def _workdir_problems(workdir: str) -> list[str]:
  """Checked before any data is loaded: the workdir (or the folder that will hold it) must be a
  writable folder."""
  path = os.path.abspath(workdir)
  if os.path.exists(path) and not os.path.isdir(path):
    return [f"--workdir: {workdir} is a file, not a folder"]
  parent = path
  while not os.path.exists(parent):
    parent = os.path.dirname(parent)
  if not os.path.isdir(parent):
    return [f"--workdir: {parent} is a file, not a folder"]
  if not os.access(parent, os.W_OK | os.X_OK):
    return [f"--workdir: {parent} is not writable"]
  return []


def _storage_problems(url: str) -> list[str]:
  """Opens the study storage once before training, so a bad URL is found in a second, not after
  the sweep (a sqlite file is created where the study will be written anyway)."""
  import sqlalchemy
  from sweeps.strategies import shared
  try:
    # The installed PostgreSQL driver, a bounded connect (see sweeps/strategies/shared.py).
    url_with_driver = shared.with_driver(url)
    engine = sqlalchemy.create_engine(url_with_driver, **shared.engine_kwargs(url_with_driver))
    with engine.connect():
      pass
    engine.dispose()
  except Exception as e:  # noqa: BLE001  (any driver error means the same to a user)
    reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return [f"--study_storage: cannot open {shared.redact(url)}: {reason}"]
  return []


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
      # Any size will do: it only sets defaults (per-step schedule lengths), never validity.
      member.resolve(config, num_classes=10, num_train=2**20)
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


# What a resume may grow, if the strategy says it can (Strategy.extends).
EXTENDABLE = ("trials", "epochs")


def check_resume(cfg: SweepConfig) -> bool:
  """True when the workdir holds this same sweep (resume it), or the same sweep with a larger
  --trials or --epochs that its strategy can extend; raises UsageError with one line saying
  what differs otherwise (for --space: the one line that differs)."""
  old = previous_config(cfg.workdir)
  if old is None or cfg.dry_run:
    return False
  new = cfg.to_json()
  changed = [k for k in config_lib.changed_search_options(old, cfg)
             if not (k == "space" and list(_effective_space(old.get(k) or []).items())
                     == list(_effective_space(new[k]).items()))]
  if not changed:
    return True
  if all(k in EXTENDABLE for k in changed):
    from sweeps import strategies
    strategy = strategies.STRATEGIES.get(cfg.strategy)
    for k in changed:
      if new[k] < old[k]:
        raise UsageError(f"--{k}: {old[k]} -> {new[k]}: {cfg.workdir} holds a sweep that can be "
                         "extended, not shrunk (use another --workdir)")
      if k not in strategy.extends:
        raise UsageError(f"--{k}: {old[k]} -> {new[k]}: {cfg.strategy} cannot extend it: "
                         f"{strategy.cannot_extend}")
    return True
  lines = [_space_change(old.get("space") or [], new["space"]) if k == "space"
           else f"--{k}: {old.get(k)!r} -> {new[k]!r}" for k in changed]
  raise UsageError(f"--workdir: {cfg.workdir} holds a different sweep; resuming would change "
                   f"{'; '.join(lines)} (use another --workdir)")


def _effective_space(lines: Sequence[str]) -> dict[tuple[str, str], str]:
  """The --space lines in effect by (name, condition): a later unconditional line for a name
  replaces the earlier ones (a command line over a flagfile), as sweeps.space.parse reads them."""
  kept: dict[tuple[str, str], str] = {}
  for line in lines:
    name, _, rest = line.partition("=")
    name, condition = name.strip(), rest.partition(" if ")[2].strip()
    if not condition:
      kept = {k: v for k, v in kept.items() if k[0] != name}
    kept[(name, condition)] = line.strip()
  return kept


def _space_change(old: Sequence[str], new: Sequence[str]) -> str:
  """The first --space line in effect that differs, as 'old' -> 'new' (or added / removed)."""
  old, new = _effective_space(old), _effective_space(new)
  diffs = []
  for key in [*old, *(k for k in new if k not in old)]:
    if key not in new:
      diffs.append(f"--space: {old[key]!r} removed")
    elif key not in old:
      diffs.append(f"--space: {new[key]!r} added")
    elif old[key] != new[key]:
      diffs.append(f"--space: {old[key]!r} -> {new[key]!r}")
  if not diffs:   # same lines, another order (conditions resolve in order)
    return "--space: the same lines in another order"
  more = len(diffs) - 1
  return diffs[0] + (f" (and {more} more line{'s' * (more > 1)})" if more else "")


def run_sweep(cfg: SweepConfig, space, strategy, *, out=sys.stdout) -> list[Any]:
  """Loads data, plans, trains, records and reports one sweep (resuming it when the workdir
  holds its checkpoints). Returns the member runs."""
  import jaxnn
  from jaxnn import data
  from sweeps import best as best_lib
  from sweeps import checkpoint as checkpoint_lib
  from sweeps import progress as progress_lib
  from sweeps import records as records_lib
  from sweeps import report as report_lib
  from sweeps import runs as runs_lib
  from sweeps.run import EarlyStopping, SweepLoop
  from launch import multihost

  jaxnn.configure()   # notebooks reach the engine here (through sweeps.api), not through main
  start = time.time()
  # Several processes (jax.distributed): every one runs the same loop on the same values, but
  # only process 0 writes the workdir and prints; checkpoints are written by all (Orbax).
  primary = multihost.is_primary()
  if not primary:
    out = open(os.devnull, "w")
  resuming = check_resume(cfg)
  # Every process has looked at the workdir before process 0 may write into it.
  multihost.barrier("sweep_start")
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
    if cfg.estimate:
      from sweeps import estimate as estimate_lib
      total, exact = estimate_lib.expected_member_epochs(cfg.strategy, cfg, trials)
      print(estimate_lib.estimate(plan, dataset, total, exact)[1], file=out)
    return []

  workdir = cfg.workdir
  checkpointer = checkpoint_lib.SweepCheckpointer(
      workdir, every_epochs=cfg.checkpoint_every_epochs,
      every_minutes=cfg.checkpoint_every_minutes, keep=cfg.keep_checkpoints)
  bar = progress_lib.SweepProgress(
      enabled=cfg.progress and primary, epochs=cfg.epochs,
      expected_members={"bayes": cfg.trials, "pbt": cfg.batch}.get(cfg.strategy))

  def on_record(records):
    if primary:
      records_lib.append_records(workdir, records)
    bar.finished(records)

  loop = SweepLoop(
      strategy, dataset, objective=cfg.objective, early_stopping=stopping,
      test_top=cfg.test_top, memory_budget_bytes=budget, on_record=on_record,
      on_epoch=bar.epoch, on_checkpoint=checkpointer,
      simulate_device_bytes=int(cfg.simulate_device_mb * 2**20) if cfg.simulate_device_mb else None,
      conv_vectorize=cfg.conv_vectorize, dtype=cfg.dtype, pack=cfg.pack,
      compile_ahead=cfg.compile_ahead)
  plans: list[Any] = []
  loop.on_announce = lambda line: print(line, file=out)
  restored = resuming and checkpointer.restore(loop)
  if restored:
    plans = list(loop.restored_plans)
    done = sum(m.status != vocab.RUNNING for m in loop.members.values())
    print(f"resuming {workdir}: checkpoint {checkpointer.step}, phase {loop.phase}, "
          f"{done}/{len(loop.members)} members finished", file=out)
    if primary:
      runs_lib.mark_running(workdir)
    old = previous_config(workdir) or {}
    if any(old.get(k) != getattr(cfg, k) for k in EXTENDABLE):
      continued = loop.extend(old["epochs"], cfg.epochs)
      # Saved before config.json records the new budget: a kill in between resumes and extends
      # again from the finished checkpoint.
      checkpointer.save(loop)
      checkpointer.manager.wait_until_finished()
      if primary:
        _write_json(os.path.join(workdir, "config.json"),
                    {**old, **{k: getattr(cfg, k) for k in EXTENDABLE}})
      print(f"extending {workdir}: " + ", ".join(
          f"--{k} {old.get(k)} -> {getattr(cfg, k)}" for k in EXTENDABLE
          if old.get(k) != getattr(cfg, k))
          + f"; {len(continued)} finished members continue from their final state", file=out)
  def on_plan(plan):
    # Called once every config of the plan resolved and its chunks exist: only now is anything
    # written, so bad input leaves the workdir untouched.
    if not primary:
      plans.append(None)
      return
    if not plans:
      os.makedirs(workdir, exist_ok=True)
      _write_json(os.path.join(workdir, "config.json"),
                  {**cfg.to_json(), "name": os.path.basename(os.path.abspath(workdir)),
                   "data_sizes": sizes})
      runs_lib.mark_running(workdir)   # `python -m sweeps.runs` tells running from interrupted
      print(plan.summary(), file=out)
    plans.append(plan.to_json())
    _write_json(os.path.join(workdir, "plan.json"), plans)

  loop.on_plan = on_plan
  previous = {sig: signal.signal(sig, _request_stop(loop)) for sig in (signal.SIGTERM, signal.SIGINT)}
  best = None
  try:
    runs = loop.run()
    if loop.phase == vocab.DONE:   # finished: one line per member, the winner out, one checkpoint
      if primary:
        records_lib.compact_records(workdir)
        best = best_lib.write(workdir, previous_config(workdir) or cfg.to_json(), loop)
      checkpointer.prune()   # every process: Orbax coordinates the deletion
  finally:
    for sig, handler in previous.items():
      signal.signal(sig, handler)
    bar.close()
    checkpointer.close()
    if primary:
      runs_lib.clear_running(workdir)
  counted = loop.summary()   # before reports: the loop's own accounting
  if not primary:
    return runs
  report_lib.write_reports(workdir, top=cfg.top,
                           storage=None if cfg.study_name else cfg.study_storage)
  records = records_lib.read_records(workdir)
  print(report_lib.summary_text(records, objective=cfg.objective, top=cfg.top), file=out)
  counted.update(total_seconds=round(time.time() - start, 3), checkpoint_saves=checkpointer.saves,
                 resumed=bool(restored))
  _write_json(os.path.join(workdir, "summary.json"), counted)
  if best is not None:
    print(f"best: member {best['member_id']} ({cfg.objective} {best['value']:.4f} after "
          f"{best['epochs_to_best']} epochs); train it alone: {best['command']}", file=out)
  if checkpointer.saves:
    print(f"checkpoints: {checkpointer.saves} saves, {checkpointer.seconds_saving:.2f} s "
          "in the training thread", file=out)
  from sweeps import estimate as estimate_lib
  time_line = estimate_lib.time_line(counted, total_seconds=counted["total_seconds"],
                                     checkpoint_seconds=checkpointer.seconds_saving)
  print(f"sweep: {len(runs)} members; {time_line}; {counted['programs_compiled']} programs "
        f"compiled ({counted['programs_announced']} announced); results in {workdir}", file=out)
  return runs


def _request_stop(loop):
  def handler(signum, frame):
    del frame
    loop.stop_requested = signal.Signals(signum).name
  return handler


def main(argv: Sequence[str]) -> None:
  from absl import logging
  import jaxnn
  jaxnn.configure()   # process-wide JAX settings belong to the entry point, not to an import
  logging.set_verbosity(logging.WARNING)   # keep jax's backend probing out of the output
  if len(argv) > 1:
    print(f"error: unexpected arguments {' '.join(argv[1:])!r}", file=sys.stderr)
    sys.exit(2)
  from launch import multihost
  try:
    multihost.initialize_from_env()   # a no-op unless JAX_COORDINATOR_ADDRESS etc. are set
  except (ValueError, multihost.JoinError) as e:
    print(str(e), file=sys.stderr)
    sys.exit(2)
  cfg = config_from_flags()
  try:
    space, strategy = validate(cfg)
  except UsageError as e:
    print(str(e), file=sys.stderr)
    sys.exit(2)
  from jaxnn.data import DataFormatError, DataNotFoundError
  from jaxnn.member import ConfigError
  from sweeps.run import Interrupted
  try:
    run_sweep(cfg, space, strategy)
    multihost.finished()
  except UsageError as e:
    print(str(e), file=sys.stderr)
    sys.exit(2)
  except (DataNotFoundError, DataFormatError, ConfigError) as e:
    if cfg.verbose:
      raise
    print(f"error: {_one_line(e)}", file=sys.stderr)
    sys.exit(2)
  except Interrupted as e:
    print(f"stopped by {e}: checkpoint saved in {cfg.workdir}; run the same command again to "
          "resume", file=sys.stderr)
    sys.exit(130 if str(e) == "SIGINT" else 143)
  except Exception as e:  # noqa: BLE001  (a runtime failure: one line unless --verbose)
    multihost.settle()   # a peer's death may surface here first: let the watchdog say so
    if cfg.verbose:
      raise
    print(f"error: {type(e).__name__}: {_one_line(e)} (--verbose for the traceback)",
          file=sys.stderr)
    sys.exit(2)


def _one_line(error: BaseException) -> str:
  text = " ".join(str(error).split())
  return text if len(text) <= 300 else text[:297] + "..."


def _parse_flags(argv: Sequence[str]) -> list[str]:
  """absl's parse, but a bad or unknown flag is one line and exit status 2 (absl: 1)."""
  try:
    return FLAGS(argv)
  except flags.Error as e:
    print(f"error: {_one_line(e)}", file=sys.stderr)
    sys.exit(2)


def entry_point(default_dataset: str) -> None:
  """What `python -m sweeps.<name>` runs."""
  define_flags(default_dataset)
  args = sys.argv[1:]
  if any(a in ("-h", "-?", "--help", "--helpshort", "--helpfull") for a in args):
    from sweeps import usage
    doc = getattr(sys.modules.get("__main__"), "__doc__", None)
    print(usage.help_text(doc, default_dataset))
    if "--helpfull" in args:
      ours = {o.name for o in config_lib.OPTIONS}
      print("\nlibrary flags:")
      for module, module_flags in sorted(FLAGS.flags_by_module_dict().items()):
        others = [f for f in module_flags if f.name not in ours]
        if others:
          print(f"  {module}:")
          for f in others:
            print(f"    --{f.name}: {' '.join(f.help.split())[:120]}")
    sys.exit(0)
  app.run(main, flags_parser=_parse_flags)
