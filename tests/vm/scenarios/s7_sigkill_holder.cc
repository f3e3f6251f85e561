// Scenario 7: a client process (`vm_scenarios hold`) holding two RDMA leases is killed with
// SIGKILL. Checked:
//   * the broker ends both leases in bounded time (< 10 s from the kill until ListLeases shows
//     none of the session's) - no ~50 s queue-pair teardown stall;
//   * its log shows the connection torn down with both windows invalidated (the broker
//     invalidates windows before destroying the queue pair, rdma_wire.h) and each lease ended
//     as "revoked", not expired or released;
//   * the kernel logged no RDMA trouble meanwhile (/dev/kmsg: no rxe_pool "cleanup failed",
//     no WARNING);
//   * the data the holder wrote is in the file, and a new client can still pin, write and read
//     (the device works afterwards).
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"
#include "tests/vm/scenarios/kmsg.h"
#include "tests/vm/scenarios/scenarios.h"

namespace pinbroker::scenarios {
namespace {

constexpr uint64_t kSeed = 700;

// A child process running `vm_scenarios hold ...` with its stdout on a pipe.
class Holder {
 public:
  ~Holder() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (out_ >= 0) close(out_);
  }

  // posix_spawn, not fork: this process runs gRPC and RDMA threads.
  absl::Status Spawn(const std::vector<std::string>& args) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) return absl::InternalError("pipe");
    std::vector<char*> argv;
    for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
    const int err = posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    close(fds[1]);
    if (err != 0) {
      close(fds[0]);
      pid_ = -1;
      return absl::InternalError(absl::StrCat("posix_spawn ", argv[0], ": ", std::strerror(err)));
    }
    out_ = fds[0];
    return absl::OkStatus();
  }

  // The first line the holder prints, within `timeout`.
  absl::StatusOr<std::string> ReadLine(absl::Duration timeout) {
    std::string line;
    const absl::Time deadline = absl::Now() + timeout;
    while (line.find('\n') == std::string::npos) {
      const int64_t left = absl::ToInt64Milliseconds(deadline - absl::Now());
      if (left <= 0) {
        return absl::DeadlineExceededError(
            absl::StrCat("holder printed nothing within ", absl::FormatDuration(timeout)));
      }
      pollfd p = {out_, POLLIN, 0};
      if (poll(&p, 1, static_cast<int>(left)) <= 0) continue;
      char buf[512];
      const ssize_t n = read(out_, buf, sizeof(buf));
      if (n <= 0) return absl::UnavailableError(absl::StrCat("holder exited: '", line, "'"));
      line.append(buf, n);
    }
    return line.substr(0, line.find('\n'));
  }

  // SIGKILL and reap.
  void Kill() {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

 private:
  pid_t pid_ = -1;
  int out_ = -1;
};

std::string ValueOf(const std::string& line, absl::string_view key) {
  for (absl::string_view word : absl::StrSplit(line, ' ')) {
    if (absl::ConsumePrefix(&word, key) && absl::ConsumePrefix(&word, "=")) {
      return std::string(word);
    }
  }
  return "";
}

// Lines of `log` containing every one of `needles`.
std::vector<std::string> LinesWith(const std::string& log, std::vector<std::string> needles) {
  std::vector<std::string> out;
  for (absl::string_view line : absl::StrSplit(log, '\n', absl::SkipEmpty())) {
    bool all = true;
    for (const std::string& n : needles) all = all && absl::StrContains(line, n);
    if (all) out.emplace_back(line);
  }
  return out;
}

}  // namespace

absl::Status SigkillHolder(Fixture& f, Notes& notes) {
  constexpr uint64_t kFile = 8 * kPage, kLength = 2 * kPage;
  const uint64_t kOffsets[] = {0, 4 * kPage};
  const absl::Duration kBound = absl::Seconds(10);
  const char* kName = "s7.dat";
  RETURN_IF_ERROR(f.CreateFile(kName, kFile, 7));
  ASSIGN_OR_RETURN(auto observer, f.Connect("s7-observer", /*rdma=*/false));
  KmsgReader kmsg;
  RETURN_IF_ERROR(kmsg.Open());

  Holder holder;
  std::vector<std::string> args = {
      f.env().self_exe, "hold",          "--endpoint", f.broker().endpoint(),
      "--export",       f.export_name(), "--path",     kName,
      "--source",       f.env().ip1,     "--seed",     absl::StrCat(kSeed)};
  for (uint64_t off : kOffsets) {
    args.push_back("--range");
    args.push_back(absl::StrCat(off, ":", kLength));
  }
  RETURN_IF_ERROR(holder.Spawn(args));
  ASSIGN_OR_RETURN(std::string ready, holder.ReadLine(absl::Seconds(60)));
  RETURN_IF_ERROR(Expect(absl::StartsWith(ready, "READY "), absl::StrCat("holder: ", ready)));
  const std::string session = ValueOf(ready, "session");
  std::vector<std::string> ids = absl::StrSplit(ValueOf(ready, "leases"), ',', absl::SkipEmpty());
  RETURN_IF_ERROR(Expect(ids.size() == 2, absl::StrCat("holder said: ", ready)));
  v1::ListLeasesRequest filter;
  filter.set_session_id(session);
  ASSIGN_OR_RETURN(auto live, observer->client->ListLeases(filter));
  RETURN_IF_ERROR(Expect(live.leases_size() == 2, absl::StrCat("broker lists ", live.leases_size(),
                                                               " leases of ", session)));
  for (const v1::Lease& l : live.leases()) {
    RETURN_IF_ERROR(Expect(l.has_rdma() && l.rdma().rkey() != 0,
                           absl::StrCat("lease ", l.lease_id(), " has no RDMA access")));
  }
  for (uint64_t off : kOffsets) {
    RETURN_IF_ERROR(
        f.ExpectFileBytes(kName, off, Pattern(kSeed, off, kLength), "the holder's writes"));
  }
  const uint64_t log_offset = f.broker().LogSize();

  const absl::Time t0 = absl::Now();
  holder.Kill();
  absl::Time gone_at = absl::InfiniteFuture();
  const absl::Time limit = t0 + absl::Seconds(60);
  while (absl::Now() < limit) {
    ASSIGN_OR_RETURN(auto now_live, observer->client->ListLeases(filter));
    if (now_live.leases().empty()) {
      gone_at = absl::Now();
      break;
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
  RETURN_IF_ERROR(Expect(gone_at != absl::InfiniteFuture(),
                         "the killed holder's leases were still live 60 s after SIGKILL"));
  // The revocations are logged as each lease ends; give the log a moment to catch up.
  std::string log;
  std::vector<std::vector<std::string>> ended(ids.size());
  const absl::Time log_limit = absl::Now() + absl::Seconds(5);
  while (true) {
    log = f.broker().LogSince(log_offset);
    bool all = true;
    for (size_t i = 0; i < ids.size(); ++i) {
      ended[i] = LinesWith(log, {absl::StrCat("lease ", ids[i], " ")});
      bool final_line = false;
      for (const std::string& line : ended[i]) {
        for (const char* state : {" revoked:", " expired:", " released:"}) {
          final_line = final_line || absl::StrContains(line, state);
        }
      }
      all = all && final_line;
    }
    if (all || absl::Now() > log_limit) break;
    absl::SleepFor(absl::Milliseconds(50));
  }
  const std::vector<std::string> kernel = kmsg.ReadNew();
  notes.Add("leases gone ", Secs(gone_at - t0), " after SIGKILL (bound ", Secs(kBound), ")");
  RETURN_IF_ERROR(Expect(
      gone_at - t0 < kBound,
      absl::StrCat("leases ended only ", Secs(gone_at - t0), " after SIGKILL: a teardown stall")));
  for (size_t i = 0; i < ids.size(); ++i) {
    const std::vector<std::string> revoked =
        LinesWith(log, {absl::StrCat("lease ", ids[i], " revoked:")});
    RETURN_IF_ERROR(
        Expect(!revoked.empty(),
               absl::StrCat("no 'lease ", ids[i],
                            " revoked:' line in the broker log; "
                            "lines naming it: ",
                            ended[i].empty() ? "none" : absl::StrJoin(ended[i], " | "))));
    const size_t reason = revoked[0].find("reason=");
    if (i == 0 && reason != std::string::npos) {
      notes.Add("leases revoked with ", revoked[0].substr(reason));
    }
  }
  const std::vector<std::string> teardown = LinesWith(log, {session, "windows invalidated"});
  RETURN_IF_ERROR(Expect(!teardown.empty(), absl::StrCat("no connection teardown line for session ",
                                                         session, " in the broker log")));
  RETURN_IF_ERROR(Expect(absl::StrContains(teardown[0], "2 windows invalidated"),
                         absl::StrCat("teardown did not invalidate both windows: ", teardown[0])));
  const size_t closed = teardown[0].find("closed");
  notes.Add("broker: connection ",
            closed == std::string::npos ? teardown[0] : teardown[0].substr(closed));
  std::vector<std::string> trouble;
  for (const std::string& line : kernel) {
    if (IsKernelTrouble(line)) trouble.push_back(line);
  }
  RETURN_IF_ERROR(Expect(trouble.empty(), absl::StrCat("kernel: ", absl::StrJoin(trouble, " | "))));
  notes.Add(kernel.size(),
            " kernel log lines meanwhile, none about rxe_pool/cleanup failed/"
            "WARNING");

  // The data stays and the device still works for a new client.
  for (uint64_t off : kOffsets) {
    RETURN_IF_ERROR(f.ExpectFileBytes(kName, off, Pattern(kSeed, off, kLength),
                                      "the holder's writes after its death"));
  }
  ASSIGN_OR_RETURN(auto next, f.Connect("s7-next"));
  auto lease = client::RdmaLease::Pin(*next->client, *next->rdma, f.PinOptions(kName, 0, kLength));
  if (!lease.ok()) return Context(lease.status(), "a new client's pin after the kill");
  RETURN_IF_ERROR(WriteAndCheck(f, **lease, *next, 0, Pattern(701, 0, kLength),
                                "a new client's write after the kill"));
  notes.Add("a new client then pinned and wrote the same pages (pread matches)");
  return Context((*lease)->Release(), "new client's release");
}

}  // namespace pinbroker::scenarios
