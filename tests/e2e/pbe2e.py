"""Helpers for pinbroker's end-to-end tests: the real pinbrokerd on a temporary Unix socket,
pinctl runs, and long-running pinctl processes whose JSON output lines are collected as they
arrive.

Configuration comes from the environment that ctest sets (tests/e2e/CMakeLists.txt):
  PINBROKERD            path to pinbrokerd
  PINCTL                path to pinctl
  PINBROKER_PYTHON_DIR  the generated Python client (may be absent: those tests skip)
  PINBROKER_SOURCE_DIR  the source tree (for clients/python/pin_example.py)

No test sleeps to wait for a timer: readiness is polled with a bounded number of tries, and
everything else waits for an observable event (an output line, a process exit, a listed
lease), each with a generous bound.
"""

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from datetime import datetime, timezone

PINBROKERD = os.environ.get("PINBROKERD", "")
PINCTL = os.environ.get("PINCTL", "")
PYTHON_DIR = os.environ.get("PINBROKER_PYTHON_DIR", "")
SOURCE_DIR = os.environ.get("PINBROKER_SOURCE_DIR", "")

# Generous bounds for events that normally take milliseconds (sanitizer builds are slow).
EVENT_TIMEOUT = 20.0

# pinctl's documented exit codes: 10 + the gRPC status code.
EXIT = {
    "OK": 0, "USAGE": 2, "LEASE_LOST": 4,
    "INVALID_ARGUMENT": 13, "DEADLINE_EXCEEDED": 14, "NOT_FOUND": 15,
    "PERMISSION_DENIED": 17, "FAILED_PRECONDITION": 19, "ABORTED": 20, "OUT_OF_RANGE": 21,
    "UNAVAILABLE": 24, "UNAUTHENTICATED": 26,
}


def parse_time(text):
    """RFC 3339 with nanoseconds (protobuf JSON) -> seconds since the epoch, as a float."""
    base, _, frac = text.rstrip("Z").partition(".")
    t = datetime.strptime(base, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc).timestamp()
    return t + (float("0." + frac) if frac else 0.0)


def parse_duration(text):
    """protobuf JSON duration ("2.000340508s") -> seconds."""
    return float(text.rstrip("s"))


def clean_env():
    env = dict(os.environ)
    for name in ("PINBROKER_ENDPOINT", "PINBROKER_SESSION", "PINBROKER_TOKEN"):
        env.pop(name, None)
    return env


def require_binaries(test):
    for name, path in (("PINBROKERD", PINBROKERD), ("PINCTL", PINCTL)):
        if not path or not os.access(path, os.X_OK):
            test.fail("%s is not set to an executable (got %r); run the tests through ctest"
                      % (name, path))


def python_client_or_skip(test):
    """Imports grpc and the generated client, or skips the test saying why."""
    if not PYTHON_DIR or not os.path.isfile(
            os.path.join(PYTHON_DIR, "pinbroker", "v1", "pinbroker_pb2_grpc.py")):
        raise unittest.SkipTest("generated Python client not found in PINBROKER_PYTHON_DIR=%r "
                                "(needs python3-grpc-tools at configure time)" % PYTHON_DIR)
    if PYTHON_DIR not in sys.path:
        sys.path.insert(0, PYTHON_DIR)
    try:
        import grpc  # noqa: F401
        from pinbroker.v1 import pinbroker_pb2, pinbroker_pb2_grpc
    except ImportError as e:
        raise unittest.SkipTest("python grpc not importable: %s" % e)
    return grpc, pinbroker_pb2, pinbroker_pb2_grpc


class Result:
    """A finished pinctl run: exit status, JSON lines on stdout, stderr text."""

    def __init__(self, args, proc):
        self.args = args
        self.rc = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.json = []
        for line in proc.stdout.splitlines():
            line = line.strip()
            if line:
                try:
                    self.json.append(json.loads(line))
                except ValueError:
                    pass

    @property
    def obj(self):
        return self.json[0] if self.json else None

    def __repr__(self):
        return "pinctl %s -> rc %d\nstdout: %s\nstderr: %s" % (
            " ".join(self.args), self.rc, self.stdout, self.stderr)


class Process:
    """A long-running process whose stdout JSON lines are collected by a reader thread."""

    def __init__(self, args, env=None, name="process"):
        self.args = args
        self.name = name
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=env or clean_env())
        self._lines = []
        self._cond = threading.Condition()
        self._stderr = []
        self._out_thread = threading.Thread(target=self._read, daemon=True)
        self._err_thread = threading.Thread(target=self._read_err, daemon=True)
        self._out_thread.start()
        self._err_thread.start()

    def _read(self):
        for line in self.proc.stdout:
            line = line.strip()
            if not line:
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                obj = {"_text": line}
            with self._cond:
                self._lines.append(obj)
                self._cond.notify_all()
        with self._cond:
            self._lines.append(None)  # End of output.
            self._cond.notify_all()

    def _read_err(self):
        for line in self.proc.stderr:
            self._stderr.append(line)

    @property
    def lines(self):
        with self._cond:
            return [x for x in self._lines if x is not None]

    @property
    def stderr(self):
        return "".join(self._stderr)

    def wait_for(self, predicate, timeout=EVENT_TIMEOUT, what="a matching line"):
        """The first output line (parsed JSON) satisfying `predicate`; fails on timeout/EOF."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for obj in self._lines:
                    if obj is not None and predicate(obj):
                        return obj
                if self._lines and self._lines[-1] is None:
                    raise AssertionError("%s ended (rc %s) without %s; output %s; stderr %s" % (
                        self.name, self.proc.poll(), what, self._lines, self.stderr))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("%s: no %s within %.0fs; output %s; stderr %s" % (
                        self.name, what, timeout, self._lines, self.stderr))
                self._cond.wait(left)

    def wait_event(self, kind, lease_id=None, timeout=EVENT_TIMEOUT):
        return self.wait_for(
            lambda o: o.get("type") == kind and
            (lease_id is None or o.get("lease", {}).get("lease_id") == lease_id),
            timeout, "%s event%s" % (kind, "" if lease_id is None else " for " + lease_id))

    def wait_exit(self, timeout=EVENT_TIMEOUT):
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("%s still running after %.0fs; output %s; stderr %s" % (
                self.name, timeout, self.lines, self.stderr))
        self._out_thread.join(timeout)
        self._err_thread.join(timeout)
        return rc

    def signal(self, sig):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(EVENT_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass


class Daemon:
    """The real pinbrokerd serving one export on a Unix socket under `root`."""

    def __init__(self, root, extra_args, extra_listen=()):
        self.root = root
        self.socket = os.path.join(root, "s.sock")
        self.export_dir = os.path.join(root, "exp")
        self.endpoint = "unix:" + self.socket
        self.log_path = os.path.join(root, "pinbrokerd.%d.log" % time.monotonic_ns())
        self.args = [PINBROKERD, "--listen", ",".join([self.endpoint] + list(extra_listen)),
                     "--export", "default=" + self.export_dir] + list(extra_args)
        self.proc = None

    def start(self):
        log = open(self.log_path, "w")
        self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT,
                                     env=clean_env())
        log.close()

    def log(self):
        try:
            with open(self.log_path) as f:
                return f.read()
        except OSError:
            return ""

    def stop(self, sig=signal.SIGTERM, timeout=EVENT_TIMEOUT):
        """Signals the daemon and returns its exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("pinbrokerd did not exit within %.0fs of signal %d\n%s" % (
                timeout, sig, self.log()))


class BrokerTest(unittest.TestCase):
    """Starts a fresh pinbrokerd per test (DAEMON_ARGS) and stops it in tearDown."""

    DAEMON_ARGS = ["--grace", "2s", "--default_ttl", "30s", "--session_ttl", "30s"]

    def setUp(self):
        require_binaries(self)
        # Short path: Unix socket paths must stay under 108 bytes.
        self.root = tempfile.mkdtemp(prefix="pbe2e-", dir="/tmp")
        self.daemon_logs = []
        self.processes = []
        self.daemon = None
        self.start_daemon(self.DAEMON_ARGS)

    def tearDown(self):
        for p in self.processes:
            p.kill()
        if self.daemon is not None:
            try:
                self.daemon.stop(signal.SIGKILL)
            finally:
                self.daemon_logs.append(self.daemon.log())
        shutil.rmtree(self.root, ignore_errors=True)

    def run(self, result=None):
        # On failure, show what the daemons logged: the reason is usually there.
        result = result if result is not None else self.defaultTestResult()
        before = len(result.failures) + len(result.errors)
        out = super().run(result)
        if len(result.failures) + len(result.errors) > before:
            for i, log in enumerate(self.daemon_logs):
                sys.stderr.write("---- pinbrokerd log %d of %s ----\n%s\n" % (i + 1, self.id(),
                                                                             log))
        return out

    # --- daemon ---------------------------------------------------------------------------

    def start_daemon(self, args, extra_listen=()):
        """Starts pinbrokerd on the Unix socket (and `extra_listen` addresses, e.g.
        "127.0.0.1:0") and waits until it answers on the socket."""
        self.daemon = Daemon(self.root, args, extra_listen)
        os.makedirs(self.daemon.export_dir, exist_ok=True)
        self.daemon.start()
        self.wait_healthy()

    def stop_daemon(self, sig=signal.SIGTERM):
        try:
            return self.daemon.stop(sig)
        finally:
            self.daemon_logs.append(self.daemon.log())
            self.daemon = None

    def wait_healthy(self, tries=200):
        """Polls `pinctl health` until it succeeds (a bounded number of tries)."""
        last = None
        for _ in range(tries):
            if self.daemon.proc.poll() is not None:
                self.fail("pinbrokerd exited with %d before serving:\n%s" % (
                    self.daemon.proc.returncode, self.daemon.log()))
            last = self.pinctl("health", json_output=False, check=False, timeout=10)
            if last.rc == 0:
                return
            time.sleep(0.05)  # Readiness poll of a starting process, not a timer wait.
        self.fail("pinbrokerd not healthy after %d tries; last: %r\n%s" % (
            tries, last, self.daemon.log()))

    # --- files ----------------------------------------------------------------------------

    def make_file(self, name, size=1 << 20):
        data = os.urandom(size)
        with open(os.path.join(self.daemon.export_dir, name), "wb") as f:
            f.write(data)
        return data

    def file_path(self, name):
        return os.path.join(self.daemon.export_dir, name)

    def read_file(self, name):
        with open(self.file_path(name), "rb") as f:
            return f.read()

    # --- pinctl ---------------------------------------------------------------------------

    def pinctl_args(self, args, json_output=True, session=None):
        cmd = [PINCTL, "--endpoint", self.daemon.endpoint]
        if session is not None:
            cmd += ["--session", session["session_id"], "--token", session["token"]]
        if json_output:
            cmd += ["-o", "json"]
        return cmd + list(args)

    def pinctl(self, *args, json_output=True, session=None, check=True, expect_rc=None,
               timeout=60):
        """Runs pinctl to completion. check: assert exit 0 (or `expect_rc`)."""
        cmd = self.pinctl_args(args, json_output, session)
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              env=clean_env())
        result = Result(cmd[1:], proc)
        if expect_rc is not None:
            self.assertEqual(result.rc, expect_rc, result)
        elif check:
            self.assertEqual(result.rc, 0, result)
        return result

    def spawn_pinctl(self, *args, session=None, name="pinctl"):
        """Starts a long-running pinctl (-o json); killed in tearDown if still running."""
        p = Process(self.pinctl_args(args, True, session), name=name)
        self.processes.append(p)
        return p

    def hold(self, path, *extra, length="8192", name="holder"):
        """Starts `pinctl lease pin --hold` and returns (process, lease) once it holds."""
        p = self.spawn_pinctl("lease", "pin", "default", path, "--length", length, "--hold",
                              *extra, name=name)
        pinned = p.wait_for(lambda o: "lease" in o and "type" not in o, what="the pinned lease")
        lease = pinned["lease"]
        p.wait_event("GRANTED", lease["lease_id"])
        return p, lease

    def list_leases(self, *filters):
        return self.pinctl("lease", "list", *filters).obj["leases"]

    def lease_ids(self, *filters):
        return [l["lease_id"] for l in self.list_leases(*filters)]

    def assert_error(self, result, code):
        """pinctl failed with gRPC `code`: exit status and the JSON error object agree."""
        self.assertEqual(result.rc, EXIT[code], result)
        self.assertIsNotNone(result.obj, result)
        self.assertIn("error", result.obj, result)
        self.assertEqual(result.obj["error"]["code"], code, result)
        self.assertIn(code, result.stderr, result)
        return result.obj["error"]["message"]


def ensure_user(name):
    """Creates the unprivileged user `name` unless it exists (idempotent)."""
    if subprocess.run(["id", "-u", name], capture_output=True).returncode == 0:
        return
    subprocess.run(["useradd", "--system", "--user-group", "--no-create-home",
                    "--shell", "/usr/sbin/nologin", name], check=True, capture_output=True)


def uid_of(name):
    return int(subprocess.run(["id", "-u", name], capture_output=True, text=True,
                              check=True).stdout)


class UsersBrokerTest(BrokerTest):
    """pinbrokerd run as root, its socket and export reachable by every user, for tests whose
    callers are real unprivileged users (USERS, created with useradd if missing). The daemon
    reads the config file broker_config() writes. Needs root and TOOLS; skips with the reason
    otherwise (WHY_ROOT says what root is needed for)."""

    USERS = ()
    TOOLS = ("useradd",)
    WHY_ROOT = "creates users with useradd"
    EXTRA_LISTEN = ()  # Listen addresses besides the Unix socket, e.g. "127.0.0.1:0".

    def setUp(self):
        if os.geteuid() != 0:
            raise unittest.SkipTest("needs root: " + self.WHY_ROOT)
        for tool in self.TOOLS:
            if shutil.which(tool) is None:
                raise unittest.SkipTest("%s is not installed (scripts/setup.sh installs it)" %
                                        tool)
        for user in self.USERS:
            ensure_user(user)
        require_binaries(self)
        self.root = tempfile.mkdtemp(prefix="pbusers-", dir="/tmp")
        os.chmod(self.root, 0o755)  # Users reach the socket and the export; files decide.
        config = os.path.join(self.root, "broker.textproto")
        with open(config, "w") as f:
            f.write(self.broker_config())
        self.daemon_logs = []
        self.processes = []
        self.daemon = None
        self.start_daemon(self.DAEMON_ARGS + ["--config", config],
                          extra_listen=self.EXTRA_LISTEN)
        os.chmod(self.daemon.export_dir, 0o755)

    def broker_config(self):
        """The daemon's config file (text format), besides its flags. Called once self.root
        exists and before the daemon starts: it may write the files the config names there."""
        return ""

    def make_owned(self, name, uid, mode, data=b"s" * 8192):
        """The export file `name` holding `data`, owned by `uid` (and root's group unless uid
        is root), with `mode`."""
        path = self.file_path(name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        os.chown(path, uid, uid if uid == 0 else os.stat(path).st_gid)
        os.chmod(path, mode)
        return path
