#!/usr/bin/env python3
"""Per-executable pass/fail counts from a ctest log.

gtest_discover_tests names ctest tests after the gtest cases, so the executable behind each test is
looked up in `ctest --show-only=json-v1` (test numbers in the log are indices into that list).

usage: ctest_per_binary.py TESTS_JSON CTEST_LOG...   (prints one line per executable, then totals)
"""
import collections
import json
import os
import re
import sys

RESULT_LINE = re.compile(r"Test\s+#(\d+): (.+?) \.+\s*(?:\*\*\*)?(.+?)\s+[\d.]+ sec")


def main() -> int:
    with open(sys.argv[1]) as f:
        tests = json.load(f).get("tests", [])
    executable_of = {}
    for number, test in enumerate(tests, start=1):
        command = test.get("command") or ["?"]
        executable_of[number] = os.path.basename(command[0])
    counts = collections.OrderedDict()
    for log in sys.argv[2:]:
        with open(log, errors="replace") as f:
            for line in f:
                match = RESULT_LINE.search(line)
                if not match:
                    continue
                number, outcome = int(match.group(1)), match.group(3).strip()
                binary = executable_of.get(number, "?")
                if "_NOT_BUILT" in match.group(2):
                    binary = match.group(2).replace("_NOT_BUILT", "") + " (not built)"
                entry = counts.setdefault(binary, collections.Counter())
                if outcome == "Passed":
                    entry["passed"] += 1
                elif outcome == "Skipped":
                    entry["skipped"] += 1
                else:
                    entry["failed"] += 1
    total = collections.Counter()
    width = max([len(b) for b in counts] + [10])
    for binary, entry in counts.items():
        total.update(entry)
        flag = "  <-- FAILED" if entry["failed"] else ""
        print(f"  {binary:<{width}}  {entry['passed']:4d} passed  {entry['failed']:3d} failed  "
              f"{entry['skipped']:3d} skipped{flag}")
    print(f"  {'total':<{width}}  {total['passed']:4d} passed  {total['failed']:3d} failed  "
          f"{total['skipped']:3d} skipped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
