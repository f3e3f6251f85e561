// vm_scenarios: the RDMA issue's acceptance scenarios, run inside the qemu guest of tests/vm
// (soft-RoCE rxe0/rxe1, tmpfs, ext4 and xfs fs-dax). See README.md here for what each checks.
//
//   vm_scenarios [--list] [--only SUBSTRING,...] [--timeout SECONDS]
//
// Each scenario runs in a forked child process (its own process group, with its own pinbrokerd),
// bounded by the timeout; the runner prints one line per scenario,
//   SCENARIO <name>: PASS|FAIL|SKIP <detail>
// then "N passed, N failed, N skipped", and exits 0 iff nothing failed. On a failure it also
// prints the tail of the broker's log and the client library's log lines ("  broker| ...").
#include <execinfo.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/log.h"
#include "tests/vm/scenarios/broker_process.h"
#include "tests/vm/scenarios/environment.h"
#include "tests/vm/scenarios/fixture.h"
#include "tests/vm/scenarios/scenarios.h"

namespace pinbroker::scenarios {
namespace {

struct Result {
  std::string verdict;  // PASS, FAIL, SKIP.
  std::string detail;
};

std::string OneLine(std::string s) {
  absl::StrReplaceAll({{"\r", ""}, {"\n", " | "}}, &s);
  return s;
}

void PrintTail(const std::string& text, const char* prefix, size_t lines) {
  std::vector<std::string> all = absl::StrSplit(text, '\n', absl::SkipEmpty());
  const size_t from = all.size() > lines ? all.size() - lines : 0;
  for (size_t i = from; i < all.size(); ++i) std::printf("  %s| %s\n", prefix, all[i].c_str());
  std::fflush(stdout);
}

// The client library's log lines (PB_LOG), kept for a failure report.
absl::Mutex log_mu;
std::vector<std::string>* client_log ABSL_GUARDED_BY(log_mu) = nullptr;

// Runs one scenario in this (child) process.
Result RunInChild(const VmEnv& env, const ScenarioDef& def) {
  {
    absl::MutexLock lock(&log_mu);
    client_log = new std::vector<std::string>();
  }
  SetLogSink([](LogSeverity, absl::string_view line) {
    absl::MutexLock lock(&log_mu);
    client_log->push_back(
        absl::StrCat(absl::FormatTime("%H:%M:%E3S ", absl::Now(), absl::UTCTimeZone()), line));
  });
  const Filesystem* fs = env.Find(def.fs);
  Fixture fixture(env, *fs, def.name);
  Notes notes;
  absl::Status status = fixture.Start(def.grace, def.policy);
  if (status.ok()) {
    notes.Add("broker up in ", Secs(fixture.broker().startup_time()));
    status = def.body(fixture, notes);
  } else {
    status = absl::Status(status.code(), absl::StrCat("broker start: ", status.message()));
  }
  const absl::Status stopped = fixture.Stop();
  Result r;
  if (!status.ok()) {
    r = {"FAIL", absl::StrCat(status.message(), notes.items.empty() ? "" : " [before that: ",
                              absl::StrJoin(notes.items, "; "), notes.items.empty() ? "" : "]")};
  } else if (!stopped.ok()) {
    r = {"FAIL", absl::StrCat("broker stop: ", stopped.message())};
  } else if (!notes.skip.empty()) {
    r = {"SKIP", notes.skip};
  } else {
    r = {"PASS", absl::StrJoin(notes.items, "; ")};
  }
  if (r.verdict == "FAIL") {
    std::printf("  --- %s: broker log (last 40 lines), client log ---\n", def.name.c_str());
    if (fixture.broker_started()) PrintTail(fixture.broker().LogSince(0), "broker", 40);
    absl::MutexLock lock(&log_mu);
    PrintTail(absl::StrJoin(*client_log, "\n"), "client", 20);
  }
  return r;
}

// Forks a child for the scenario and waits for its result, at most `timeout`.
Result RunScenario(const VmEnv& env, const ScenarioDef& def, absl::Duration timeout) {
  int fds[2];
  if (pipe(fds) != 0) return {"FAIL", absl::StrCat("pipe: ", std::strerror(errno))};
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t pid = fork();
  if (pid < 0) return {"FAIL", absl::StrCat("fork: ", std::strerror(errno))};
  if (pid == 0) {
    close(fds[0]);
    setpgid(0, 0);
    const Result r = RunInChild(env, def);
    const std::string msg = absl::StrCat(r.verdict, "\t", r.detail);
    size_t done = 0;
    while (done < msg.size()) {
      const ssize_t n = write(fds[1], msg.data() + done, msg.size() - done);
      if (n <= 0) break;
      done += n;
    }
    close(fds[1]);
    std::fflush(stdout);
    _exit(0);
  }
  setpgid(pid, pid);
  close(fds[1]);
  std::string text;
  const absl::Time deadline = absl::Now() + timeout;
  bool timed_out = false;
  while (true) {
    const int64_t left = absl::ToInt64Milliseconds(deadline - absl::Now());
    if (left <= 0) {
      timed_out = true;
      break;
    }
    pollfd p = {fds[0], POLLIN, 0};
    const int n = poll(&p, 1, static_cast<int>(std::min<int64_t>(left, 1000)));
    if (n < 0 && errno != EINTR) break;
    if (n <= 0) continue;
    char buf[4096];
    const ssize_t got = read(fds[0], buf, sizeof(buf));
    if (got <= 0) break;  // EOF: the child is done.
    text.append(buf, got);
  }
  close(fds[0]);
  int wstatus = 0;
  if (timed_out) {
    kill(-pid, SIGKILL);
    kill(pid, SIGKILL);
    waitpid(pid, &wstatus, 0);
    const std::string dir = absl::StrCat("/tmp/pbscen-", pid);
    std::printf("  --- %s: timed out; broker log (last 40 lines) ---\n", def.name.c_str());
    PrintTail(BrokerLogOf(dir), "broker", 40);
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
    for (const Filesystem& fs : env.filesystems) {
      std::filesystem::remove_all(absl::StrCat(fs.mount, "/pbscen-", pid), ignored);
    }
    return {"FAIL",
            absl::StrCat("timed out after ", absl::FormatDuration(timeout), " (scenario killed)")};
  }
  waitpid(pid, &wstatus, 0);
  kill(-pid, SIGKILL);  // Leftovers of the group (a helper process), if any.
  const size_t tab = text.find('\t');
  if (tab == std::string::npos) {
    return {"FAIL", absl::StrCat("the scenario process ended without a result: ",
                                 DescribeWaitStatus(wstatus))};
  }
  return {text.substr(0, tab), text.substr(tab + 1)};
}

int Main(int argc, char** argv) {
  if (argc >= 2 && std::string(argv[1]) == "hold") return HoldMain(argc - 1, argv + 1);
  std::vector<std::string> only;
  bool list = false;
  absl::Duration timeout = absl::Seconds(120);
  if (const char* t = std::getenv("PB_SCENARIO_STEP_TIMEOUT"); t != nullptr) {
    int64_t s = 0;
    if (absl::SimpleAtoi(t, &s) && s > 0) timeout = absl::Seconds(s);
  }
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--list") {
      list = true;
    } else if (a == "--only" && i + 1 < argc) {
      for (absl::string_view s : absl::StrSplit(argv[++i], ',', absl::SkipEmpty())) {
        only.emplace_back(s);
      }
    } else if (a == "--timeout" && i + 1 < argc) {
      int64_t s = 0;
      if (!absl::SimpleAtoi(argv[++i], &s) || s <= 0) {
        std::fprintf(stderr, "vm_scenarios: --timeout wants whole seconds\n");
        return 2;
      }
      timeout = absl::Seconds(s);
    } else if (a == "--help" || a == "-h") {
      std::printf(
          "usage: vm_scenarios [--list] [--only SUBSTRING,...] [--timeout SECONDS]\n"
          "Runs the RDMA acceptance scenarios in the tests/vm guest (see its README).\n"
          "Environment: PB_KERNEL PB_BIN PB_IP0 PB_IP1 PB_RXE0 PB_RXE1 PB_TMPFS PB_EXT4DAX\n"
          "PB_XFSDAX; PB_SCENARIO_STEP_TIMEOUT (seconds per scenario, default 120).\n");
      return 0;
    } else {
      std::fprintf(stderr, "vm_scenarios: unknown argument '%s' (try --help)\n", a.c_str());
      return 2;
    }
  }
  signal(SIGPIPE, SIG_IGN);
  const VmEnv env = LoadEnv();
  std::vector<ScenarioDef> defs = BuildScenarios(env);
  if (list) {
    for (const ScenarioDef& d : defs) std::printf("%s\n", d.name.c_str());
    return 0;
  }
  std::printf("vm_scenarios: kernel %s, %s %s, broker from %s, per-scenario timeout %s\n",
              env.kernel.c_str(), env.rxe0.c_str(), env.odp.Describe().c_str(), env.bin_dir.c_str(),
              absl::FormatDuration(timeout).c_str());
  std::fflush(stdout);
  int passed = 0, failed = 0, skipped = 0;
  const absl::Time start = absl::Now();
  for (const ScenarioDef& def : defs) {
    if (!only.empty()) {
      bool match = false;
      for (const std::string& o : only) match = match || absl::StrContains(def.name, o);
      if (!match) continue;
    }
    Result r;
    const absl::Time t0 = absl::Now();
    if (!def.skip.empty()) {
      r = {"SKIP", def.skip};
    } else if (env.Find(def.fs) == nullptr) {
      r = {"FAIL", absl::StrCat("unknown filesystem ", def.fs)};
    } else {
      r = RunScenario(env, def, timeout);
    }
    if (r.verdict == "PASS") {
      ++passed;
    } else if (r.verdict == "SKIP") {
      ++skipped;
    } else {
      r.verdict = "FAIL";
      ++failed;
    }
    std::printf("SCENARIO %s: %s %s (%s)\n", def.name.c_str(), r.verdict.c_str(),
                OneLine(r.detail).c_str(), Secs(absl::Now() - t0).c_str());
    std::fflush(stdout);
  }
  std::printf("%d passed, %d failed, %d skipped in %s\n", passed, failed, skipped,
              Secs(absl::Now() - start).c_str());
  std::fflush(stdout);
  return failed == 0 ? 0 : 1;
}

}  // namespace
}  // namespace pinbroker::scenarios

namespace {

// A crash prints the stack as "vm_scenarios(+0xOFFSET)" frames (the guest has no debugger):
// `addr2line -f -C -e build/.../vm_scenarios 0xOFFSET` on the host names them.
void OnCrash(int sig) {
  void* frames[64];
  const int n = backtrace(frames, 64);
  const char* what = sig == SIGABRT ? "*** vm_scenarios: SIGABRT, stack:\n"
                                    : "*** vm_scenarios: fatal signal, stack:\n";
  if (write(STDOUT_FILENO, what, std::strlen(what)) < 0) {
  }
  backtrace_symbols_fd(frames, n, STDOUT_FILENO);
  signal(sig, SIG_DFL);
  raise(sig);
}

}  // namespace

int main(int argc, char** argv) {
  void* warm[1];
  backtrace(warm, 1);  // Loads libgcc's unwinder now, not inside the signal handler.
  for (int sig : {SIGABRT, SIGSEGV, SIGBUS, SIGILL, SIGFPE}) signal(sig, OnCrash);
  return pinbroker::scenarios::Main(argc, argv);
}
