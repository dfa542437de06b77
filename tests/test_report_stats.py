"""Ablation statistics on cases whose answers are known by hand."""

import math

import numpy as np
from scipy import special
import pytest

from sweeps.records import Record
from sweeps.reporting import synthetic
from sweeps.reporting.stats import (METRICS, ablation_rows_as_dicts, ablation_table,
                                    crossed_factors, format_ablation_table, format_grid,
                                    grid_cells, mean_ci, parse_group, t_quantile)

BASE_ACCS = [0.90, 0.92, 0.88, 0.91, 0.89]


def _member(member_id, group, seed, acc, loss=None, status="complete"):
  loss = 1.0 - acc if loss is None else loss
  return Record(member_id=member_id, group=group, seed=seed, status=status,
                params={"lr": 0.0 if group == "lr=0" else 0.1},
                history={"val_acc": [acc / 2, acc], "val_loss": [loss + 0.5, loss]},
                epochs_run=2)


def _study(variants):
  """variants: group -> list of accuracies per seed (seed = index)."""
  records, member_id = [], 0
  for group, accs in variants.items():
    for seed, acc in enumerate(accs):
      if acc is not None:
        records.append(_member(member_id, group, seed, acc))
        member_id += 1
  return records


@pytest.mark.parametrize("df,expected", [(1, 12.7062047), (2, 4.3026527), (4, 2.7764451),
                                         (9, 2.2621572), (30, 2.0422725)])
def test_t_quantile_matches_the_table(df, expected):
  assert t_quantile(df) == pytest.approx(expected, rel=1e-6)


def test_mean_ci_by_hand():
  # mean 2, s = 1, n = 3: half-width = t(0.975, 2) / sqrt(3) = 4.3026527 / 1.7320508
  mean, std, low, high = mean_ci([1.0, 2.0, 3.0])
  assert (mean, std) == (2.0, 1.0)
  assert high - mean == pytest.approx(4.3026527 / math.sqrt(3), rel=1e-6)
  assert mean - low == pytest.approx(high - mean)


def test_mean_ci_degenerate_sizes():
  assert all(math.isnan(v) for v in mean_ci([]))
  mean, std, low, high = mean_ci([0.7])
  assert mean == 0.7 and math.isnan(std) and math.isnan(low) and math.isnan(high)


def test_variant_exactly_half_worse_has_difference_minus_half_with_zero_width():
  rows = ablation_table(_study({"baseline": BASE_ACCS, "lr=0": [a - 0.5 for a in BASE_ACCS]}))
  base, lr0 = rows
  assert base.variant == "baseline" and math.isnan(base.diff) and base.n_pairs == 0
  assert lr0.n_pairs == 5
  assert lr0.diff == pytest.approx(-0.5, abs=1e-12)
  assert lr0.diff_low == pytest.approx(-0.5, abs=1e-12)
  assert lr0.diff_high == pytest.approx(-0.5, abs=1e-12)
  # The unpaired intervals are as wide as the seeds' spread; only the pairing is exact.
  assert lr0.std_acc == pytest.approx(base.std_acc)
  assert lr0.ci_high - lr0.ci_low > 0.02 and base.ci_high - base.ci_low > 0.02


def test_variant_equal_to_the_baseline_has_an_interval_containing_zero():
  rows = ablation_table(_study({"baseline": BASE_ACCS, "same": list(BASE_ACCS)}))
  same = rows[1]
  assert same.diff == 0.0 and same.diff_low <= 0.0 <= same.diff_high


def test_variant_equal_to_the_baseline_up_to_noise_has_an_interval_containing_zero():
  rng = np.random.default_rng(3)
  noisy = [a + float(e) for a, e in zip(BASE_ACCS, rng.normal(0, 0.01, 5))]
  same = ablation_table(_study({"baseline": BASE_ACCS, "same": noisy}))[1]
  assert same.diff_low < 0.0 < same.diff_high


def test_per_variant_statistics_by_hand():
  row = ablation_table(_study({"baseline": BASE_ACCS}))[0]
  assert row.n == 5 and row.n_failed == 0
  assert row.mean_acc == pytest.approx(0.90)
  assert row.std_acc == pytest.approx(math.sqrt(0.001 / 4))  # deviations .00,.02,-.02,.01,-.01
  # The interval is the t interval of the logits, mapped back (inside [0, 1]).
  logits = special.logit(np.array(BASE_ACCS))
  half = t_quantile(4) * logits.std(ddof=1) / math.sqrt(5)
  assert (row.ci_low, row.ci_high) == pytest.approx(
      tuple(special.expit([logits.mean() - half, logits.mean() + half])))
  assert row.ci_low < 0.90 < row.ci_high
  assert row.mean_loss == pytest.approx(0.10)


def test_pairing_uses_shared_seeds_only():
  rows = ablation_table(_study({"baseline": BASE_ACCS, "v": [0.95, None, 0.93, None, None]}))
  v = rows[1]
  assert v.n == 2 and v.n_pairs == 2
  assert v.diff == pytest.approx(((0.95 - 0.90) + (0.93 - 0.88)) / 2)


def test_failed_members_are_counted_and_null_metrics_skipped():
  records = _study({"baseline": BASE_ACCS})
  records.append(Record(member_id=99, group="lr=10", seed=0, status="diverged",
                        history={"val_acc": [None], "val_loss": [None]}))
  records.append(_member(100, "lr=10", 1, 0.1, status="diverged"))
  row = ablation_table(records)[1]
  assert row.variant == "lr=10" and row.n == 1 and row.n_failed == 2
  assert row.mean_acc == pytest.approx(0.1) and math.isnan(row.ci_low)


def test_baseline_first_then_variants_in_order_of_appearance():
  records = _study({"b=1": [0.5], "baseline": [0.6], "a=1": [0.7]})
  assert [r.variant for r in ablation_table(records)] == ["baseline", "b=1", "a=1"]


def test_no_baseline_means_no_differences():
  rows = ablation_table(_study({"x=1": [0.5, 0.6], "x=2": [0.6, 0.7]}))
  assert all(math.isnan(r.diff) and r.n_pairs == 0 for r in rows)


@pytest.mark.parametrize("metric", METRICS)
def test_every_metric_is_accepted(metric):
  rows = ablation_table(_study({"baseline": [0.5, 0.6]}), acc=metric, loss=metric)
  assert rows[0].n in (0, 2)


def test_unknown_metric_fails_with_the_known_ones():
  with pytest.raises(ValueError, match="metric: unknown 'accuracy'; known: best_train_acc"):
    ablation_table([], acc="accuracy")


def test_parse_group():
  assert parse_group("optimizer=adam,activation=relu") == {"optimizer": "adam",
                                                           "activation": "relu"}
  assert parse_group("baseline") == {} and parse_group(None) == {}
  assert parse_group("lr=1e-3") == {"lr": "1e-3"}


def test_format_ablation_table_shows_the_numbers():
  rows = ablation_table(_study({"baseline": BASE_ACCS, "lr=0": [a - 0.5 for a in BASE_ACCS]}))
  text = format_ablation_table(rows)
  lines = text.splitlines()
  assert lines[0].split()[:3] == ["variant", "n", "failed"]
  assert lines[2].startswith("baseline") and "0.9000" in lines[2]
  assert lines[3].startswith("lr=0") and "-0.5000" in lines[3]
  assert "[-0.5000, -0.5000]" in lines[3]


def test_one_factor_at_a_time_is_not_a_grid():
  rows = ablation_table(synthetic.ablation_records(seeds=2))
  assert crossed_factors(rows) is None and format_grid(rows) is None


def test_crossed_factors_make_a_grid_with_hand_checked_cells():
  variants = {}
  for opt, base in (("sgd", 0.80), ("adam", 0.90)):
    for act, shift in (("relu", 0.0), ("tanh", -0.05)):
      variants[f"optimizer={opt},activation={act}"] = [base + shift, base + shift + 0.02]
  rows = ablation_table(_study(variants))
  assert crossed_factors(rows) == ["optimizer", "activation"]
  row_levels, col_levels, cells = grid_cells(rows)
  assert row_levels == ["sgd", "adam"] and col_levels == ["relu", "tanh"]
  assert cells[("adam", "tanh")].mean_acc == pytest.approx(0.86)
  text = format_grid(rows)
  lines = text.splitlines()
  assert lines[0] == "mean accuracy ± 95% CI half-width"
  assert lines[1].split()[:3] == ["optimizer", "\\", "activation"]
  sgd = next(r for r in rows if r.variant == "optimizer=sgd,activation=relu")
  half = (sgd.ci_high - sgd.ci_low) / 2   # two values 0.02 apart, t(1) on the logit scale
  assert 0.1 < half < 0.2
  assert lines[3].startswith("sgd") and f"0.8100 ± {half:.4f} (n=2)" in lines[3]
  assert lines[4].startswith("adam") and "0.8600 ±" in lines[4]
  assert "sd (n=2)" in format_grid(rows, value="mean_loss")


def test_three_crossed_factors_put_the_rest_across():
  variants = {f"a={a},b={b},c={c}": [0.5] for a in (1, 2) for b in (1, 2) for c in (1, 2)}
  row_levels, col_levels, _ = grid_cells(ablation_table(_study(variants)))
  assert row_levels == ["1", "2"] and col_levels == ["b=1,c=1", "b=1,c=2", "b=2,c=1",
                                                     "b=2,c=2"]


def test_rows_as_dicts_turn_nan_into_none():
  d = ablation_rows_as_dicts(ablation_table(_study({"baseline": [0.5]})))[0]
  assert d["variant"] == "baseline" and d["mean_acc"] == 0.5 and d["ci_low"] is None


def test_accuracy_intervals_stay_in_bounds_with_two_seeds():
  from sweeps.reporting.stats import bounded_mean_ci
  for values in ([0.99, 0.999], [0.5, 0.999], [0.001, 0.02], [1.0, 1.0], [0.0, 0.3]):
    mean, _, low, high = bounded_mean_ci(values)
    assert 0.0 <= low <= high <= 1.0, values
    assert low <= mean + 1e-4 and mean - 1e-4 <= high, values
  # The plain t interval of the same values runs past 1.0: the reason for the logit scale.
  assert mean_ci([0.99, 0.999])[3] > 1.0
