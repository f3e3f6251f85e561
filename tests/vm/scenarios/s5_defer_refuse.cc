// Scenario 5: the defer and refuse policies over an RDMA lease.
//   defer:  the truncate waits (the file keeps its size, the holder's RDMA keeps working, no
//           recall is sent) and returns only after the holder releases.
//   refuse: the truncate fails at once with FAILED_PRECONDITION naming the lease; the file and
//           the lease are untouched and the lease's RDMA still works.
#include <atomic>
#include <thread>

#include "absl/strings/match.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"
#include "tests/vm/scenarios/scenarios.h"

namespace pinbroker::scenarios {

absl::Status TruncateDefer(Fixture& f, Notes& notes) {
  constexpr uint64_t kFile = 8 * kPage, kOffset = 4 * kPage, kLength = 2 * kPage;
  constexpr uint64_t kNewSize = 2 * kPage;
  const absl::Duration kHold = absl::Milliseconds(1500);
  const char* kName = "s5d.dat";
  RETURN_IF_ERROR(f.CreateFile(kName, kFile, 51));
  ASSIGN_OR_RETURN(auto admin, f.Connect("s5-admin", /*rdma=*/false));
  ASSIGN_OR_RETURN(auto holder, f.Connect("s5-holder"));
  LeaseEvents events;
  client::RdmaPinOptions pin = f.PinOptions(kName, kOffset, kLength);
  events.Hook(pin);
  auto lease = client::RdmaLease::Pin(*holder->client, *holder->rdma, pin);
  if (!lease.ok()) return Context(lease.status(), "pin");
  client::RdmaLease& l = **lease;
  notes.Add(DescribeLease(l));
  RETURN_IF_ERROR(WriteAndCheck(f, l, *holder, 0, Pattern(501, kOffset, kLength), "first write"));

  absl::StatusOr<v1::LayoutChangeResponse> result;
  std::atomic<bool> done{false};
  absl::Time returned_at;
  const absl::Time t0 = absl::Now();
  std::thread truncate([&] {
    client::LayoutOptions options;
    options.policy = v1::LAYOUT_POLICY_DEFER;
    options.timeout = absl::Seconds(60);
    result = admin->client->Truncate(f.export_name(), kName, kNewSize, options);
    returned_at = absl::Now();
    done = true;
  });
  absl::SleepFor(kHold);  // Real time on purpose: the truncate must still be waiting.
  const bool early = done.load();
  absl::Status while_waiting = absl::OkStatus();
  std::string blocked;
  if (!early) {
    while_waiting = WriteAndCheck(f, l, *holder, 0, Pattern(502, kOffset, kLength),
                                  "write while the truncate waits");
    auto described = admin->client->DescribeFile(f.export_name(), kName);
    if (described.ok() && !described->blocked().empty()) {
      blocked = described->blocked(0).reason();
    }
  }
  auto size_waiting = f.FileSize(kName);
  const absl::Time released_at = absl::Now();
  const absl::Status released = l.Release();
  truncate.join();
  RETURN_IF_ERROR(
      Expect(!early, absl::StrCat("the deferred truncate returned after ", Secs(returned_at - t0),
                                  " although the lease was held: ",
                                  result.ok() ? "OK" : StatusText(result.status()))));
  RETURN_IF_ERROR(while_waiting);
  RETURN_IF_ERROR(Context(released, "release"));
  RETURN_IF_ERROR(Expect(size_waiting.ok() && *size_waiting == kFile,
                         "the file changed size while the truncate was deferred"));
  if (!result.ok()) return Context(result.status(), "deferred truncate");
  RETURN_IF_ERROR(
      Expect(returned_at >= released_at, "the deferred truncate returned before the release"));
  RETURN_IF_ERROR(Expect(!events.recalled(), "defer sent a recall"));
  RETURN_IF_ERROR(Expect(result->revoked_lease_ids().empty(),
                         absl::StrCat("defer revoked ", JoinIds(result->revoked_lease_ids()))));
  notes.Add("truncate still waiting after ", Secs(kHold),
            " (file unchanged, holder's RDMA write "
            "OK, blocked: \"",
            blocked, "\"); returned ", Secs(returned_at - released_at), " after the release, ",
            Secs(returned_at - t0), " after its start; no recall");
  ASSIGN_OR_RETURN(uint64_t size, f.FileSize(kName));
  RETURN_IF_ERROR(
      Expect(size == kNewSize, absl::StrCat("file size ", size, ", expected ", kNewSize)));
  RETURN_IF_ERROR(f.ExpectFileBytes(kName, 0, Pattern(51, 0, kNewSize), "bytes below the new EOF"));
  RETURN_IF_ERROR(Context(holder->rdma->status(), "holder's connection"));
  return absl::OkStatus();
}

absl::Status TruncateRefuse(Fixture& f, Notes& notes) {
  constexpr uint64_t kFile = 8 * kPage, kOffset = 4 * kPage, kLength = 2 * kPage;
  constexpr uint64_t kNewSize = 2 * kPage;
  const char* kName = "s5r.dat";
  RETURN_IF_ERROR(f.CreateFile(kName, kFile, 52));
  ASSIGN_OR_RETURN(auto admin, f.Connect("s5-admin", /*rdma=*/false));
  ASSIGN_OR_RETURN(auto holder, f.Connect("s5-holder"));
  LeaseEvents events;
  client::RdmaPinOptions pin = f.PinOptions(kName, kOffset, kLength);
  events.Hook(pin);
  auto lease = client::RdmaLease::Pin(*holder->client, *holder->rdma, pin);
  if (!lease.ok()) return Context(lease.status(), "pin");
  client::RdmaLease& l = **lease;
  notes.Add(DescribeLease(l));
  RETURN_IF_ERROR(WriteAndCheck(f, l, *holder, 0, Pattern(503, kOffset, kLength), "first write"));

  client::LayoutOptions options;
  options.policy = v1::LAYOUT_POLICY_REFUSE;
  const absl::Time t0 = absl::Now();
  auto result = admin->client->Truncate(f.export_name(), kName, kNewSize, options);
  const absl::Duration took = absl::Now() - t0;
  RETURN_IF_ERROR(Expect(!result.ok(), "the refuse truncate succeeded over a held lease"));
  RETURN_IF_ERROR(Expect(result.status().code() == absl::StatusCode::kFailedPrecondition &&
                             absl::StrContains(result.status().message(), l.id()),
                         absl::StrCat("expected FAILED_PRECONDITION naming ", l.id(), ", got ",
                                      StatusText(result.status()))));
  notes.Add("refused in ", Secs(took), ": ", result.status().message());
  ASSIGN_OR_RETURN(uint64_t size, f.FileSize(kName));
  RETURN_IF_ERROR(Expect(size == kFile, absl::StrCat("file size ", size,
                                                     " after a refused "
                                                     "truncate, expected ",
                                                     kFile)));
  RETURN_IF_ERROR(Expect(!events.recalled(), "refuse sent a recall"));
  RETURN_IF_ERROR(Expect(l.state() == client::LeaseState::kGranted,
                         absl::StrCat("lease is ", client::LeaseStateName(l.state()))));
  RETURN_IF_ERROR(f.ExpectFileBytes(kName, 0, Pattern(52, 0, kOffset), "bytes before the lease"));
  RETURN_IF_ERROR(
      WriteAndCheck(f, l, *holder, 0, Pattern(504, kOffset, kLength), "write after the refusal"));
  RETURN_IF_ERROR(ReadAndCheck(f, l, *holder, 0, kLength, "read after the refusal"));
  notes.Add(
      "file unchanged, lease still granted, its RDMA write+read after the refusal match "
      "pread");
  return Context(l.Release(), "release");
}

}  // namespace pinbroker::scenarios
