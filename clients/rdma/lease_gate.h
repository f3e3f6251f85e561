// LeaseGate: admission and drain of one lease's RDMA operations. An operation is admitted
// (counted in flight) before it is posted and leaves when its completion arrives; closing the
// gate (recall, release) refuses new operations while the ones in flight drain; a lease that
// ended (revoked, expired, lost) refuses them too.
//
// Admission and closing are atomic under one mutex: once Close() has returned, no operation can
// be admitted, so AwaitDrained() after it really waits for the last one.
//
// Thread-safety: every method is safe to call concurrently. mu_ is a leaf lock.
#pragma once

#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace pinbroker::client::rdma_internal {

class LeaseGate {
 public:
  LeaseGate() = default;
  LeaseGate(const LeaseGate&) = delete;
  LeaseGate& operator=(const LeaseGate&) = delete;

  // OK and counts the operation in flight, or why it may not start: the closing error, or the
  // end error (skipped when `after_end` is set, to probe that the broker really invalidated
  // the lease's window).
  absl::Status Admit(bool after_end) ABSL_LOCKS_EXCLUDED(mu_);
  // An admitted operation completed (or was never posted).
  void Done() ABSL_LOCKS_EXCLUDED(mu_);

  // From now on Admit() fails with `why` (the first reason is kept).
  void Close(absl::Status why) ABSL_LOCKS_EXCLUDED(mu_);
  // The lease ended; Admit() fails with `why` unless after_end (the first reason is kept).
  void MarkEnded(absl::Status why) ABSL_LOCKS_EXCLUDED(mu_);
  // Waits until nothing is in flight or `deadline` passes; true when drained.
  bool AwaitDrained(absl::Time deadline) const ABSL_LOCKS_EXCLUDED(mu_);
  int in_flight() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  mutable absl::Mutex mu_;
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status closed_ ABSL_GUARDED_BY(mu_);
  absl::Status ended_ ABSL_GUARDED_BY(mu_);
};

}  // namespace pinbroker::client::rdma_internal
