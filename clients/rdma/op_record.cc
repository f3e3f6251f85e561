#include "clients/rdma/op_record.h"

#include <utility>

namespace pinbroker::client::rdma_internal {

bool OpRecord::done() const {
  absl::MutexLock lock(&mu_);
  return done_;
}

bool OpRecord::AwaitDone(absl::Time deadline) const {
  absl::MutexLock lock(&mu_);
  return mu_.AwaitWithDeadline(absl::Condition(&done_), deadline);
}

absl::Status OpRecord::status() const {
  absl::MutexLock lock(&mu_);
  return status_;
}

uint64_t OpRecord::atomic_result() const {
  absl::MutexLock lock(&mu_);
  return atomic_result_;
}

void OpRecord::Complete(absl::Status status, uint64_t atomic_result) {
  std::shared_ptr<BufferImpl> buffer;
  std::shared_ptr<LeaseGate> gate;
  {
    absl::MutexLock lock(&mu_);
    if (done_) return;
    done_ = true;
    status_ = std::move(status);
    atomic_result_ = atomic_result;
    buffer.swap(spec_.buffer);
    gate.swap(spec_.gate);
  }
  if (gate) gate->Done();
}

}  // namespace pinbroker::client::rdma_internal
