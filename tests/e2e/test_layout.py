"""End-to-end: truncate and punch hole against lease holders, under the policies revoke, defer
and refuse, through the real pinbrokerd and pinctl."""

import signal
import time
import unittest

import pbe2e
from pbe2e import BrokerTest, parse_duration, parse_time

MIB = 1 << 20
GRACE = 2.0


class LayoutTest(BrokerTest):

    def truncate(self, path, size, policy, *extra, **kw):
        return self.pinctl("file", "truncate", "default", path, "--size", str(size),
                           "--policy", policy, *extra, **kw)

    def test_revoke_cooperative_holder_releases_before_grace(self):
        data = self.make_file("f.bin")
        holder, lease = self.hold("f.bin", "--ttl", "30s")
        lease_id = lease["lease_id"]

        result = self.truncate("f.bin", 4096, "revoke", "--grace", "%gs" % GRACE).obj

        recalled = holder.wait_event("RECALLED", lease_id)
        deadline = parse_time(recalled["lease"]["recall_deadline"])
        at = parse_time(recalled["at"])
        self.assertGreater(deadline, at, "the recall deadline must lie ahead of the recall")
        self.assertLessEqual(deadline - at, GRACE + 0.01)
        self.assertEqual(recalled["lease"]["state"], "LEASE_STATE_RECALLING")
        self.assertIn("truncate", recalled["lease"]["reason"])
        holder.wait_event("RELEASED", lease_id)
        self.assertEqual(holder.wait_exit(), 0, holder.stderr)
        self.assertNotIn("REVOKED", [o.get("type") for o in holder.lines])

        self.assertEqual(result["policy"], "LAYOUT_POLICY_REVOKE")
        self.assertEqual(result["recalled_lease_ids"], [lease_id])
        self.assertEqual(result["released_lease_ids"], [lease_id])
        self.assertEqual(result["revoked_lease_ids"], [])
        self.assertLess(parse_duration(result["waited"]), GRACE,
                        "released on recall, so the change must not wait out the grace")
        self.assertEqual((int(result["size_before"]), int(result["size_after"])), (MIB, 4096))
        self.assertEqual(self.read_file("f.bin"), data[:4096])
        self.assertEqual(self.lease_ids(), [])

    def test_revoke_ignoring_holder_is_revoked_after_grace(self):
        data = self.make_file("f.bin")
        holder, lease = self.hold("f.bin", "--ttl", "30s", "--ignore-recall")
        lease_id = lease["lease_id"]

        result = self.truncate("f.bin", 4096, "revoke", "--grace", "%gs" % GRACE).obj

        self.assertEqual(result["recalled_lease_ids"], [lease_id])
        self.assertEqual(result["revoked_lease_ids"], [lease_id])
        self.assertEqual(result["released_lease_ids"], [])
        self.assertGreaterEqual(parse_duration(result["waited"]), GRACE)
        recalled = holder.wait_event("RECALLED", lease_id)
        revoked = holder.wait_event("REVOKED", lease_id)
        self.assertLess(holder.lines.index(recalled), holder.lines.index(revoked))
        self.assertGreaterEqual(parse_time(revoked["at"]),
                                parse_time(recalled["lease"]["recall_deadline"]))
        self.assertIn("grace", revoked["lease"]["reason"])
        self.assertEqual(holder.wait_exit(), pbe2e.EXIT["LEASE_LOST"], holder.stderr)
        self.assertEqual(self.read_file("f.bin"), data[:4096])
        self.assertEqual(self.lease_ids(), [])

    def test_defer_waits_for_release(self):
        data = self.make_file("f.bin")
        holder, lease = self.hold("f.bin", "--ttl", "30s")
        lease_id = lease["lease_id"]

        truncate = self.spawn_pinctl("file", "truncate", "default", "f.bin", "--size", "0",
                                     "--policy", "defer", "--timeout", "60s", name="truncate")
        # The change is under way once the file shows a blocked range.
        for _ in range(400):
            blocked = self.pinctl("file", "describe", "default", "f.bin").obj["blocked"]
            if blocked or truncate.proc.poll() is not None:
                break
            time.sleep(0.05)  # Polling for the change to start, bounded.
        self.assertTrue(blocked, "the deferred truncate never blocked the range")
        self.assertIn("defer", blocked[0]["reason"])
        self.assertIsNone(truncate.proc.poll(), "defer must wait while the lease is held")
        self.assertEqual(self.read_file("f.bin"), data, "the file changed before the release")
        self.assertIn(lease_id, self.lease_ids())
        # Defer recalls nobody.
        self.assertNotIn("RECALLED", [o.get("type") for o in holder.lines])

        # A new pin inside the blocked range fails at once with ABORTED.
        aborted = self.pinctl("lease", "pin", "default", "f.bin", "--length", "4096",
                              check=False)
        self.assert_error(aborted, "ABORTED")

        holder.signal(signal.SIGINT)  # The holder lets go.
        self.assertEqual(holder.wait_exit(), 0, holder.stderr)
        self.assertEqual(truncate.wait_exit(), 0, truncate.stderr)
        result = truncate.wait_for(lambda o: "policy" in o, what="the truncate result")
        self.assertEqual(result["policy"], "LAYOUT_POLICY_DEFER")
        self.assertEqual(result["released_lease_ids"], [lease_id])
        self.assertEqual(result["recalled_lease_ids"], [])
        self.assertEqual(result["revoked_lease_ids"], [])
        self.assertEqual(self.read_file("f.bin"), b"")

    def test_refuse_names_the_lease(self):
        data = self.make_file("f.bin")
        out = self.pinctl("lease", "pin", "default", "f.bin", "--offset", "64K",
                          "--length", "4096").obj
        lease_id = out["lease"]["lease_id"]

        refused = self.truncate("f.bin", 0, "refuse", check=False)
        message = self.assert_error(refused, "FAILED_PRECONDITION")
        self.assertIn(lease_id, message)
        self.assertEqual(self.read_file("f.bin"), data)
        self.assertIn(lease_id, self.lease_ids())

        # A change that misses the pinned pages goes through even under refuse.
        result = self.truncate("f.bin", 128 * 1024, "refuse").obj
        self.assertEqual(result["recalled_lease_ids"], [])
        self.assertEqual(self.read_file("f.bin"), data[:128 * 1024])

    def test_punch_hole_revoke(self):
        data = self.make_file("f.bin")
        holder, lease = self.hold("f.bin", "--ttl", "30s", length="4096")
        lease_id = lease["lease_id"]
        # [2048, 2048 + 8192) touches pages 0-2, so the lease on page 0 is in the way.
        result = self.pinctl("file", "punch", "default", "f.bin", "--offset", "2048",
                             "--length", "8192", "--policy", "revoke", "--grace", "2s").obj
        holder.wait_event("RECALLED", lease_id)
        self.assertEqual(holder.wait_exit(), 0, holder.stderr)
        self.assertEqual(result["released_lease_ids"], [lease_id])
        self.assertEqual(int(result["size_after"]), MIB)
        after = self.read_file("f.bin")
        self.assertEqual(len(after), MIB)
        self.assertEqual(after[:2048], data[:2048])
        self.assertEqual(after[2048:2048 + 8192], b"\0" * 8192)
        self.assertEqual(after[2048 + 8192:], data[2048 + 8192:])


if __name__ == "__main__":
    unittest.main()
