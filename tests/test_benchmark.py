import os
import subprocess
import sys

import pytest

from faceexpr_tf import benchmark
from faceexpr_tf import models

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_generator_flops_match_the_pytorch_anchor():
  # 2.73 GFLOP per image for the official G at 48 px (../shared/bench counts the same).
  assert benchmark.generator_flops(models.ModelConfig()) / 1e9 == pytest.approx(2.73, abs=0.01)
  small = models.ModelConfig(g_conv_dim=16, g_repeat_num=2)
  assert benchmark.generator_flops(small) < benchmark.generator_flops(models.ModelConfig()) / 20


def test_benchmark_mode_prints_and_appends_rows(tmp_path):
  table = tmp_path / "bench.md"
  cmd = [sys.executable, os.path.join(ROOT, "main.py"), "benchmark", "--bench_configs=demo",
         "--bench_steps=2", f"--bench_table={table}"]
  env = dict(os.environ, PYTHONPATH=ROOT)
  for _ in range(2):
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
  rows = [l for l in table.read_text().splitlines() if "| demo |" in l]
  assert len(rows) == 2 and "| demo |" in out.stdout
  cells = [c.strip() for c in rows[0].strip("|").split("|")]
  assert float(cells[9]) > 0 and float(cells[10]) > 0      # train and inference img/s
  assert table.read_text().count("| date |") == 1            # one header, rows appended
  bad = subprocess.run(cmd[:3] + ["--bench_configs=nope"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
  assert bad.returncode == 2 and "nope" in bad.stderr and "Traceback" not in bad.stderr
