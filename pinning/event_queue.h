// EventQueue: one subscriber's bounded, ordered queue of lease events.
//
// The LeaseTable pushes; one consumer pops, either blocking (Next) or, for asynchronous
// consumers such as a gRPC write reactor, from an `on_ready` hook (TryNext).
//
// Two bounds. Grant events count against `capacity` (events). Recalls and ends (recalled,
// released, revoked, expired) bypass that bound: a recall fanned out over every lease of a big
// session reaches it without a reconnect, and there is at most one recall and one end per lease
// the subscriber could hold. Every event, of any type, counts against `max_bytes` (its size
// with its strings), so memory stays bounded however large the fan-out or its strings. A
// subscriber that falls behind past either bound is never silently skipped past a recall: the
// queue overflows, keeps what it has, and after those events Next() fails with
// RESOURCE_EXHAUSTED so the consumer knows to resubscribe and take a fresh snapshot.
//
// Thread-safety: safe to call concurrently; the `on_ready` hook runs on the pushing thread
// (which may hold the LeaseTable's lock) and must not block or call into the LeaseTable.
#pragma once

#include <cstddef>
#include <deque>
#include <optional>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "pinbroker/clock.h"
#include "pinning/lease.h"

namespace pinbroker {

class EventQueue {
 public:
  static constexpr size_t kDefaultMaxBytes = size_t{64} << 20;

  EventQueue(Clock* clock, size_t capacity, absl::AnyInvocable<void()> on_ready = nullptr,
             size_t max_bytes = kDefaultMaxBytes);
  EventQueue(const EventQueue&) = delete;
  EventQueue& operator=(const EventQueue&) = delete;

  // Appends `event`. Returns false if it was dropped: the queue is closed or has overflowed.
  bool Push(LeaseEvent event) ABSL_LOCKS_EXCLUDED(mu_);
  // Push() of each of `events` in order, under one lock and with one `on_ready` call, so that a
  // burst wakes a waiting consumer once. Returns how many were queued (the rest were dropped).
  size_t PushAll(std::vector<LeaseEvent> events) ABSL_LOCKS_EXCLUDED(mu_);

  // The oldest event, waiting until the clock reaches `deadline` for one. Errors:
  // DEADLINE_EXCEEDED (nothing arrived), CANCELLED (closed and empty), RESOURCE_EXHAUSTED
  // (overflowed and every event queued before the overflow has been taken).
  absl::StatusOr<LeaseEvent> Next(absl::Time deadline) ABSL_LOCKS_EXCLUDED(mu_);

  // Like Next() without waiting: nullopt when empty and healthy, an error as above otherwise.
  std::optional<absl::StatusOr<LeaseEvent>> TryNext() ABSL_LOCKS_EXCLUDED(mu_);

  // Stops delivery: later pushes are dropped and a waiting Next() returns CANCELLED once the
  // queue is empty. Idempotent.
  void Close() ABSL_LOCKS_EXCLUDED(mu_);

  bool closed() const ABSL_LOCKS_EXCLUDED(mu_);
  bool overflowed() const ABSL_LOCKS_EXCLUDED(mu_);
  size_t size() const ABSL_LOCKS_EXCLUDED(mu_);
  size_t capacity() const { return capacity_; }
  size_t max_bytes() const { return max_bytes_; }
  // Bytes the queued events take (as counted against max_bytes).
  size_t bytes() const ABSL_LOCKS_EXCLUDED(mu_);

  // What `event` counts against max_bytes: the struct and its strings.
  static size_t BytesOf(const LeaseEvent& event);
  // Whether `type` counts against `capacity` (grants do; recalls and ends bypass it).
  static bool CountsAgainstCapacity(LeaseEvent::Type type);

 private:
  std::optional<absl::StatusOr<LeaseEvent>> TakeLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Queues `event` unless closed or overflowed (or it overflows the queue now).
  bool AppendLocked(LeaseEvent event) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Clock* const clock_;
  const size_t capacity_;
  const size_t max_bytes_;
  absl::AnyInvocable<void()> on_ready_;
  mutable absl::Mutex mu_;
  struct Queued {
    LeaseEvent event;
    size_t bytes;  // BytesOf(event) when pushed.
  };
  std::deque<Queued> events_ ABSL_GUARDED_BY(mu_);
  size_t bounded_ ABSL_GUARDED_BY(mu_) = 0;  // Queued events that count against capacity_.
  size_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  bool overflowed_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace pinbroker
