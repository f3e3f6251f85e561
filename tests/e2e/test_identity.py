"""End-to-end: who is calling. The real pinbrokerd runs as root with its socket open to every
user (listen_mode 0666); real unprivileged users (created with useradd) run pinctl and the
Python client against it through setpriv. Each may do only what it could do to the file itself.

Needs root (useradd, setpriv); skips with the reason otherwise."""

import os
import shutil
import subprocess
import unittest

import pbe2e
from pbe2e import EXIT, PINCTL, PYTHON_DIR, UsersBrokerTest, clean_env, uid_of

class IdentityTest(UsersBrokerTest):

    USERS = ("pbtest-a", "pbtest-b")
    TOOLS = ("useradd", "setpriv")
    WHY_ROOT = "creates users with useradd, runs clients as them with setpriv"

    def broker_config(self):
        return 'listen_mode: "0666"\n'

    def as_user(self, user, *args, session=None):
        """pinctl as `user` (its uid, gid and groups), to completion."""
        cmd = ["setpriv", "--reuid=" + user, "--regid=" + user, "--init-groups", "--"]
        cmd += self.pinctl_args(args, True, session)
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=clean_env())
        return pbe2e.Result(cmd[6:], proc)

    def test_root_only_file_is_neither_pinned_nor_truncated_nor_punched(self):
        data = b"r" * 8192
        self.make_owned("secret", 0, 0o600, data)
        holder, lease = self.hold("secret", "--ttl", "30s", length="4096")
        r = self.as_user("pbtest-a", "lease", "pin", "default", "secret", "--length", "4096")
        self.assertIn("permission denied", self.assert_error(r, "PERMISSION_DENIED"))
        r = self.as_user("pbtest-a", "lease", "pin", "default", "secret", "--length", "4096",
                         "--access", "rw")
        self.assert_error(r, "PERMISSION_DENIED")
        r = self.as_user("pbtest-a", "file", "truncate", "default", "secret", "--size", "0",
                         "--policy", "revoke")
        self.assert_error(r, "PERMISSION_DENIED")
        r = self.as_user("pbtest-a", "file", "punch", "default", "secret", "--offset", "0",
                         "--length", "4096", "--policy", "revoke")
        self.assert_error(r, "PERMISSION_DENIED")
        self.assertEqual(self.read_file("secret"), data)
        self.assertEqual(self.lease_ids(), [lease["lease_id"]], "root's lease stays")

    def test_private_directory_and_hard_link_are_judged_by_the_kernel(self):
        os.makedirs(self.file_path("private"), mode=0o700)
        self.make_owned("private/open", 0, 0o666)
        r = self.as_user("pbtest-a", "file", "truncate", "default", "private/open", "--size",
                         "0", "--policy", "revoke")
        self.assert_error(r, "PERMISSION_DENIED")
        self.assertEqual(len(self.read_file("private/open")), 8192)
        outside = os.path.join(self.root, "outside")
        with open(outside, "wb") as f:
            f.write(b"outside!")
        os.chmod(outside, 0o600)
        os.link(outside, self.file_path("link"))
        r = self.as_user("pbtest-a", "file", "truncate", "default", "link", "--size", "0",
                         "--policy", "revoke")
        self.assert_error(r, "PERMISSION_DENIED")
        with open(outside, "rb") as f:
            self.assertEqual(f.read(), b"outside!")

    def test_own_file_works_and_another_users_token_is_refused(self):
        a = uid_of("pbtest-a")
        self.make_owned("mine", a, 0o600)
        opened = self.as_user("pbtest-a", "session", "open")
        self.assertEqual(opened.rc, 0, opened)
        session = opened.obj
        r = self.as_user("pbtest-a", "lease", "pin", "default", "mine", "--length", "4096",
                         "--access", "rw", session=session)
        self.assertEqual(r.rc, 0, r)
        r = self.as_user("pbtest-b", "session", "renew", session=session)
        self.assertIn("belongs to uid %d" % a, self.assert_error(r, "PERMISSION_DENIED"))
        r = self.as_user("pbtest-b", "lease", "list")
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(r.obj.get("leases", []), [], "b sees none of a's leases")
        r = self.as_user("pbtest-a", "lease", "list")
        self.assertEqual(len(r.obj["leases"]), 1, r)
        self.assertEqual(len(self.list_leases()), 1, "root, an admin, sees it too")

    def test_python_client_as_an_unprivileged_user_is_refused(self):
        pbe2e.python_client_or_skip(self)
        self.make_owned("secret", 0, 0o600)
        script = (
            "import grpc, sys\n"
            "from pinbroker.v1 import pinbroker_pb2 as pb, pinbroker_pb2_grpc as pbg\n"
            "stub = pbg.PinBrokerStub(grpc.insecure_channel(sys.argv[1]))\n"
            "s = stub.OpenSession(pb.OpenSessionRequest(client_name='x\\nFAKE LOG LINE'))\n"
            "try:\n"
            "    stub.Pin(pb.PinRequest(credentials=s.credentials, export_name='default',\n"
            "             path='secret', length=1, access=pb.ACCESS_READ))\n"
            "except grpc.RpcError as e:\n"
            "    print(e.code().name, e.details())\n"
        )
        cmd = ["setpriv", "--reuid=pbtest-b", "--regid=pbtest-b", "--init-groups", "--",
               "/usr/bin/python3", "-c", script, self.daemon.endpoint]
        env = clean_env()
        env["PYTHONPATH"] = PYTHON_DIR
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)
        self.assertTrue(proc.stdout.startswith("PERMISSION_DENIED"), (proc.stdout, proc.stderr))
        self.assertIn("uid %d" % uid_of("pbtest-b"), proc.stdout)
        log = self.daemon.log()
        self.assertNotIn("\nFAKE LOG LINE", log, "a client_name cannot start a log line")
        self.assertIn("x\\nFAKE LOG LINE", log)

    def test_admin_lists_sessions_and_revokes_a_users_lease(self):
        self.make_owned("public", 0, 0o644)
        holder = pbe2e.Process(
            ["setpriv", "--reuid=pbtest-a", "--regid=pbtest-a", "--init-groups", "--"]
            + self.pinctl_args(["lease", "pin", "default", "public", "--length", "4096",
                                "--hold", "--ignore-recall", "--name", "holder"]),
            name="holder")
        self.processes.append(holder)
        pinned = holder.wait_for(lambda o: "lease" in o and "type" not in o, what="the lease")
        lease_id = pinned["lease"]["lease_id"]
        sessions = self.pinctl("session", "list").obj["sessions"]
        mine = [s for s in sessions if s.get("clientName", s.get("client_name")) == "holder"]
        self.assertEqual(len(mine), 1, sessions)
        self.assertEqual(int(mine[0]["uid"]), uid_of("pbtest-a"))
        self.assertEqual(int(mine[0].get("leaseCount", mine[0].get("lease_count"))), 1)
        # A non-admin sees only its own sessions, and cannot revoke.
        r = self.as_user("pbtest-b", "session", "list")
        self.assertEqual(r.obj.get("sessions", []), [], r)
        r = self.as_user("pbtest-b", "lease", "revoke", lease_id)
        self.assert_error(r, "NOT_FOUND")
        revoked = self.pinctl("lease", "revoke", lease_id, "--grace", "1s", "--reason",
                              "disk swap").obj
        self.assertTrue(revoked["revoked"], revoked)
        event = holder.wait_event("REVOKED", lease_id)
        self.assertIn("revoked by uid 0", event["lease"]["reason"])
        self.assertIn("disk swap", event["lease"]["reason"])
        self.assertEqual(self.lease_ids(), [])
        self.assertIn("admin uid 0", self.daemon.log())

    def test_a_bind_mount_beneath_the_export_is_not_part_of_it(self):
        elsewhere = os.path.join(self.root, "elsewhere")
        os.makedirs(elsewhere)
        with open(os.path.join(elsewhere, "f"), "wb") as f:
            f.write(b"12345678")
        os.chmod(os.path.join(elsewhere, "f"), 0o666)
        mnt = self.file_path("mnt")
        os.makedirs(mnt)
        mounted = subprocess.run(["mount", "--bind", elsewhere, mnt], capture_output=True,
                                 text=True)
        if mounted.returncode != 0:
            self.skipTest("bind mount not permitted here: %s" % mounted.stderr.strip())
        self.addCleanup(subprocess.run, ["umount", "-l", mnt], capture_output=True)
        for who in ("root", "pbtest-a"):
            with self.subTest(who):
                run = self.pinctl if who == "root" else (
                    lambda *a, **kw: self.as_user("pbtest-a", *a))
                r = run("lease", "pin", "default", "mnt/f", "--length", "1", check=False)
                self.assertIn("mount point", self.assert_error(r, "PERMISSION_DENIED"))
                r = run("file", "truncate", "default", "mnt/f", "--size", "0", "--policy",
                        "revoke", check=False)
                self.assert_error(r, "PERMISSION_DENIED")
        with open(os.path.join(elsewhere, "f"), "rb") as f:
            self.assertEqual(f.read(), b"12345678")
        self.assertEqual(self.lease_ids(), [])

    def test_a_readers_lease_cannot_hold_off_a_writers_refuse_truncate(self):
        a = uid_of("pbtest-a")
        data = os.urandom(16384)
        self.make_owned("shared", a, 0o644, data)  # a writes, b only reads.
        holder = pbe2e.Process(
            ["setpriv", "--reuid=pbtest-b", "--regid=pbtest-b", "--init-groups", "--"]
            + self.pinctl_args(["lease", "pin", "default", "shared", "--length", "4096",
                                "--hold", "--name", "reader"]),
            name="reader")
        self.processes.append(holder)
        pinned = holder.wait_for(lambda o: "lease" in o and "type" not in o, what="the lease")
        lease_id = pinned["lease"]["lease_id"]
        holder.wait_event("GRANTED", lease_id)
        r = self.as_user("pbtest-a", "file", "truncate", "default", "shared", "--size", "0",
                         "--policy", "refuse", "--grace", "10s")
        self.assertEqual(r.rc, 0, r)
        # a is not an admin: b's lease is counted, not named.
        self.assertNotIn(lease_id, r.stdout)
        others = r.obj.get("othersReleased", r.obj.get("others_released", 0))
        self.assertEqual(int(others), 1, r)
        event = holder.wait_event("RECALLED", lease_id)
        self.assertIn("may not change the file's layout", event["lease"]["reason"])
        self.assertEqual(self.read_file("shared"), b"")
        self.assertEqual(self.lease_ids(), [])

    def test_squatted_runtime_directory_is_refused_by_broker_and_client(self):
        victim = uid_of("pbtest-b")
        runtime = "/tmp/pinbroker-%d" % victim
        shutil.rmtree(runtime, ignore_errors=True)
        self.addCleanup(shutil.rmtree, runtime, True)
        # The attacker makes the victim's predictable directory first, open to everyone.
        subprocess.run(["setpriv", "--reuid=pbtest-a", "--regid=pbtest-a", "--init-groups", "--",
                        "mkdir", "-m", "0777", runtime], check=True)
        env = clean_env()
        env.pop("XDG_RUNTIME_DIR", None)
        env["HOME"] = self.root
        as_victim = ["setpriv", "--reuid=pbtest-b", "--regid=pbtest-b", "--init-groups", "--"]
        # A fake broker socket in it: the client must not talk to it.
        open(os.path.join(runtime, "pinbroker.sock"), "w").close()
        client = subprocess.run(as_victim + [PINCTL, "info"], capture_output=True, text=True,
                                timeout=60, env=env)
        self.assertEqual(client.returncode, EXIT["FAILED_PRECONDITION"], client)
        self.assertIn("belongs to uid %d" % uid_of("pbtest-a"), client.stderr)
        state = os.path.join(self.root, "state")
        os.makedirs(state)
        os.chown(state, victim, os.stat(state).st_gid)
        daemon = subprocess.run(as_victim + [pbe2e.PINBROKERD, "--state_dir", state],
                                capture_output=True, text=True, timeout=60, env=env)
        self.assertNotEqual(daemon.returncode, 0, daemon)
        self.assertIn("runtime directory %s belongs to uid" % runtime, daemon.stderr)


if __name__ == "__main__":
    unittest.main()
