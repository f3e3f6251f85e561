"""End-to-end: what a newcomer meets first. --version and --help of every program, the daemon's
flag spellings, SIGHUP, and the messages for an unreachable broker and a node without RDMA."""

import os
import re
import signal
import subprocess
import tempfile
import unittest

import pbe2e
from pbe2e import BrokerTest, PINBROKERD, PINCTL, SOURCE_DIR

PINRDMA = os.environ.get("PINRDMA", "")
BUILD_TYPE = os.environ.get("PINBROKER_BUILD_TYPE", "")


def run(args, timeout=30):
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout,
                          env=pbe2e.clean_env())


def absl_duration(text):
    """absl::FormatDuration's text ("30s", "1m30s", "2h", "500ms") -> seconds."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
    parts = re.findall(r"([0-9.]+)(h|ms|us|ns|m|s)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError("not a duration: %r" % text)
    return sum(float(n) * units[u] for n, u in parts)


def git_head():
    """The checkout's commit (12 hex digits), or None outside a git checkout."""
    try:
        out = subprocess.run(["git", "-C", SOURCE_DIR, "rev-parse", "--short=12", "HEAD"],
                             capture_output=True, text=True, timeout=30)
    except OSError:
        return None
    return out.stdout.strip() if out.returncode == 0 else None


class VersionTest(unittest.TestCase):
    def programs(self):
        progs = [("pinbrokerd", PINBROKERD), ("pinctl", PINCTL)]
        if PINRDMA:
            progs.append(("pinrdma", PINRDMA))
        return progs

    def test_every_program_prints_version_commit_and_build_type(self):
        pbe2e.require_binaries(self)
        head = git_head()
        for name, path in self.programs():
            with self.subTest(program=name):
                r = run([path, "--version"])
                self.assertEqual(r.returncode, 0, r.stderr)
                m = re.fullmatch(
                    r"%s (\d+\.\d+\.\d+) \(commit ([0-9a-f]{12}(?:-dirty)?|unknown), (\S+), "
                    r"assertions (on|off)(?:, sanitizers \S+)?\)\n" % name, r.stdout)
                self.assertIsNotNone(m, "unexpected --version output: %r" % r.stdout)
                # A binary built from a dirty tree names the commit it started from; the tree
                # may have been committed since. A clean build must name the checkout's commit.
                if head is not None and not m.group(2).endswith("-dirty"):
                    self.assertEqual(m.group(2), head,
                                     "the binary names another commit than the checkout's")
                if BUILD_TYPE:
                    self.assertEqual(m.group(3), BUILD_TYPE)
        if not PINRDMA:
            print("pinrdma not built (no libibverbs/librdmacm): its --version is not checked")


class DaemonHelpTest(unittest.TestCase):
    def setUp(self):
        pbe2e.require_binaries(self)

    def help_text(self):
        r = run([PINBROKERD, "--help"])
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout

    def test_help_exits_0_and_names_no_source_file(self):
        text = self.help_text()
        self.assertNotRegex(text, r"\.(cc|h)\b", "--help names a source file")
        self.assertNotIn("default: 0;", text)
        self.assertNotIn("default: \"\";", text)
        for flag in ("--session-ttl", "--shutdown-grace", "--listen", "--export", "--guard",
                     "--version", "--print-config"):
            self.assertRegex(text, r"(?m)^  %s$" % re.escape(flag))

    def flag_default(self, text, flag):
        block = re.search(r"(?ms)^  %s\n(.*?)(?=^  --)" % re.escape(flag), text)
        self.assertIsNotNone(block, "%s not in --help" % flag)
        m = re.search(r"\(default: ([^)]*)\)", " ".join(block.group(1).split()))
        self.assertIsNotNone(m, "%s shows no default: %r" % (flag, block.group(1)))
        return m.group(1)

    def test_help_shows_the_session_ttl_the_broker_applies(self):
        shown = self.flag_default(self.help_text(), "--session-ttl")
        root = tempfile.mkdtemp(prefix="pbe2e-", dir="/tmp")
        daemon = pbe2e.Daemon(root, [])  # No --session-ttl: the broker's own default.
        daemon.start()
        try:
            info = None
            for _ in range(200):
                r = run([PINCTL, "--endpoint", daemon.endpoint, "-o", "json", "info"])
                if r.returncode == 0:
                    info = pbe2e.Result([], r).obj
                    break
                if daemon.proc.poll() is not None:
                    self.fail("pinbrokerd exited: %s" % daemon.log())
                pbe2e.time.sleep(0.05)  # Polling for readiness, bounded.
            self.assertIsNotNone(info, "pinbrokerd did not answer: %s" % daemon.log())
            self.assertEqual(absl_duration(shown), pbe2e.parse_duration(info["session_ttl"]),
                             "--help shows %s, the broker applies %s" % (shown,
                                                                         info["session_ttl"]))
        finally:
            self.assertEqual(daemon.stop(), 0, daemon.log())

    def print_config(self, *args):
        r = run([PINBROKERD, "--print-config", "--state-dir=/tmp/pb-sd", "--runtime-dir",
                 "/tmp/pb-rd"] + list(args))
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout

    def test_kebab_and_snake_case_flags_are_the_same(self):
        kebab = self.print_config("--session-ttl=45s", "--shutdown-grace", "3s", "--no-guard",
                                  "--rdma-port=7999")
        snake = self.print_config("--session_ttl=45s", "--shutdown_grace", "3s", "--noguard",
                                  "--rdma_port=7999")
        self.assertEqual(kebab, snake)
        self.assertIn("seconds: 45", kebab)
        self.assertIn("disabled: true", kebab)
        self.assertIn("port: 7999", kebab)

    def test_unknown_flag_is_a_usage_error(self):
        r = run([PINBROKERD, "--no-such-flag"])
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("no_such_flag", r.stderr)


class SighupTest(BrokerTest):
    def test_sighup_is_logged_and_the_broker_keeps_serving(self):
        self.make_file("f.bin")
        holder, lease = self.hold("f.bin")
        self.daemon.proc.send_signal(signal.SIGHUP)
        # The broker logs the signal and goes on: its leases and sessions stay.
        deadline = pbe2e.time.monotonic() + pbe2e.EVENT_TIMEOUT
        while "SIGHUP" not in self.daemon.log() and pbe2e.time.monotonic() < deadline:
            self.assertIsNone(self.daemon.proc.poll(), "pinbrokerd died of SIGHUP")
            pbe2e.time.sleep(0.05)  # Polling the log, bounded.
        self.assertIn("does not reload", self.daemon.log())
        self.assertIsNone(self.daemon.proc.poll(), "pinbrokerd exited after SIGHUP")
        self.assertIn(lease["lease_id"], self.lease_ids())
        self.assertEqual(self.pinctl("info").obj["live_leases"], "1")
        # SIGTERM still shuts it down gracefully and removes its socket.
        socket_path = self.daemon.socket
        self.assertEqual(self.stop_daemon(), 0)
        self.assertFalse(os.path.exists(socket_path), "the socket was left behind")
        holder.wait_exit()


class MessagesTest(unittest.TestCase):
    def setUp(self):
        pbe2e.require_binaries(self)

    def test_unreachable_broker_names_the_endpoint_and_how_to_change_it(self):
        endpoint = "unix:/tmp/pbe2e-nobroker-%d.sock" % os.getpid()
        r = run([PINCTL, "--endpoint", endpoint, "info"])
        self.assertEqual(r.returncode, pbe2e.EXIT["UNAVAILABLE"], r.stderr)
        self.assertIn(endpoint, r.stderr)
        self.assertIn("--endpoint", r.stderr)
        self.assertIn("PINBROKER_ENDPOINT", r.stderr)


class NoRdmaTest(BrokerTest):
    DAEMON_ARGS = BrokerTest.DAEMON_ARGS + ["--backend", "host"]

    def setUp(self):
        if not PINRDMA:
            raise unittest.SkipTest("pinrdma not built (needs libibverbs-dev and librdmacm-dev)")
        super().setUp()

    def pinrdma(self, *args):
        return run([PINRDMA, "--endpoint", self.daemon.endpoint, "-o", "json"] + list(args))

    def test_info_says_why_there_is_no_rdma(self):
        r = self.pinrdma("info")
        self.assertEqual(r.returncode, 0, r.stderr)
        events = {l.get("event"): l for l in pbe2e.Result([], r).json}
        self.assertIn("broker", events, r.stdout)
        self.assertEqual(events["broker"]["rdma"], 'not served: backend "host" is configured')
        local = events.get("local_devices")
        self.assertIsNotNone(local, r.stdout)
        if local["count"] == 0:
            # The reason says what is missing, not only a bare errno.
            self.assertRegex(local["why"], r"(no RDMA to user space|no device registered)")

    def test_check_names_the_reason_and_no_useless_advice(self):
        self.make_file("f.bin")
        r = self.pinrdma("check", "default", "f.bin", "--length", "64K")
        self.assertEqual(r.returncode, pbe2e.EXIT["FAILED_PRECONDITION"], r.stdout + r.stderr)
        text = r.stdout + r.stderr
        self.assertIn("backend \\\"host\\\" is configured", text)
        self.assertNotIn("backend auto or rdma", text)


if __name__ == "__main__":
    unittest.main()
