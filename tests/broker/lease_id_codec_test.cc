#include "broker/lease_id_codec.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace pinbroker::broker {
namespace {

using ::pinbroker::testing::IsOkAndHolds;
using ::pinbroker::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;

TEST(LeaseIdCodecTest, FormatsAndParsesItsOwnIds) {
  LeaseIdCodec codec("1a2b3c4d");
  EXPECT_EQ(codec.Format(17), "1a2b3c4d-17");
  EXPECT_THAT(codec.Parse("1a2b3c4d-17"), IsOkAndHolds(17u));
}

TEST(LeaseIdCodecTest, AnotherRunsIdIsNotFoundAndSaysSo) {
  LeaseIdCodec codec("1a2b3c4d");
  EXPECT_THAT(codec.Parse("ffffffff-17"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("earlier run")));
}

TEST(LeaseIdCodecTest, MalformedIdsAreInvalidArgument) {
  LeaseIdCodec codec("1a2b3c4d");
  for (const char* bad : {"", "17", "-17", "1a2b3c4d-", "1a2b3c4d-x", "1a2b3c4d-0"}) {
    EXPECT_THAT(codec.Parse(bad),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("malformed")))
        << bad;
  }
}

TEST(LeaseIdCodecTest, NewEpochsAreEightHexDigitsAndDiffer) {
  const std::string a = LeaseIdCodec::NewEpoch();
  EXPECT_THAT(a, MatchesRegex("[0-9a-f]{8}"));
  // 2^-32 chance of a false failure per run: acceptable for a check that randomness is used.
  EXPECT_NE(a, LeaseIdCodec::NewEpoch());
}

}  // namespace
}  // namespace pinbroker::broker
