// Scenario 1: a tmpfs file in pinned mode. A client on rxe1 pins the middle of a file with RDMA,
// writes it with RDMA WRITE and reads it back with RDMA READ; the bytes are checked in the file
// (pread) after the write, a pwrite by the file's owner is seen by the next RDMA READ, and the
// bytes outside the lease are untouched.
#include "absl/time/clock.h"
#include "common/status_macros.h"
#include "tests/vm/scenarios/scenarios.h"

namespace pinbroker::scenarios {

absl::Status PinnedWriteRead(Fixture& f, Notes& notes) {
  constexpr uint64_t kFile = 16 * kPage, kOffset = 4 * kPage, kLength = 8 * kPage;
  const char* kName = "s1.dat";
  RETURN_IF_ERROR(f.CreateFile(kName, kFile, 1));
  ASSIGN_OR_RETURN(auto peer, f.Connect("s1-writer"));
  notes.Add(peer->rdma->device(), " ", peer->rdma->local_address(), " -> ", peer->rdma->peer(),
            " path MTU ", peer->rdma->path_mtu());
  auto lease =
      client::RdmaLease::Pin(*peer->client, *peer->rdma, f.PinOptions(kName, kOffset, kLength));
  if (!lease.ok()) return Context(lease.status(), "RDMA pin of a tmpfs file");
  client::RdmaLease& l = **lease;
  RETURN_IF_ERROR(
      Expect(l.lease().mode() == v1::REGISTRATION_MODE_PINNED,
             absl::StrCat("tmpfs lease granted in ", v1::RegistrationMode_Name(l.lease().mode()),
                          ", not REGISTRATION_MODE_PINNED")));
  RETURN_IF_ERROR(Expect(l.lease().range().offset == kOffset && l.length() == kLength,
                         absl::StrCat("lease holds [", l.lease().range().offset, ", +", l.length(),
                                      "), asked for [", kOffset, ", +", kLength, ")")));
  notes.Add(DescribeLease(l));

  const std::string data = Pattern(101, kOffset, kLength);
  const absl::Time t0 = absl::Now();
  RETURN_IF_ERROR(WriteAndCheck(f, l, *peer, 0, data, "RDMA WRITE of the whole lease"));
  notes.Add("RDMA WRITE of ", kLength / 1024, " KiB in ", Secs(absl::Now() - t0),
            ", pread matches");
  RETURN_IF_ERROR(f.ExpectFileBytes(kName, 0, Pattern(1, 0, kOffset), "bytes before the lease"));
  RETURN_IF_ERROR(f.ExpectFileBytes(kName, kOffset + kLength,
                                    Pattern(1, kOffset + kLength, kFile - kOffset - kLength),
                                    "bytes after the lease"));
  RETURN_IF_ERROR(ReadAndCheck(f, l, *peer, 0, kLength, "RDMA READ of the whole lease"));
  // The file's own write path and RDMA see the same pages.
  RETURN_IF_ERROR(
      f.WriteFile(kName, kOffset + 3 * kPage, Pattern(102, kOffset + 3 * kPage, kPage)));
  RETURN_IF_ERROR(ReadAndCheck(f, l, *peer, 2 * kPage, 3 * kPage, "RDMA READ after a pwrite"));
  notes.Add("RDMA READ matches pread, including a page changed by pwrite");
  RETURN_IF_ERROR(Context(l.Release(), "release"));
  RETURN_IF_ERROR(Context(peer->rdma->status(), "connection after the release"));
  return absl::OkStatus();
}

}  // namespace pinbroker::scenarios
