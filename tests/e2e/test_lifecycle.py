"""End-to-end: what happens to leases when their holder dies, and when the broker shuts down."""

import signal
import time
import unittest

import pbe2e
from pbe2e import BrokerTest, parse_time


class KilledClientTest(BrokerTest):
    # Sessions lapse 1 s after their watch stream goes away; leases last their own TTL.
    DAEMON_ARGS = ["--grace", "2s", "--default_ttl", "30s", "--session_ttl", "1s"]

    def test_killed_clients_leases_expire_after_their_ttl(self):
        self.make_file("f.bin")
        holder, lease = self.hold("f.bin", "--ttl", "2s")
        lease_id = lease["lease_id"]
        # The holder renews: the lease outlives its first TTL while the holder lives.
        first_expiry = parse_time(lease["expires_at"])
        renewed = None
        for _ in range(400):
            listed = {l["lease_id"]: l for l in self.list_leases()}
            self.assertIn(lease_id, listed, "the lease ended while its holder was alive")
            if parse_time(listed[lease_id]["expires_at"]) > first_expiry:
                renewed = listed[lease_id]
                break
            time.sleep(0.05)  # Polling for the holder's renewal, bounded.
        self.assertIsNotNone(renewed, "the holder never renewed its lease")

        holder.proc.kill()  # SIGKILL: no release, no goodbye.
        holder.proc.wait()
        killed_at = time.time()

        # Right after the kill the lease is still there: nothing ends it before its TTL.
        listed = {l["lease_id"]: l for l in self.list_leases()}
        self.assertIn(lease_id, listed, "the lease vanished at once; it must live out its TTL")
        expires_at = parse_time(listed[lease_id]["expires_at"])
        self.assertGreater(expires_at, killed_at - 0.05)

        # A fresh observer sees it go, within a bounded time.
        gone_at = None
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if lease_id not in self.lease_ids():
                gone_at = time.time()
                break
            time.sleep(0.05)  # Polling ListLeases, bounded.
        self.assertIsNotNone(gone_at, "the lease of a killed client did not expire within 15 s")
        # Never earlier than its TTL allows (50 ms for clock reading granularity).
        self.assertGreaterEqual(gone_at, expires_at - 0.05)
        # The daemon reclaimed the pages as well.
        described = self.pinctl("file", "describe", "default", "f.bin").obj
        self.assertEqual(described["busy"], [])
        self.assertEqual(self.pinctl("info").obj["live_leases"], "0")


class ShutdownTest(BrokerTest):
    DAEMON_ARGS = ["--grace", "2s", "--default_ttl", "30s", "--session_ttl", "30s",
                   "--shutdown_grace", "2s"]

    def test_sigterm_recalls_then_revokes_and_exits_zero(self):
        self.make_file("f.bin")
        stubborn, stubborn_lease = self.hold("f.bin", "--ignore-recall", name="ignoring holder")
        polite, polite_lease = self.hold("f.bin", "--offset", "64K", name="cooperative holder")

        self.daemon.proc.send_signal(signal.SIGTERM)

        recalled = stubborn.wait_event("RECALLED", stubborn_lease["lease_id"])
        self.assertIn("shutting down", recalled["lease"]["reason"])
        self.assertGreater(parse_time(recalled["lease"]["recall_deadline"]),
                           parse_time(recalled["at"]))
        revoked = stubborn.wait_event("REVOKED", stubborn_lease["lease_id"])
        self.assertLess(stubborn.lines.index(recalled), stubborn.lines.index(revoked))
        self.assertEqual(stubborn.wait_exit(), pbe2e.EXIT["LEASE_LOST"], stubborn.stderr)

        polite.wait_event("RECALLED", polite_lease["lease_id"])
        self.assertEqual(polite.wait_exit(), 0, polite.stderr)

        self.assertEqual(self.stop_daemon(), 0, "pinbrokerd must exit 0 after SIGTERM")


if __name__ == "__main__":
    unittest.main()
