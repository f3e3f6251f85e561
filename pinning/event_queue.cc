#include "pinning/event_queue.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace pinbroker {

EventQueue::EventQueue(Clock* clock, size_t capacity, absl::AnyInvocable<void()> on_ready,
                       size_t max_bytes)
    : clock_(clock),
      capacity_(capacity == 0 ? 1 : capacity),
      max_bytes_(max_bytes == 0 ? 1 : max_bytes),
      on_ready_(std::move(on_ready)) {}

size_t EventQueue::BytesOf(const LeaseEvent& event) {
  const LeaseInfo& l = event.lease;
  return sizeof(LeaseEvent) + l.owner.capacity() + l.export_name.capacity() +
         l.path.capacity() + l.reason.capacity() + l.rdma.device.capacity() +
         l.rdma.constraint_reason.capacity();
}

bool EventQueue::CountsAgainstCapacity(LeaseEvent::Type type) {
  return type == LeaseEvent::Type::kGranted;
}

bool EventQueue::AppendLocked(LeaseEvent event) {
  if (closed_ || overflowed_) return false;
  const bool bounded = CountsAgainstCapacity(event.type);
  const size_t bytes = BytesOf(event);
  if ((bounded && bounded_ >= capacity_) || bytes_ + bytes > max_bytes_) {
    overflowed_ = true;
    return false;
  }
  events_.push_back(Queued{std::move(event), bytes});
  bounded_ += bounded ? 1 : 0;
  bytes_ += bytes;
  return true;
}

bool EventQueue::Push(LeaseEvent event) {
  bool queued;
  {
    absl::MutexLock lock(&mu_);
    if (closed_ || overflowed_) return false;
    queued = AppendLocked(std::move(event));
  }
  // The hook fires for the overflow too: the consumer must learn it has to resubscribe.
  if (on_ready_) on_ready_();
  // Decided under the lock: a concurrent overflow does not undo this push.
  return queued;
}

size_t EventQueue::PushAll(std::vector<LeaseEvent> events) {
  size_t queued = 0;
  {
    absl::MutexLock lock(&mu_);
    if (closed_ || overflowed_ || events.empty()) return 0;
    for (LeaseEvent& event : events) {
      if (!AppendLocked(std::move(event))) break;
      ++queued;
    }
  }
  if (on_ready_) on_ready_();
  return queued;
}

std::optional<absl::StatusOr<LeaseEvent>> EventQueue::TakeLocked() {
  if (!events_.empty()) {
    Queued front = std::move(events_.front());
    events_.pop_front();
    bounded_ -= CountsAgainstCapacity(front.event.type) ? 1 : 0;
    bytes_ -= front.bytes;
    return std::move(front.event);
  }
  if (overflowed_) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "lease event subscriber fell more than ", capacity_, " grant events or ", max_bytes_,
        " bytes of events behind and events were dropped; resubscribe to get a fresh "
        "snapshot"));
  }
  if (closed_) return absl::CancelledError("lease event subscription closed");
  return std::nullopt;
}

absl::StatusOr<LeaseEvent> EventQueue::Next(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !events_.empty() || overflowed_ || closed_;
  };
  clock_->AwaitWithDeadline(&mu_, absl::Condition(&ready), deadline);
  if (auto taken = TakeLocked()) return *std::move(taken);
  return absl::DeadlineExceededError("no lease event before the deadline");
}

std::optional<absl::StatusOr<LeaseEvent>> EventQueue::TryNext() {
  absl::MutexLock lock(&mu_);
  return TakeLocked();
}

void EventQueue::Close() {
  {
    absl::MutexLock lock(&mu_);
    if (closed_) return;
    closed_ = true;
  }
  if (on_ready_) on_ready_();
}

bool EventQueue::closed() const {
  absl::MutexLock lock(&mu_);
  return closed_;
}

bool EventQueue::overflowed() const {
  absl::MutexLock lock(&mu_);
  return overflowed_;
}

size_t EventQueue::bytes() const {
  absl::MutexLock lock(&mu_);
  return bytes_;
}

size_t EventQueue::size() const {
  absl::MutexLock lock(&mu_);
  return events_.size();
}

}  // namespace pinbroker
