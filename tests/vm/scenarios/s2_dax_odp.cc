// Scenario 2: fs-dax files (ext4 and xfs). Whether the device offers ODP is probed on rxe0
// (ibv_query_device_ex), not inferred from the kernel's name:
//   * without ODP the RDMA pin is refused, FAILED_PRECONDITION with a message naming ODP, and
//     nothing is left behind (no lease, no busy range, no registration);
//   * with ODP it is granted in ODP mode and RDMA WRITE/READ data is in the file (pread).
// The suite's premise: a kernel >= 6.17 must offer ODP on rxe; otherwise the scenario fails.
#include "absl/strings/match.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"
#include "tests/vm/scenarios/scenarios.h"

namespace pinbroker::scenarios {

absl::Status DaxOdp(Fixture& f, Notes& notes) {
  const VmEnv& env = f.env();
  const bool odp = env.odp.rc_read_write;
  notes.Add(env.rxe0, ": ", env.odp.Describe());
  RETURN_IF_ERROR(Expect(odp || !env.KernelAtLeast(6, 17),
                         absl::StrCat("kernel ", env.kernel, " >= 6.17 but ", env.rxe0,
                                      " offers no RC ODP (", env.odp.Describe(), ")")));
  constexpr uint64_t kFile = 16 * kPage, kOffset = 2 * kPage, kLength = 8 * kPage;
  const char* kName = "s2.dat";
  RETURN_IF_ERROR(f.CreateFile(kName, kFile, 2));
  ASSIGN_OR_RETURN(auto peer, f.Connect("s2-dax"));
  ASSIGN_OR_RETURN(auto before, peer->client->DescribeFile(f.export_name(), kName));
  RETURN_IF_ERROR(Expect(before.dax(), absl::StrCat(f.Path(kName), " is not DAX (filesystem ",
                                                    before.filesystem(), ")")));

  auto lease =
      client::RdmaLease::Pin(*peer->client, *peer->rdma, f.PinOptions(kName, kOffset, kLength));
  if (!odp) {
    RETURN_IF_ERROR(Expect(!lease.ok(), absl::StrCat("without ODP the fs-dax pin was granted: ",
                                                     lease.ok() ? DescribeLease(**lease) : "")));
    const absl::Status& s = lease.status();
    RETURN_IF_ERROR(Expect(
        s.code() == absl::StatusCode::kFailedPrecondition && absl::StrContains(s.message(), "ODP"),
        absl::StrCat("refused, but not with FAILED_PRECONDITION naming ODP: ", StatusText(s))));
    ASSIGN_OR_RETURN(auto after, peer->client->DescribeFile(f.export_name(), kName));
    RETURN_IF_ERROR(
        Expect(after.leases().empty() && after.busy().empty() && after.registrations().empty(),
               absl::StrCat("the refused pin left state behind: ", after.ShortDebugString())));
    std::string message(s.message());
    if (message.size() > 300) message = message.substr(0, 300) + "...";
    notes.Add("refused as expected: ", message);
    notes.Add("no lease, busy range or registration left");
    return absl::OkStatus();
  }
  if (!lease.ok()) return Context(lease.status(), "fs-dax RDMA pin with ODP available");
  client::RdmaLease& l = **lease;
  RETURN_IF_ERROR(
      Expect(l.lease().mode() == v1::REGISTRATION_MODE_ODP,
             absl::StrCat("fs-dax lease granted in ", v1::RegistrationMode_Name(l.lease().mode()),
                          ", not REGISTRATION_MODE_ODP")));
  notes.Add(DescribeLease(l), ", alignment ", l.rdma().required_alignment(), ", max transfer ",
            l.rdma().max_transfer_size());
  const std::string data = Pattern(201, kOffset, kLength);
  const absl::Time t0 = absl::Now();
  RETURN_IF_ERROR(WriteAndCheck(f, l, *peer, 0, data, "RDMA WRITE into fs-dax"));
  notes.Add("RDMA WRITE of ", kLength / 1024, " KiB in ", Secs(absl::Now() - t0),
            ", pread matches");
  RETURN_IF_ERROR(f.ExpectFileBytes(kName, 0, Pattern(2, 0, kOffset), "bytes before the lease"));
  RETURN_IF_ERROR(f.ExpectFileBytes(kName, kOffset + kLength,
                                    Pattern(2, kOffset + kLength, kFile - kOffset - kLength),
                                    "bytes after the lease"));
  RETURN_IF_ERROR(f.WriteFile(kName, kOffset + kPage, Pattern(202, kOffset + kPage, kPage)));
  RETURN_IF_ERROR(ReadAndCheck(f, l, *peer, 0, kLength, "RDMA READ of fs-dax"));
  notes.Add("RDMA READ matches pread, including a page changed by pwrite");
  ASSIGN_OR_RETURN(auto described, peer->client->DescribeFile(f.export_name(), kName));
  bool odp_registration = false;
  for (const v1::Registration& r : described.registrations()) {
    odp_registration = odp_registration || r.mode() == v1::REGISTRATION_MODE_ODP;
  }
  RETURN_IF_ERROR(Expect(odp_registration, absl::StrCat("DescribeFile shows no ODP registration: ",
                                                        described.ShortDebugString())));
  RETURN_IF_ERROR(Context(l.Release(), "release"));
  return absl::OkStatus();
}

}  // namespace pinbroker::scenarios
