#!/usr/bin/env python3
"""The verdict on one compute-sanitizer run of a test binary (scripts/gpu-check).

usage: sanitizer_verdict.py LOG RC RUN_TIMEOUT_S SANITIZE_TIMEOUT_S
    prints "<status>\t<errors>\t<note>": status is one of
      ok          the tool's summary counts 0 errors and the run exited 0
      no-cuda     the tests passed without a CUDA call (a filter that selects only host-side tests, such
                  as DecodeCudaSchedule's planner checks): there was nothing for the tool to check
      cut         timeout 124 under a timeout that the budget shortened (RUN_TIMEOUT_S < SANITIZE_TIMEOUT_S)
      timeout     timeout 124 under the full per-run timeout
      no-summary  no summary line and no sign that the tests passed without CUDA
      failed      errors reported, or a non-zero exit
    errors is the count from the summary ("?" when there is none, "-" for no-cuda); note is for the
    summary line ("" when there is nothing to add).
"""
import re
import sys

# compute-sanitizer's own message when the target exits without a CUDA API call; its exit code is then
# 255 whatever the tests did.
NO_CUDA_CALL = "Target application terminated before first instrumented API call"


def error_count(log):
    """The last summary's error count: memcheck's "ERROR SUMMARY: N errors", else racecheck's
    "RACECHECK SUMMARY: H hazards displayed (E errors, W warnings)"; None without either."""
    counts = re.findall(r"ERROR SUMMARY: (\d+) error", log)
    if not counts:
        counts = re.findall(r"RACECHECK SUMMARY: .*\((\d+) errors", log)
    return int(counts[-1]) if counts else None


def gtest_passed_without_failures(log):
    return re.search(r"^\[  PASSED  \] \d+ tests?\.", log, re.M) is not None and \
        re.search(r"^\[  FAILED  \]", log, re.M) is None


def verdict(log, rc, run_timeout_s, sanitize_timeout_s):
    errors = error_count(log)
    if rc == 124 and run_timeout_s < sanitize_timeout_s:
        return "cut", "?" if errors is None else str(errors), f"CUT SHORT (budget: {run_timeout_s}s)"
    if rc == 124:
        return "timeout", "?" if errors is None else str(errors), f"TIMEOUT({run_timeout_s}s)"
    if errors is None:
        if NO_CUDA_CALL in log and gtest_passed_without_failures(log):
            return "no-cuda", "-", "no CUDA call: the selected tests are host-side only"
        return "no-summary", "?", "no ERROR SUMMARY"
    if errors != 0 or rc != 0:
        return "failed", str(errors), "FAILED"
    return "ok", str(errors), ""


def main(argv):
    if len(argv) != 5:
        sys.stderr.write(__doc__)
        return 2
    with open(argv[1], errors="replace") as f:
        log = f.read()
    status, errors, note = verdict(log, int(argv[2]), int(argv[3]), int(argv[4]))
    print(f"{status}\t{errors}\t{note}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
