"""Through the real entry points (`python -m sweeps.toy` / `sweeps.mnist`): runtime failures are
one line and exit 2, found before training (nothing written); `--help` is ours and reads the
registries."""

import gzip
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("JAXNN_SHARED_DATASETS",
                        os.path.join(os.path.dirname(REPO), "shared", "datasets"))
SPACE = ["--space=model=mlp", "--space=widths=[8]", "--space=lr=0.1", "--epochs=1",
         "--noprogress"]


def _run(module, *args):
  return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True,
                        text=True, timeout=600)


def _one_line_exit_2(result, message):
  assert result.returncode == 2, result.stderr[-2000:]
  lines = [l for l in result.stderr.strip().splitlines() if l.strip()]
  assert len(lines) == 1, result.stderr
  assert message in lines[0], lines[0]
  assert "Traceback" not in result.stderr


def test_unknown_flag_exits_2_with_one_line():
  _one_line_exit_2(_run("sweeps.toy", "--epochz=3"), "Unknown command line flag 'epochz'")


def test_bad_workdir_and_storage_are_found_before_the_data(tmp_path):
  a_file = tmp_path / "file"
  a_file.write_text("x")
  # The data set does not exist: had the data been loaded first, that would be the error.
  missing = ["--dataset=mnist", f"--data_dir={tmp_path}"]
  _one_line_exit_2(_run("sweeps.mnist", f"--workdir={a_file}", *missing, *SPACE),
                   f"--workdir: {a_file} is a file, not a folder")
  _one_line_exit_2(_run("sweeps.mnist", f"--workdir={a_file}/sub", *missing, *SPACE),
                   "is a file, not a folder")
  result = _run("sweeps.mnist", f"--workdir={tmp_path / 'w'}", *missing, *SPACE,
                f"--study_storage=sqlite:///{tmp_path}/no/such/dir/study.db")
  _one_line_exit_2(result, "--study_storage: cannot open")
  assert not (tmp_path / "w").exists()
  if os.geteuid() != 0:   # root writes anywhere
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    _one_line_exit_2(_run("sweeps.mnist", f"--workdir={locked}/w", *missing, *SPACE),
                     "is not writable")


def _image_folder(root, sizes, splits=("train", "test")):
  from PIL import Image
  for split in splits:
    for label in ("a", "b"):
      os.makedirs(root / split / label)
      for i, (h, w) in enumerate(sizes):
        Image.fromarray(np.full((h, w, 3), 30 * i, np.uint8)).save(root / split / label / f"{i}.png")


def test_bad_data_is_one_line_exit_2_and_verbose_shows_the_traceback(tmp_path):
  mixed = tmp_path / "mixed"
  _image_folder(mixed, [(8, 8), (8, 8), (9, 7)])
  result = _run("sweeps.toy", f"--dataset=folder:{mixed}", f"--workdir={tmp_path / 'w1'}", *SPACE)
  _one_line_exit_2(result, "all images must share one size")
  notest = tmp_path / "notest"
  _image_folder(notest, [(8, 8)] * 3, splits=("train",))
  result = _run("sweeps.toy", f"--dataset=folder:{notest}", f"--workdir={tmp_path / 'w2'}", *SPACE)
  _one_line_exit_2(result, "no test/")
  verbose = _run("sweeps.toy", f"--dataset=folder:{notest}", f"--workdir={tmp_path / 'w2'}",
                 *SPACE, "--verbose")
  assert verbose.returncode != 0 and "Traceback" in verbose.stderr
  assert not (tmp_path / "w1").exists() and not (tmp_path / "w2").exists()


@pytest.mark.skipif(not os.path.isdir(os.path.join(SHARED, "mnist")), reason="no MNIST copy")
def test_truncated_data_file_is_one_line_exit_2(tmp_path):
  data = tmp_path / "mnist"
  data.mkdir()
  for name in os.listdir(os.path.join(SHARED, "mnist")):
    shutil.copy(os.path.join(SHARED, "mnist", name), data / name)
  with gzip.open(data / "train-labels-idx1-ubyte.gz", "rb") as f:
    raw = f.read()
  with open(data / "train-labels-idx1-ubyte.gz", "wb") as f:
    f.write(gzip.compress(raw)[:len(raw) // 4])
  result = _run("sweeps.mnist", f"--data_dir={data}", f"--workdir={tmp_path / 'w'}", *SPACE)
  _one_line_exit_2(result, "train-labels-idx1-ubyte.gz")
  assert not (tmp_path / "w").exists()


def test_help_lists_our_flags_first_with_the_registries():
  from jaxnn import models, optim, schedules
  from sweeps import strategies
  result = _run("sweeps.toy", "--help")
  assert result.returncode == 0, result.stderr
  text = result.stdout
  assert text.index("--strategy") < text.index("search space (--space)")
  assert "uniform(lo, hi)" in text and "per_layer(" in text   # the space syntax
  for name in [*models.list_models(), *optim.OPTIMIZERS, *schedules.SCHEDULES,
               *strategies.STRATEGIES, "relu", "he_normal", "fashion_mnist"]:
    assert name in text, name
  full = _run("sweeps.toy", "--helpfull").stdout
  assert full.index("--strategy") < full.index("library flags:")
