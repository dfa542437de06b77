"""The accelerator suite: one run, one JSON and one markdown table (run it via device_suite.sh).

    benchmarks/device_suite.sh "$OUT"            # one GPU/TPU, <= 8 minutes
    benchmarks/device_suite.sh /tmp/suite --tiny # any CPU, tiny sizes (CI runs this)

Measured, each after a warm-up call that compiles (compile seconds are recorded per bucket):
  mlp_population:  64 small MLPs as one population vs the same jitted program one at a time
                   (a population of 1, timed for a few members and scaled);
  pack:            a sweep of MLPs of mixed widths with --pack=auto vs --pack=off (skipped, and
                   said so, where this build has no --pack flag);
  cnn_8, cnn_16:   8 and 16 small CNNs as vmap vs lax.map vs one at a time;
  bf16:            the fast CNN (fastnet) population in float32 vs bfloat16;
  fast_cnn:        its achieved FLOP/s (XLA's cost analysis of a training step, times steps) as a
                   fraction of the device's dense bf16 peak (PEAK_TFLOPS, by device kind).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from jaxnn import member, population
from jaxnn.data import Dataset, Split

FLAGS = flags.FLAGS
flags.DEFINE_string("out", None, "Folder for device_suite.json and device_suite.md.")
flags.DEFINE_bool("tiny", False, "Tiny sizes (any CPU, about a minute).")

# Dense bf16 peak TFLOP/s by device kind (vendor figures, no sparsity); fp16 for V100.
PEAK_TFLOPS = {"H200": 989, "H100": 989, "A100": 312, "A10G": 70, "L4": 121, "V100": 125,
               "TPU v4": 275, "TPU v5 lite": 197, "TPU v5e": 197, "TPU v5p": 459,
               "TPU v6 lite": 918}

SIZES = {   # (full, tiny)
    "mlp_members": (64, 4), "mlp_widths": ((256, 128), (8,)), "mlp_examples": (16384, 256),
    "singles_timed": (8, 2),
    "cnn_sizes": ((8, 16), (2, 3)), "cnn_examples": (8192, 64), "cnn_batch": (128, 32),
    "cnn_kwargs": (dict(), dict(features=(4, 8), dense_width=8)),
    "fast_members": (16, 2), "fast_examples": (8192, 64), "fast_batch": (512, 32),
    "fast_kwargs": (dict(), dict(stem_width=4, widths=(4, 8, 8))),
    "pack_trials": (32, 4), "pack_examples": (8192, 256),
}


def size(name):
  return SIZES[name][1 if FLAGS.tiny else 0]


def _dataset(n, shape, n_val=512) -> Dataset:
  rng = np.random.default_rng(0)
  x = rng.integers(0, 256, size=(n + n_val,) + shape, dtype=np.uint8)
  y = rng.integers(0, 10, size=n + n_val).astype(np.int32)
  c = shape[-1]
  return Dataset("synthetic", Split(x[:n], y[:n]), Split(x[n:], y[n:]), Split(x[n:], y[n:]), 10,
                 tuple(map(str, range(10))), np.full(c, 127.5, np.float32),
                 np.full(c, 64.0, np.float32))


def _bucket(configs):
  resolved = [member.resolve(c, num_classes=10) for c in configs]
  return resolved[0][0], [r for _, r in resolved]


def _timed_epochs(spec, rows, ids, data, vectorize):
  """(compile+first epoch seconds, steady epoch seconds) of one population."""
  hparams = jax.tree_util.tree_map(jnp.asarray, population.stack_rows(rows, ids))
  state = population.init(spec, hparams, data)
  block = population.default_block(spec)
  times = []
  for _ in range(3):
    start = time.perf_counter()
    state, metrics = population.run_epoch(spec, state, hparams, data, vectorize, block)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - start)
  steady = statistics.median(times[1:])
  return {"first_s": round(times[0], 4), "epoch_s": round(steady, 4),
          "compile_s": round(max(times[0] - steady, 0.0), 4)}


def _configs(base, n):
  rng = np.random.default_rng(1)
  return [dict(base, lr=float(10 ** rng.uniform(-3, -1.5)), seed=i) for i in range(n)]


def population_vs_singles(base, n, data, vectorizes):
  """Populations (each vectorize) vs one at a time, configs/second per epoch."""
  spec, rows = _bucket(_configs(base, n))
  out = {"members": n, "bucket": spec.name()}
  for vectorize in vectorizes:
    out[vectorize] = _timed_epochs(spec, rows, list(range(n)), data, vectorize)
  timed = min(n, size("singles_timed"))
  singles = [_timed_epochs(spec, rows[i:i + 1], [i], data, "map") for i in range(timed)]
  one = statistics.median(s["epoch_s"] for s in singles)
  out["one_at_a_time"] = {"epoch_s": round(one * n, 4), "compile_s": singles[0]["compile_s"]}
  best = min(vectorizes, key=lambda v: out[v]["epoch_s"])
  out["best"] = best
  out["speedup_vs_one_at_a_time"] = round(one * n / out[best]["epoch_s"], 3)
  if "map" in vectorizes and "vmap" in vectorizes:
    out["vmap_vs_map"] = round(out["map"]["epoch_s"] / out["vmap"]["epoch_s"], 3)
  return out


def _step_flops(spec, data, batch) -> float:
  model = spec.build_model()
  x = jnp.zeros((batch,) + data.train_x.shape[1:], jnp.float32)
  hp = {"dropout": jnp.float32(0), "act_param": jnp.float32(0)}
  variables = model.init({"params": jax.random.key(0)}, x[:1], train=False, hparams=hp)
  cost = jax.jit(lambda v, x: model.apply(v, x, train=False, hparams=hp)).lower(
      variables, x).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return 3.0 * float(cost["flops"])   # forward + backward (about twice the forward)


def peak_tflops(kind: str) -> float | None:
  for name, peak in sorted(PEAK_TFLOPS.items(), key=lambda kv: -len(kv[0])):
    if name.lower() in kind.lower():
      return float(peak)
  return None


def fast_cnn(data):
  base = dict(model="fastnet", optimizer="momentum", momentum=0.9, batch_size=size("fast_batch"),
              **size("fast_kwargs"))
  spec, rows = _bucket(_configs(base, size("fast_members")))
  ids = list(range(len(rows)))
  out = {"members": len(rows), "bucket": spec.name()}
  for dtype in population.DTYPES:
    out[dtype] = _timed_epochs(population.with_dtype(spec, dtype), rows, ids, data, "vmap")
  out["bf16_speedup"] = round(out["float32"]["epoch_s"] / out["bfloat16"]["epoch_s"], 3)
  steps = population.steps_per_epoch(spec, data.train_x.shape[0])
  flops = _step_flops(spec, data, spec.batch_size) * steps * len(rows)
  best = min(out["float32"]["epoch_s"], out["bfloat16"]["epoch_s"])
  out["tflops"] = round(flops / best / 1e12, 4)
  kind = jax.devices()[0].device_kind
  peak = peak_tflops(kind)
  out["peak_bf16_tflops"] = peak
  out["fraction_of_peak"] = round(out["tflops"] / peak, 4) if peak else None
  return out


def pack_sweeps():
  """A mixed-width MLP sweep with --pack=auto vs --pack=off, through the CLI's own path."""
  from sweeps import cli
  dataset_n = size("pack_examples")
  common = ["--dataset=gauss", "--noprogress", "--strategy=random", f"--trials={size('pack_trials')}",
            "--epochs=2", f"--train_subset={dataset_n}", "--test_top=0",
            "--space=model=mlp", "--space=depth=int(1, 2)",
            "--space=widths=per_layer(depth, choice(16, 32, 64, 128))",
            "--space=lr=loguniform(1e-3, 1e-1)", "--space=batch_size=128"]
  out = {}
  for pack in ("auto", "off"):
    with tempfile.TemporaryDirectory() as workdir:
      try:
        cfg = cli.config_from_argv(common + [f"--workdir={workdir}", f"--pack={pack}"], "gauss")
      except Exception as e:  # noqa: BLE001 - an unknown flag: this build has no packing
        return {"available": False, "note": f"--pack not available in this build ({type(e).__name__}: {e})"[:300]}
      space, strategy = cli.validate(cfg)
      start = time.perf_counter()
      with open(os.devnull, "w") as devnull:
        cli.run_sweep(cfg, space, strategy, out=devnull)
      out[pack] = {"wall_s": round(time.perf_counter() - start, 3)}
  out["available"] = True
  out["packed_speedup"] = round(out["off"]["wall_s"] / out["auto"]["wall_s"], 3)
  return out


def markdown(result) -> str:
  r = result
  lines = [f"# device suite: {r['device']} ({r['backend']}), {r['date']}"
           + (" (tiny sizes)" if r["tiny"] else ""), "",
           "| measure | value |", "|---|---|"]
  m = r["mlp_population"]
  lines.append(f"| {m['members']} small MLPs: population vs one at a time | "
               f"{m['speedup_vs_one_at_a_time']}x (goal >= 20x) |")
  p = r["pack"]
  lines.append("| packed vs --pack=off | " + (f"{p['packed_speedup']}x" if p.get("available")
                                                else "n/a: " + p["note"].split(" (")[0]) + " |")
  for key in ("cnn_small", "cnn_large"):
    c = r[key]
    lines.append(f"| {c['members']} small CNNs: vmap {c['vmap']['epoch_s']} s, lax.map "
                 f"{c['map']['epoch_s']} s, one at a time {c['one_at_a_time']['epoch_s']} s | "
                 f"best {c['best']}, {c['speedup_vs_one_at_a_time']}x (goal >= 3x), vmap/map "
                 f"{c['vmap_vs_map']} (goal >= 1) |")
  f = r["fast_cnn"]
  lines.append(f"| fast CNN x{f['members']}: bf16 vs float32 | {f['bf16_speedup']}x |")
  lines.append(f"| fast CNN achieved | {f['tflops']} TFLOP/s = "
               + (f"{100 * f['fraction_of_peak']:.1f}% of {f['peak_bf16_tflops']:.0f} bf16 peak"
                  if f["fraction_of_peak"] is not None else "peak unknown for this device")
               + " (goal >= 35%) |")
  lines.append(f"| slowest compile (bucket) | {r['max_compile_s']} s (goal <= 30 s) |")
  return "\n".join(lines) + "\n"


def main(argv):
  del argv
  out_dir = FLAGS.out or os.environ.get("OUT") or "/tmp/device_suite"
  os.makedirs(out_dir, exist_ok=True)
  start = time.perf_counter()
  device = jax.devices()[0]
  result = {"device": device.device_kind, "backend": jax.default_backend(),
            "devices": jax.device_count(), "tiny": FLAGS.tiny, "jax": jax.__version__,
            "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
  mlp_data = population.device_data(_dataset(size("mlp_examples"), (32, 32, 3)))
  mlp = dict(model="mlp", widths=list(size("mlp_widths")), optimizer="adam", batch_size=128,
             dropout=0.1)
  result["mlp_population"] = population_vs_singles(mlp, size("mlp_members"), mlp_data, ("vmap",))
  print("mlp", result["mlp_population"], flush=True)
  result["pack"] = pack_sweeps()
  print("pack", result["pack"], flush=True)
  cnn_data = population.device_data(_dataset(size("cnn_examples"), (32, 32, 3)))
  cnn = dict(model="small_cnn", optimizer="momentum", momentum=0.9, batch_size=size("cnn_batch"),
             **size("cnn_kwargs"))
  for key, n in zip(("cnn_small", "cnn_large"), size("cnn_sizes")):
    result[key] = population_vs_singles(cnn, n, cnn_data, population.VECTORIZE)
    print(key, result[key], flush=True)
  fast_data = population.device_data(_dataset(size("fast_examples"), (32, 32, 3)))
  result["fast_cnn"] = fast_cnn(fast_data)
  print("fast_cnn", result["fast_cnn"], flush=True)
  compiles = [v["compile_s"] for part in ("mlp_population", "cnn_small", "cnn_large", "fast_cnn")
              for v in result[part].values() if isinstance(v, dict) and "compile_s" in v]
  result["max_compile_s"] = max(compiles)
  result["total_s"] = round(time.perf_counter() - start, 1)
  with open(os.path.join(out_dir, "device_suite.json"), "w") as f:
    json.dump(result, f, indent=1)
  with open(os.path.join(out_dir, "device_suite.md"), "w") as f:
    f.write(markdown(result))
  print(markdown(result))
  print(f"wrote {out_dir}/device_suite.json and device_suite.md in {result['total_s']} s")


if __name__ == "__main__":
  sys.exit(app.run(main))
