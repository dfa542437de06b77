"""The option table drives the flags, validation and resume comparison; `sweeps.api` builds and
runs a sweep with the same checks as the CLI."""

import io

import pytest
from absl import flags

from sweeps import api, cli
from sweeps import config as config_lib

TOY = {"model": "mlp", "widths": "[8]", "optimizer": "sgd", "batch_size": 50}


def test_every_option_is_a_flag_with_the_table_default():
  flag_values = flags.FlagValues()
  cli.define_flags("circle", flag_values)
  for option in config_lib.OPTIONS:
    expected = "circle" if option.name == "dataset" else option.default
    assert flag_values[option.name].default == expected, option.name
    assert option.help in flag_values[option.name].help
  # The CLI with no arguments and the API with none give the same config.
  assert cli.config_from_argv([], "circle") == config_lib.make(dataset="circle")


def test_search_and_display_options_partition_the_table():
  assert set(cli.SEARCH_FLAGS) | set(cli.DISPLAY_FLAGS) == set(config_lib.BY_NAME)
  assert not set(cli.SEARCH_FLAGS) & set(cli.DISPLAY_FLAGS)
  assert "space" in cli.SEARCH_FLAGS and "workdir" in cli.DISPLAY_FLAGS


@pytest.mark.parametrize("name,value,line", [
    ("trials", 0, "--trials: got 0; allowed: an integer >= 1"),
    ("val_fraction", 1.0, "--val_fraction: got 1.0; allowed: a number in (0, 1)"),
    ("pbt_fraction", 0.0, "--pbt_fraction: got 0.0; allowed: a number in (0, 0.5]"),
    ("memory_budget_mb", 0.0, "--memory_budget_mb: got 0.0; allowed: a number >= 1"),
    ("conv_vectorize", "pmap", "--conv_vectorize: got 'pmap'; allowed: auto, vmap, map"),
    ("objective", "acc", "--objective: got 'acc'; allowed: val_acc, val_loss"),
    ("epochs", 2.5, "--epochs: got 2.5; allowed: an integer >= 1"),
])
def test_bounds_come_from_the_table(name, value, line):
  cfg = config_lib.make(dataset="circle", **{name: value})
  assert config_lib.option_problems(cfg) == [line]


def test_make_config_reports_every_problem_one_line_each(tmp_path):
  with pytest.raises(api.UsageError) as e:
    api.make_config(dataset="circle", workdir=str(tmp_path / "w"), space=TOY, trials=0,
                    eta=1, strategy="nope")
  lines = str(e.value).splitlines()
  assert [l.split(":")[0] for l in lines] == ["--strategy", "--trials", "--eta"]
  with pytest.raises(api.UsageError, match="--epoch: unknown option; did you mean --epochs"):
    api.make_config(dataset="circle", epoch=3)


def test_resume_compares_search_options_only():
  cfg = config_lib.make(dataset="circle", space=["lr=0.1", "momentum=0.9"], top=3)
  old = cfg.to_json()
  assert config_lib.changed_search_options(old, cfg.replace(top=7, progress=False)) == []
  # An option added to the table after the sweep was written counts as its default.
  del old["min_delta"]
  assert config_lib.changed_search_options(old, cfg) == []
  changed = config_lib.changed_search_options(old, cfg.replace(space=["lr=0.1", "momentum=0.5"],
                                                              seed=3))
  assert changed == ["space", "seed"] or changed == ["seed", "space"]


def test_unknown_space_field_suggests_the_nearest(tmp_path):
  with pytest.raises(api.UsageError, match="--space: lrr: unknown field; did you mean lr"):
    api.make_config(dataset="circle", workdir=str(tmp_path), space={**TOY, "lrr": 0.1})


def test_api_runs_a_sweep_and_returns_one_record_per_member(tmp_path):
  workdir = str(tmp_path / "w")
  cfg = api.make_config(dataset="circle", workdir=workdir, epochs=2, test_top=1,
                        progress=False, space={**TOY, "lr": "grid(0.1, 0.3)"})
  out = io.StringIO()
  recs = api.run(cfg, out=out)
  assert sorted(r.params["lr"] for r in recs) == [0.1, 0.3]
  assert all(len(r.history["val_acc"]) == 2 for r in recs)
  assert api.best(recs) in recs
  assert "top 2 of 2 members" in out.getvalue()
  # Same flags through argv: the same config (what the CLI would run).
  argv = [f"--workdir={workdir}", "--epochs=2", "--test_top=1", "--noprogress"] + [
      f"--space={line}" for line in api._space_lines({**TOY, "lr": "grid(0.1, 0.3)"})]
  assert api.config_from_argv(argv, "circle") == cfg
