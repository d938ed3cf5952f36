"""scripts/lib/sanitizer_verdict.py, which scripts/gpu-check uses to judge each compute-sanitizer run. The
logs below are shaped like the tool's and GoogleTest's output (the no-CUDA case as an H100 printed it for
`--only 'DecodeCudaSchedule\\.'`, 2026-12-05)."""

import importlib.util
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, "scripts", "lib", "sanitizer_verdict.py")

spec = importlib.util.spec_from_file_location("sanitizer_verdict", SCRIPT)
sanitizer_verdict = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sanitizer_verdict)

GTEST_OK = "[==========] 2 tests from 1 test suite ran. (0 ms total)\n[  PASSED  ] 2 tests.\n"
GTEST_ONE_OK = "[==========] 1 test from 1 test suite ran. (5 ms total)\n[  PASSED  ] 1 test.\n"
GTEST_FAILED = ("[==========] 2 tests from 1 test suite ran. (0 ms total)\n[  PASSED  ] 1 test.\n"
                "[  FAILED  ] 1 test, listed below:\n[  FAILED  ] DecodeCudaSchedule.A\n")
MEMCHECK_CLEAN = "========= LEAK SUMMARY: 0 bytes leaked in 0 allocations\n========= ERROR SUMMARY: 0 errors\n"
MEMCHECK_ERRORS = "========= ERROR SUMMARY: 3 errors\n"
RACECHECK_CLEAN = "========= RACECHECK SUMMARY: 0 hazards displayed (0 errors, 0 warnings)\n"
RACECHECK_HAZARDS = "========= RACECHECK SUMMARY: 2 hazards displayed (2 errors, 0 warnings)\n"
NO_CUDA = "========= Error: Target application terminated before first instrumented API call\n"


def judge(log, rc, run_timeout=280, sanitize_timeout=280):
    return sanitizer_verdict.verdict("========= COMPUTE-SANITIZER\n" + log, rc, run_timeout, sanitize_timeout)


def test_clean_runs_are_ok():
    assert judge(GTEST_OK + MEMCHECK_CLEAN, 0) == ("ok", "0", "")
    assert judge(GTEST_OK + RACECHECK_CLEAN, 0) == ("ok", "0", "")


def test_reported_errors_or_a_nonzero_exit_fail():
    assert judge(GTEST_OK + MEMCHECK_ERRORS, 1)[:2] == ("failed", "3")
    assert judge(GTEST_OK + RACECHECK_HAZARDS, 1)[:2] == ("failed", "2")
    # A clean summary with a failing test binary (rc 1 from GoogleTest) is still a failure.
    assert judge(GTEST_FAILED + MEMCHECK_CLEAN, 1)[:2] == ("failed", "0")


def test_host_only_tests_that_passed_are_no_cuda_not_a_failure():
    status, errors, note = judge(GTEST_OK + NO_CUDA, 255)
    assert (status, errors) == ("no-cuda", "-")
    assert "host-side" in note
    assert judge(GTEST_ONE_OK + NO_CUDA, 255)[0] == "no-cuda"


def test_no_cuda_with_a_failed_or_missing_gtest_result_is_no_summary():
    assert judge(GTEST_FAILED + NO_CUDA, 255)[:2] == ("no-summary", "?")
    # The binary died before GoogleTest printed its result (a crash in a host-side test).
    assert judge("[ RUN      ] DecodeCudaSchedule.A\n" + NO_CUDA, 255)[:2] == ("no-summary", "?")
    assert judge(GTEST_OK, 255)[:2] == ("no-summary", "?")


def test_timeouts_are_cut_short_only_when_the_budget_shortened_them():
    assert judge("[ RUN      ] DecodeCuda.A\n", 124, run_timeout=65) == ("cut", "?", "CUT SHORT (budget: 65s)")
    assert judge("[ RUN      ] DecodeCuda.A\n", 124) == ("timeout", "?", "TIMEOUT(280s)")


def test_the_last_summary_counts():
    log = GTEST_OK + "========= ERROR SUMMARY: 1 error\n" + MEMCHECK_CLEAN
    assert judge(log, 0) == ("ok", "0", "")


def test_command_line_prints_status_errors_and_note(tmp_path):
    log = tmp_path / "run.log"
    log.write_text(GTEST_OK + NO_CUDA)
    result = subprocess.run([sys.executable, SCRIPT, str(log), "255", "280", "280"], capture_output=True,
                            text=True, check=True)
    status, errors, note = result.stdout.rstrip("\n").split("\t")
    assert (status, errors) == ("no-cuda", "-") and note
    usage = subprocess.run([sys.executable, SCRIPT, str(log)], capture_output=True, text=True)
    assert usage.returncode == 2 and "usage" in usage.stderr
