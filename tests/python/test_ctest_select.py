"""scripts/lib/ctest_select.py, which scripts/gpu-check uses to run compute-sanitizer over the binaries of a
ctest regex and to print the regex that runs the binaries a budget left out."""

import importlib.util
import json
import os
import re
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, "scripts", "lib", "ctest_select.py")

spec = importlib.util.spec_from_file_location("ctest_select", SCRIPT)
ctest_select = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ctest_select)


def ctest_entry(name, binary, label):
    return {"name": name, "command": [f"/build/tests/{binary}", f"--gtest_filter={name.split('  #')[0]}"],
            "properties": [{"name": "LABELS", "value": [label]}]}


TESTS = [
    ctest_entry("DecodeCuda.A", "cuda_test_decode_cuda", "cuda"),
    ctest_entry("DecodeCuda.B", "cuda_test_decode_cuda", "cuda"),
    ctest_entry("DecodeCudaRef.A", "cuda_test_decode_cuda_ref", "cuda"),
    ctest_entry("Backends/GarbageCuda.X/cuda  # GetParam() = 3", "cuda_test_garbage_cuda", "cuda"),
    ctest_entry("Backends/GarbageCuda.X/cuda_ref  # GetParam() = 2", "cuda_test_garbage_cuda", "cuda"),
    # A suite spread over two binaries: only the named binary's tests may match.
    ctest_entry("Shared.InCuda", "cuda_test_relayout_cuda", "cuda"),
    ctest_entry("Shared.InCpu", "cpu_test_validation", "cpu"),
]


def matched(regex):
    # ctest -R searches each test's full name.
    return {test["name"] for test in TESTS if re.search(regex, test["name"])}


def test_select_maps_regex_to_binaries_and_filters():
    selected = ctest_select.select(TESTS, r"^Decode", "cuda")
    assert selected == {"/build/tests/cuda_test_decode_cuda": ["DecodeCuda.A", "DecodeCuda.B"],
                        "/build/tests/cuda_test_decode_cuda_ref": ["DecodeCudaRef.A"]}
    garbage = ctest_select.select(TESTS, r"Garbage", "cuda")
    assert garbage == {"/build/tests/cuda_test_garbage_cuda": ["Backends/GarbageCuda.X/cuda",
                                                                "Backends/GarbageCuda.X/cuda_ref"]}
    assert ctest_select.select(TESTS, r"Shared", "cuda") == {"/build/tests/cuda_test_relayout_cuda":
                                                              ["Shared.InCuda"]}


def test_regex_for_whole_suites_and_nothing_else():
    regex = ctest_select.regex_for(TESTS, ["cuda_test_decode_cuda", "cuda_test_garbage_cuda"])
    assert regex == r"^(Backends/GarbageCuda\.|DecodeCuda\.)"
    assert matched(regex) == {"DecodeCuda.A", "DecodeCuda.B", "Backends/GarbageCuda.X/cuda  # GetParam() = 3",
                              "Backends/GarbageCuda.X/cuda_ref  # GetParam() = 2"}


def test_regex_for_a_shared_suite_names_the_tests():
    regex = ctest_select.regex_for(TESTS, ["cuda_test_relayout_cuda", "cuda_test_decode_cuda_ref"])
    assert matched(regex) == {"Shared.InCuda", "DecodeCudaRef.A"}


def test_regex_for_unknown_binaries_is_empty():
    assert ctest_select.regex_for(TESTS, ["cuda_test_nothing"]) == ""


def test_command_line(tmp_path):
    path = tmp_path / "tests.json"
    path.write_text(json.dumps({"tests": TESTS}))
    out = subprocess.run([sys.executable, SCRIPT, str(path), "--regex-for", "cuda_test_decode_cuda_ref"],
                         check=True, capture_output=True, text=True).stdout.strip()
    assert out == r"^(DecodeCudaRef\.)"
    lines = subprocess.run([sys.executable, SCRIPT, str(path), "Decode", "cuda"], check=True,
                           capture_output=True, text=True).stdout.splitlines()
    assert sorted(lines) == ["/build/tests/cuda_test_decode_cuda DecodeCuda.A:DecodeCuda.B",
                             "/build/tests/cuda_test_decode_cuda_ref DecodeCudaRef.A"]
    usage = subprocess.run([sys.executable, SCRIPT, str(path)], capture_output=True, text=True)
    assert usage.returncode == 2 and "usage" in usage.stderr
