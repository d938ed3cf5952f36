#!/usr/bin/env python3
"""Maps a ctest -R regex to test executables and gtest filters.

usage: ctest_select.py TESTS_JSON REGEX LABEL
prints one line per executable with a matching test of LABEL: "<executable path> <gtest filter>"
(gtest_discover_tests names each ctest test after its gtest case, so the name is the filter).
"""
import json
import re
import sys


def main() -> int:
    with open(sys.argv[1]) as f:
        tests = json.load(f).get("tests", [])
    pattern, label = re.compile(sys.argv[2]), sys.argv[3]
    selected = {}
    for test in tests:
        labels = [p.get("value") for p in test.get("properties", []) if p.get("name") == "LABELS"]
        labels = [item for value in labels for item in (value if isinstance(value, list) else [value])]
        if label not in labels or not pattern.search(test.get("name", "")):
            continue
        command = test.get("command") or []
        if command:
            # Parameterized cases are named "Case/Test.Name/param  # GetParam() = ..." in ctest.
            selected.setdefault(command[0], []).append(test["name"].split("  #")[0].strip())
    for executable, names in selected.items():
        print(executable, ":".join(names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
