"""scripts/page-size-check against a stand-in smla-bench (no GPU): the shapes' own main pages and the other
page size run in turns for the given rounds, one line per row with both medians and the change, the rows
over the limit named worst first with exit status 1; a failing smla-bench run, a row at the wrong page size
and malformed arguments are errors (exit status 2)."""

import os
import subprocess

from stand_in_bench import stand_in_build

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, "scripts", "page-size-check")

# Prints smla-bench's csv (a progress line, a metadata line, a header, one row per shape and batch with the
# columns the script reads by name). With the shape's own pages (P = 256) a row takes 10 + b us; with
# --main-page-size P it takes (10 + b) / factor, factor 1.05 for pro-c4 b = 64, 1.02 for flash-c4 b = 32
# and 1 elsewhere, plus 0.5 us in every second call of that page size (the medians of 3 rounds drop it).
# Shape "broken" fails; STAND_IN_WRONG_PAGE set makes the paged run report P_main = 128.
STAND_IN = r"""#!/usr/bin/env python3
import os
import sys
args = sys.argv[1:]
shapes = args[args.index("--shape") + 1].split(",")
if "broken" in shapes:
    print("smla-bench: error: unknown shape 'broken'", file=sys.stderr)
    sys.exit(2)
assert args[args.index("--backend") + 1] == "cuda" and args[args.index("--format") + 1] == "csv"
calls_path = sys.argv[0] + ".calls"
with open(calls_path, "a") as calls:
    calls.write(" ".join(args) + "\n")
with open(calls_path) as calls:
    count = len(calls.read().splitlines())
page = int(args[args.index("--main-page-size") + 1]) if "--main-page-size" in args else None
print("[1/3] progress line", file=sys.stderr)
print("# smla_version: 0.1.0")
print("shape,backend,kernel,b,P_main,splits,time_us,more")
for shape in shapes:
    for b in map(int, args[args.index("--batch") + 1].split(",")):
        time_us = 10.0 + b
        p_main = 256
        if page is not None:
            time_us /= {("pro-c4", 64): 1.05, ("flash-c4", 32): 1.02}.get((shape, b), 1.0)
            time_us += 0.5 if count % 4 == 0 else 0.0
            p_main = 128 if os.environ.get("STAND_IN_WRONG_PAGE") else page
        kernel = "sm90-h64" if b >= 32 else "mma99-h32"
        print(f"{shape},cuda,{kernel},{b},{p_main},1,{time_us:.4f},x")
"""


def run_check(tmp_path, *args, env_extra=None):
    env = dict(os.environ, BUILD_DIR=str(stand_in_build(tmp_path, STAND_IN)), **(env_extra or {}))
    return subprocess.run([SCRIPT, *args], env=env, capture_output=True, text=True, cwd=REPO)


def calls(tmp_path):
    return (tmp_path / "build" / "smla-bench.calls").read_text().splitlines()


def test_rows_over_the_limit_are_named_worst_first(tmp_path):
    result = run_check(tmp_path, "--shapes", "pro-c4,flash-c4", "--batches", "32,64", "--limit", "1",
                       "--", "--iters", "5")
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "# 3 rounds; median us with the shapes' own main pages / with P = 64; change of the own pages against P = 64"
    assert lines[1:5] == [
        "pro-c4 b=32 (sm90-h64, 1 splits): P = 256 42.00 us, P = 64 42.00 us: +0.0 %",
        "pro-c4 b=64 (sm90-h64, 1 splits): P = 256 74.00 us, P = 64 70.48 us: +5.0 %",
        "flash-c4 b=32 (sm90-h64, 1 splits): P = 256 42.00 us, P = 64 41.18 us: +2.0 %",
        "flash-c4 b=64 (sm90-h64, 1 splits): P = 256 74.00 us, P = 64 74.00 us: +0.0 %",
    ]
    assert lines[5:] == ["# rows whose own pages are more than 1 % slower than P = 64: 2",
                         "pro-c4 b=64: P = 256 +5.0 % against P = 64",
                         "flash-c4 b=32: P = 256 +2.0 % against P = 64"]
    assert calls(tmp_path) == [
        "--shape pro-c4,flash-c4 --batch 32,64 --backend cuda --format csv --iters 5",
        "--shape pro-c4,flash-c4 --batch 32,64 --backend cuda --format csv --iters 5 --main-page-size 64",
    ] * 3


def test_defaults_pass_within_the_limit(tmp_path):
    result = run_check(tmp_path, "--shapes", "flash-c4", "--rounds", "1", "--page", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1] == "# rows whose own pages are more than 3 % slower than P = 2: 0"
    assert calls(tmp_path) == ["--shape flash-c4 --batch 32,64,128 --backend cuda --format csv",
                               "--shape flash-c4 --batch 32,64,128 --backend cuda --format csv --main-page-size 2"]


def test_errors(tmp_path):
    broken = run_check(tmp_path, "--shapes", "broken")
    assert broken.returncode == 2 and "unknown shape 'broken'" in broken.stderr
    wrong_page = run_check(tmp_path, "--shapes", "flash-c4", "--rounds", "1",
                           env_extra={"STAND_IN_WRONG_PAGE": "1"})
    assert wrong_page.returncode == 2
    assert "ran flash-c4 b=32 with P_main=128, not --page 64" in wrong_page.stderr
    for args, message in ((["--rounds", "0"], "--rounds: '0' is not a whole number >= 1"),
                          (["--batches", "8,x"], "--batches: 'x' is not a whole number >= 1"),
                          (["--limit", "lots"], "--limit: 'lots' is not a number"),
                          (["--pages", "64"], "unknown flag or missing value: '--pages'"),
                          (["--", "--main-page-size", "2"], "--main-page-size is this script's to set")):
        result = run_check(tmp_path, *args)
        assert result.returncode == 2 and message in result.stderr, (args, result.stderr)
