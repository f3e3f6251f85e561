#include "api/status_convert.h"

#include "gtest/gtest.h"

namespace pinbroker::broker {
namespace {

TEST(StatusConvertTest, EveryCanonicalCodeRoundTripsWithItsMessage) {
  for (int code = 0; code <= 16; ++code) {
    const absl::Status status(static_cast<absl::StatusCode>(code), code == 0 ? "" : "why");
    const grpc::Status converted = ToGrpcStatus(status);
    EXPECT_EQ(static_cast<int>(converted.error_code()), code);
    EXPECT_EQ(FromGrpcStatus(converted), status);
  }
}

TEST(StatusConvertTest, MessageIsKept) {
  EXPECT_EQ(ToGrpcStatus(absl::NotFoundError("no lease 3")).error_message(), "no lease 3");
}

}  // namespace
}  // namespace pinbroker::broker
