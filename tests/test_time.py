"""Time a person can read: the sweep bar has a total (so tqdm shows an ETA), --dry_run
--estimate probes the plan, and the final line splits the sweep's time."""

import io
import os

from sweeps import api, estimate, progress

TOY = {"model": "mlp", "widths": "[8]", "optimizer": "sgd", "batch_size": 50}


class _Terminal(io.StringIO):
  def isatty(self):
    return True


def test_sweep_bar_has_a_total_and_an_eta(tmp_path, monkeypatch):
  stream = _Terminal()
  made = []
  real = progress.SweepProgress

  def with_terminal(**kwargs):
    bar = real(**{**kwargs, "enabled": True, "stream": stream})
    made.append(bar)
    return bar

  monkeypatch.setattr(progress, "SweepProgress", with_terminal)
  cfg = api.make_config(dataset="circle", workdir=str(tmp_path / "w"), epochs=3, test_top=0,
                        strategy="bayes", trials=4, batch=2,
                        space={**TOY, "lr": "loguniform(0.01, 0.3)"})
  api.run(cfg, out=io.StringIO())
  text = stream.getvalue()
  # 4 trials x 3 epochs known from the first ask of 2 members: the bar counts to 12 with an ETA.
  assert "/12 [" in text and "<" in text, text[-500:]
  assert made[0].bar.n == 12


def test_expected_member_epochs_by_strategy():
  class S:
    trials, epochs = 10, 4
  trials = [type("T", (), {"epochs": 4})() for _ in range(3)]
  assert estimate.expected_member_epochs("bayes", S, trials) == (40, True)
  assert estimate.expected_member_epochs("grid", S, trials) == (12, True)
  assert estimate.expected_member_epochs("hyperband", S, trials) == (12, False)


def test_dry_run_estimate_probes_the_plan_and_writes_nothing(tmp_path):
  out = io.StringIO()
  cfg = api.make_config(dataset="circle", workdir=str(tmp_path / "w"), epochs=5, dry_run=True,
                        estimate=True, pack="off",   # two widths: two programs to probe
                        space={**TOY, "lr": "grid(0.1, 0.2)",
                                              "widths": "choice([8], [16])"})
  assert api.run(cfg, out=out) == []
  line = out.getvalue().strip().splitlines()[-1]
  assert line.startswith("estimate: ") and "for 2 programs" in line, line
  assert "for 20 member-epochs" in line, line   # 2 widths x 2 lr x 5 epochs
  assert not os.path.exists(tmp_path / "w")


def test_final_line_splits_compile_train_and_checkpoint_time():
  line = estimate.time_line({"programs_compiled": 3, "compile_seconds": 2.0,
                             "train_seconds": 5.0, "checkpoint_seconds": 1.0},
                            total_seconds=10.0, checkpoint_seconds=0.5)
  assert line == ("time: 10.0 s = compile 2.0 s (3 programs) + train 5.0 s + checkpoint 1.0 s"
                  " + other 2.0 s")
  # Before the loop writes summary.json: the checkpointer's own count, the rest is "other".
  assert estimate.time_line(None, total_seconds=4.0, checkpoint_seconds=0.5) == \
      "time: 4.0 s = checkpoint 0.5 s + other 3.5 s"
