// OpSpec and OpRecord: what the RDMA client posts on a ConnectionCore and the record of one
// posted operation, which the core's event thread completes. Not part of the public API;
// PendingOp (rdma_lease.h) is the handle.
//
// Thread-safety: OpSpec is a value. OpRecord is safe to use from any thread; its mu_ is a leaf
// lock.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "clients/rdma/lease_gate.h"
#include "clients/rdma/local_buffer.h"
#include "pinbroker/rdma_transfer_checks.h"

namespace pinbroker::client::rdma_internal {

// What to post.
struct OpSpec {
  RdmaOpKind kind = RdmaOpKind::kWrite;
  std::string lease_id;  // For messages.
  uint64_t remote_address = 0;
  uint32_t rkey = 0;
  // WRITE/READ: the local bytes. Atomics: unset (the result goes to the core's scratch page).
  std::shared_ptr<BufferImpl> buffer;
  uint64_t local_offset = 0;
  uint64_t length = 0;
  uint64_t compare_add = 0;         // FETCH_AND_ADD: the addend; COMPARE_SWAP: the expected value.
  uint64_t swap = 0;                // COMPARE_SWAP: the new value.
  std::shared_ptr<LeaseGate> gate;  // Done() when the operation completes; may be null.
};

// One posted operation. The record keeps its local buffer registered until it completes.
class OpRecord {
 public:
  explicit OpRecord(OpSpec spec) : spec_(std::move(spec)) {}
  const OpSpec& spec() const { return spec_; }
  bool done() const ABSL_LOCKS_EXCLUDED(mu_);
  // True once done; false if `deadline` passed first.
  bool AwaitDone(absl::Time deadline) const ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status status() const ABSL_LOCKS_EXCLUDED(mu_);
  uint64_t atomic_result() const ABSL_LOCKS_EXCLUDED(mu_);

  // Sets the outcome once (later calls are ignored) and releases the buffer and the gate.
  void Complete(absl::Status status, uint64_t atomic_result) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  OpSpec spec_;  // buffer and gate are dropped by Complete() (under mu_).
  mutable absl::Mutex mu_;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status status_ ABSL_GUARDED_BY(mu_);
  uint64_t atomic_result_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace pinbroker::client::rdma_internal
