"""`python -m sweeps.report` and `write_reports` on whole workdirs (finished, running, torn)."""

import os
import subprocess
import sys

import optuna
import pytest
from PIL import Image

from sweeps.records import RECORDS_FILE, Record, append_records, atomic_write_json, read_records
from absl import app

from sweeps import report
from sweeps.report import compare_text, report_dir, write_reports
from sweeps.reporting import synthetic
from sweeps.reporting.table import read_results_csv, read_results_jsonl

PNGS = ("learning_curves.png", "parallel_coordinates.png", "importance.png", "ablation.png")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _fake_workdir(path, name, seed, ablation=True):
  records = synthetic.sweep_records(n_members=9, epochs=4, seed=seed)
  if ablation:
    variants = {"baseline": 0.0, "optimizer=adam": 0.01, "lr=0": -0.8}
    records += synthetic.ablation_records(variants, seeds=2, epochs=3,
                                          first_member_id=len(records))
  atomic_write_json(path / "config.json", {"name": name, "objective": "val_acc"})
  append_records(path, records)
  return records


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("sweep_a")
  other = tmp_path_factory.mktemp("sweep_b")
  records = _fake_workdir(workdir, "sweep_a", seed=0)
  _fake_workdir(other, "sweep_b", seed=1, ablation=False)
  with open(workdir / RECORDS_FILE, "a") as f:
    f.write('{"member_id": 99, "bucket": "torn')  # the sweep crashed mid-append
  result = subprocess.run(
      [sys.executable, "-m", "sweeps.report", str(workdir), "--top", "5", "--compare",
       str(other)], capture_output=True, text=True, cwd=REPO, timeout=300)
  return workdir, other, records, result


def test_cli_succeeds_and_prints_the_top_table(cli_run):
  _, _, records, result = cli_run
  assert result.returncode == 0, result.stderr
  out = result.stdout
  assert f"sweep sweep_a: {len(records)} members" in out
  assert "top 5 of 15 members by val_acc (maximize)" in out
  assert "ablation (95% CI" in out and "lr=0" in out


def test_cli_compare_prints_both_best_members_and_the_difference(cli_run):
  workdir, other, _, result = cli_run
  out = result.stdout
  assert "best members by val_acc (maximize)" in out
  header = next(line for line in out.splitlines() if "sweep_a" in line and "sweep_b" in line)
  assert header.index("sweep_a") < header.index("sweep_b")
  best_a = max(r.objective_value("val_acc") or 0 for r in read_records(workdir))
  best_b = max(r.objective_value("val_acc") or 0 for r in read_records(other))
  assert f"difference of best val_acc (sweep_b - sweep_a): {best_b - best_a:+.4f}" in out


def test_cli_writes_every_artifact(cli_run):
  workdir, _, records, _ = cli_run
  out = report_dir(str(workdir))
  for name in PNGS:
    with Image.open(os.path.join(out, name)) as image:
      assert image.format == "PNG" and image.size[0] > 500
  assert len(read_results_jsonl(os.path.join(out, "results.jsonl"))) == len(records)
  assert len(read_results_csv(os.path.join(out, "results.csv"))) == len(records)
  assert len(read_results_csv(os.path.join(out, "ablation.csv"))) == 3
  assert open(os.path.join(out, "summary.txt")).read().startswith("sweep sweep_a")
  study = optuna.load_study(study_name="sweep_a", storage=f"sqlite:///{out}/study.db")
  assert len(study.trials) == len(records)  # the torn member 99 is not there
  members = [d for d in os.listdir(os.path.join(out, "tensorboard")) if d.startswith("member_")]
  assert len(members) == len(records)


def test_rerender_is_idempotent(cli_run):
  workdir, _, records, _ = cli_run
  written = write_reports(str(workdir), top=5, include=("study", "tensorboard"))
  assert "learning_curves" not in written
  study = optuna.load_study(study_name="sweep_a", storage=written["study"])
  assert len(study.trials) == len(records)
  assert len(os.listdir(os.path.join(written["tensorboard"], "member_0000"))) == 1


def test_half_finished_sweep_with_running_members(tmp_path):
  records = synthetic.sweep_records(n_members=6, epochs=5, seed=2)
  for r in records[3:]:
    r.status, r.epochs_run = "running", 2
    r.history = {k: v[:2] for k, v in r.history.items()}
    r.test = None
  append_records(tmp_path, records)  # no config.json yet: defaults apply
  written = write_reports(str(tmp_path), top=3)
  rows = read_results_jsonl(written["jsonl"])
  assert [r["status"] for r in rows].count("running") == 3
  study = optuna.load_study(study_name=os.path.basename(tmp_path), storage=written["study"])
  assert sum(t.state == optuna.trial.TrialState.RUNNING for t in study.trials) == 3
  assert "ablation" not in written
  for key in ("learning_curves", "parallel_coordinates", "importance"):
    assert os.path.getsize(written[key]) > 10_000


def test_custom_storage_and_loss_objective(tmp_path):
  append_records(tmp_path, synthetic.sweep_records(n_members=4, epochs=3))
  atomic_write_json(tmp_path / "config.json", {"name": "lossy", "objective": "val_loss"})
  storage = f"sqlite:///{tmp_path}/elsewhere.db"
  written = write_reports(str(tmp_path), storage=storage, include=("study",))
  study = optuna.load_study(study_name="lossy", storage=storage)
  assert study.direction == optuna.study.StudyDirection.MINIMIZE
  assert not os.path.exists(os.path.join(report_dir(str(tmp_path)), "study.db"))
  assert written["study"] == storage


def test_include_selects_artifacts(tmp_path):
  append_records(tmp_path, synthetic.sweep_records(n_members=3, epochs=2))
  assert set(write_reports(str(tmp_path), include=())) == {"csv", "jsonl", "summary"}
  with pytest.raises(ValueError, match="include: unknown 'pngs'; known: study, tensorboard"):
    write_reports(str(tmp_path), include=("pngs",))


def test_empty_workdir_writes_the_table_only(tmp_path):
  written = write_reports(str(tmp_path))
  assert set(written) == {"csv", "jsonl", "summary"}
  assert "(no members recorded yet)" in open(written["summary"]).read()


def test_compare_with_an_empty_sweep(tmp_path):
  a, b = tmp_path / "a", tmp_path / "b"
  append_records(a, [Record(member_id=0, history={"val_acc": [0.5]}, status="complete")])
  os.makedirs(b)
  text = compare_text(str(a), str(b))
  assert "members" in text and "difference" not in text


def test_cli_usage_errors(tmp_path):
  with pytest.raises(app.UsageError, match="usage: python -m sweeps.report WORKDIR"):
    report.main(["report"])
  with pytest.raises(app.UsageError, match="WORKDIR: no such directory"):
    report.main(["report", str(tmp_path / "missing")])
