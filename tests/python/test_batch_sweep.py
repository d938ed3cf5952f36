"""scripts/batch-sweep against a stand-in smla-bench (no GPU): one smla-bench run per shape over the batch
list, one line per batch, every batch whose time grows much faster than its rows over the previous one (a
cliff) and every batch slower than a larger one (beyond the threshold) named, worst first; a failing
smla-bench run and a malformed batch list are errors."""

import os
import subprocess

from stand_in_bench import stand_in_build

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, "scripts", "batch-sweep")

# Prints smla-bench's csv (progress and metadata lines, a header, one row per batch with the columns
# batch-sweep reads by name; b = 40 in 4 splits combined in clusters, b = 48 in 2 through the combine kernel).
# Times are 8 + b us except b = 40 (90 us, above every larger batch's) and b = 6
# (16.2 us, 1.25 % above b = 8's 16); shape "broken" fails.
STAND_IN = r"""#!/usr/bin/env python3
import sys
args = sys.argv[1:]
shape = args[args.index("--shape") + 1]
if shape == "broken":
    print("smla-bench: error: unknown shape 'broken'", file=sys.stderr)
    sys.exit(2)
assert args[args.index("--backend") + 1] == "cuda" and args[args.index("--format") + 1] == "csv"
with open(sys.argv[0] + ".calls", "a") as calls:
    calls.write(" ".join(args) + "\n")
print("[1/3] progress line", file=sys.stderr)
print("# smla_version: 0.1.0")
print("shape,backend,kernel,b,splits,combine,time_us,more")
for b in map(int, args[args.index("--batch") + 1].split(",")):
    time_us = {40: 90.0, 6: 16.2}.get(b, 8.0 + b)
    kernel = "sm90-h64" if b >= 32 else "mma99-h16"
    splits, combine = {40: (4, "cluster"), 48: (2, "kernel")}.get(b, (1, "none"))
    print(f"{shape},cuda,{kernel},{b},{splits},{combine},{time_us:.2f},x")
"""


def run_sweep(tmp_path, *args, check=True):
    env = dict(os.environ, BUILD_DIR=str(stand_in_build(tmp_path, STAND_IN)))
    return subprocess.run([SCRIPT, *args], env=env, capture_output=True, text=True, check=check, cwd=REPO)


def test_inversions_are_named_worst_first(tmp_path):
    lines = run_sweep(tmp_path, "--shapes", "pro-c4", "--batches", "1,2,6,8,32-64:8", "--threshold", "1",
                      "--", "--iters", "5").stdout.splitlines()
    assert lines[:3] == ["pro-c4 b=1: 9.00 us (mma99-h16, 1 splits)", "pro-c4 b=2: 10.00 us (mma99-h16, 1 splits)",
                         "pro-c4 b=6: 16.20 us (mma99-h16, 1 splits)"]
    assert "pro-c4 b=40: 90.00 us (sm90-h64, 4 splits, cluster)" in lines
    assert "pro-c4 b=48: 56.00 us (sm90-h64, 2 splits, kernel)" in lines
    cliffs = lines.index("# cliffs (a batch's time growing more than 20 % beyond its rows over the previous batch): 1")
    assert lines[cliffs + 1] == ("pro-c4 b=40 90.00 us (sm90-h64, 4 splits, cluster) after b=32 40.00 us: "
                                 "+80.0 % beyond the rows")
    summary = lines.index("# inversions (a batch more than 1 % slower than a larger one): 2")
    assert summary == cliffs + 2
    assert lines[summary + 1:] == ["pro-c4 b=40 90.00 us (sm90-h64, 4 splits, cluster) > b=48 56.00 us: +60.7 %",
                                   "pro-c4 b=6 16.20 us (mma99-h16, 1 splits) > b=8 16.00 us: +1.2 %"]
    calls = (tmp_path / "build" / "smla-bench.calls").read_text().splitlines()
    assert calls == ["--shape pro-c4 --batch 1,2,6,8,32,40,48,56,64 --backend cuda --format csv --iters 5"]


def test_threshold_and_default_bench_arguments(tmp_path):
    lines = run_sweep(tmp_path, "--shapes", "flash-c4,pro-c4", "--batches", "4-8:2,40,64").stdout.splitlines()
    summary = [line for line in lines if line.startswith("# inversions")]
    assert summary == ["# inversions (a batch more than 3 % slower than a larger one): 2"]
    named = lines[lines.index(summary[0]) + 1:]
    assert named == ["flash-c4 b=40 90.00 us (sm90-h64, 4 splits, cluster) > b=64 72.00 us: +25.0 %",
                     "pro-c4 b=40 90.00 us (sm90-h64, 4 splits, cluster) > b=64 72.00 us: +25.0 %"]
    calls = (tmp_path / "build" / "smla-bench.calls").read_text().splitlines()
    assert calls[0] == "--shape flash-c4 --batch 4,6,8,40,64 --backend cuda --format csv --iters 50 --warmup 5"


def test_a_failing_run_and_bad_arguments_are_errors(tmp_path):
    failed = run_sweep(tmp_path, "--shapes", "broken", "--batches", "1", check=False)
    assert failed.returncode != 0 and "unknown shape 'broken'" in failed.stderr
    for args, message in ((["--batches", "8-2"], "'8-2' must have"), (["--batches", "x"], "'x' is not N"),
                          (["--threshold", "lots"], "'lots' is not a number"), (["--bogus", "1"], "'--bogus'")):
        result = run_sweep(tmp_path, *args, check=False)
        assert result.returncode != 0 and message in result.stderr, (args, result.stderr)
    assert run_sweep(tmp_path, "--help").stdout.startswith("Times named shapes")
    assert run_sweep(tmp_path, "--cliff", "steep", check=False).stderr.strip().endswith("'steep' is not a number")


def test_cliff_threshold(tmp_path):
    # b = 6 after b = 2: 16.2 / 10 us against 3x the rows (no cliff at any threshold); b = 40 after b = 8:
    # 90 / 16 = 5.625x against 5x the rows, 12.5 % beyond them.
    for cliff, expected in (("20", 0), ("10", 1)):
        lines = run_sweep(tmp_path, "--shapes", "pro-c4", "--batches", "2,6,8,40", "--cliff", cliff).stdout.splitlines()
        header = [line for line in lines if line.startswith("# cliffs")]
        assert header == [f"# cliffs (a batch's time growing more than {cliff} % beyond its rows over the previous "
                          f"batch): {expected}"]
        if expected:
            assert lines[lines.index(header[0]) + 1] == (
                "pro-c4 b=40 90.00 us (sm90-h64, 4 splits, cluster) after b=8 16.00 us: +12.5 % beyond the rows")
