"""End-to-end: TCP callers over mutual TLS. The real pinbrokerd runs as root with a TLS
listener on 127.0.0.1 (a port the kernel picks) beside its Unix socket; pinctl and the Python
client connect with certificates this test makes with openssl: a client whose URI SAN maps to
a real unprivileged user (created with useradd), a client signed by another CA, an expired one,
and none. The identity is the certificate's; the mapped user's file permissions decide.

Needs root (useradd; the broker takes on the mapped uid) and openssl; skips with the reason
otherwise."""

import os
import re
import subprocess
import sys
import unittest

import pbe2e
from pbe2e import EXIT, PINCTL, UsersBrokerTest, clean_env, uid_of

USER = "pbtest-a"
ALICE = "spiffe://pinbroker.test/alice"
SERVER_NAME = "broker.pinbroker.test"  # The only name in the broker's certificate.


class TlsTest(UsersBrokerTest):

    USERS = (USER,)
    TOOLS = ("useradd", "openssl")
    WHY_ROOT = "creates a user with useradd; the broker takes on the uid a certificate maps to"
    EXTRA_LISTEN = ("127.0.0.1:0",)

    def setUp(self):
        super().setUp()
        serving = re.search(r"serving on \S+, (127\.0\.0\.1:\d+)", self.daemon.log())
        self.assertIsNotNone(serving, self.daemon.log())
        self.tcp = serving.group(1)

    def broker_config(self):
        self.pki = os.path.join(self.root, "pki")
        os.makedirs(self.pki)
        self.make_certificates()
        return ('tls {\n  cert_file: "%s"\n  key_file: "%s"\n  client_ca_file: "%s"\n'
                '  principal_uids { key: "%s" value: %d }\n}\n' % (
                    self.pem("server"), self.key("server"), self.pem("ca"), ALICE,
                    uid_of(USER)))

    # --- certificates ---------------------------------------------------------------------

    def pem(self, name):
        return os.path.join(self.pki, name + ".pem")

    def key(self, name):
        return os.path.join(self.pki, name + ".key")

    def openssl(self, *args):
        proc = subprocess.run(["openssl"] + list(args), cwd=self.pki, capture_output=True,
                              text=True, timeout=60)
        self.assertEqual(proc.returncode, 0, proc)

    def issue(self, name, cn, ext, ca, days):
        self.openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                     "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + cn)
        with open(os.path.join(self.pki, name + ".ext"), "w") as f:
            f.write(ext + "\n")
        self.openssl("x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem", "-CAkey",
                     ca + ".key", "-CAcreateserial", "-days", str(days), "-out", name + ".pem",
                     "-extfile", name + ".ext")

    def make_certificates(self):
        for ca in ("ca", "otherca"):
            self.openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                         "-nodes", "-keyout", ca + ".key", "-out", ca + ".pem", "-days", "2",
                         "-subj", "/CN=" + ca)
        self.issue("server", "broker", "subjectAltName=DNS:" + SERVER_NAME, "ca", 2)
        self.issue("alice", "alice", "subjectAltName=URI:" + ALICE, "ca", 2)
        self.issue("mallory", "mallory", "subjectAltName=URI:" + ALICE, "otherca", 2)
        self.issue("expired", "expired", "subjectAltName=URI:" + ALICE, "ca", -1)

    # --- clients --------------------------------------------------------------------------

    def tls_flags(self, cert, server_name=SERVER_NAME):
        flags = ["--tls-ca", self.pem("ca")]
        if cert is not None:
            flags += ["--tls-cert", self.pem(cert), "--tls-key", self.key(cert)]
        if server_name is not None:
            flags += ["--tls-server-name", server_name]
        return flags

    def over_tls(self, *args, cert="alice", flags=None, session=None, env=None):
        """pinctl -o json against the TLS listener, to completion."""
        cmd = [PINCTL, "--endpoint", self.tcp, "-o", "json"]
        cmd += self.tls_flags(cert) if flags is None else flags
        if session is not None:
            cmd += ["--session", session["session_id"], "--token", session["token"]]
        proc = subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=60,
                              env=env if env is not None else clean_env())
        return pbe2e.Result(cmd[1:] + list(args), proc)

    # --- tests ----------------------------------------------------------------------------

    def test_a_client_certificate_acts_as_the_user_it_maps_to(self):
        a = uid_of(USER)
        self.make_owned("mine", a, 0o600, b"m" * 8192)
        secret = b"s" * 8192
        self.make_owned("secret", 0, 0o600, secret)
        opened = self.over_tls("session", "open", "--name", "tls-client")
        self.assertEqual(opened.rc, 0, opened)
        session = opened.obj
        r = self.over_tls("lease", "pin", "default", "mine", "--length", "4096", "--access", "rw",
                          session=session)
        self.assertEqual(r.rc, 0, r)
        lease_id = r.obj["lease"]["lease_id"]
        # The session is the certificate's, and it acts with the mapped user's permissions.
        sessions = [s for s in self.pinctl("session", "list").obj["sessions"]
                    if s.get("clientName", s.get("client_name")) == "tls-client"]
        self.assertEqual(len(sessions), 1, sessions)
        self.assertIn(ALICE, sessions[0]["identity"])
        r = self.over_tls("lease", "pin", "default", "secret", "--length", "4096",
                          session=session)
        message = self.assert_error(r, "PERMISSION_DENIED")
        self.assertIn(ALICE, message)
        r = self.over_tls("file", "truncate", "default", "secret", "--size", "0", "--policy",
                          "revoke")
        self.assert_error(r, "PERMISSION_DENIED")
        self.assertEqual(self.read_file("secret"), secret)
        self.assertEqual(self.lease_ids(), [lease_id])
        # Its token is its own: the same session over the Unix socket (as root) is refused.
        r = self.pinctl("session", "renew", session=session, check=False)
        self.assert_error(r, "PERMISSION_DENIED")

    def test_tls_settings_come_from_the_environment_too(self):
        env = clean_env()
        env.update({"PINBROKER_TLS_CA": self.pem("ca"), "PINBROKER_TLS_CERT": self.pem("alice"),
                    "PINBROKER_TLS_KEY": self.key("alice"),
                    "PINBROKER_TLS_SERVER_NAME": SERVER_NAME})
        r = self.over_tls("session", "open", flags=[], env=env)
        self.assertEqual(r.rc, 0, r)
        self.assertTrue(r.obj["session_id"], r)
        # Set for TCP, the variables do not disturb a Unix-socket call.
        cmd = [PINCTL, "--endpoint", self.daemon.endpoint, "health"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)
        self.assertEqual(proc.returncode, 0, proc)

    def test_no_certificate_another_ca_an_expired_one_and_plaintext_are_refused(self):
        cases = {
            "no client certificate": self.tls_flags(None),
            "a certificate of another CA": self.tls_flags("mallory"),
            "an expired certificate": self.tls_flags("expired"),
            "a broker name its certificate does not carry": self.tls_flags("alice", None),
            "plaintext": [],
        }
        for what, flags in cases.items():
            with self.subTest(what):
                r = self.over_tls("session", "open", "--name", "intruder", flags=flags)
                self.assert_error(r, "UNAVAILABLE")
        sessions = self.pinctl("session", "list").obj.get("sessions", [])
        self.assertEqual([s for s in sessions
                          if s.get("clientName", s.get("client_name")) == "intruder"], [])
        self.pinctl("health", json_output=False)  # Still serving.

    def test_tls_flags_on_a_unix_socket_are_a_usage_error(self):
        r = self.pinctl(*(self.tls_flags("alice") + ["info"]), check=False)
        self.assertEqual(r.rc, EXIT["USAGE"], r)
        self.assertIn("TCP endpoints only", r.stderr)

    def test_python_client_over_mutual_tls(self):
        pbe2e.python_client_or_skip(self)
        data = os.urandom(1 << 16)
        self.make_owned("demo.bin", uid_of(USER), 0o600, data)
        example = os.path.join(pbe2e.SOURCE_DIR, "clients", "python", "pin_example.py")
        proc = subprocess.run(
            [sys.executable, example, "--endpoint", self.tcp, "--export", "default",
             "--path", "demo.bin", "--offset", "8192", "--length", "16384", "--grace", "5",
             "--pythonpath", pbe2e.PYTHON_DIR] + self.tls_flags("alice"),
            capture_output=True, text=True, timeout=60, env=clean_env())
        self.assertEqual(proc.returncode, 0, "stdout:\n%s\nstderr:\n%s" % (proc.stdout,
                                                                           proc.stderr))
        self.assertIn("result: lease recalled and released in time", proc.stdout)
        self.assertEqual(self.read_file("demo.bin"), data[:8192])
        self.assertEqual(self.lease_ids(), [])
        # Without a client certificate the same client gets nowhere.
        proc = subprocess.run(
            [sys.executable, example, "--endpoint", self.tcp, "--export", "default",
             "--path", "demo.bin", "--pythonpath", pbe2e.PYTHON_DIR,
             "--tls-ca", self.pem("ca"), "--tls-server-name", SERVER_NAME],
            capture_output=True, text=True, timeout=60, env=clean_env())
        self.assertNotEqual(proc.returncode, 0, proc)
        self.assertEqual(self.read_file("demo.bin"), data[:8192])


if __name__ == "__main__":
    unittest.main()
