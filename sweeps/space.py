"""Search spaces: a small declarative form that reads well in a flagfile.

One `--space` line per hyperparameter, `NAME=SPEC [if CONDITION]`; a later line for the same
NAME replaces the earlier one, so the command line overrides a flagfile:

    --space=optimizer=choice(sgd, momentum, adam)
    --space=momentum=uniform(0.5, 0.99) if optimizer in (sgd, momentum)
    --space=depth=int(1, 5)
    --space=widths=per_layer(depth, choice(64, 128, 256))
    --space=lr=loguniform(1e-4, 1e-1)
    --space=dropout=grid(0, 0.2, 0.5)
    --space=batch_size=256

SPEC is a fixed value (any Python literal; bare words are strings), `choice(a, b, ...)` (a
categorical), `grid(a, b, ...)` (an axis of the grid strategy; a categorical elsewhere),
`uniform(lo, hi)`, `loguniform(lo, hi)`, `int(lo, hi)` (inclusive), `quniform(lo, hi, q)`, or
`per_layer(DEPTH_NAME, SPEC)` (one draw per layer: a list as long as the value of DEPTH_NAME).
CONDITION is `NAME == value`, `NAME != value`, `NAME in (a, b)` or `NAME not in (a, b)` on a
parameter declared above; a parameter whose condition is false is left out of the config.

A space samples through a `Suggest` (random numpy draws, Optuna trials, or a grid point), so
every strategy shares one definition of the space and its conditionals.
"""

from __future__ import annotations

import ast
import dataclasses
import itertools
import math
import re
from typing import Any, Mapping, Protocol, Sequence

import numpy as np


class SpaceError(ValueError):
  """A malformed or impossible search space; the message is one line."""


@dataclasses.dataclass(frozen=True)
class Fixed:
  value: Any


@dataclasses.dataclass(frozen=True)
class Choice:
  values: tuple
  grid: bool = False   # declared as grid(...): an axis the grid strategy expands


@dataclasses.dataclass(frozen=True)
class Uniform:
  low: float
  high: float
  log: bool = False
  step: float | None = None


@dataclasses.dataclass(frozen=True)
class IntRange:
  low: int
  high: int


@dataclasses.dataclass(frozen=True)
class PerLayer:
  depth: str
  inner: Any   # a Fixed / Choice / Uniform / IntRange


@dataclasses.dataclass(frozen=True)
class Condition:
  name: str
  op: str        # '==', '!=', 'in', 'not in'
  values: tuple

  def holds(self, config: Mapping[str, Any]) -> bool:
    if self.name not in config:
      return False
    value = config[self.name]
    inside = any(_same(value, v) for v in self.values)
    return inside if self.op in ("==", "in") else not inside

  def text(self) -> str:
    return f"{self.name} {self.op} {self.values if len(self.values) > 1 else self.values[0]!r}"


def _same(a, b) -> bool:
  if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
    return list(a) == list(b)
  return a == b


@dataclasses.dataclass(frozen=True)
class Param:
  name: str
  dist: Any
  condition: Condition | None = None


class Suggest(Protocol):
  """How a space gets a value for a parameter: numpy draws, an Optuna trial, a grid point."""

  def categorical(self, name: str, values: tuple) -> Any: ...
  def float(self, name: str, low: float, high: float, log: bool, step: float | None) -> float: ...
  def int(self, name: str, low: int, high: int) -> int: ...


class RandomSuggest:
  """Independent draws from a numpy Generator (the random strategy)."""

  def __init__(self, rng: np.random.Generator):
    self.rng = rng

  def categorical(self, name, values):
    return values[int(self.rng.integers(len(values)))]

  def float(self, name, low, high, log, step):
    if log:
      return float(math.exp(self.rng.uniform(math.log(low), math.log(high))))
    value = float(self.rng.uniform(low, high))
    return _quantize(value, low, high, step)

  def int(self, name, low, high):
    return int(self.rng.integers(low, high + 1))


def snap(dist: "Uniform", value: float) -> float | int:
  """A quantized draw made exact: 0.3, not low + 3 * 0.1 = 0.30000000000000004, and an int when
  the grid is integral (quniform(64, 256, 64) -> 128), since fields such as batch_size need ints.
  Unquantized values pass through unchanged."""
  if dist.step is None:
    return value
  value = float(f"{float(value):.12g}")
  if float(dist.low).is_integer() and float(dist.step).is_integer():
    return int(round(value))
  return value


def _quantize(value, low, high, step):
  if step is None:
    return value
  return float(min(max(low + round((value - low) / step) * step, low), high))


@dataclasses.dataclass
class Space:
  """An ordered list of parameters (conditions refer to parameters declared before them)."""
  params: tuple[Param, ...]

  def names(self) -> list[str]:
    return [p.name for p in self.params]

  def sample(self, suggest: Suggest) -> dict[str, Any]:
    """One config: each parameter in order, skipping those whose condition is false."""
    config: dict[str, Any] = {}
    for param in self.params:
      if param.name in config:   # an earlier alternative for this name already applied
        continue
      if param.condition is not None and not param.condition.holds(config):
        continue
      config[param.name] = _draw(self.suggest_name(param), param.dist, suggest, config)
    return _drop_depth_helpers(self, config)

  def grid(self) -> list[dict[str, Any]]:
    """Every combination of the discrete axes (grid/choice/int); conditionals respected.

    Raises SpaceError if a continuous parameter is active (a grid cannot enumerate it).
    """
    configs: list[dict[str, Any]] = [{}]
    for param in self.params:
      expanded = []
      for config in configs:
        if param.name in config or (param.condition is not None
                                    and not param.condition.holds(config)):
          expanded.append(config)
          continue
        for value in _enumerate(param, config):
          expanded.append({**config, param.name: value})
      configs = expanded
    return [_drop_depth_helpers(self, c) for c in configs]

  def suggest_name(self, param: Param) -> str:
    """The name a Suggest sees: alternatives of one name get distinct names (Optuna requires
    one distribution per name)."""
    same = [p for p in self.params if p.name == param.name]
    if len(same) == 1:
      return param.name
    return f"{param.name}[{same.index(param)}]"


def _drop_depth_helpers(space: Space, config: dict[str, Any]) -> dict[str, Any]:
  """`depth` only steers per_layer widths; the model reads the widths list."""
  helpers = {p.dist.depth for p in space.params if isinstance(p.dist, PerLayer)}
  used = {p.name for p in space.params if isinstance(p.dist, PerLayer) and p.name in config}
  return {k: v for k, v in config.items() if not (k in helpers and used)}


def _draw(name, dist, suggest: Suggest, config):
  if isinstance(dist, Fixed):
    return dist.value
  if isinstance(dist, Choice):
    value = suggest.categorical(name, tuple(_key(v) for v in dist.values))
    return _unkey(value, dist.values)
  if isinstance(dist, Uniform):
    return snap(dist, suggest.float(name, dist.low, dist.high, dist.log, dist.step))
  if isinstance(dist, IntRange):
    return suggest.int(name, dist.low, dist.high)
  if isinstance(dist, PerLayer):
    depth = _depth(name, dist, config)
    return [_draw(f"{name}_{i}", dist.inner, suggest, config) for i in range(depth)]
  raise SpaceError(f"{name}: unsupported distribution {dist!r}")


def _key(value):
  """Optuna categoricals take only None/bool/int/float/str: lists travel as their repr."""
  return repr(list(value)) if isinstance(value, (list, tuple)) else value


def _unkey(value, values):
  for v in values:
    if _key(v) == value:
      return list(v) if isinstance(v, (list, tuple)) else v
  return value


def _depth(name, dist: PerLayer, config) -> int:
  depth = config.get(dist.depth)
  if not isinstance(depth, int) or depth < 1:
    raise SpaceError(f"{name}: per_layer needs {dist.depth} (a positive int) declared before it")
  return depth


def _enumerate(param: Param, config) -> list:
  dist = param.dist
  if isinstance(dist, Fixed):
    return [dist.value]
  if isinstance(dist, Choice):
    return [list(v) if isinstance(v, tuple) else v for v in dist.values]
  if isinstance(dist, IntRange):
    return list(range(dist.low, dist.high + 1))
  if isinstance(dist, Uniform) and dist.step is not None and not dist.log:
    count = int(math.floor((dist.high - dist.low) / dist.step + 1e-9)) + 1
    return [snap(dist, dist.low + i * dist.step) for i in range(count)]
  if isinstance(dist, PerLayer):
    depth = _depth(param.name, dist, config)
    inner = _enumerate(Param(param.name, dist.inner), config)
    return [list(combo) for combo in itertools.product(inner, repeat=depth)]
  raise SpaceError(f"{param.name}: the grid strategy cannot enumerate {_describe(dist)}; "
                   "use grid(...)/choice(...) or quniform for it")


def _describe(dist) -> str:
  if isinstance(dist, Uniform):
    return f"{'loguniform' if dist.log else 'uniform'}({dist.low}, {dist.high})"
  return repr(dist)


# ------------------------------------------------------------------------------------ parsing

_LINE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.+?)\s*$")
_CALL = re.compile(r"^(choice|grid|uniform|loguniform|int|quniform|per_layer)\s*\((.*)\)$", re.S)
_COND = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*(==|!=|not\s+in|in)\s*(.+)$")


def _literal(text: str):
  """A Python literal, or the bare word itself as a string (so `relu` needs no quotes)."""
  text = text.strip()
  if text.lower() in ("true", "false"):
    return text.lower() == "true"
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.\-:/]*", text):
      return text
    raise SpaceError(f"cannot read value {text!r}") from None


def _split_args(text: str) -> list[str]:
  """Splits on top-level commas (lists inside a choice keep their commas)."""
  parts, depth, current = [], 0, []
  for ch in text:
    if ch in "([{":
      depth += 1
    elif ch in ")]}":
      depth -= 1
    if ch == "," and depth == 0:
      parts.append("".join(current))
      current = []
    else:
      current.append(ch)
  if "".join(current).strip():
    parts.append("".join(current))
  return [p.strip() for p in parts]


def _as_tuple(value):
  return tuple(value) if isinstance(value, list) else value


def parse_dist(name: str, text: str):
  match = _CALL.match(text.strip())
  if not match:
    return Fixed(_literal(text))
  kind, args_text = match.groups()
  args = _split_args(args_text)
  try:
    if kind in ("choice", "grid"):
      values = tuple(_as_tuple(_literal(a)) for a in args)
      if not values:
        raise SpaceError(f"{name}: {kind}() needs at least one value")
      return Choice(values, grid=kind == "grid")
    if kind == "per_layer":
      if len(args) != 2:
        raise SpaceError(f"{name}: per_layer takes (depth_name, spec)")
      return PerLayer(args[0], parse_dist(name, args[1]))
    numbers = [float(_literal(a)) for a in args]
  except (TypeError, ValueError) as e:
    if isinstance(e, SpaceError):
      raise
    raise SpaceError(f"{name}: cannot read {text!r}: {e}") from None
  expected = {"uniform": 2, "loguniform": 2, "int": 2, "quniform": 3}[kind]
  if len(numbers) != expected:
    raise SpaceError(f"{name}: {kind}() takes {expected} numbers, got {text!r}")
  low, high = numbers[0], numbers[1]
  if not (math.isfinite(low) and math.isfinite(high)) or low > high:
    raise SpaceError(f"{name}: {kind}() needs finite low <= high, got {text!r}")
  if kind == "loguniform" and low <= 0:
    raise SpaceError(f"{name}: loguniform() needs low > 0, got {text!r}")
  if kind == "int":
    if low != int(low) or high != int(high):
      raise SpaceError(f"{name}: int() takes integer bounds, got {text!r}")
    return IntRange(int(low), int(high))
  if kind == "quniform":
    if numbers[2] <= 0:
      raise SpaceError(f"{name}: quniform() needs a step > 0, got {text!r}")
    return Uniform(low, high, step=numbers[2])
  return Uniform(low, high, log=kind == "loguniform")


def parse_condition(text: str) -> Condition:
  match = _COND.match(text.strip())
  if not match:
    raise SpaceError(f"cannot read condition {text!r}; use NAME == v, NAME in (a, b), ...")
  name, op, rest = match.groups()
  op = " ".join(op.split())
  rest = rest.strip()
  if op in ("in", "not in"):
    inner = rest[1:-1] if rest[:1] in "([" and rest[-1:] in ")]" else rest
    values = tuple(_as_tuple(_literal(v)) for v in _split_args(inner))
  else:
    values = (_as_tuple(_literal(rest)),)
  return Condition(name, op, values)


def _split_condition(text: str) -> tuple[str, str | None]:
  depth = 0
  for i, ch in enumerate(text):
    if ch in "([{":
      depth += 1
    elif ch in ")]}":
      depth -= 1
    elif depth == 0 and text[i:i + 4] == " if ":
      return text[:i], text[i + 4:]
  return text, None


def parse(lines: Sequence[str]) -> Space:
  """Parses `--space` lines into a Space.

  A line without a condition replaces every earlier line for its name (so the command line
  overrides a flagfile); a conditional line replaces an earlier one with the same condition and
  otherwise adds an alternative (the first alternative whose condition holds applies).

  Raises:
    SpaceError: one line naming the parameter and what is wrong: syntax, bad bounds, a
      condition on a parameter not declared before it, or one that can never hold.
  """
  params: dict[tuple[str, str | None], Param] = {}
  for line in lines:
    match = _LINE.match(line)
    if not match:
      raise SpaceError(f"cannot read space entry {line!r}; expected NAME=SPEC [if CONDITION]")
    name, rest = match.groups()
    spec_text, cond_text = _split_condition(rest)
    try:
      dist = parse_dist(name, spec_text)
      condition = parse_condition(cond_text) if cond_text is not None else None
    except SpaceError as e:
      msg = str(e)
      raise SpaceError(msg if msg.startswith(f"{name}:") else f"{name}: {msg}") from None
    key = (name, condition.text() if condition else None)
    if condition is None:   # an unconditional line replaces every earlier line for the name
      params = {k: v for k, v in params.items() if k[0] != name}
    params[key] = Param(name, dist, condition)
  space = Space(tuple(params.values()))
  _check(space)
  return space


def check_fields(space: Space, known: Sequence[str]) -> None:
  """Every parameter must name a known field; an unknown one is refused with the nearest.

  Raises:
    SpaceError: `NAME: unknown field; did you mean X?` (one line).
  """
  import difflib
  for param in space.params:
    if param.name not in known:
      near = difflib.get_close_matches(param.name, list(known), n=3)
      hint = f"did you mean {' or '.join(near)}?" if near else "see --help for the fields"
      raise SpaceError(f"{param.name}: unknown field; {hint}")


def _support(dist) -> tuple | None:
  """The finite set of values a parameter can take, or None when it is continuous."""
  if isinstance(dist, Fixed):
    return (dist.value,)
  if isinstance(dist, Choice):
    return dist.values
  if isinstance(dist, IntRange):
    return tuple(range(dist.low, dist.high + 1))
  return None


def _union_support(params: Sequence[Param]) -> tuple | None:
  values: list = []
  for param in params:
    support = _support(param.dist)
    if support is None:
      return None
    values.extend(v for v in support if not any(_same(v, w) for w in values))
  return tuple(values)


def _check(space: Space) -> None:
  declared: dict[str, list[Param]] = {}
  for param in space.params:
    cond = param.condition
    if cond is not None:
      if cond.name not in declared:
        raise SpaceError(f"{param.name}: condition refers to {cond.name!r}, which is not "
                         "declared before it")
      support = _union_support(declared[cond.name])
      if support is not None and not any(cond.holds({cond.name: v}) for v in support):
        raise SpaceError(f"{param.name}: condition '{cond.text()}' can never hold "
                         f"({cond.name} takes {list(support)})")
    if isinstance(param.dist, PerLayer):
      if param.dist.depth not in declared:
        raise SpaceError(f"{param.name}: per_layer needs {param.dist.depth!r} declared before it")
      support = _union_support(declared[param.dist.depth])
      if support is None or not all(isinstance(v, int) and v >= 1 for v in support):
        raise SpaceError(f"{param.name}: per_layer depth {param.dist.depth!r} must take "
                         "positive integers")
    declared.setdefault(param.name, []).append(param)
