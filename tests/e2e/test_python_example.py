"""End-to-end: clients/python/pin_example.py, a client written from the .proto alone, runs
against the real pinbrokerd."""

import os
import re
import subprocess
import sys
import unittest

import pbe2e
from pbe2e import BrokerTest


class PythonExampleTest(BrokerTest):

    def test_pin_example(self):
        pbe2e.python_client_or_skip(self)
        example = os.path.join(pbe2e.SOURCE_DIR, "clients", "python", "pin_example.py")
        self.assertTrue(os.path.isfile(example), example)
        data = self.make_file("demo.bin")
        env = pbe2e.clean_env()
        env.pop("PYTHONPATH", None)  # --pythonpath alone must be enough.
        proc = subprocess.run(
            [sys.executable, example, "--endpoint", self.daemon.endpoint, "--export", "default",
             "--path", "demo.bin", "--offset", "8192", "--length", "16384", "--grace", "5",
             "--pythonpath", pbe2e.PYTHON_DIR],
            capture_output=True, text=True, timeout=60, env=env)
        out = proc.stdout
        self.assertEqual(proc.returncode, 0, "stdout:\n%s\nstderr:\n%s" % (out, proc.stderr))
        lease_id = re.search(r"pinned lease (\S+):", out).group(1)
        self.assertIn("snapshot: lease %s (LEASE_STATE_GRANTED)" % lease_id, out)
        self.assertRegex(out, r"RECALLED lease %s at \S+: release before \S+ \(truncate" %
                         re.escape(lease_id))
        self.assertIn("released lease %s" % lease_id, out)
        self.assertIn("truncate: policy LAYOUT_POLICY_REVOKE, size %d -> 8192, recalled [%s], "
                      "released [%s], revoked []" % (len(data), lease_id, lease_id), out)
        self.assertIn("result: lease recalled and released in time", out)
        self.assertEqual(self.read_file("demo.bin"), data[:8192])
        self.assertEqual(self.lease_ids(), [])


if __name__ == "__main__":
    unittest.main()
