// Scenario 8: a lease's rkey used over another client's connection is refused. "owner" holds an
// RDMA lease; "intruder" attaches its own connection (a bare rdma_cm client, RawConnection,
// which skips the client library's checks) to its own session. First a control: the intruder's
// own lease key works over its connection (so the connection itself is sound). Then it writes
// with the owner's key and address. Checked: that write completes with a remote access error,
// the owner's bytes in the file are unchanged (pread), and the owner's connection and lease keep
// working (RDMA write + read, pread).
#include "absl/time/clock.h"
#include "common/status_macros.h"
#include "tests/vm/scenarios/raw_connection.h"
#include "tests/vm/scenarios/scenarios.h"

namespace pinbroker::scenarios {

absl::Status ForeignRkey(Fixture& f, Notes& notes) {
  constexpr uint64_t kFile = 8 * kPage, kOwner = 0, kIntruder = 4 * kPage, kLength = 2 * kPage;
  const char* kName = "s8.dat";
  RETURN_IF_ERROR(f.CreateFile(kName, kFile, 8));
  ASSIGN_OR_RETURN(auto owner, f.Connect("s8-owner"));
  ASSIGN_OR_RETURN(auto intruder, f.Connect("s8-intruder", /*rdma=*/false));
  auto lease =
      client::RdmaLease::Pin(*owner->client, *owner->rdma, f.PinOptions(kName, kOwner, kLength));
  if (!lease.ok()) return Context(lease.status(), "owner's pin");
  client::RdmaLease& l = **lease;
  const std::string owned = Pattern(801, kOwner, kLength);
  RETURN_IF_ERROR(WriteAndCheck(f, l, *owner, 0, owned, "owner's write"));

  const v1::RdmaEndpoint& ep = f.broker().info().rdma_endpoints(0);
  auto raw = RawConnection::Connect(ep.address(), static_cast<uint16_t>(ep.port()), f.env().ip1,
                                    intruder->client->credentials());
  if (!raw.ok()) return Context(raw.status(), "intruder's raw RDMA connection");
  client::PinOptions own;
  own.export_name = f.export_name();
  own.path = kName;
  own.offset = kIntruder;
  own.length = kLength;
  own.access = v1::ACCESS_READ_WRITE;
  own.rdma = true;
  auto own_lease = intruder->client->Pin(own);
  if (!own_lease.ok()) return Context(own_lease.status(), "intruder's own RDMA pin");
  const v1::RdmaAccess mine = (*own_lease)->info().rdma();
  RETURN_IF_ERROR(Expect(mine.rkey() != 0, "the intruder's own lease carries no rkey"));
  const std::string control = Pattern(802, kIntruder, kPage);
  ASSIGN_OR_RETURN(ibv_wc_status control_status,
                   (*raw)->Write(mine.remote_address(), mine.rkey(), control, absl::Seconds(15)));
  RETURN_IF_ERROR(Expect(control_status == IBV_WC_SUCCESS,
                         absl::StrCat("control write with the intruder's own key failed: ",
                                      ibv_wc_status_str(control_status))));
  RETURN_IF_ERROR(f.ExpectFileBytes(kName, kIntruder, control, "control write with own key"));
  notes.Add("control: the intruder's own key 0x", absl::Hex(mine.rkey()),
            " works over its connection (pread matches)");

  const std::string attack = Pattern(803, kOwner, kPage);
  ASSIGN_OR_RETURN(ibv_wc_status status, (*raw)->Write(l.rdma().remote_address(), l.rdma().rkey(),
                                                       attack, absl::Seconds(15)));
  RETURN_IF_ERROR(Expect(status == IBV_WC_REM_ACCESS_ERR,
                         absl::StrCat("write with the owner's key over the intruder's connection: "
                                      "expected a remote access error, got ",
                                      ibv_wc_status_str(status))));
  notes.Add("owner's key 0x", absl::Hex(l.rdma().rkey()),
            " over the intruder's connection: ", ibv_wc_status_str(status));
  RETURN_IF_ERROR(f.ExpectFileBytes(kName, kOwner, owned, "owner's bytes after the foreign write"));
  RETURN_IF_ERROR(Context(owner->rdma->status(), "owner's connection after the foreign write"));
  RETURN_IF_ERROR(Expect(l.state() == client::LeaseState::kGranted,
                         absl::StrCat("owner's lease is ", client::LeaseStateName(l.state()))));
  RETURN_IF_ERROR(WriteAndCheck(f, l, *owner, 0, Pattern(804, kOwner, kLength),
                                "owner's write after the foreign write"));
  RETURN_IF_ERROR(ReadAndCheck(f, l, *owner, 0, kLength, "owner's read after the foreign write"));
  notes.Add(
      "owner's bytes unchanged; owner's connection and lease still work (write+read, pread "
      "matches)");
  own_lease->reset();
  raw->reset();
  return Context(l.Release(), "owner's release");
}

}  // namespace pinbroker::scenarios
