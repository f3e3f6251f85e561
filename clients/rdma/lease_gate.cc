#include "clients/rdma/lease_gate.h"

namespace pinbroker::client::rdma_internal {

absl::Status LeaseGate::Admit(bool after_end) {
  absl::MutexLock lock(&mu_);
  if (!closed_.ok()) return closed_;
  if (!ended_.ok() && !after_end) return ended_;
  ++in_flight_;
  return absl::OkStatus();
}

void LeaseGate::Done() {
  absl::MutexLock lock(&mu_);
  --in_flight_;
}

void LeaseGate::Close(absl::Status why) {
  absl::MutexLock lock(&mu_);
  if (closed_.ok()) closed_ = std::move(why);
}

void LeaseGate::MarkEnded(absl::Status why) {
  absl::MutexLock lock(&mu_);
  if (ended_.ok()) ended_ = std::move(why);
}

bool LeaseGate::AwaitDrained(absl::Time deadline) const {
  absl::MutexLock lock(&mu_);
  auto drained = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return in_flight_ == 0; };
  return mu_.AwaitWithDeadline(absl::Condition(&drained), deadline);
}

int LeaseGate::in_flight() const {
  absl::MutexLock lock(&mu_);
  return in_flight_;
}

}  // namespace pinbroker::client::rdma_internal
