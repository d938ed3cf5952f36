"""bench/eager_overhead.py runs on a machine without a GPU: it measures the CPU backend, says so and prints
table rows per shape with every smla path timed: the Python path always, the torch extension too when
PyTorch is importable (torch CPU tensors then)."""

import importlib.util
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def test_eager_overhead_bench_smoke_on_the_cpu_backend():
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join(path for path in sys.path if path))
    done = subprocess.run([sys.executable, os.path.join(REPO, "bench", "eager_overhead.py"), "--device", "cpu",
                           "--calls", "3", "--repeats", "1", "--shapes", "flash-c4:1,flash-swa:2"],
                          capture_output=True, text=True, env=environment, timeout=600)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "CPU backend (" in lines[0] and "lengths 0): a smoke test" in lines[0]
    torch_available = "torch CPU tensors" in lines[0]
    assert torch_available == (importlib.util.find_spec("torch") is not None and os.environ.get("SMLA_NO_TORCH") != "1")
    extension_line = next(line for line in lines if line.startswith("# torch extension: "))
    extension_loaded = extension_line.startswith("# torch extension: loaded")
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in lines if line.startswith("| flash-")]
    paths = ["extension", "Python"] if torch_available else ["Python"]
    assert [row[:2] + [row[4]] for row in rows] == [[shape, batch, path] for shape, batch in (("flash-c4", "1"),
                                                                                               ("flash-swa", "2"))
                                                     for path in paths]
    for row in rows:
        assert row[9] == "n/a"  # FlashMLA is not importable here (or no GPU): its row is skipped
        if row[4] == "extension" and not extension_loaded:
            assert row[5].startswith("n/a") and row[10] == row[11] == "n/a"
            continue
        drop_in, plan_run = float(row[5]), float(row[6])
        assert drop_in > 0 and plan_run > 0
        assert float(row[10]) > 0 and float(row[11]) > 0  # the bindings-only columns
