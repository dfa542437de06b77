"""Every sweep option, declared once: default, help, allowed values, and whether it is a search
setting.

The table below drives everything a person sees of an option: the absl flags of the entry
points (`sweeps.cli.define_flags`), the keyword arguments of `sweeps.api.make_config`, the
checks made before any compute (one line per problem), `--help`, and the comparison made when a
sweep is resumed (a *search* option changes what the sweep computes, so a resumed sweep must
keep it; the others only change where files go or how progress shows).

Adding an option is one entry in `OPTIONS`, for example

    Option("dtype", str, "float32", "Compute dtype of every member.", search=True,
           choices=("float32", "bfloat16")),

and reading it is `cfg.dtype`. Give `low`/`high` (with `bounds="[]"`, `"(]"`, ...) for numbers,
`choices` for a closed set (a tuple, or a function returning names from a registry so the list
never goes stale), `multi=True` for a repeatable flag, `list_=True` for a comma list.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Mapping, Sequence

from sweeps import vocab


class UsageError(ValueError):
  """Bad options: printed as one line each, exit status 2."""


@dataclasses.dataclass(frozen=True)
class Option:
  """One option of a sweep.

  Attributes:
    name: the flag name (`--name`) and the config attribute.
    type: str, int, float or bool (for multi/list options: the type of an item).
    default: the value when not given (None: unset).
    help: one line for `--help`.
    search: True when it changes what the sweep computes (refused when changed on resume).
    low, high, bounds: numeric range; bounds is two characters, "[" or "(" then "]" or ")".
    choices: allowed values, or a function returning them (read from a registry when called).
    multi: a repeatable flag (a list of strings, e.g. --space).
    list_: a comma-separated list flag (e.g. --cross).
    group: a heading in `--help`.
  """
  name: str
  type: type
  default: Any
  help: str
  search: bool = False
  low: float | None = None
  high: float | None = None
  bounds: str = "[]"
  choices: tuple[str, ...] | Callable[[], Sequence[str]] | None = None
  multi: bool = False
  list_: bool = False
  group: str = "sweep"

  def allowed(self) -> tuple[str, ...] | None:
    if self.choices is None:
      return None
    return tuple(self.choices() if callable(self.choices) else self.choices)

  def describe(self) -> str:
    """What is allowed, in words ("an integer >= 1", "a number in (0, 1)", "one of: a, b")."""
    allowed = self.allowed()
    if allowed is not None:
      return ", ".join(allowed)
    noun = "an integer" if self.type is int else "a number"
    if self.low is not None and self.high is not None:
      return f"{noun} in {self.bounds[0]}{_num(self.low)}, {_num(self.high)}{self.bounds[1]}"
    if self.low is not None:
      return f"{noun} {'>=' if self.bounds[0] == '[' else '>'} {_num(self.low)}"
    if self.high is not None:
      return f"{noun} {'<=' if self.bounds[1] == ']' else '<'} {_num(self.high)}"
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}[self.type]

  def problem(self, value: Any) -> str | None:
    """None when `value` is allowed, else the one line that says why not."""
    if value is None:
      return None   # unset: options that need a value say so in check_config
    if self.multi or self.list_:
      if isinstance(value, str) or not isinstance(value, (list, tuple)):
        return f"--{self.name}: got {value!r}; allowed: a list of strings"
      return None
    if self.type is bool:
      ok = isinstance(value, bool)
    elif self.type is int:
      ok = isinstance(value, int) and not isinstance(value, bool)
    elif self.type is float:
      ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    else:
      ok = isinstance(value, str)
    if ok and self.allowed() is not None:
      ok = value in self.allowed()
    if ok and self.low is not None:
      ok = value >= self.low if self.bounds[0] == "[" else value > self.low
    if ok and self.high is not None:
      ok = value <= self.high if self.bounds[1] == "]" else value < self.high
    return None if ok else f"--{self.name}: got {value!r}; allowed: {self.describe()}"


def _num(x: float) -> str:
  return str(int(x)) if float(x).is_integer() else str(x)


def _strategies() -> list[str]:
  from sweeps import strategies
  return sorted(strategies.STRATEGIES)


def _objectives() -> list[str]:
  from sweeps.strategies import base
  return list(base.OBJECTIVES)


def _samplers() -> list[str]:
  from sweeps.strategies import bayes
  return list(getattr(bayes, "SAMPLERS", ("tpe", "gp", "cmaes")))


# The table. Flag names and defaults are the public interface: keep them exactly.
OPTIONS: tuple[Option, ...] = (
    Option("dataset", str, None, "Data set name (see the list below).", search=True,
           group="data"),
    Option("data_dir", str, None, "Folder with offline data (official archives, image folders); "
           "default $JAXNN_DATA_DIR, then tensorflow-datasets.", group="data"),
    Option("workdir", str, None, "Where the sweep writes config, plan, records, reports.",
           group="output"),
    Option("strategy", str, "grid", "How configurations are chosen.", search=True,
           choices=_strategies),
    Option("space", str, [], "NAME=SPEC [if CONDITION], repeatable (syntax below).",
           search=True, multi=True),
    Option("trials", int, 20, "Budget: configurations to try (random, bayes).", search=True,
           low=1),
    Option("epochs", int, 10, "Budget: epochs per member (max epochs for hyperband/pbt).",
           search=True, low=1),
    Option("seed", int, 0, "Seeds the strategy, the data split and every member.", search=True,
           low=0),
    Option("batch", int, 16, "Members asked at once (bayes) / population size (pbt).",
           search=True, low=1),
    Option("eta", int, 3, "Reduction factor of successive halving / Hyperband.", search=True,
           low=2),
    Option("min_epochs", int, 1, "Smallest budget of a Hyperband rung.", search=True, low=1),
    Option("pbt_interval", int, 2, "Epochs between PBT exploit steps.", search=True, low=1),
    Option("pbt_fraction", float, 0.25, "Fraction of the PBT population replaced each time.",
           search=True, low=0.0, high=0.5, bounds="(]"),
    Option("sampler", str, "tpe", "Bayesian sampler.", search=True, choices=_samplers),
    Option("seeds", int, 3, "Ablation: repeats of every variant.", search=True, low=1),
    Option("cross", str, [], "Ablation: factors crossed into a grid (e.g. optimizer,activation).",
           search=True, list_=True),
    Option("objective", str, vocab.DEFAULT_OBJECTIVE, "val_acc (maximized) or val_loss (minimized).",
           search=True, choices=_objectives),
    Option("patience", int, 0, "Early stopping patience in epochs (0: off).", search=True,
           low=0),
    Option("min_delta", float, 0.0, "Early stopping: smallest improvement that counts.",
           search=True, low=0.0),
    Option("monitor", str, vocab.DEFAULT_MONITOR, "Early stopping metric.", search=True,
           choices=_objectives),
    Option("val_fraction", float, 0.2, "Validation share carved from train (stratified).",
           search=True, low=0.0, high=1.0, bounds="()", group="data"),
    Option("train_subset", int, None, "Use only this many training examples.", search=True,
           low=1, group="data"),
    Option("val_subset", int, None, "Use only this many validation examples.", search=True,
           low=1, group="data"),
    Option("test_subset", int, None, "Use only this many test examples.", search=True, low=1,
           group="data"),
    Option("test_top", int, 5, "Best members re-evaluated on the held-out test split.",
           search=True, low=0),
    Option("member_id_offset", int, 0, "Grid: id of the first member. Randomness is "
           "fold_in(key(seed), member_id), so WORKDIR/best.flags sets it to train a sweep's best "
           "member alone with its own draws.", search=True, low=0),
    Option("top", int, 10, "Rows of the final table.", low=1, group="output"),
    # At least 1 MiB: below that a budget is a typo (0.01 for 10 GB?), not a device.
    Option("memory_budget_mb", float, None, "Device memory to plan for in MiB (default: "
           "detected).", low=1.0, group="device"),
    Option("dry_run", bool, False, "Print the plan (buckets, members, memory, compiles) and "
           "exit without training.", group="output"),
    Option("estimate", bool, False, "With --dry_run: train a short probe of the first bucket "
           "and estimate the sweep's time.", group="output"),
    Option("checkpoint_every_epochs", int, None,
           "Also checkpoint after this many chunk-epochs (default: by time only).", low=1,
           group="checkpoints"),
    Option("checkpoint_every_minutes", float, None, "Checkpoint this often while training "
           "(default: every 10 minutes and at phase boundaries, keeping saves under about 2% "
           "of wall time).", low=0.0, bounds="(]", group="checkpoints"),
    Option("keep_checkpoints", int, 3, "Checkpoints kept.", low=1, group="checkpoints"),
    Option("simulate_device_mb", float, None, "Testing aid: treat a chunk whose estimated "
           "memory exceeds this as an allocation failure (exercises the split-and-retry path "
           "on machines that never run out).", low=0.0, bounds="(]", group="device"),
    Option("conv_vectorize", str, "auto", "How members of a convolutional bucket run side by "
           "side: jax.vmap, lax.map, or auto (time both on a probe epoch of a few batches and "
           "keep the faster).", choices=("auto", "vmap", "map"), group="device"),
    Option("dtype", str, "float32", "Compute dtype: float32, or bfloat16 (bf16 activations and "
           "matmuls, float32 parameters and optimizer state; accelerators with bf16 units only, "
           "refused where it is slower).", search=True, choices=("float32", "bfloat16"),
           group="device"),
    Option("pack", str, "auto", "auto | off. auto: MLP members of different depths, widths, "
           "activations and schedule kinds share one compiled program (padded and masked) where "
           "the backend's cost model says it pays; off: one program per distinct shape.",
           choices=("auto", "off"), group="device"),
    Option("compile_ahead", bool, True, "Compile the next bucket's programs on a background "
           "thread while one trains (one process on one device; --nocompile_ahead compiles "
           "each just before it trains).", group="device"),
    Option("study_storage", str, None, "Where the Optuna study of the results goes: any "
           "SQLAlchemy URL (e.g. postgresql://... for many hosts); default "
           "sqlite:///WORKDIR/report/study.db.", group="output"),
    Option("study_name", str, None, "Many workers, one study (bayes, random): processes "
           "started with the same --study_storage and --study_name share the sweep through that "
           "storage, each with its own --workdir; together they train --trials members.",
           search=True, group="output"),
    Option("progress", bool, True, "Show progress bars (--noprogress to silence).",
           group="output"),
    Option("verbose", bool, False, "Show the full traceback of a runtime failure.",
           group="output"),
)

BY_NAME: Mapping[str, Option] = {o.name: o for o in OPTIONS}
SEARCH_OPTIONS: tuple[str, ...] = tuple(o.name for o in OPTIONS if o.search)
DISPLAY_OPTIONS: tuple[str, ...] = tuple(o.name for o in OPTIONS if not o.search)


@dataclasses.dataclass(frozen=True)
class SweepConfig:
  """The frozen description of one sweep (what config.json holds): one value per option."""
  values: tuple[tuple[str, Any], ...]

  def __getattr__(self, name):
    for key, value in object.__getattribute__(self, "values"):
      if key == name:
        return value
    raise AttributeError(name)

  def to_json(self) -> dict[str, Any]:
    return dict(self.values)

  def replace(self, **changes: Any) -> "SweepConfig":
    return make(**{**self.to_json(), **changes})


def defaults(default_dataset: str | None = None) -> dict[str, Any]:
  values = {o.name: (list(o.default) if isinstance(o.default, list) else o.default)
            for o in OPTIONS}
  if default_dataset is not None:
    values["dataset"] = default_dataset
  return values


def make(**values: Any) -> SweepConfig:
  """A config from option values (the defaults fill the rest); unknown names are refused with
  the nearest known one. Values are not range-checked here: see `check`."""
  import difflib
  unknown = [k for k in values if k not in BY_NAME]
  if unknown:
    lines = []
    for k in unknown:
      near = difflib.get_close_matches(k, list(BY_NAME), n=1)
      lines.append(f"--{k}: unknown option" + (f"; did you mean --{near[0]}?" if near else ""))
    raise UsageError("\n".join(lines))
  merged = {**defaults(), **values}
  for name in ("space", "cross"):
    if isinstance(merged[name], str):
      merged[name] = [merged[name]] if name == "space" else [
          part.strip() for part in merged[name].split(",") if part.strip()]
    merged[name] = list(merged[name] or [])
  return SweepConfig(tuple(sorted(merged.items())))


def option_problems(cfg: SweepConfig) -> list[str]:
  """One line per option whose value is outside what the table allows."""
  values = cfg.to_json()
  return [p for p in (o.problem(values.get(o.name)) for o in OPTIONS) if p]


def changed_search_options(old: Mapping[str, Any], cfg: SweepConfig) -> list[str]:
  """The names of the search options whose value differs from a saved config.json. An option
  missing from an older config.json counts as its default (adding an option to the table does
  not orphan old sweeps)."""
  new = cfg.to_json()
  return [name for name in SEARCH_OPTIONS if old.get(name, BY_NAME[name].default) != new[name]]
