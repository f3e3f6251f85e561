// HeldLease: the lease that scenario 10's holder keeps on a file range, with a client session of
// its own: an RDMA lease over its own RDMA connection (a probe after a revocation breaks the
// connection, so no two leases share one), or a host lease (mmap + mlock in the broker) where
// the scenario asks for one or the kernel grants no RDMA registration for the file. The holder
// never acts on a recall by itself: the scenario decides whether and when it releases. Recalls
// and revocations are recorded in events().
//
// Every check compares bytes with `model`, the bytes the file must hold, and the file with it.
//
// Thread-safety: used by the scenario's thread; events() may be waited on from it while the
// client library's callback thread records into it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "pinbroker/client.h"
#include "pinbroker/rdma_lease.h"
#include "tests/vm/scenarios/fixture.h"

namespace pinbroker::scenarios {

class HeldLease {
 public:
  struct Spec {
    std::string client_name;
    std::string file;  // In the fixture's export.
    uint64_t offset = 0;
    uint64_t length = 0;
    bool rdma = true;
    bool writable = true;
  };
  static absl::StatusOr<std::unique_ptr<HeldLease>> Pin(Fixture& f, const Spec& spec);
  // Releases the lease if it is still held, then closes the session (member order).
  ~HeldLease() = default;
  HeldLease(const HeldLease&) = delete;
  HeldLease& operator=(const HeldLease&) = delete;

  bool rdma() const { return rdma_lease_ != nullptr; }
  const std::string& id() const;
  client::LeaseState state() const;
  LeaseEvents& events() { return events_; }
  // "RDMA lease 1a2b-3 (REGISTRATION_MODE_ODP, rkey 0x1234, read-write)",
  // "host lease 1a2b-3 (read-only)".
  std::string Describe() const;

  // Uses the lease and checks that it works. RDMA read-write: WRITEs a fresh page (Pattern(seed))
  // at the lease's first byte, applied to `model`; then every RDMA lease READs its bytes back
  // and compares them with `model`. A host lease must still be live (granted or recalling). The
  // file must equal `model` afterwards.
  absl::Status Use(Fixture& f, std::string& model, uint64_t seed, absl::string_view what);
  // After the broker revoked the lease: an RDMA WRITE (READ for a read-only lease) posted anyway
  // must fail, and the file must still equal `model`; a host lease must be revoked.
  absl::Status ExpectInvalidated(Fixture& f, const std::string& model, absl::string_view what);
  absl::Status Release();

 private:
  HeldLease() = default;

  Spec spec_;
  LeaseEvents events_;          // Outlives the leases, whose callbacks record into it.
  std::unique_ptr<Peer> peer_;  // Outlives the leases.
  std::unique_ptr<client::RdmaLease> rdma_lease_;
  std::unique_ptr<client::Lease> host_lease_;
};

}  // namespace pinbroker::scenarios
