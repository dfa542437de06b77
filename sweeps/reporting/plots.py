"""The figures a sweep's report shows (PNG, matplotlib's Agg renderer).

  * learning_curves.png: validation accuracy and loss per epoch, every member faint, the top k
    in colour and labelled, diverged members red with a cross at their last finite epoch;
  * parallel_coordinates.png: one vertical axis per varying hyperparameter plus the objective,
    one line per member coloured by the objective, categorical axes labelled by value;
  * importance.png: hyperparameter importance from one of Optuna's evaluators (named in the
    title; PED-ANOVA by default because it needs no scikit-learn);
  * ablation.png: per-variant mean with 95% confidence interval and seeds as dots, beside the
    paired difference to the baseline with its interval.

Figures are built with `matplotlib.figure.Figure` directly (no pyplot global state), so a
report can render from any thread and never opens a window.
"""

from __future__ import annotations

import math
import textwrap
from typing import Sequence

import numpy as np
import optuna
from matplotlib import cm, colors, ticker
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from optuna.trial import TrialState

from jaxnn.registry import Registry
from sweeps import vocab
from sweeps.records import Record, objective_direction, sort_by_objective
from sweeps.reporting.params import ParamAxis, format_value, param_axes
from sweeps.reporting.stats import (BASELINE, AblationRow, ablation_table, crossed_factors,
                                    grid_cells)
from sweeps.reporting.study import in_memory_study

DPI = 110
TOP_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:pink",
              "tab:olive", "tab:cyan", "navy", "darkgoldenrod")
DIVERGED_COLOR = "tab:red"
OTHER_COLOR = "0.7"
MISSING = -0.1  # where a member without a value sits on a parallel-coordinates axis

# name -> (factory, the name shown in the figure title).
IMPORTANCE_EVALUATORS = Registry("importance_evaluator", {
    "ped_anova": (optuna.importance.PedAnovaImportanceEvaluator, "PED-ANOVA (Optuna)"),
    "fanova": (lambda: optuna.importance.FanovaImportanceEvaluator(seed=0),
               "fANOVA (Optuna, needs scikit-learn)"),
    "mean_decrease_impurity": (
        lambda: optuna.importance.MeanDecreaseImpurityImportanceEvaluator(seed=0),
        "mean decrease impurity (Optuna, needs scikit-learn)"),
})


def _save(fig: Figure, path: str) -> str:
  fig.savefig(path, dpi=DPI)
  return path


def _describe(record: Record, names: Sequence[str], width: int = 110) -> str:
  text = ", ".join(f"{n}={format_value(record.params.get(n), 14)}" for n in names)
  return text if len(text) <= width else text[:width - 1] + "…"


def _pretty(metric: str) -> str:
  return {vocab.VAL_ACC: "validation accuracy", vocab.VAL_LOSS: "validation loss",
          vocab.TRAIN_ACC: "training accuracy", vocab.TRAIN_LOSS: "training loss"}.get(metric, metric)


# --- learning curves ---------------------------------------------------------------------------


def _limits(series: Sequence[Sequence[float]], pad: float = 0.04) -> tuple[float, float]:
  """Y limits spanning `series` with a margin."""
  values = [v for s in series for v in s] or [0.0, 1.0]
  low, high = min(values), max(values)
  if high - low < 1e-12:
    low, high = low - 0.5, high + 0.5
  span = high - low
  return low - pad * span, high + pad * span


def plot_learning_curves(records: Sequence[Record], path: str, *, objective: str = vocab.DEFAULT_OBJECTIVE,
                         top: int = 5, title: str | None = None) -> str:
  """Validation accuracy and loss vs epoch; the top `top` members by `objective` highlighted.

  The loss axis spans the members that did not diverge (a diverged loss runs to 1e4 and would
  flatten every other curve); a diverged member's cross is pinned to the top edge there.

  Args:
    records: the members.
    path: the PNG to write.
    objective: the metric that ranks members.
    top: how many members to colour and label (at most 10; more is unreadable).
    title: the figure title (defaults to a description of what is shown).

  Returns:
    `path`.
  """
  ranked = [r for r in sort_by_objective(records, objective)
            if r.objective_value(objective) is not None]
  top_records = ranked[:max(0, min(top, len(TOP_COLORS)))]
  top_ids = {r.member_id: i for i, r in enumerate(top_records)}
  varying = [a.name for a in param_axes(records, varying_only=True)]

  fig = Figure(figsize=(14, 6.5), layout="constrained")
  panels = dict(zip((vocab.VAL_ACC, vocab.VAL_LOSS), fig.subplots(1, 2)))
  n_diverged = sum(r.status == vocab.DIVERGED for r in records)
  n_failed = sum(r.failed for r in records)
  for key, ax in panels.items():
    # Accuracy is bounded, so every member fits; losses of diverged members are left out.
    shown = [[v for _, v in r.finite_values(key)] for r in records
             if key.endswith("acc") or not r.failed]
    for record in records:  # faint background first, highlighted members drawn last
      if record.member_id in top_ids:
        continue
      epochs, values = _xy(record, key)
      if record.failed:
        ax.plot(epochs, values, color=DIVERGED_COLOR, lw=1.0, ls="--", alpha=0.8)
      else:
        ax.plot(epochs, values, color=OTHER_COLOR, lw=0.9, alpha=0.7)
    for record in top_records:
      epochs, values = _xy(record, key)
      color = TOP_COLORS[top_ids[record.member_id]]
      ax.plot(epochs, values, color=color, lw=2.2, zorder=3)
      best = record.best_epoch_for(objective)
      values = record.history.get(key, [])
      if best is not None and best < len(values) and values[best] is not None:
        ax.plot([best + 1], [values[best]], marker="*", ms=13, color=color, mec="black",
                mew=0.6, zorder=4)
    low, high = _limits(shown)
    ax.set_ylim(low, high)
    for record in records:  # mark where each diverged member left the finite range
      pairs = record.finite_values(key)
      if record.status == vocab.DIVERGED and pairs:
        epoch, value = pairs[-1]
        ax.plot([epoch + 1], [min(max(value, low), high)], marker="X", ms=11,
                color=DIVERGED_COLOR, mec="black", mew=0.6, zorder=5, clip_on=False)
    ax.set_xlabel("epoch")
    ax.set_ylabel(_pretty(key))
    clipped = key.endswith("loss") and n_diverged
    ax.set_title(_pretty(key) + (" (diverged members clipped at the top)" if clipped else ""),
                 fontsize=11)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)

  handles = [_line(TOP_COLORS[i], 2.2, "-", f"#{i + 1}  member {r.member_id}: "
                   f"{objective}={r.objective_value(objective):.4f}  {_describe(r, varying)}")
             for i, r in enumerate(top_records)]
  n_other = sum(r.member_id not in top_ids and not r.failed for r in records)
  handles.append(_line(OTHER_COLOR, 1.0, "-", f"other members ({n_other})"))
  handles.append(_line("0.3", 0, "", "best epoch of a highlighted member", marker="*"))
  if n_failed:
    handles.append(_line(DIVERGED_COLOR, 1.0, "--", f"diverged or failed ({n_failed}); "
                         "X = last finite epoch of a diverged member", marker="X"))
  fig.legend(handles=handles, loc="outside lower left", ncols=1, fontsize=9, frameon=False)
  fig.suptitle(title or f"Validation curves: top {len(top_records)} of {len(records)} members "
               f"by {objective} highlighted", fontsize=13)
  return _save(fig, path)


def _xy(record: Record, key: str) -> tuple[list[int], list[float]]:
  """1-based epochs and values, with None kept as NaN so gaps show as gaps."""
  values = record.history.get(key, [])
  return list(range(1, len(values) + 1)), [math.nan if v is None else v for v in values]


def _line(color: str, lw: float, ls: str, label: str, marker: str | None = None) -> Line2D:
  """A legend entry."""
  return Line2D([], [], color=color, lw=lw, ls=ls or "none", marker=marker, ms=10, label=label,
                mec="black" if marker else None, mew=0.6)


# --- parallel coordinates ----------------------------------------------------------------------


def _axis_ticks(axis: ParamAxis, distinct: Sequence[float] = ()) -> list[tuple[float, str]]:
  """(position, label) ticks: every category; every value of a small grid; else round numbers."""
  if axis.kind == "categorical":
    return [(axis.position(c), format_value(c, 18)) for c in axis.choices]
  if axis.high == axis.low:
    return [(0.5, format_value(axis.low))]
  if 0 < len(distinct) <= 6:  # a grid: label exactly the values that were tried
    values = sorted(distinct)
  else:
    locator = ticker.LogLocator(numticks=6) if axis.log else ticker.MaxNLocator(
        nbins=5, integer=axis.kind == "int")
    values = [v for v in locator.tick_values(axis.low, axis.high)
              if axis.low - 1e-12 <= v <= axis.high * (1 + 1e-12)]
    # The ends of the range are labelled too, unless a round tick already sits next to them.
    for end in (axis.low, axis.high):
      if all(abs(axis.position(end) - axis.position(v)) > 0.08 for v in values):
        values.append(end)
  return [(axis.position(v), format_value(int(v) if axis.kind == "int" else float(v)))
          for v in values]


def plot_parallel_coordinates(records: Sequence[Record], path: str, *,
                              objective: str = vocab.DEFAULT_OBJECTIVE, title: str | None = None) -> str:
  """Varying hyperparameters and the objective as parallel axes, one line per member.

  Args:
    records: the members.
    path: the PNG to write.
    objective: the last axis and the colour of each line.
    title: the figure title.

  Returns:
    `path`.
  """
  axes = param_axes(records, varying_only=True)
  scores = [r.objective_value(objective) for r in records]
  finite = [s for s in scores if s is not None]
  low, high = (min(finite), max(finite)) if finite else (0.0, 1.0)
  objective_axis = ParamAxis(objective, "float", low, high, False, (), True)
  all_axes = [*axes, objective_axis]
  n = len(all_axes)
  fig = Figure(figsize=(max(8.0, 1.9 * n + 2.5), 6.5), layout="constrained")
  ax = fig.subplots()
  cmap = cm.viridis if objective_direction(objective) == vocab.MAXIMIZE else cm.viridis_r
  norm = colors.Normalize(vmin=low, vmax=high if high > low else low + 1e-9)

  # Worst first so the best lines end up on top.
  order = sorted(range(len(records)), key=lambda i: (
      scores[i] is not None,
      0.0 if scores[i] is None else
      (scores[i] if objective_direction(objective) == vocab.MAXIMIZE else -scores[i])))
  missing = [False] * n  # which axes need an "n/a" position
  for i in order:
    record, score = records[i], scores[i]
    ys = [a.position(record.params.get(a.name)) for a in axes]
    ys.append(None if score is None else objective_axis.position(score))
    missing = [m or y is None for m, y in zip(missing, ys)]
    ys = [MISSING if y is None else y for y in ys]
    if record.failed or score is None:
      ax.plot(range(n), ys, color=DIVERGED_COLOR, lw=1.3, ls="--", alpha=0.8, zorder=1)
    else:
      ax.plot(range(n), ys, color=cmap(norm(score)), lw=1.8, alpha=0.85, zorder=2)

  for x, axis in enumerate(all_axes):
    ax.axvline(x, color="black", lw=1.0, zorder=3)
    distinct = () if axis is objective_axis else {
        r.params[axis.name] for r in records if axis.kind != "categorical"
        and r.params.get(axis.name) is not None}
    ticks = _axis_ticks(axis, tuple(distinct)) + ([(MISSING, "n/a")] if missing[x] else [])
    for y, label in ticks:
      ax.plot([x - 0.025, x], [y, y], color="black", lw=1.0, zorder=3)
      ax.text(x - 0.04, y, label, ha="right", va="center", fontsize=8.5, zorder=4,
              bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.8))
    name = axis.name + (" (log)" if axis.log else "")
    ax.text(x, 1.06, name, ha="center", va="bottom", fontsize=10, fontweight="bold",
            rotation=0 if n <= 7 else 20)
  ax.set_xlim(-0.45, n - 0.8)
  ax.set_ylim(MISSING - 0.06 if any(missing) else -0.04, 1.04)
  ax.set_axis_off()
  mappable = cm.ScalarMappable(norm=norm, cmap=cmap)
  fig.colorbar(mappable, ax=ax, label=_pretty(objective) + " (line colour)", shrink=0.8)
  n_failed = sum(r.failed or s is None for r, s in zip(records, scores))
  subtitle = f"{len(records)} members, {len(axes)} varying hyperparameters"
  if n_failed:
    subtitle += f"; red dashed: {n_failed} diverged/failed (at their best value before, or n/a)"
  if not axes:
    subtitle += " (no hyperparameter varies)"
  fig.suptitle((title or f"Hyperparameters vs {_pretty(objective)}") + "\n" + subtitle,
               fontsize=12)
  return _save(fig, path)


# --- importance --------------------------------------------------------------------------------


def param_importances(records: Sequence[Record], *, objective: str = vocab.DEFAULT_OBJECTIVE,
                      evaluator: str = "ped_anova") -> dict[str, float]:
  """Normalized importances of the varying hyperparameters over COMPLETE members.

  Args:
    records: the members.
    objective: the metric whose variation is explained.
    evaluator: a name in IMPORTANCE_EVALUATORS.

  Returns:
    {param: importance}, summing to 1, most important first.

  Raises:
    ValueError: unknown evaluator, or too few complete members / varying parameters.
  """
  factory, _ = IMPORTANCE_EVALUATORS.get(evaluator)
  study = in_memory_study(records, objective)
  complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
  if len(complete) < 2:
    raise ValueError(f"importance needs at least 2 complete members, got {len(complete)}")
  seen = {name for t in complete for name in t.params}
  complete_records = [r for r in records if r.member_id in
                      {t.user_attrs["member_id"] for t in complete}]
  names = [a.name for a in param_axes(complete_records, varying_only=True) if a.name in seen]
  if not names:
    raise ValueError("importance needs a hyperparameter that varies across complete members")
  return optuna.importance.get_param_importances(study, evaluator=factory(), params=names)


def plot_importance(records: Sequence[Record], path: str, *, objective: str = vocab.DEFAULT_OBJECTIVE,
                    evaluator: str = "ped_anova") -> str:
  """A bar per varying hyperparameter: its importance for `objective` (evaluator named).

  When importance cannot be computed (fewer than two complete members, nothing varies) the
  figure says why instead of failing the report.

  Returns:
    `path`.
  """
  _, evaluator_name = IMPORTANCE_EVALUATORS.get(evaluator)
  fig = Figure(figsize=(9, 5.5), layout="constrained")
  ax = fig.subplots()
  n_complete = sum(r.status in (vocab.COMPLETE, vocab.STOPPED) for r in records)
  try:
    importances = param_importances(records, objective=objective, evaluator=evaluator)
  except (ValueError, RuntimeError, ImportError) as e:
    reason = "\n".join(textwrap.wrap(str(e), 60))
    ax.text(0.5, 0.5, f"importance not available:\n{reason}", ha="center", va="center",
            fontsize=12, transform=ax.transAxes)
    ax.set_axis_off()
  else:
    names = list(importances)[::-1]  # most important on top
    values = [importances[n] for n in names]
    bars = ax.barh(names, values, color="tab:blue")
    ax.bar_label(bars, labels=[f"{v:.1%}" for v in values], padding=3, fontsize=10)
    ax.set_xlim(0, max(values + [1e-9]) * 1.18)
    ax.set_xlabel(f"importance for {objective} (normalized to sum to 1)")
    ax.set_ylabel("hyperparameter")
    ax.tick_params(axis="y", labelsize=10)
    ax.grid(axis="x", alpha=0.3)
  fig.suptitle(f"Hyperparameter importance for {_pretty(objective)}\n"
               f"evaluator: {evaluator_name}; {n_complete} complete members", fontsize=12)
  return _save(fig, path)


# --- ablation ----------------------------------------------------------------------------------


def plot_ablation(records: Sequence[Record], path: str, *, baseline: str = BASELINE,
                  acc: str = "best_val_acc") -> str:
  """Per-variant mean accuracy with its 95% CI, beside what the variants are compared by.

  The right panel is the paired difference to `baseline` with its 95% CI when that variant
  exists; for crossed factors without a baseline it is the grid of means; otherwise it is left
  out.

  Args:
    records: the members (those with a `group`).
    path: the PNG to write.
    baseline: the reference variant.
    acc: the accuracy metric (a `stats.METRICS` name).

  Returns:
    `path`.
  """
  rows = ablation_table(records, baseline, acc=acc)
  has_baseline = any(r.variant == baseline for r in rows)
  grid = None if has_baseline else grid_cells(rows)
  n = len(rows)
  fig = Figure(figsize=(13 if has_baseline or grid else 8, 1.6 + 0.55 * max(n, 3)),
               layout="constrained")
  if has_baseline:
    ax_acc, ax_right = fig.subplots(1, 2, sharey=True)
  elif grid:
    ax_acc, ax_right = fig.subplots(1, 2, width_ratios=(3, 2))
  else:
    ax_acc, ax_right = fig.subplots(), None
  _variant_bars(ax_acc, rows, records, baseline, acc)
  if has_baseline:
    _paired_differences(ax_right, rows, baseline, acc)
  elif grid:
    _grid_heatmap(fig, ax_right, rows, grid, acc)
  fig.suptitle(f"Ablation: {acc} per variant over seeds", fontsize=13)
  return _save(fig, path)


def _variant_bars(ax, rows: Sequence[AblationRow], records: Sequence[Record], baseline: str,
                  acc: str) -> None:
  """Horizontal bars of the mean, 95% CI whiskers and one dot per seed."""
  seeds: dict[str, list[float]] = {r.variant: [] for r in rows}
  for record in records:
    value = getattr(record, acc)
    if record.group in seeds and value is not None:
      seeds[record.group].append(value)
  finite = [v for r in rows for v in (r.mean_acc, r.ci_low, r.ci_high) if not math.isnan(v)]
  finite += [v for vs in seeds.values() for v in vs]
  lo, hi = (min(finite), max(finite)) if finite else (0.0, 1.0)
  pad = 0.08 * (hi - lo) if hi > lo else 0.01
  floor = lo - pad  # bars start at the zoomed floor so small differences stay visible
  for i, r in enumerate(rows):
    if not math.isnan(r.mean_acc):
      ax.barh(i, r.mean_acc - floor, left=floor, height=0.6, alpha=0.55,
              color="tab:gray" if r.variant == baseline else "tab:blue")
    if not math.isnan(r.ci_low):
      ax.errorbar(r.mean_acc, i, xerr=[[r.mean_acc - r.ci_low], [r.ci_high - r.mean_acc]],
                  fmt="none", ecolor="black", capsize=5, lw=1.5)
    values = seeds[r.variant]
    ax.scatter(values, i + np.linspace(-0.15, 0.15, len(values)), s=14, color="black",
               zorder=3, alpha=0.7)
  ax.set_xlim(floor, hi + pad)
  ax.set_yticks(np.arange(len(rows)), [
      f"{r.variant}  (n={r.n}{f', {r.n_failed} failed' if r.n_failed else ''})" for r in rows],
      fontsize=10)
  ax.invert_yaxis()
  ax.set_xlabel(f"{acc}: mean with 95% CI (dots: seeds; axis zoomed)")
  ax.set_title("accuracy per variant", fontsize=11)
  ax.grid(axis="x", alpha=0.3)


def _paired_differences(ax, rows: Sequence[AblationRow], baseline: str, acc: str) -> None:
  """Each variant's mean paired difference to the baseline with its 95% CI, coloured by sign."""
  ax.axvline(0.0, color="black", lw=1.0)
  for i, r in enumerate(rows):
    if r.variant == baseline:
      ax.text(0.0, i, " baseline", va="center", ha="left", fontsize=9, color="0.35")
      continue
    if math.isnan(r.diff):
      continue
    resolved = not math.isnan(r.diff_low)
    if resolved and r.diff_low > 0:
      color = "tab:green"
    elif resolved and r.diff_high < 0:
      color = "tab:red"
    else:
      color = "0.4"
    xerr = [[r.diff - r.diff_low], [r.diff_high - r.diff]] if resolved else None
    ax.errorbar(r.diff, i, xerr=xerr, fmt="o", color=color, ecolor=color, capsize=5, ms=7,
                lw=1.5)
    interval = f"  [{r.diff_low:+.4f}, {r.diff_high:+.4f}]" if resolved else ""
    ax.annotate(f"{r.diff:+.4f}{interval}", (r.diff, i), xytext=(0, 9),
                textcoords="offset points", ha="center", va="bottom", fontsize=8.5, color=color)
  ax.margins(x=0.18)  # room for the interval labels at either end
  ax.set_xlabel(f"variant − baseline in {acc}, paired by seed (95% CI)")
  ax.set_title("difference to the baseline (grey bar)\n"
               "green: better, red: worse, grey: interval contains 0", fontsize=10.5)
  ax.grid(axis="x", alpha=0.3)


def _grid_heatmap(fig: Figure, ax, rows: Sequence[AblationRow], grid, acc: str) -> None:
  """Crossed factors as a heatmap of means, each cell labelled 'mean ± CI half-width'."""
  row_levels, col_levels, cells = grid
  factors = crossed_factors(rows)
  means = np.full((len(row_levels), len(col_levels)), np.nan)
  for (row, col), r in cells.items():
    means[row_levels.index(row), col_levels.index(col)] = r.mean_acc
  image = ax.imshow(means, cmap="viridis", aspect="auto")
  finite = means[np.isfinite(means)]
  middle = (finite.min() + finite.max()) / 2 if finite.size else 0.0
  for (row, col), r in cells.items():
    i, j = row_levels.index(row), col_levels.index(col)
    half = "" if math.isnan(r.ci_low) else f"\n± {(r.ci_high - r.ci_low) / 2:.4f}"
    ax.text(j, i, f"{r.mean_acc:.4f}{half}", ha="center", va="center", fontsize=9,
            color="black" if r.mean_acc > middle else "white")
  ax.set_xticks(range(len(col_levels)), col_levels, fontsize=10)
  ax.set_yticks(range(len(row_levels)), row_levels, fontsize=10)
  ax.set_xlabel(", ".join(factors[1:]))
  ax.set_ylabel(factors[0])
  ax.set_title(f"mean {acc} (± 95% CI half-width)", fontsize=11)
  fig.colorbar(image, ax=ax, shrink=0.8)
