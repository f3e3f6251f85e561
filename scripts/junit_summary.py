#!/usr/bin/env python3
"""Prints one line per ctest JUnit report and a final 'N passed, N failed, N skipped' line.

Usage: junit_summary.py STAGE=REPORT.xml [...]. Exits 1 if any test failed or a report is missing.
"""
import sys
import xml.etree.ElementTree as ET

totals = {"passed": 0, "failed": 0, "skipped": 0}
ok = True
for arg in sys.argv[1:]:
    stage, _, path = arg.partition("=")
    try:
        cases = ET.parse(path).getroot().iter("testcase")
    except (OSError, ET.ParseError) as e:
        print(f"{stage}: no test report ({e})")
        ok = False
        continue
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    for case in cases:
        status = case.get("status", "")
        if case.find("failure") is not None or case.find("error") is not None or status == "fail":
            counts["failed"] += 1
        elif case.find("skipped") is not None or status in ("notrun", "disabled"):
            counts["skipped"] += 1
        else:
            counts["passed"] += 1
    for k in totals:
        totals[k] += counts[k]
    print(f"{stage}: {counts['passed']} passed, {counts['failed']} failed, "
          f"{counts['skipped']} skipped")
ok = ok and totals["failed"] == 0
print(f"{totals['passed']} passed, {totals['failed']} failed, {totals['skipped']} skipped")
sys.exit(0 if ok else 1)
