"""Ablation statistics: per-variant means with confidence intervals and paired differences.

An ablation trains a baseline and variants (one factor changed at a time, or factors crossed),
each over the same seeds. Records carry the variant in `group` ("baseline", "optimizer=adam",
"optimizer=adam,activation=tanh") and the repetition in `seed`. Because a variant and the
baseline share seeds (same initialization and data order streams), the paired difference per
seed removes the seed-to-seed variance that both share; its interval is what says whether a
variant is better, not the overlap of two unpaired intervals.

Intervals are two-sided 95% Student-t intervals: mean ± t(0.975, n-1) · s / sqrt(n), for
losses. Accuracies live in [0, 1], and with two or three seeds a t interval runs past 1.0
(n=2: t = 12.7), so an accuracy's interval is the t interval of its logit, mapped back
(`bounded_mean_ci`): it stays inside (0, 1), is as wide as the t interval says with few seeds,
and narrows toward a bound as the means approach it. The alternatives were weighed: a Wilson
interval measures the binomial noise of one model's accuracy on N examples, not the
seed-to-seed variation an ablation is about; a bootstrap percentile interval over 2-3 seeds can
never be wider than the range of the values, which claims far too much. Paired differences live
in [-1, 1] and their t interval is clipped there.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Sequence

import numpy as np
from scipy import special

from sweeps import vocab
from sweeps.records import Record
from sweeps.reporting.table import render_text_table

CONFIDENCE = 0.95
BASELINE = vocab.BASELINE
# Record metrics an ablation can summarize (the results-table column names).
METRICS = tuple(f"{when}_{metric}" for when in ("best", "final") for metric in (
    vocab.TRAIN_ACC, vocab.TRAIN_LOSS, vocab.VAL_ACC, vocab.VAL_LOSS)) + ("test_acc", "test_loss")


def t_quantile(df: int, confidence: float = CONFIDENCE) -> float:
  """The two-sided Student-t critical value, e.g. 12.706 for df=1 and 2.262 for df=9."""
  return float(special.stdtrit(df, 0.5 + confidence / 2))  # scipy.special: a light import


def mean_ci(values: Sequence[float], confidence: float = CONFIDENCE
            ) -> tuple[float, float, float, float]:
  """Mean, sample std (ddof=1) and the t confidence interval of the mean.

  Returns:
    (mean, std, low, high); std and the interval are NaN for fewer than two values, the mean
    is NaN for none.
  """
  x = np.asarray(values, dtype=float)
  n = x.size
  if n == 0:
    return (math.nan,) * 4
  mean = float(x.mean())
  if n < 2:
    return mean, math.nan, math.nan, math.nan
  std = float(x.std(ddof=1))
  half = t_quantile(n - 1, confidence) * std / math.sqrt(n)
  return mean, std, mean - half, mean + half


def bounded_mean_ci(values: Sequence[float], confidence: float = CONFIDENCE, *,
                    eps: float = 1e-4) -> tuple[float, float, float, float]:
  """Like `mean_ci` for values in [0, 1] (accuracies), with the interval taken on the logit
  scale and mapped back, so it stays in [0, 1] (see the module docstring for why).

  Values are clipped to [eps, 1 - eps] before the logit (a member at exactly 1.0 would be at
  infinity). Returns (mean, std, low, high) with mean and std of the values themselves.
  """
  mean, std, _, _ = mean_ci(values, confidence)
  x = np.clip(np.asarray(values, dtype=float), eps, 1 - eps)
  if x.size < 2:
    return mean, std, math.nan, math.nan
  _, _, low, high = mean_ci(special.logit(x), confidence)
  return mean, std, float(special.expit(low)), float(special.expit(high))


def is_ablation(records: Sequence[Record]) -> bool:
  """True when the members' groups are ablation variants (the baseline, or FACTOR=LEVEL), not
  another strategy's grouping such as Hyperband's brackets."""
  groups = {r.group for r in records if r.group is not None}
  return bool(groups) and all(g == BASELINE or parse_group(g) for g in groups)


def parse_group(group: str | None) -> dict[str, str]:
  """'optimizer=adam,activation=relu' -> {'optimizer': 'adam', 'activation': 'relu'}.

  A group without '=' (the baseline) has no factors.
  """
  if not group:
    return {}
  factors = {}
  for part in group.split(","):
    if "=" in part:
      name, level = part.split("=", 1)
      factors[name.strip()] = level.strip()
  return factors


@dataclasses.dataclass(frozen=True)
class AblationRow:
  """One variant's summary over its seeds.

  Attributes:
    variant: the group name.
    n: members with a finite accuracy (the repetitions the statistics use).
    n_failed: members that diverged or failed (their best-before-failure value still counts
      when finite).
    mean_acc, std_acc, ci_low, ci_high: accuracy mean, sample std and 95% interval (t on the
      logit scale: inside [0, 1]).
    mean_loss, std_loss: loss mean and sample std.
    n_pairs: seeds shared with the baseline.
    diff, diff_low, diff_high: mean paired accuracy difference (variant - baseline) and its
      95% t interval; NaN for the baseline itself or without pairs.
  """

  variant: str
  n: int
  n_failed: int
  mean_acc: float
  std_acc: float
  ci_low: float
  ci_high: float
  mean_loss: float
  std_loss: float
  n_pairs: int
  diff: float
  diff_low: float
  diff_high: float

  @property
  def factors(self) -> dict[str, str]:
    return parse_group(self.variant)


def _metric_getter(name: str) -> Callable[[Record], float | None]:
  """A record metric by its results-table name ('best_val_acc', 'test_acc', ...)."""
  if name not in METRICS:
    raise ValueError(f"metric: unknown {name!r}; known: {', '.join(sorted(METRICS))}")

  def get(record: Record) -> float | None:
    value = getattr(record, name)
    return None if value is None or not math.isfinite(value) else float(value)
  return get


def _by_seed(records: Sequence[Record], get) -> dict[int, float]:
  """Metric per seed (members repeated on one seed are averaged)."""
  per_seed: dict[int, list[float]] = {}
  for r in records:
    value = get(r)
    if value is not None:
      per_seed.setdefault(r.seed, []).append(value)
  return {s: float(np.mean(v)) for s, v in per_seed.items()}


def ablation_table(records: Sequence[Record], baseline: str = BASELINE, *,
                   acc: str = "best_val_acc", loss: str = "best_val_loss",
                   confidence: float = CONFIDENCE) -> list[AblationRow]:
  """Summarizes each variant (record `group`) over its seeds.

  Args:
    records: members with a `group`; members without one are ignored.
    baseline: the group the paired differences are taken against (absent -> no differences).
    acc: the accuracy metric, a Record attribute ('best_val_acc', 'test_acc', ...).
    loss: the loss metric, likewise.
    confidence: the interval's coverage.

  Returns:
    One row per variant: the baseline first, then the variants in order of their first member.
  """
  get_acc, get_loss = _metric_getter(acc), _metric_getter(loss)
  groups: dict[str, list[Record]] = {}
  for r in sorted(records, key=lambda r: r.member_id):
    if r.group is not None:
      groups.setdefault(r.group, []).append(r)
  order = sorted(groups, key=lambda g: g != baseline)  # stable: baseline first
  base_by_seed = _by_seed(groups.get(baseline, []), get_acc)
  rows = []
  for name in order:
    members = groups[name]
    accs = [v for v in map(get_acc, members) if v is not None]
    losses = [v for v in map(get_loss, members) if v is not None]
    mean, std, low, high = bounded_mean_ci(accs, confidence)
    mean_loss, std_loss, _, _ = mean_ci(losses, confidence)
    diff = diff_low = diff_high = math.nan
    pairs = 0
    if name != baseline and base_by_seed:
      by_seed = _by_seed(members, get_acc)
      shared = sorted(set(by_seed) & set(base_by_seed))
      pairs = len(shared)
      diff, _, diff_low, diff_high = mean_ci(
          [by_seed[s] - base_by_seed[s] for s in shared], confidence)
      diff_low, diff_high = max(diff_low, -1.0), min(diff_high, 1.0)   # nan stays nan
    rows.append(AblationRow(
        variant=name, n=len(accs), n_failed=sum(r.failed for r in members),
        mean_acc=mean, std_acc=std, ci_low=low, ci_high=high,
        mean_loss=mean_loss, std_loss=std_loss,
        n_pairs=pairs, diff=diff, diff_low=diff_low, diff_high=diff_high))
  return rows


def _num(value: float, digits: int = 4, signed: bool = False) -> str:
  if value is None or math.isnan(value):
    return "-"
  return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def format_ablation_table(rows: Sequence[AblationRow], *, acc: str = "best_val_acc",
                          loss: str = "best_val_loss") -> str:
  """The ablation as an aligned text table (the table the MNIST study made by hand)."""
  header = ["variant", "n", "failed", f"mean {acc}", "std", "95% CI", f"mean {loss}",
            "pairs", "diff vs baseline", "diff 95% CI"]
  body = []
  for r in rows:
    body.append([
        r.variant, str(r.n), str(r.n_failed), _num(r.mean_acc), _num(r.std_acc),
        f"[{_num(r.ci_low)}, {_num(r.ci_high)}]", _num(r.mean_loss), str(r.n_pairs),
        _num(r.diff, signed=True), f"[{_num(r.diff_low, signed=True)}, "
                                   f"{_num(r.diff_high, signed=True)}]",
    ])
  numeric = [False] + [True] * 9
  return render_text_table(header, body, numeric)


def crossed_factors(rows: Sequence[AblationRow]) -> list[str] | None:
  """The factor names when every non-baseline variant sets the same two or more factors."""
  factor_sets = [tuple(r.factors) for r in rows if r.factors]
  if not factor_sets or len(set(factor_sets)) != 1 or len(factor_sets[0]) < 2:
    return None
  return list(factor_sets[0])


def grid_cells(rows: Sequence[AblationRow]
               ) -> tuple[list[str], list[str], dict[tuple[str, str], AblationRow]] | None:
  """Crossed variants arranged as a grid: first factor down, the other factor(s) across.

  Returns:
    (row levels, column levels, {(row, column): AblationRow}), or None when not crossed.
  """
  factors = crossed_factors(rows)
  if factors is None:
    return None
  first, rest = factors[0], factors[1:]
  row_levels: dict[str, None] = {}
  col_levels: dict[str, None] = {}
  cells = {}
  for r in rows:
    f = r.factors
    if not f:
      continue
    row = f[first]
    col = ",".join(f"{name}={f[name]}" for name in rest) if len(rest) > 1 else f[rest[0]]
    row_levels[row] = None
    col_levels[col] = None
    cells[(row, col)] = r
  return list(row_levels), list(col_levels), cells


def format_grid(rows: Sequence[AblationRow], *, value: str = "mean_acc") -> str | None:
  """Crossed factors as a text grid of 'mean ± CI half-width (n)'; None if not crossed.

  Args:
    rows: from `ablation_table`.
    value: 'mean_acc' (with its interval) or 'mean_loss' (with its std).
  """
  grid = grid_cells(rows)
  if grid is None:
    return None
  row_levels, col_levels, cells = grid
  factors = crossed_factors(rows)
  corner = f"{factors[0]} \\ {','.join(factors[1:])}"

  def cell(r: AblationRow | None) -> str:
    if r is None:
      return "-"
    if value == "mean_acc":
      half = (r.ci_high - r.ci_low) / 2
      return f"{_num(r.mean_acc)} ± {_num(half)} (n={r.n})"
    return f"{_num(r.mean_loss)} ± {_num(r.std_loss)} sd (n={r.n})"

  body = [[level, *(cell(cells.get((level, c))) for c in col_levels)] for level in row_levels]
  title = ("mean accuracy ± 95% CI half-width" if value == "mean_acc"
           else "mean loss ± standard deviation")
  return title + "\n" + render_text_table([corner, *col_levels], body,
                                          [False] + [True] * len(col_levels))


def ablation_rows_as_dicts(rows: Sequence[AblationRow]) -> list[dict[str, Any]]:
  """Rows as plain dicts (NaN as None) for CSV/JSON."""
  out = []
  for r in rows:
    d = dataclasses.asdict(r)
    out.append({k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in d.items()})
  return out
