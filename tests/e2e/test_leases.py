"""End-to-end: pinning, watching, listing and describing through pinctl and the Python client;
bad input; lease ids across a broker restart."""

import os
import signal
import unittest

import pbe2e
from pbe2e import BrokerTest


class LeaseTest(BrokerTest):

    def pin(self, path, *extra):
        """`pinctl lease pin` without --hold: returns (lease, session credentials)."""
        out = self.pinctl("lease", "pin", "default", path, *extra).obj
        self.assertIn("session", out, "pinctl opened the session itself and must print it")
        return out["lease"], out["session"]

    def test_pin_shows_in_watch_list_and_describe(self):
        self.make_file("f.bin")
        lease, session = self.pin("f.bin", "--offset", "5000", "--length", "8192", "--ttl", "60s")
        lease_id = lease["lease_id"]
        # Whole pages covering [5000, 13192): [4096, 16384).
        self.assertEqual(lease["range"], {"offset": "4096", "length": "12288",
                                          "to_end_of_file": False})
        self.assertEqual(lease["state"], "LEASE_STATE_GRANTED")
        self.assertEqual(lease["session_id"], session["session_id"])

        # The session's watch: the lease in the snapshot, then SNAPSHOT_COMPLETE.
        watch = self.spawn_pinctl("lease", "watch", session=session, name="lease watch")
        complete = watch.wait_event("SNAPSHOT_COMPLETE")
        snapshot = [o for o in watch.lines[:watch.lines.index(complete)]
                    if o.get("type") == "SNAPSHOT"]
        self.assertEqual([o["lease"]["lease_id"] for o in snapshot], [lease_id])
        self.assertEqual(snapshot[0]["lease"]["range"]["offset"], "4096")
        # Changes follow the snapshot: a second pin in the same session shows up as GRANTED.
        second = self.pinctl("lease", "pin", "default", "f.bin", "--length", "4096",
                             session=session).obj
        self.assertNotIn("session", second, "with --session pinctl must not open another")
        watch.wait_event("GRANTED", second["lease"]["lease_id"])
        watch.signal(signal.SIGINT)
        self.assertEqual(watch.wait_exit(), 0, watch.stderr)

        # Listing: everything, and each filter.
        listed = {l["lease_id"]: l for l in self.list_leases()}
        self.assertIn(lease_id, listed)
        self.assertEqual(listed[lease_id]["path"], "f.bin")
        self.assertEqual(listed[lease_id]["export_name"], "default")
        self.assertIn(lease_id, self.lease_ids("--session", session["session_id"]))
        self.assertIn(lease_id, self.lease_ids("--export", "default", "--path", "f.bin"))
        self.assertEqual(self.lease_ids("--session", "nobody"), [])
        shown = self.pinctl("lease", "show", lease_id).obj
        self.assertEqual(shown["lease_id"], lease_id)

        # Describe: size, the lease and its busy range.
        described = self.pinctl("file", "describe", "default", "f.bin").obj
        self.assertEqual(int(described["size"]), 1 << 20)
        busy = {b["lease_id"]: b for b in described["busy"]}
        self.assertIn(lease_id, busy)
        self.assertEqual(busy[lease_id]["range"]["offset"], "4096")
        self.assertEqual(busy[lease_id]["range"]["length"], "12288")
        self.assertFalse(busy[lease_id]["being_set_up"])
        self.assertIn(lease_id, [l["lease_id"] for l in described["leases"]])

        # Table output works too (smoke: the id appears).
        table = self.pinctl("lease", "list", json_output=False)
        self.assertIn(lease_id, table.stdout)

        # Release with the printed credentials: gone from the list and from describe.
        released = self.pinctl("lease", "release", lease_id, session=session).obj
        self.assertEqual(released["lease_id"], lease_id)
        self.assertNotIn(lease_id, self.lease_ids())
        described = self.pinctl("file", "describe", "default", "f.bin").obj
        self.assertNotIn(lease_id, [b["lease_id"] for b in described["busy"]])

    def test_python_watch_snapshot(self):
        grpc, pb, pb_grpc = pbe2e.python_client_or_skip(self)
        self.make_file("f.bin")
        lease, session = self.pin("f.bin", "--length", "4096")
        channel = grpc.insecure_channel(self.daemon.endpoint)
        try:
            stub = pb_grpc.PinBrokerStub(channel)
            creds = pb.SessionCredentials(session_id=session["session_id"],
                                          token=session["token"])
            stream = stub.Watch(pb.WatchRequest(credentials=creds),
                                timeout=pbe2e.EVENT_TIMEOUT)
            snapshot = []
            for event in stream:
                if event.type == pb.WatchEvent.SNAPSHOT_COMPLETE:
                    break
                self.assertEqual(event.type, pb.WatchEvent.SNAPSHOT)
                snapshot.append(event.lease)
            stream.cancel()
            self.assertEqual([l.lease_id for l in snapshot], [lease["lease_id"]])
            self.assertEqual(snapshot[0].state, pb.LEASE_STATE_GRANTED)
            self.assertEqual(snapshot[0].path, "f.bin")
        finally:
            channel.close()

    def test_bad_input(self):
        self.make_file("f.bin")
        # A real file just outside the export: "../x" must not reach it.
        with open(os.path.join(self.root, "x"), "wb") as f:
            f.write(b"\0" * 8192)
        session = self.pinctl("session", "open").obj

        escaped = self.pinctl("lease", "pin", "default", "../x", "--length", "4096",
                              session=session, check=False)
        self.assert_error(escaped, "PERMISSION_DENIED")

        past_eof = self.pinctl("lease", "pin", "default", "f.bin", "--offset", "2M",
                               "--length", "4096", session=session, check=False)
        self.assert_error(past_eof, "OUT_OF_RANGE")

        epoch = self.pinctl("info").obj["epoch"]
        unknown = self.pinctl("lease", "release", epoch + "-999", session=session, check=False)
        self.assertIn(epoch + "-999", self.assert_error(unknown, "NOT_FOUND"))

        lease = self.pinctl("lease", "pin", "default", "f.bin", "--length", "4096",
                            session=session).obj["lease"]
        wrong = dict(session, token="0" * 32)
        bad_token = self.pinctl("lease", "release", lease["lease_id"], session=wrong,
                                check=False)
        self.assert_error(bad_token, "UNAUTHENTICATED")
        self.assertIn(lease["lease_id"], self.lease_ids(), "a failed release must not release")

        # Nothing was left behind by the failures.
        self.assertEqual(self.lease_ids(), [lease["lease_id"]])

        # Usage errors: exit 2, JSON error too.
        usage = self.pinctl("lease", "pin", "default", "f.bin", check=False)
        self.assertEqual(usage.rc, pbe2e.EXIT["USAGE"], usage)
        self.assertEqual(usage.obj["error"]["code"], "USAGE", usage)
        usage = self.pinctl("lease", "frobnicate", check=False)
        self.assertEqual(usage.rc, pbe2e.EXIT["USAGE"], usage)

    def test_restarted_broker_answers_old_ids_not_found(self):
        self.make_file("f.bin")
        lease, old_session = self.pin("f.bin", "--length", "4096")
        old_id = lease["lease_id"]
        old_epoch = self.pinctl("info").obj["epoch"]
        self.assertTrue(old_id.startswith(old_epoch + "-"), old_id)

        self.assertEqual(self.stop_daemon(), 0)
        self.start_daemon(self.DAEMON_ARGS)
        new_epoch = self.pinctl("info").obj["epoch"]
        self.assertNotEqual(new_epoch, old_epoch)

        session = self.pinctl("session", "open").obj
        for verb in ("release", "renew"):
            result = self.pinctl("lease", verb, old_id, session=session, check=False)
            message = self.assert_error(result, "NOT_FOUND")
            self.assertIn("earlier run", message)
            self.assertIn(old_id, message)
        shown = self.pinctl("lease", "show", old_id, check=False)
        self.assert_error(shown, "NOT_FOUND")
        # The old session is gone with the old run.
        stale = self.pinctl("lease", "release", old_id, session=old_session, check=False)
        self.assertIn("earlier run", self.assert_error(stale, "UNAUTHENTICATED"))
        self.assertEqual(self.lease_ids(), [])


if __name__ == "__main__":
    unittest.main()
