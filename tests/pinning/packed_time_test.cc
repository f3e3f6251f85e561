#include "common/packed_time.h"

#include <cstdint>
#include <limits>

#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace pinbroker {
namespace {

TEST(PackedTimeTest, TakesEightBytes) { EXPECT_EQ(sizeof(PackedTime), 8u); }

TEST(PackedTimeTest, ReadsBackTimesWithinItsSpanToTheNanosecond) {
  for (const absl::Time t :
       {absl::UnixEpoch(), absl::FromUnixNanos(1), absl::FromUnixNanos(-1),
        absl::FromCivil(absl::CivilSecond(2026, 12, 3, 18, 0, 0), absl::UTCTimeZone()) +
            absl::Nanoseconds(123456789),
        absl::FromCivil(absl::CivilSecond(2262, 1, 1, 0, 0, 0), absl::UTCTimeZone()),
        absl::FromCivil(absl::CivilSecond(1678, 1, 1, 0, 0, 0), absl::UTCTimeZone())}) {
    EXPECT_EQ(PackedTime(t).get(), t) << t;
  }
}

TEST(PackedTimeTest, RoundsFinerTicksDown) {
  const absl::Time t = absl::FromUnixNanos(1000) + absl::Nanoseconds(0.75);
  EXPECT_EQ(PackedTime(t).get(), absl::FromUnixNanos(1000));
  const absl::Time before = absl::FromUnixNanos(-1000) + absl::Nanoseconds(0.25);
  EXPECT_EQ(PackedTime(before).get(), absl::FromUnixNanos(-1000));
}

TEST(PackedTimeTest, KeepsTheInfinitiesAndSaturatesBeyondItsSpan) {
  EXPECT_EQ(PackedTime(absl::InfiniteFuture()).get(), absl::InfiniteFuture());
  EXPECT_EQ(PackedTime(absl::InfinitePast()).get(), absl::InfinitePast());
  EXPECT_EQ(PackedTime(absl::FromUnixSeconds(int64_t{1} << 40)).get(), absl::InfiniteFuture());
  EXPECT_EQ(PackedTime(absl::FromUnixSeconds(-(int64_t{1} << 40))).get(), absl::InfinitePast());
  EXPECT_EQ(PackedTime(absl::FromUnixNanos(std::numeric_limits<int64_t>::max())).get(),
            absl::InfiniteFuture());
}

TEST(PackedTimeTest, OrdersLikeTheTimesItHolds) {
  const PackedTime past(absl::InfinitePast()), a(absl::FromUnixNanos(-5)),
      b(absl::FromUnixNanos(7)), future(absl::InfiniteFuture());
  EXPECT_LT(past, a);
  EXPECT_LT(a, b);
  EXPECT_LT(b, future);
  EXPECT_EQ(PackedTime(absl::FromUnixNanos(7)), b);
  EXPECT_EQ(PackedTime(), PackedTime(absl::UnixEpoch()));
}

}  // namespace
}  // namespace pinbroker
