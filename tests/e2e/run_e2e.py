"""Runs one e2e test module for ctest: exit 0 if its tests passed (some may have been skipped,
with the reasons printed), 77 if every test was skipped (ctest SKIP_RETURN_CODE), 1 on any
failure."""

import sys
import unittest


def main():
    if len(sys.argv) != 2:
        print("usage: run_e2e.py MODULE", file=sys.stderr)
        return 2
    suite = unittest.defaultTestLoader.loadTestsFromName(sys.argv[1])
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
    for test, reason in result.skipped:
        print("SKIPPED %s: %s" % (test.id(), reason))
    if not result.wasSuccessful():
        return 1
    if result.testsRun > 0 and len(result.skipped) == result.testsRun:
        return 77
    return 0


if __name__ == "__main__":
    sys.exit(main())
