// Scenario 9 (issue 5 in the guest): another process calls truncate(2) on a file under an RDMA
// lease held by a cooperative client, with the export's revoke policy. What must happen depends
// on the guard the broker armed for the file, which DescribeFile reports, so the scenario checks
// the broker's behaviour against its own report (docs/GUARD.md's matrix):
//   - truncate(2) guarded (fanotify pre-content events on >= 6.14 ext4/xfs, or a file lease):
//     the caller is held, the holder is recalled, drains and releases, and only then does the
//     truncate go through; the holder's connection never errors.
//   - truncate(2) listed as unguarded: the change happens at once and the broker detects it
//     afterwards, revoking the lease with reason "out-of-band change"; the next RDMA WRITE through
//     the lease fails and writes nothing.
// Both ways the file ends at the new size with the data below it intact (pread).
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"
#include "tests/vm/scenarios/scenarios.h"

namespace pinbroker::scenarios {
namespace {

// truncate(2) from a child process; returns its errno (0: success) and how long it was held.
absl::StatusOr<int> TruncateInChild(const std::string& path, uint64_t size) {
  const pid_t pid = fork();
  if (pid < 0) return absl::InternalError(absl::StrCat("fork: ", std::strerror(errno)));
  if (pid == 0) {
    const int rc = truncate(path.c_str(), static_cast<off_t>(size));
    _exit(rc == 0 ? 0 : (errno & 0x7f));
  }
  int status = 0;
  if (waitpid(pid, &status, 0) != pid) {
    return absl::InternalError(absl::StrCat("waitpid: ", std::strerror(errno)));
  }
  if (!WIFEXITED(status)) return absl::InternalError("the truncating child did not exit");
  return WEXITSTATUS(status);
}

}  // namespace

absl::Status OutOfBandTruncate(Fixture& f, Notes& notes) {
  constexpr uint64_t kFile = 8 * kPage, kOffset = 2 * kPage, kLength = 4 * kPage;
  constexpr uint64_t kNewSize = 4 * kPage;  // Cuts the lease's last two pages off.
  const char* kName = "s9.dat";
  RETURN_IF_ERROR(f.CreateFile(kName, kFile, 9));
  ASSIGN_OR_RETURN(auto admin, f.Connect("s9-admin", /*rdma=*/false));
  ASSIGN_OR_RETURN(auto holder, f.Connect("s9-holder"));
  LeaseEvents events;
  client::RdmaPinOptions pin = f.PinOptions(kName, kOffset, kLength);
  events.Hook(pin);
  auto lease = client::RdmaLease::Pin(*holder->client, *holder->rdma, pin);
  if (!lease.ok()) return Context(lease.status(), "pin");
  client::RdmaLease& l = **lease;
  notes.Add(DescribeLease(l));
  const std::string data = Pattern(901, kOffset, kLength);
  RETURN_IF_ERROR(WriteAndCheck(f, l, *holder, 0, data, "write before the truncate"));

  auto described = admin->client->DescribeFile(f.export_name(), kName);
  if (!described.ok()) return Context(described.status(), "DescribeFile");
  bool guarded = true;
  for (const std::string& op : described->unguarded_operations()) {
    if (op == "truncate(2)") guarded = false;
  }
  notes.Add("guard \"", described->guard(), "\", truncate(2) ",
            guarded ? "guarded" : "listed as unguarded");

  const absl::Time t0 = absl::Now();
  ASSIGN_OR_RETURN(const int err, TruncateInChild(f.Path(kName), kNewSize));
  const absl::Duration held = absl::Now() - t0;
  RETURN_IF_ERROR(Expect(err == 0, absl::StrCat("the other process's truncate(2) failed: ",
                                                std::strerror(err), " (revoke lets it through)")));
  notes.Add("other process's truncate(2) returned after ", Secs(held));
  ASSIGN_OR_RETURN(uint64_t size, f.FileSize(kName));
  RETURN_IF_ERROR(
      Expect(size == kNewSize, absl::StrCat("file size ", size, ", expected ", kNewSize)));
  RETURN_IF_ERROR(f.ExpectFileBytes(kName, kOffset, data.substr(0, kNewSize - kOffset),
                                    "the lease's bytes below the new EOF"));

  if (guarded) {
    // Held until the holder released: the recall must have come before the truncate returned.
    RETURN_IF_ERROR(Expect(events.WaitRecalled(absl::Seconds(10)),
                           "guarded truncate(2), but the holder was never recalled"));
    // (on_recall runs after the library's drain and release, so its time may follow the
    // truncate's return; the reason says what recalled it.)
    RETURN_IF_ERROR(Expect(absl::StrContains(events.recall_reason(), "out-of-band"),
                           absl::StrCat("recalled with reason \"", events.recall_reason(),
                                        "\", expected the out-of-band truncate")));
    RETURN_IF_ERROR(Expect(!events.revoked(), absl::StrCat("the cooperative holder was revoked: ",
                                                          events.revoke_reason())));
    RETURN_IF_ERROR(Expect(l.state() == client::LeaseState::kReleased,
                           absl::StrCat("lease state ", client::LeaseStateName(l.state()),
                                        ", expected released")));
    RETURN_IF_ERROR(Context(holder->rdma->status(), "holder's connection after the recall"));
    notes.Add("recalled (\"", events.recall_reason(), "\") ", Secs(events.recalled_at() - t0),
              " after the call; released; truncate applied after the release; connection OK");
    return absl::OkStatus();
  }
  // Detected afterwards: revoked with reason "out-of-band change" (the guard checks every second).
  RETURN_IF_ERROR(Expect(events.WaitRevoked(absl::Seconds(10)),
                         "unguarded truncate(2) was not detected within 10 s"));
  RETURN_IF_ERROR(Expect(absl::StrContains(events.revoke_reason(), "out-of-band change"),
                         absl::StrCat("revoked with reason \"", events.revoke_reason(),
                                      "\", expected \"out-of-band change\"")));
  const std::string after = Pattern(902, kOffset, kPage);
  std::memcpy(holder->buffer.data(), after.data(), after.size());
  client::RdmaOpOptions probe;
  probe.after_end = true;
  const absl::Status write = l.Write(0, holder->buffer, 0, kPage, probe);
  RETURN_IF_ERROR(Expect(!write.ok(), "a write through the revoked lease succeeded"));
  RETURN_IF_ERROR(f.ExpectFileBytes(kName, kOffset, data.substr(0, kNewSize - kOffset),
                                    "bytes after the refused write"));
  notes.Add("detected after ", Secs(absl::Now() - t0), ": revoked (\"", events.revoke_reason(),
            "\"); the next write failed (", write.message(), ") and wrote nothing");
  return absl::OkStatus();
}

}  // namespace pinbroker::scenarios
