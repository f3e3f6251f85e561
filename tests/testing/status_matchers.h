// gMock matchers for absl::Status and absl::StatusOr, which abseil 20220623 does not ship.
//
//   EXPECT_THAT(s, IsOk());
//   EXPECT_THAT(s, StatusIs(absl::StatusCode::kNotFound, HasSubstr("lease 7")));
//   EXPECT_THAT(or_value, IsOkAndHolds(Field(&LeaseInfo::id, 3)));
//   ASSERT_OK_AND_ASSIGN(auto lease, service.Pin(request));
//
// Thread-safety: n/a.
#pragma once

#include <ostream>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pinbroker::testing {

inline const absl::Status& GetStatus(const absl::Status& s) { return s; }
template <typename T>
const absl::Status& GetStatus(const absl::StatusOr<T>& s) {
  return s.status();
}

MATCHER(IsOk, "is OK") {
  const absl::Status& s = GetStatus(arg);
  if (!s.ok()) *result_listener << "status is " << s;
  return s.ok();
}

MATCHER_P2(StatusIs, code, message_matcher,
           "has code " + absl::StatusCodeToString(code) + " and a message that " +
               ::testing::DescribeMatcher<std::string>(message_matcher)) {
  const absl::Status& s = GetStatus(arg);
  *result_listener << "status is " << s;
  return s.code() == code &&
         ::testing::Matcher<std::string>(message_matcher).Matches(std::string(s.message()));
}

template <typename InnerMatcher>
class IsOkAndHoldsMatcher {
 public:
  explicit IsOkAndHoldsMatcher(InnerMatcher inner) : inner_(std::move(inner)) {}
  template <typename StatusOrT>
  operator ::testing::Matcher<StatusOrT>() const {  // NOLINT: implicit by design.
    using T = typename std::decay_t<StatusOrT>::value_type;
    const ::testing::Matcher<const T&> inner = inner_;
    return ::testing::MakeMatcher(new Impl<StatusOrT, T>(inner));
  }

 private:
  template <typename StatusOrT, typename T>
  class Impl : public ::testing::MatcherInterface<StatusOrT> {
   public:
    explicit Impl(::testing::Matcher<const T&> inner) : inner_(std::move(inner)) {}
    bool MatchAndExplain(StatusOrT v, ::testing::MatchResultListener* l) const override {
      if (!v.ok()) {
        *l << "status is " << v.status();
        return false;
      }
      return inner_.MatchAndExplain(*v, l);
    }
    void DescribeTo(std::ostream* os) const override {
      *os << "is OK and holds a value that ";
      inner_.DescribeTo(os);
    }

   private:
    ::testing::Matcher<const T&> inner_;
  };
  InnerMatcher inner_;
};

template <typename InnerMatcher>
IsOkAndHoldsMatcher<InnerMatcher> IsOkAndHolds(InnerMatcher inner) {
  return IsOkAndHoldsMatcher<InnerMatcher>(std::move(inner));
}

}  // namespace pinbroker::testing

#define PB_TESTING_CONCAT_INNER_(a, b) a##b
#define PB_TESTING_CONCAT_(a, b) PB_TESTING_CONCAT_INNER_(a, b)

#define ASSERT_OK(expr) ASSERT_THAT((expr), ::pinbroker::testing::IsOk())
#define EXPECT_OK(expr) EXPECT_THAT((expr), ::pinbroker::testing::IsOk())
#define ASSERT_OK_AND_ASSIGN(lhs, expr)                                                     \
  auto PB_TESTING_CONCAT_(pb_or_, __LINE__) = (expr);                                       \
  ASSERT_THAT(PB_TESTING_CONCAT_(pb_or_, __LINE__).status(), ::pinbroker::testing::IsOk()); \
  lhs = *std::move(PB_TESTING_CONCAT_(pb_or_, __LINE__))
