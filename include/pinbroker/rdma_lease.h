// pinbroker RDMA client, part 2: leases with RDMA access. An RdmaLease is a client::Lease pinned
// with PinRequest.rdma on a session that has an RdmaConnection, plus its RdmaAccess (rkey,
// remote address, length, device constraints), and RDMA READ, WRITE and atomics at
// lease-relative offsets.
//
//   pinbroker::client::RdmaPinOptions pin;
//   pin.export_name = "default";
//   pin.path = "data/table.db";
//   pin.length = 1 << 20;
//   pin.access = pinbroker::v1::ACCESS_READ_WRITE;
//   auto lease = pinbroker::client::RdmaLease::Pin(*client, *connection, pin);
//   absl::Status s = (*lease)->Write(/*offset=*/0, buffer, /*buffer_offset=*/0, 4096);
//   auto old = (*lease)->FetchAdd(/*offset=*/64, 1);
//
// Every operation is checked before it is posted (rdma_transfer_checks.h): bounds, access (WRITE
// and atomics need a read-write lease), atomics' 8-byte alignment, and the device constraints the
// broker published: offset and length multiples of required_alignment, length at most
// max_transfer_size, and a path MTU no smaller than the alignment. Refusals are
// INVALID_ARGUMENT / OUT_OF_RANGE / PERMISSION_DENIED / FAILED_PRECONDITION naming the lease,
// the constraint and the broker's constraint_reason: a constrained device (rxe with on-demand
// paging) would otherwise place the data wrongly and still report success.
//
// Errors of operations:
//   FAILED_PRECONDITION  the lease is being recalled (stop_on_recall) or released
//   NOT_FOUND            the lease has ended: "lease <id> was revoked: <reason>" (also
//                        expired, released, lost with the session)
//   PERMISSION_DENIED    the completion said remote access error: the broker invalidated the
//                        lease's window (revoked) or the key is not valid on this connection.
//                        The connection is then broken.
//   UNAVAILABLE          the connection is broken (the message says why) or was flushed
//   DEADLINE_EXCEEDED    no completion within the timeout (the connection was broken to stop it)
//   RESOURCE_EXHAUSTED   the send queue is full
// A revocation therefore always surfaces as an error naming the lease: NOT_FOUND once the
// broker's REVOKED event has arrived, PERMISSION_DENIED if an operation reaches the
// invalidated window first.
//
// Recall (RECALLED event), with the defaults: the lease refuses new operations, waits for its
// operations in flight (at most drain_timeout, and not past the recall deadline; if they do not
// drain the connection is broken, which flushes them), releases the lease
// (release_on_recall), then runs on_recall. With stop_on_recall = false operations continue
// until the broker revokes the lease (for tests of revocation).
//
// Thread-safety: RdmaLease is thread-safe; operations may be posted from several threads at
// once. on_recall and on_revoked run on the Client's callback thread (see client.h), one at a
// time, never while a library lock is held; they may call the lease (Release(), ...) and may
// destroy it (then must not touch it afterwards). ~RdmaLease waits for a running callback of
// its lease (unless called from it); no callback starts after it. An RdmaLease must not outlive
// its Client's callback guarantees: destroy it before the Client when callbacks are set.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "pinbroker/client.h"
#include "pinbroker/rdma_connection.h"
#include "pinbroker/rdma_transfer_checks.h"

namespace pinbroker::client {

class RdmaLease;

struct RdmaPinOptions {
  std::string export_name;
  std::string path;  // Relative to the export root.
  uint64_t offset = 0;
  uint64_t length = 0;  // The lease holds the whole pages covering [offset, offset + length).
  v1::Access access = v1::ACCESS_READ;
  absl::Duration ttl = absl::ZeroDuration();              // Zero: the export's default.
  absl::Duration wait_if_blocked = absl::ZeroDuration();  // Zero: ABORTED at once if blocked.

  // On recall: refuse new operations and drain those in flight.
  bool stop_on_recall = true;
  // On recall, after draining: release the lease (before on_recall runs).
  bool release_on_recall = true;
  // Bound of the drain, on recall and on Release(); the recall deadline bounds it too.
  absl::Duration drain_timeout = absl::Seconds(10);
  // Runs on the callback thread after the drain (and release). `deadline` is the broker's.
  std::function<void(RdmaLease& lease, absl::string_view reason, absl::Time deadline)> on_recall;
  // The lease was revoked, expired or lost; lease().state() says which.
  std::function<void(RdmaLease& lease, absl::string_view reason)> on_revoked;
};

struct RdmaOpOptions {
  // Completion wait; zero: the connection's op_timeout.
  absl::Duration timeout = absl::ZeroDuration();
  // Post even if the broker has said the lease ended (revoked or expired): a probe that the
  // broker really invalidated the window. Expect PERMISSION_DENIED, and a broken connection.
  bool after_end = false;
};

class RdmaLease {
 public:
  // Pins with RDMA access on `client`'s session, whose connection `connection` must be.
  // FAILED_PRECONDITION if the connection belongs to another session or is broken, or the
  // broker granted no RDMA access (its lease is then released); the client's Pin() errors
  // otherwise.
  static absl::StatusOr<std::unique_ptr<RdmaLease>> Pin(Client& client, RdmaConnection& connection,
                                                        RdmaPinOptions options);
  // Stops new operations, drains those in flight (see Release()) and releases the lease if it
  // is still held.
  ~RdmaLease();
  RdmaLease(const RdmaLease&) = delete;
  RdmaLease& operator=(const RdmaLease&) = delete;

  const std::string& id() const { return lease_->id(); }
  Lease& lease() { return *lease_; }
  const Lease& lease() const { return *lease_; }
  LeaseState state() const { return lease_->state(); }
  const v1::RdmaAccess& rdma() const { return rdma_; }
  const LeaseLimits& limits() const { return limits_; }
  uint64_t length() const { return rdma_.length(); }  // Bytes reachable: [0, length()).
  int in_flight() const;

  // Synchronous operations at lease-relative offsets; `buffer` must come from this lease's
  // connection. They return once the completion has arrived (see RdmaOpOptions::timeout).
  absl::Status Write(uint64_t offset, const LocalBuffer& buffer, uint64_t buffer_offset,
                     uint64_t length, const RdmaOpOptions& options = {});
  absl::Status Read(uint64_t offset, const LocalBuffer& buffer, uint64_t buffer_offset,
                    uint64_t length, const RdmaOpOptions& options = {});
  // 8 bytes at an 8-byte aligned offset of a read-write lease; returns the previous value.
  absl::StatusOr<uint64_t> FetchAdd(uint64_t offset, uint64_t add,
                                    const RdmaOpOptions& options = {});
  absl::StatusOr<uint64_t> CompareSwap(uint64_t offset, uint64_t expected, uint64_t desired,
                                       const RdmaOpOptions& options = {});

  // Asynchronous forms: post and return; PendingOp::Wait() for the outcome. The buffer's
  // memory stays registered until the completion, whatever happens to the handles.
  absl::StatusOr<PendingOp> StartWrite(uint64_t offset, const LocalBuffer& buffer,
                                       uint64_t buffer_offset, uint64_t length,
                                       const RdmaOpOptions& options = {});
  absl::StatusOr<PendingOp> StartRead(uint64_t offset, const LocalBuffer& buffer,
                                      uint64_t buffer_offset, uint64_t length,
                                      const RdmaOpOptions& options = {});
  absl::StatusOr<PendingOp> StartFetchAdd(uint64_t offset, uint64_t add,
                                          const RdmaOpOptions& options = {});
  absl::StatusOr<PendingOp> StartCompareSwap(uint64_t offset, uint64_t expected, uint64_t desired,
                                             const RdmaOpOptions& options = {});

  // Refuses new operations (FAILED_PRECONDITION), waits for those in flight (at most
  // drain_timeout; then the connection is broken to flush them), then releases the lease:
  // Lease::Release()'s result.
  absl::Status Release();

 private:
  struct Shared;
  RdmaLease(std::shared_ptr<Shared> shared, std::unique_ptr<Lease> lease,
            std::shared_ptr<rdma_internal::ConnectionCore> core, absl::Duration op_timeout,
            uint32_t path_mtu, uint64_t max_message);

  absl::StatusOr<PendingOp> Start(RdmaOpKind kind, uint64_t offset, const LocalBuffer* buffer,
                                  uint64_t buffer_offset, uint64_t length, uint64_t compare_add,
                                  uint64_t swap, const RdmaOpOptions& options);
  // Closes the gate with `why` and waits for the drain (breaking the connection on timeout).
  void StopAndDrain(const absl::Status& why);

  const std::shared_ptr<Shared> shared_;
  const std::shared_ptr<rdma_internal::ConnectionCore> core_;
  const absl::Duration op_timeout_;
  const uint32_t path_mtu_;
  const uint64_t max_message_;
  const v1::RdmaAccess rdma_;
  const LeaseLimits limits_;
  std::unique_ptr<Lease> lease_;  // Reset only by the destructor.
};

}  // namespace pinbroker::client
