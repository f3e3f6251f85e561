// PackedTime: an absl::Time in 8 bytes (absl::Time takes 16), for records kept per lease.
//
// Nanoseconds since the Unix epoch in an int64, which spans the years 1677 to 2262; times
// outside that span (its ends included), absl::InfiniteFuture() and absl::InfinitePast() are
// kept as the int64 extremes and read back as InfiniteFuture() / InfinitePast(). Within the
// span a time reads back to the nanosecond (absl::Time's finer ticks are rounded down).
//
// Ordered like the times it holds. A value type: thread-compatible.
#pragma once

#include <compare>
#include <cstdint>
#include <limits>

#include "absl/time/time.h"

namespace pinbroker {

class PackedTime {
 public:
  constexpr PackedTime() = default;  // The Unix epoch.
  // absl::ToUnixNanos saturates: the infinities and times beyond the span become the extremes.
  explicit PackedTime(absl::Time t) : ns_(absl::ToUnixNanos(t)) {}

  absl::Time get() const {
    if (ns_ == kFuture) return absl::InfiniteFuture();
    if (ns_ == kPast) return absl::InfinitePast();
    return absl::FromUnixNanos(ns_);
  }

  friend constexpr auto operator<=>(PackedTime, PackedTime) = default;

 private:
  static constexpr int64_t kFuture = std::numeric_limits<int64_t>::max();
  static constexpr int64_t kPast = std::numeric_limits<int64_t>::min();

  int64_t ns_ = 0;
};

}  // namespace pinbroker
