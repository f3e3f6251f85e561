// Scenario 4: truncate with the revoke policy over a lease whose holder ignores the recall
// (stop_on_recall = release_on_recall = false). The lease covers file pages 2-5; the truncate
// keeps pages 0-2. Checked:
//   * the recall arrives; during the grace period the holder's writes still work (page 2);
//   * after the grace the truncate completes with the lease revoked, and the holder's next RDMA
//     WRITE (posted even though the broker said "revoked") fails with a remote access error
//     (PERMISSION_DENIED) and writes nothing: page 2 keeps the grace-period write's bytes;
//   * the file has exactly the expected bytes and size;
//   * no registration the broker still holds covers removed pages, unless it is ODP (which
//     pins nothing): DescribeFile's registrations, each range's end <= the new size.
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"
#include "tests/vm/scenarios/scenarios.h"

namespace pinbroker::scenarios {

namespace {

std::string DescribeRegistration(const v1::Registration& r) {
  const uint64_t end = r.range().offset() + r.range().length();
  return absl::StrCat(v1::RegistrationMode_Name(r.mode()), " [", r.range().offset(), ", ",
                      r.range().to_end_of_file() ? "EOF" : absl::StrCat(end),
                      ") windows=", r.windows(), r.stale() ? " stale" : "");
}

std::string DescribeRegistrations(const v1::DescribeFileResponse& d) {
  std::vector<std::string> out;
  for (const v1::Registration& r : d.registrations()) out.push_back(DescribeRegistration(r));
  return out.empty() ? "none" : absl::StrJoin(out, ", ");
}

}  // namespace

absl::Status TruncateRevokeIgnored(Fixture& f, Notes& notes) {
  constexpr uint64_t kFile = 8 * kPage, kOffset = 2 * kPage, kLength = 4 * kPage;
  constexpr uint64_t kNewSize = 3 * kPage;
  const absl::Duration kGrace = absl::Seconds(2);  // The export's (Fixture::Start).
  const char* kName = "s4.dat";
  RETURN_IF_ERROR(f.CreateFile(kName, kFile, 4));
  ASSIGN_OR_RETURN(auto admin, f.Connect("s4-admin", /*rdma=*/false));
  ASSIGN_OR_RETURN(auto holder, f.Connect("s4-ignorer"));
  LeaseEvents events;
  client::RdmaPinOptions pin = f.PinOptions(kName, kOffset, kLength);
  pin.stop_on_recall = false;
  pin.release_on_recall = false;
  events.Hook(pin);
  auto lease = client::RdmaLease::Pin(*holder->client, *holder->rdma, pin);
  if (!lease.ok()) return Context(lease.status(), "pin");
  client::RdmaLease& l = **lease;
  notes.Add(DescribeLease(l));
  RETURN_IF_ERROR(WriteAndCheck(f, l, *holder, 0, Pattern(401, kOffset, kLength), "first write"));
  ASSIGN_OR_RETURN(auto before, admin->client->DescribeFile(f.export_name(), kName));
  const std::string registrations_before = DescribeRegistrations(before);
  // The after-check below means something only if registrations are reported at all.
  RETURN_IF_ERROR(Expect(!before.registrations().empty(),
                         "DescribeFile reports no registration for a live RDMA lease"));

  absl::StatusOr<v1::LayoutChangeResponse> result;
  absl::Time t0 = absl::Now(), t1;
  std::thread truncate([&] {
    client::LayoutOptions options;
    options.policy = v1::LAYOUT_POLICY_REVOKE;
    result = admin->client->Truncate(f.export_name(), kName, kNewSize, options);
    t1 = absl::Now();
  });
  const bool recalled = events.WaitRecalled(absl::Seconds(20));
  // Still inside the grace period: the window still works.
  const std::string during = Pattern(402, kOffset, kPage);
  absl::Status during_status =
      recalled ? WriteAndCheck(f, l, *holder, 0, during, "write during the grace period")
               : absl::OkStatus();
  const absl::Time during_at = absl::Now();
  truncate.join();
  RETURN_IF_ERROR(Expect(recalled, "the holder never saw the recall"));
  RETURN_IF_ERROR(during_status);
  RETURN_IF_ERROR(Expect(during_at < t1, "the grace-period write finished after the truncate"));
  if (!result.ok()) return Context(result.status(), "truncate (revoke)");
  notes.Add("recall after ", Secs(events.recalled_at() - t0),
            "; write during the grace period "
            "OK; truncate applied after ",
            Secs(t1 - t0), " (grace ", Secs(kGrace), ")");
  RETURN_IF_ERROR(Expect(Contains(result->recalled_lease_ids(), l.id()) &&
                             Contains(result->revoked_lease_ids(), l.id()) &&
                             !Contains(result->released_lease_ids(), l.id()),
                         absl::StrCat("expected lease ", l.id(),
                                      " recalled and revoked; got "
                                      "recalled=",
                                      JoinIds(result->recalled_lease_ids()),
                                      " released=", JoinIds(result->released_lease_ids()),
                                      " revoked=", JoinIds(result->revoked_lease_ids()))));
  RETURN_IF_ERROR(Expect(t1 - t0 >= kGrace - absl::Milliseconds(100),
                         "the lease was revoked before the grace period ended"));
  RETURN_IF_ERROR(
      Expect(events.WaitRevoked(absl::Seconds(10)), "the holder never got the REVOKED event"));

  // The holder writes anyway: the broker invalidated its window.
  const std::string after = Pattern(403, kOffset, kPage);
  client::RdmaOpOptions probe;
  probe.after_end = true;
  probe.timeout = absl::Seconds(15);
  const uint64_t log_offset = f.broker().LogSize();
  const absl::Status refused = RdmaWrite(l, *holder, 0, after, probe);
  if (refused.code() != absl::StatusCode::kPermissionDenied) {
    // Say whether the write reached the broker's invalidated window (its queue pair then
    // reports an access violation) even though the client did not see the NAK.
    absl::SleepFor(absl::Milliseconds(500));
    const bool reached = absl::StrContains(f.broker().LogSince(log_offset), "access violation");
    return absl::FailedPreconditionError(absl::StrCat(
        "write with the revoked key: expected PERMISSION_DENIED (remote access error), got ",
        StatusText(refused),
        reached ? " (the broker's log shows its queue pair's access violation: the write did "
                  "reach the invalidated window, but the connection was torn down before the "
                  "client saw the NAK)"
                : ""));
  }
  notes.Add("write after revocation refused: ", refused.message());

  ASSIGN_OR_RETURN(uint64_t size, f.FileSize(kName));
  RETURN_IF_ERROR(
      Expect(size == kNewSize, absl::StrCat("file size ", size, ", expected ", kNewSize)));
  RETURN_IF_ERROR(f.ExpectFileBytes(kName, 0, Pattern(4, 0, kOffset), "bytes before the lease"));
  RETURN_IF_ERROR(f.ExpectFileBytes(kName, kOffset, during,
                                    "the lease's surviving page (grace-period write, not the "
                                    "refused one)"));

  ASSIGN_OR_RETURN(auto described, admin->client->DescribeFile(f.export_name(), kName));
  for (const v1::Registration& r : described.registrations()) {
    const bool past =
        r.range().to_end_of_file() || r.range().offset() + r.range().length() > kNewSize;
    RETURN_IF_ERROR(Expect(!past || r.mode() == v1::REGISTRATION_MODE_ODP,
                           absl::StrCat("the broker still holds a registration over removed "
                                        "pages: ",
                                        DescribeRegistration(r))));
  }
  RETURN_IF_ERROR(
      Expect(described.leases().empty() && described.busy().empty(),
             absl::StrCat("leases or busy ranges left: ", described.ShortDebugString())));
  notes.Add("file is ", kNewSize,
            " bytes, exactly as expected; registrations before the "
            "truncate: ",
            registrations_before, "; after: ", DescribeRegistrations(described),
            " (checked: no non-ODP registration ends past ", kNewSize, ")");
  return absl::OkStatus();
}

}  // namespace pinbroker::scenarios
