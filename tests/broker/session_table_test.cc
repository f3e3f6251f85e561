#include "broker/session_table.h"

#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "common/simulated_clock.h"
#include "tests/testing/status_matchers.h"

namespace pinbroker::broker {
namespace {

using ::pinbroker::testing::IsOk;
using ::pinbroker::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

class SessionTableTest : public ::testing::Test {
 protected:
  SimulatedClock clock_;
  std::vector<std::string> lapsed_;
  SessionTable table_{&clock_, "e", absl::Seconds(30), absl::Minutes(10),
                      [this](const std::string& id) { lapsed_.push_back(id); }};
};

TEST_F(SessionTableTest, OpenedSessionAuthenticatesWithItsToken) {
  ASSERT_OK_AND_ASSIGN(auto s, table_.Open("c", absl::ZeroDuration()));
  EXPECT_EQ(s.expires_at, clock_.Now() + absl::Seconds(30));
  EXPECT_OK(table_.Authenticate(s.id, s.token).status());
  EXPECT_THAT(table_.Authenticate(s.id, "x"),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("wrong token")));
  EXPECT_THAT(table_.Authenticate("", ""),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("OpenSession")));
}

TEST_F(SessionTableTest, TtlIsCappedAndNegativeRefused) {
  ASSERT_OK_AND_ASSIGN(auto s, table_.Open("c", absl::Hours(5)));
  EXPECT_EQ(s.expires_at, clock_.Now() + absl::Minutes(10));
  EXPECT_THAT(table_.Open("c", absl::Seconds(-1)).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
}

TEST_F(SessionTableTest, SessionLapsesAfterItsTtlWithoutUse) {
  ASSERT_OK_AND_ASSIGN(auto s, table_.Open("c", absl::ZeroDuration()));
  clock_.Advance(absl::Seconds(29));
  EXPECT_TRUE(lapsed_.empty());
  clock_.Advance(absl::Seconds(1));
  EXPECT_THAT(lapsed_, ElementsAre(s.id));
  EXPECT_THAT(table_.Authenticate(s.id, s.token),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("not open")));
}

TEST_F(SessionTableTest, EveryAuthenticatedCallRenews) {
  ASSERT_OK_AND_ASSIGN(auto s, table_.Open("c", absl::ZeroDuration()));
  for (int i = 0; i < 5; ++i) {
    clock_.Advance(absl::Seconds(20));
    ASSERT_OK(table_.Authenticate(s.id, s.token).status());
  }
  EXPECT_TRUE(lapsed_.empty());
  clock_.Advance(absl::Seconds(30));
  EXPECT_THAT(lapsed_, ElementsAre(s.id));
}

TEST_F(SessionTableTest, WatchedSessionNeverLapsesAndRestartsItsTtlWhenUnwatched) {
  ASSERT_OK_AND_ASSIGN(auto s, table_.Open("c", absl::ZeroDuration()));
  table_.AddWatcher(s.id);
  clock_.Advance(absl::Hours(1));
  EXPECT_TRUE(lapsed_.empty());
  table_.RemoveWatcher(s.id);
  clock_.Advance(absl::Seconds(29));
  EXPECT_TRUE(lapsed_.empty());
  clock_.Advance(absl::Seconds(1));
  EXPECT_THAT(lapsed_, ElementsAre(s.id));
}

TEST_F(SessionTableTest, ClosedSessionIsGone) {
  ASSERT_OK_AND_ASSIGN(auto s, table_.Open("c", absl::ZeroDuration()));
  ASSERT_OK(table_.Close(s.id));
  EXPECT_THAT(table_.Close(s.id), StatusIs(absl::StatusCode::kNotFound, ::testing::_));
  EXPECT_FALSE(table_.Authenticate(s.id, s.token).ok());
  EXPECT_EQ(table_.size(), 0u);
}

TEST_F(SessionTableTest, TokensAreDistinct128BitHex) {
  ASSERT_OK_AND_ASSIGN(auto a, table_.Open("a", absl::ZeroDuration()));
  ASSERT_OK_AND_ASSIGN(auto b, table_.Open("b", absl::ZeroDuration()));
  EXPECT_EQ(a.token.size(), 32u);
  EXPECT_NE(a.token, b.token);
  EXPECT_NE(a.id, b.id);
}

}  // namespace
}  // namespace pinbroker::broker
