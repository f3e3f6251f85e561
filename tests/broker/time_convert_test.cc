// The wire's time conversions (api/time_convert.h), shared by the broker and the clients.
#include "api/time_convert.h"

#include "gtest/gtest.h"

namespace pinbroker {
namespace {

TEST(TimeConvertTest, TimestampRoundTripsToTheNanosecond) {
  const absl::Time t = absl::FromUnixSeconds(1893456000) + absl::Nanoseconds(123456789);
  google::protobuf::Timestamp proto;
  ToProto(t, &proto);
  EXPECT_EQ(proto.seconds(), 1893456000);
  EXPECT_EQ(proto.nanos(), 123456789);
  EXPECT_EQ(FromProto(proto), t);
}

TEST(TimeConvertTest, TimestampBeforeTheEpochKeepsNanosNonNegative) {
  const absl::Time t = absl::FromUnixSeconds(-2) + absl::Milliseconds(250);
  google::protobuf::Timestamp proto;
  ToProto(t, &proto);
  EXPECT_EQ(proto.seconds(), -2);
  EXPECT_EQ(proto.nanos(), 250'000'000);
  EXPECT_EQ(FromProto(proto), t);
}

TEST(TimeConvertTest, InfiniteTimesAreSentUnset) {
  google::protobuf::Timestamp proto;
  proto.set_seconds(7);
  ToProto(absl::InfiniteFuture(), &proto);
  EXPECT_EQ(proto.seconds(), 0);
  EXPECT_EQ(proto.nanos(), 0);
  proto.set_seconds(7);
  ToProto(absl::InfinitePast(), &proto);
  EXPECT_EQ(proto.seconds(), 0);
  EXPECT_EQ(FromProto(proto), absl::UnixEpoch());
}

TEST(TimeConvertTest, DurationRoundTripsWithItsSign) {
  google::protobuf::Duration proto;
  ToProto(absl::Milliseconds(1500), &proto);
  EXPECT_EQ(proto.seconds(), 1);
  EXPECT_EQ(proto.nanos(), 500'000'000);
  EXPECT_EQ(FromProto(proto), absl::Milliseconds(1500));

  ToProto(-absl::Milliseconds(1500), &proto);
  EXPECT_EQ(proto.seconds(), -1);
  EXPECT_EQ(proto.nanos(), -500'000'000);
  EXPECT_EQ(FromProto(proto), -absl::Milliseconds(1500));

  ToProto(absl::ZeroDuration(), &proto);
  EXPECT_EQ(proto.seconds(), 0);
  EXPECT_EQ(proto.nanos(), 0);
  EXPECT_EQ(FromProto(proto), absl::ZeroDuration());
}

}  // namespace
}  // namespace pinbroker
