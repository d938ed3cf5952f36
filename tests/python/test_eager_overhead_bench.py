"""bench/eager_overhead.py runs on a machine without a GPU: it measures the CPU backend, says so and prints
one table row per shape with every smla path timed."""

import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def test_eager_overhead_bench_smoke_on_the_cpu_backend():
    environment = dict(os.environ, PYTHONPATH=os.path.join(REPO, "python"))
    done = subprocess.run([sys.executable, os.path.join(REPO, "bench", "eager_overhead.py"), "--device", "cpu",
                           "--calls", "3", "--repeats", "1", "--shapes", "flash-c4:1,flash-swa:2"],
                          capture_output=True, text=True, env=environment, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "CPU backend (NumPy inputs, lengths 0): a smoke test" in lines[0]
    rows = [line for line in lines if line.startswith("| flash-")]
    assert [row.split(" | ")[:2] for row in rows] == [["| flash-c4", "1"], ["| flash-swa", "2"]]
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        drop_in, plan_run = float(cells[4]), float(cells[5])
        assert drop_in > 0 and plan_run > 0
        assert cells[8] == "n/a"  # FlashMLA is not importable here (or no GPU): its row is skipped
        assert float(cells[9]) > 0 and float(cells[10]) > 0  # the Python-only columns
