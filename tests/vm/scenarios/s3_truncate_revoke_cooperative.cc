// Scenario 3: truncate with the revoke policy over a lease whose holder cooperates (the client
// library's defaults: stop on recall, drain, release). Writes are in flight when the truncate
// starts. Checked: the recall reaches the holder, the truncate completes as a release (not a
// revocation) well before the grace period, every write completed OK and its bytes are in the
// file where the file still exists, the file has the new size, and the holder's connection
// never errors: a new lease on the same connection works afterwards.
#include <cstring>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "common/status_macros.h"
#include "tests/vm/scenarios/scenarios.h"

namespace pinbroker::scenarios {

absl::Status TruncateRevokeCooperative(Fixture& f, Notes& notes) {
  constexpr uint64_t kFile = 8 * kPage, kOffset = 2 * kPage, kLength = 4 * kPage;
  constexpr uint64_t kNewSize = 4 * kPage;  // Cuts the lease's last two pages off.
  const absl::Duration kGrace = absl::Seconds(10);
  const char* kName = "s3.dat";
  RETURN_IF_ERROR(f.CreateFile(kName, kFile, 3));
  ASSIGN_OR_RETURN(auto admin, f.Connect("s3-admin", /*rdma=*/false));
  ASSIGN_OR_RETURN(auto holder, f.Connect("s3-cooperative"));
  LeaseEvents events;
  client::RdmaPinOptions pin = f.PinOptions(kName, kOffset, kLength);
  events.Hook(pin);
  auto lease = client::RdmaLease::Pin(*holder->client, *holder->rdma, pin);
  if (!lease.ok()) return Context(lease.status(), "pin");
  client::RdmaLease& l = **lease;
  notes.Add(DescribeLease(l));
  RETURN_IF_ERROR(WriteAndCheck(f, l, *holder, 0, Pattern(301, kOffset, kLength), "first write"));

  // Writes in flight when the truncate starts: the recall must wait for them (drain).
  const std::string last = Pattern(302, kOffset, kLength);
  std::memcpy(holder->buffer.data(), last.data(), last.size());
  std::vector<client::PendingOp> ops;
  for (uint64_t page = 0; page < kLength / kPage; ++page) {
    auto op = l.StartWrite(page * kPage, holder->buffer, page * kPage, kPage);
    if (!op.ok()) return Context(op.status(), "StartWrite before the truncate");
    ops.push_back(*op);
  }
  client::LayoutOptions options;
  options.policy = v1::LAYOUT_POLICY_REVOKE;
  options.grace = kGrace;
  const absl::Time t0 = absl::Now();
  auto result = admin->client->Truncate(f.export_name(), kName, kNewSize, options);
  const absl::Duration took = absl::Now() - t0;
  if (!result.ok()) return Context(result.status(), "truncate (revoke)");
  notes.Add("truncate ", kFile, " -> ", kNewSize, " applied in ", Secs(took), " (grace ",
            Secs(kGrace), ")");
  RETURN_IF_ERROR(Expect(Contains(result->recalled_lease_ids(), l.id()) &&
                             Contains(result->released_lease_ids(), l.id()) &&
                             result->revoked_lease_ids().empty(),
                         absl::StrCat("expected lease ", l.id(),
                                      " recalled and released, none "
                                      "revoked; got recalled=",
                                      JoinIds(result->recalled_lease_ids()),
                                      " released=", JoinIds(result->released_lease_ids()),
                                      " revoked=", JoinIds(result->revoked_lease_ids()))));
  RETURN_IF_ERROR(Expect(took < kGrace, "the truncate waited for the whole grace period"));
  // on_recall runs after the library's drain and release, so possibly after the truncate
  // returned.
  RETURN_IF_ERROR(Expect(events.WaitRecalled(absl::Seconds(10)),
                         "the holder's on_recall did not run within 10 s of the truncate"));
  notes.Add("recall reached the holder ", Secs(events.recalled_at() - t0), " after the start (\"",
            events.recall_reason(), "\")");
  for (size_t i = 0; i < ops.size(); ++i) {
    RETURN_IF_ERROR(Expect(ops[i].done(), absl::StrCat("write ", i,
                                                       " still in flight after the "
                                                       "lease was released")));
    RETURN_IF_ERROR(Context(ops[i].Wait(), absl::StrCat("write ", i, " in flight at the recall")));
  }
  notes.Add(ops.size(), " writes in flight at the start all completed OK before the release");
  RETURN_IF_ERROR(Expect(
      l.state() == client::LeaseState::kReleased,
      absl::StrCat("lease state ", client::LeaseStateName(l.state()), ", expected released")));
  ASSIGN_OR_RETURN(uint64_t size, f.FileSize(kName));
  RETURN_IF_ERROR(Expect(size == kNewSize, absl::StrCat("file size ", size,
                                                        " after the truncate, "
                                                        "expected ",
                                                        kNewSize)));
  RETURN_IF_ERROR(f.ExpectFileBytes(kName, 0, Pattern(3, 0, kOffset), "bytes before the lease"));
  RETURN_IF_ERROR(f.ExpectFileBytes(kName, kOffset, last.substr(0, kNewSize - kOffset),
                                    "the in-flight writes' bytes below the new EOF"));
  RETURN_IF_ERROR(Context(holder->rdma->status(), "holder's connection after the recall"));

  // Same connection, new lease over what is left of the file.
  auto again =
      client::RdmaLease::Pin(*holder->client, *holder->rdma, f.PinOptions(kName, 0, kNewSize));
  if (!again.ok()) return Context(again.status(), "new lease on the same connection");
  RETURN_IF_ERROR(WriteAndCheck(f, **again, *holder, 0, Pattern(303, 0, kNewSize),
                                "write through a new lease on the same connection"));
  RETURN_IF_ERROR(ReadAndCheck(f, **again, *holder, 0, kNewSize, "read through the new lease"));
  RETURN_IF_ERROR(Context(holder->rdma->status(), "holder's connection at the end"));
  notes.Add("file is ", kNewSize,
            " bytes with the written data; the same connection then served "
            "a new lease (write+read, pread matches); connection never errored");
  return Context((*again)->Release(), "release of the new lease");
}

}  // namespace pinbroker::scenarios
