"""How hyperparameter values are classified and shown, shared by every report.

Records keep hyperparameters as the engine wrote them: floats, ints, bools, strings, lists
(layer widths) and None (a parameter a member does not use). Tables, the Optuna study, TensorBoard
and plots all need the same answers: is this axis numeric or categorical, is it log-scaled, which
parameters actually vary. Answering once here keeps the four views consistent.
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
from typing import Any, Sequence

from sweeps.records import Record

# A numeric axis is log-scaled when its positive values span at least this ratio *and* were
# sampled evenly in log space (see `looks_logarithmic`).
LOG_RATIO = 10.0


def is_number(value: Any) -> bool:
  """True for ints and floats but not bools (a bool is a category)."""
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def categorical_value(value: Any) -> Any:
  """A value usable as a category: lists/tuples/dicts become compact JSON strings."""
  if isinstance(value, (list, tuple, dict)):
    return json.dumps(value, separators=(",", ":"))
  return value


def format_value(value: Any, width: int = 0) -> str:
  """A short human-readable rendering: 4 significant digits, lists compact, None as '-'.

  Args:
    value: any hyperparameter or metric value.
    width: if positive, truncate to this many characters (with '…').
  """
  if value is None:
    text = "-"
  elif isinstance(value, bool):
    text = str(value)
  elif isinstance(value, float):
    text = "nan" if math.isnan(value) else f"{value:.4g}"
  elif isinstance(value, int):
    text = str(value)
  elif isinstance(value, (list, tuple, dict)):
    text = categorical_value(value)
  else:
    text = str(value)
  if width > 0 and len(text) > width:
    text = text[:max(1, width - 1)] + "…"
  return text


@dataclasses.dataclass(frozen=True)
class ParamAxis:
  """How one hyperparameter is laid out across a set of members.

  Attributes:
    name: the hyperparameter.
    kind: "float", "int" or "categorical".
    low, high: numeric range (None for categorical).
    log: whether a numeric axis is log-scaled.
    choices: categorical values in first-seen order (lists as JSON strings).
    varies: whether members take more than one value.
  """

  name: str
  kind: str
  low: float | None = None
  high: float | None = None
  log: bool = False
  choices: tuple[Any, ...] = ()
  varies: bool = False

  def position(self, value: Any) -> float | None:
    """`value` mapped to [0, 1] along this axis (None when the member lacks it)."""
    if value is None:
      return None
    if self.kind == "categorical":
      n = len(self.choices)
      return 0.5 if n <= 1 else self.choices.index(categorical_value(value)) / (n - 1)
    if self.high == self.low:
      return 0.5
    if self.log:
      return (math.log(value) - math.log(self.low)) / (math.log(self.high) - math.log(self.low))
    return (value - self.low) / (self.high - self.low)


def looks_logarithmic(values: Sequence[float]) -> bool:
  """Whether positive values spanning >= LOG_RATIO look sampled on a log scale.

  A learning rate drawn log-uniformly from 1e-4..1e-1 has its median near the geometric middle
  of its range (3e-3); a dropout drawn uniformly from 0.005..0.5 has it near the arithmetic
  middle (0.25). The closer middle decides, so values that merely span decades stay linear.
  """
  low, high = min(values), max(values)
  if low <= 0 or high / low < LOG_RATIO:
    return False
  median = statistics.median(values)
  geometric_mid, arithmetic_mid = math.sqrt(low * high), (low + high) / 2
  return abs(math.log(median / geometric_mid)) <= abs(math.log(median / arithmetic_mid))


# Config fields that are not hyperparameters: a seed says which repetition a member is, not what
# it is, so it is neither plotted, ranked by importance nor declared as an Optuna parameter (the
# records and the tables keep it in their `seed` column).
NOT_HYPERPARAMETERS = frozenset({"seed"})


def param_names(records: Sequence[Record]) -> list[str]:
  """Every hyperparameter name in first-seen order (`seed` excluded: see NOT_HYPERPARAMETERS)."""
  names: dict[str, None] = {}
  for r in records:
    names.update(dict.fromkeys(n for n in r.params if n not in NOT_HYPERPARAMETERS))
  return list(names)


def param_axis(records: Sequence[Record], name: str) -> ParamAxis:
  """Classifies hyperparameter `name` over `records` (members lacking it or None are skipped)."""
  values = [r.params.get(name) for r in records]
  values = [v for v in values if v is not None]
  distinct = list(dict.fromkeys(categorical_value(v) for v in values))
  varies = len(distinct) > 1
  if values and all(is_number(v) for v in values):
    low, high = min(values), max(values)
    kind = "int" if all(isinstance(v, int) for v in values) else "float"
    log = looks_logarithmic(list(dict.fromkeys(values)))
    return ParamAxis(name, kind, float(low) if kind == "float" else low,
                     float(high) if kind == "float" else high, log, (), varies)
  return ParamAxis(name, "categorical", choices=tuple(distinct), varies=varies)


def param_axes(records: Sequence[Record], *, varying_only: bool = False) -> list[ParamAxis]:
  """`param_axis` for every hyperparameter (optionally only those that vary)."""
  axes = [param_axis(records, n) for n in param_names(records)]
  return [a for a in axes if a.varies] if varying_only else axes
