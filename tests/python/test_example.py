"""The DSv4 decode-loop example runs end to end on the CPU backend and prints one row per batch."""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_dsv4_decode_step_runs_on_cpu():
    environment = dict(os.environ, SMLA_NO_TORCH="1")
    result = subprocess.run([sys.executable, os.path.join(REPO, "examples", "dsv4_decode_step.py"), "--device", "cpu",
                             "--batches", "1,3", "--steps", "2"], capture_output=True, text=True, timeout=120,
                            env=environment)
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert [row[0] for row in rows] == ["1", "3"], result.stdout
    assert all(float(row[1]) > 0 and float(row[2]) > 0 for row in rows), result.stdout
