#!/usr/bin/env python3
"""Maps between ctest test names and the test executables that hold them (scripts/gpu-check).

usage: ctest_select.py TESTS_JSON REGEX LABEL
    prints one line per executable with a matching test of LABEL: "<executable path> <gtest filter>"
    (gtest_discover_tests names each ctest test after its gtest case, so the name is the filter).
usage: ctest_select.py TESTS_JSON --regex-for EXECUTABLE_NAME...
    prints one ctest -R regex that matches every test of the named executables (by file name) and no
    other, e.g. for `scripts/gpu-check --sanitizer-only --only REGEX` over the binaries a budget left out.
TESTS_JSON is `ctest --show-only=json-v1`.
"""
import json
import os
import re
import sys


def load_tests(path):
    with open(path) as f:
        return json.load(f).get("tests", [])


def gtest_name(test):
    # Parameterized cases are named "Case/Test.Name/param  # GetParam() = ..." in ctest.
    return test["name"].split("  #")[0].strip()


def select(tests, regex, label):
    pattern = re.compile(regex)
    selected = {}
    for test in tests:
        labels = [p.get("value") for p in test.get("properties", []) if p.get("name") == "LABELS"]
        labels = [item for value in labels for item in (value if isinstance(value, list) else [value])]
        if label not in labels or not pattern.search(test.get("name", "")):
            continue
        command = test.get("command") or []
        if command:
            selected.setdefault(command[0], []).append(gtest_name(test))
    return selected


def regex_for(tests, executable_names):
    """A ctest -R regex for every test of the named executables: a whole suite as "^Suite\\." where all of
    the suite's tests are theirs, else the tests' names (short enough for a device command line)."""
    wanted = set(executable_names)
    owners = {}  # suite -> set of executable names holding its tests
    names = {}  # suite -> names of its tests in wanted executables
    for test in tests:
        command = test.get("command") or []
        if not command:
            continue
        name = gtest_name(test)
        suite = name.split(".", 1)[0]
        owner = os.path.basename(command[0])
        owners.setdefault(suite, set()).add(owner)
        if owner in wanted:
            names.setdefault(suite, []).append(name)
    parts = []
    for suite in sorted(names):
        if owners[suite] <= wanted:
            parts.append(re.escape(suite) + r"\.")
        else:
            parts.extend(re.escape(name) + "( |$)" for name in sorted(names[suite]))
    return "^(" + "|".join(parts) + ")" if parts else ""


def main() -> int:
    if len(sys.argv) >= 3 and sys.argv[2] == "--regex-for":
        print(regex_for(load_tests(sys.argv[1]), sys.argv[3:]))
        return 0
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    for executable, names in select(load_tests(sys.argv[1]), sys.argv[2], sys.argv[3]).items():
        print(executable, ":".join(names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
