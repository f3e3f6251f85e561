#include "pinning/event_queue.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace pinbroker {

EventQueue::EventQueue(Clock* clock, size_t capacity, absl::AnyInvocable<void()> on_ready)
    : clock_(clock), capacity_(capacity == 0 ? 1 : capacity), on_ready_(std::move(on_ready)) {}

bool EventQueue::Push(LeaseEvent event) {
  bool queued = false;
  {
    absl::MutexLock lock(&mu_);
    if (closed_ || overflowed_) return false;
    if (events_.size() >= capacity_) {
      overflowed_ = true;
    } else {
      events_.push_back(std::move(event));
      queued = true;
    }
  }
  // The hook fires for the overflow too: the consumer must learn it has to resubscribe.
  if (on_ready_) on_ready_();
  // Decided under the lock: a concurrent overflow does not undo this push.
  return queued;
}

std::optional<absl::StatusOr<LeaseEvent>> EventQueue::TakeLocked() {
  if (!events_.empty()) {
    LeaseEvent event = std::move(events_.front());
    events_.pop_front();
    return event;
  }
  if (overflowed_) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "lease event subscriber fell more than ", capacity_,
        " events behind and events were dropped; resubscribe to get a fresh snapshot"));
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

size_t EventQueue::size() const {
  absl::MutexLock lock(&mu_);
  return events_.size();
}

}  // namespace pinbroker
