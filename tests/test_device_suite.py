"""benchmarks/device_suite.sh runs unchanged on a CPU with tiny sizes and writes its JSON and
markdown table (what CI runs; the accelerator run uses the same script without --tiny)."""

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_device_suite_tiny_writes_json_and_table(tmp_path):
  out = tmp_path / "suite"
  result = subprocess.run(["bash", os.path.join(REPO, "benchmarks", "device_suite.sh"), str(out),
                           "--tiny"], env={**os.environ, "PYTHON": sys.executable},
                          capture_output=True, text=True, timeout=900)
  assert result.returncode == 0, result.stderr[-2000:]
  with open(out / "device_suite.json") as f:
    suite = json.load(f)
  assert suite["tiny"] is True and suite["backend"] == "cpu"
  assert suite["mlp_population"]["members"] == 4
  assert suite["mlp_population"]["speedup_vs_one_at_a_time"] > 0
  assert [suite[k]["members"] for k in ("cnn_small", "cnn_large")] == [2, 3]
  for key in ("cnn_small", "cnn_large"):
    assert {"vmap", "map", "one_at_a_time"} <= set(suite[key])
  assert set(suite["fast_cnn"]) >= {"float32", "bfloat16", "bf16_speedup", "fraction_of_peak"}
  assert suite["fast_cnn"]["peak_bf16_tflops"] is None   # no bf16 peak is known for a CPU
  assert "available" in suite["pack"]   # --pack may not exist in this build: said, not failed
  assert suite["max_compile_s"] >= 0
  table = (out / "device_suite.md").read_text()
  assert "| packed vs --pack=off |" in table
  assert "bf16 peak" in table or "peak unknown" in table
