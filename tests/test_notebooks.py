"""The Colab notebooks run top to bottom on the CPU with tiny settings (JAXNN_NOTEBOOK_TINY=1),
offline: the install cell finds the checkout, and data come from the shared MNIST copy. Outputs
are stripped in git."""

import os

import nbformat
import pytest
from nbclient import NotebookClient

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLAB = os.path.join(REPO, "colab")
SHARED = os.environ.get("JAXNN_SHARED_DATASETS",
                        os.path.join(os.path.dirname(REPO), "shared", "datasets"))
NOTEBOOKS = ("quickstart.ipynb", "ablation.ipynb", "tpu.ipynb")


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_stripped_and_says_where_the_package_comes_from(name):
  nb = nbformat.read(os.path.join(COLAB, name), as_version=4)
  for cell in nb.cells:
    if cell.cell_type == "code":
      assert not cell.outputs and cell.execution_count is None, f"{name}: outputs in git"
  first_code = next(c for c in nb.cells if c.cell_type == "code")
  assert first_code.source.splitlines()[4].startswith('PACKAGE_SOURCE = ""')
  assert "from sweeps import cli" not in "".join(c.source for c in nb.cells)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_top_to_bottom(name, monkeypatch):
  if name == "ablation.ipynb" and not os.path.isdir(os.path.join(SHARED, "mnist")):
    pytest.skip("no MNIST copy")
  monkeypatch.setenv("JAXNN_NOTEBOOK_TINY", "1")
  monkeypatch.setenv("JAXNN_DATA_DIR", os.path.join(SHARED, "mnist"))
  monkeypatch.setenv("PYTHONPATH", REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
  monkeypatch.setenv("MPLBACKEND", "Agg")
  nb = nbformat.read(os.path.join(COLAB, name), as_version=4)
  NotebookClient(nb, timeout=600, kernel_name="python3",
                 resources={"metadata": {"path": COLAB}}).execute()
  text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
  if name == "quickstart.ipynb":
    assert "best: member" in text
  if name == "ablation.ipynb":
    assert "baseline" in text
  if name == "tpu.ipynb":
    assert "device(s)" in text and "members on" in text
