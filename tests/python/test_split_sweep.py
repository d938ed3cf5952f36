"""scripts/split-sweep against a stand-in smla-bench (no GPU): one line per split count, 0 = the
planner's (no --num-splits), the csv row's columns found by name in its header, a failing run named,
not fatal."""

import os
import subprocess

from stand_in_bench import stand_in_build

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, "scripts", "split-sweep")

# Prints smla-bench's csv (header, then one row with the columns split-sweep reads by name: shape, b,
# kernel, splits, time_us, p10_us, p90_us) with the split count it was given, or 7 without --num-splits;
# fails for 99.
STAND_IN = r"""#!/usr/bin/env python3
import sys
args = sys.argv[1:]
splits = args[args.index("--num-splits") + 1] if "--num-splits" in args else "7"
if splits == "99":
    print("smla-bench: error: --num-splits 99 is too many", file=sys.stderr)
    sys.exit(2)
shape = args[args.index("--shape") + 1]
batch = args[args.index("--batch") + 1]
assert args[args.index("--backend") + 1] == "cuda" and args[args.index("--format") + 1] == "csv"
print("[1/1] progress line")
print("shape,backend,kernel,b,h,s_q,topk,extra_topk,P_main,P_extra,layers,splits,time_us,p10_us,p90_us,more")
time_us = 10.0 + int(splits)
print(f"{shape},cuda,sm90-h64,{batch},128,1,128,8192,256,2,1,{splits},{time_us:.2f},{time_us - 1:.2f},"
      f"{time_us + 1:.2f},x")
"""


def run_sweep(tmp_path, splits, *extra):
    env = dict(os.environ, BUILD_DIR=str(stand_in_build(tmp_path, STAND_IN)))
    return subprocess.run([SCRIPT, "pro-c128-1m", "1", splits, *extra], env=env, capture_output=True,
                          text=True, check=True, cwd=REPO).stdout.splitlines()


def test_one_line_per_split_count(tmp_path):
    assert run_sweep(tmp_path, "0,44", "--iters", "5") == [
        "pro-c128-1m b=1 splits asked 0 run 7 sm90-h64: 17.00 us (p10 16.00, p90 18.00)",
        "pro-c128-1m b=1 splits asked 44 run 44 sm90-h64: 54.00 us (p10 53.00, p90 55.00)",
    ]


def test_a_failing_run_is_named_and_the_sweep_goes_on(tmp_path):
    lines = run_sweep(tmp_path, "99,2")
    assert lines[0].startswith("pro-c128-1m b=1 splits asked 99: smla-bench failed: smla-bench: error")
    assert lines[1] == "pro-c128-1m b=1 splits asked 2 run 2 sm90-h64: 12.00 us (p10 11.00, p90 13.00)"


def test_usage_without_arguments():
    result = subprocess.run([SCRIPT], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 2
    assert "SPLITS" in result.stdout
