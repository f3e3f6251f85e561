// GuardArbiter: each export policy applied to an out-of-band change the guard holds, for a
// caller that can be failed (fanotify) and one that can only be delayed (file-lease breaker).
// A real PinService over a fake backend; time is simulated and threads that wait are observed
// with WaitForWaiters() before time moves.
#include "pinning/guard/guard_arbiter.h"

#include <sys/stat.h>

#include <atomic>
#include <memory>

#include "common/simulated_clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/engine_fixture.h"
#include "tests/testing/fake_backend.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace pinbroker::guard {
namespace {

using ::pinbroker::testing::Async;
using ::pinbroker::testing::FakeBackend;
using ::pinbroker::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;
using Interception = GuardArbiter::Interception;
using Verdict = GuardArbiter::Verdict;

constexpr uint64_t kPages = 8;

class GuardArbiterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_.WriteFile("data", std::string(kPages * page_, 'd'));
    std::vector<ExportOptions> exports;
    for (auto [name, policy] :
         {std::pair{"defer", LayoutPolicy::kDefer}, std::pair{"revoke", LayoutPolicy::kRevoke},
          std::pair{"refuse", LayoutPolicy::kRefuse}}) {
      ExportOptions exp;
      exp.name = name;
      exp.root = dir_.path();
      exp.default_policy = policy;
      exp.grace = absl::Seconds(5);
      exp.layout_timeout = absl::Seconds(30);
      exports.push_back(exp);
    }
    auto service = PinService::Create(&clock_, &backend_, exports);
    ASSERT_TRUE(service.ok()) << service.status();
    service_ = *std::move(service);
    arbiter_ = std::make_unique<GuardArbiter>(service_.get());
  }

  LeaseInfo Pin(const std::string& exp, uint64_t first_page, uint64_t pages) {
    PinRequest r;
    r.owner = "holder";
    r.export_name = exp;
    r.path = "data";
    r.offset = first_page * page_;
    r.length = pages * page_;
    r.access = Access::kReadWrite;
    auto lease = service_->Pin(r);
    EXPECT_TRUE(lease.ok()) << lease.status();
    return lease.ok() ? *lease : LeaseInfo{};
  }

  GuardArbiter::Request Truncate(const std::string& exp, uint64_t new_size,
                                 Interception how = Interception::kCanFail) {
    GuardArbiter::Request r;
    struct stat st;
    EXPECT_EQ(stat(dir_.Join("data").c_str(), &st), 0);
    r.file = FileId{static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino)};
    r.export_name = exp;
    r.change.kind = ClassifiedChange::Kind::kTruncate;
    r.change.new_size = new_size;
    r.change.call = "ftruncate(2)";
    r.size_before = kPages * page_;
    r.actor = "pid 4242 (truncate)";
    r.mechanism = how == Interception::kCanFail ? "fanotify" : "file lease";
    r.interception = how;
    return r;
  }

  GuardArbiter::Request Punch(const std::string& exp, uint64_t offset, uint64_t length) {
    GuardArbiter::Request r = Truncate(exp, 0);
    r.change.kind = ClassifiedChange::Kind::kPunch;
    r.change.offset = offset;
    r.change.length = length;
    r.change.call = "fallocate(2) PUNCH_HOLE";
    return r;
  }

  std::optional<LeaseInfo> Live(LeaseId id) {
    for (const auto& l : service_->ListLeases({})) {
      if (l.id == id) return l;
    }
    return std::nullopt;
  }

  const uint64_t page_ = SystemPageSize();
  SimulatedClock clock_;
  FakeBackend backend_;
  testing::TempDir dir_;
  std::unique_ptr<PinService> service_;
  std::unique_ptr<GuardArbiter> arbiter_;
  std::atomic<int> let_go_{0};
};

// --- fanotify: the caller can be failed ---

TEST_F(GuardArbiterTest, RefuseFailsTheCallerWithEbusyAndKeepsTheLease) {
  const LeaseInfo lease = Pin("refuse", 6, 1);
  const Verdict v = arbiter_->Decide(Truncate("refuse", 2 * page_), [&] { ++let_go_; });
  EXPECT_FALSE(v.allowed);
  EXPECT_EQ(v.error, EBUSY);
  EXPECT_EQ(let_go_, 0);
  EXPECT_THAT(v.summary, AllOf(HasSubstr("out-of-band ftruncate(2) from 32768 to 8192 bytes"),
                               HasSubstr(absl::StrCat("lease ", lease.id))));
  ASSERT_TRUE(Live(lease.id).has_value());
  EXPECT_EQ(Live(lease.id)->state, LeaseState::kGranted);
}

TEST_F(GuardArbiterTest, RefuseLetsChangesThatMissEveryLeaseGo) {
  const LeaseInfo lease = Pin("refuse", 0, 2);
  const Verdict v = arbiter_->Decide(Truncate("refuse", 4 * page_), [&] { ++let_go_; });
  EXPECT_TRUE(v.allowed);
  EXPECT_EQ(let_go_, 1);
  EXPECT_TRUE(Live(lease.id).has_value());
  // A punch beside the lease, too.
  EXPECT_TRUE(arbiter_->Decide(Punch("refuse", 3 * page_, page_), [&] { ++let_go_; }).allowed);
  EXPECT_EQ(let_go_, 2);
}

TEST_F(GuardArbiterTest, DeferHoldsTheCallerUntilTheRangeDrains) {
  const LeaseInfo lease = Pin("defer", 4, 1);
  Async<Verdict> decided(
      [&] { return arbiter_->Decide(Truncate("defer", page_), [&] { ++let_go_; }); });
  clock_.WaitForWaiters(1);
  EXPECT_EQ(let_go_, 0);  // Still held.
  ASSERT_OK(service_->Release("holder", lease.id));
  EXPECT_TRUE(decided.get().allowed);
  EXPECT_EQ(let_go_, 1);
  EXPECT_THAT(decided.get().summary, HasSubstr(absl::StrCat("released [", lease.id, "]")));
}

TEST_F(GuardArbiterTest, DeferFailsTheCallerAtTheLayoutTimeoutLeavingTheLease) {
  const LeaseInfo lease = Pin("defer", 4, 1);
  Async<Verdict> decided(
      [&] { return arbiter_->Decide(Truncate("defer", page_), [&] { ++let_go_; }); });
  clock_.WaitForWaiters(1);
  clock_.Advance(absl::Seconds(30));
  EXPECT_FALSE(decided.get().allowed);
  EXPECT_EQ(decided.get().error, EBUSY);
  EXPECT_EQ(let_go_, 0);
  EXPECT_THAT(decided.get().summary, HasSubstr("deferred until the deadline"));
  EXPECT_EQ(Live(lease.id)->state, LeaseState::kGranted);
}

TEST_F(GuardArbiterTest, RevokeRecallsWaitsTheGraceRevokesThenLetsGo) {
  const LeaseInfo lease = Pin("revoke", 4, 1);
  Async<Verdict> decided(
      [&] { return arbiter_->Decide(Truncate("revoke", page_), [&] { ++let_go_; }); });
  clock_.WaitForWaiters(1);
  ASSERT_TRUE(Live(lease.id).has_value());
  EXPECT_EQ(Live(lease.id)->state, LeaseState::kRecalling);
  EXPECT_THAT(
      Live(lease.id)->reason,
      AllOf(HasSubstr("out-of-band ftruncate(2) from 32768 to 4096 bytes"),
            HasSubstr("policy revoke"), HasSubstr("pid 4242 (truncate), caught by fanotify")));
  EXPECT_EQ(Live(lease.id)->recall_deadline, clock_.Now() + absl::Seconds(5));
  EXPECT_EQ(let_go_, 0);
  clock_.Advance(absl::Seconds(5));
  EXPECT_TRUE(decided.get().allowed);
  EXPECT_EQ(let_go_, 1);
  EXPECT_FALSE(Live(lease.id).has_value());
  EXPECT_FALSE(backend_.IsHeld(lease.id));
  EXPECT_THAT(decided.get().summary, HasSubstr(absl::StrCat("revoked [", lease.id, "]")));
}

TEST_F(GuardArbiterTest, ThePageRangeStaysBlockedWhileTheKernelMakesTheChange) {
  Pin("revoke", 0, 1);
  absl::Status pin_during;
  const Verdict v = arbiter_->Decide(Truncate("revoke", 2 * page_), [&] {
    PinRequest r;
    r.owner = "late";
    r.export_name = "revoke";
    r.path = "data";
    r.offset = 3 * page_;
    r.length = page_;
    pin_during = service_->Pin(r).status();
  });
  EXPECT_TRUE(v.allowed);
  EXPECT_THAT(pin_during, StatusIs(absl::StatusCode::kAborted, HasSubstr("out-of-band")));
}

TEST_F(GuardArbiterTest, PunchAffectsOnlyOverlappingLeasesIncludingPartialEdgePages) {
  const LeaseInfo before = Pin("refuse", 0, 1);
  const LeaseInfo edge = Pin("refuse", 2, 1);
  const LeaseInfo after = Pin("refuse", 5, 1);
  // Bytes [page+1, 2*page+1) touch pages 1 and 2: lease `edge` is in the way.
  EXPECT_FALSE(arbiter_->Decide(Punch("refuse", page_ + 1, page_), [&] { ++let_go_; }).allowed);
  EXPECT_TRUE(arbiter_->Decide(Punch("refuse", page_, page_), [&] { ++let_go_; }).allowed);
  EXPECT_EQ(let_go_, 1);
  EXPECT_TRUE(Live(before.id) && Live(edge.id) && Live(after.id));
}

// --- file lease: the caller can only be delayed ---

TEST_F(GuardArbiterTest, LeaseBreakUnderRefuseRevokesAtOnceAndLetsGo) {
  const LeaseInfo lease = Pin("refuse", 4, 1);
  const Verdict v =
      arbiter_->Decide(Truncate("refuse", 0, Interception::kDelayOnly), [&] { ++let_go_; });
  EXPECT_TRUE(v.allowed);
  EXPECT_EQ(let_go_, 1);
  EXPECT_FALSE(Live(lease.id).has_value());
  EXPECT_THAT(v.summary, HasSubstr("refuse cannot fail a file-lease breaker"));
}

TEST_F(GuardArbiterTest, LeaseBreakUnderDeferWaitsUntilTheBreakBudgetThenRevokes) {
  const LeaseInfo lease = Pin("defer", 4, 1);
  GuardArbiter::Request r = Truncate("defer", 0, Interception::kDelayOnly);
  r.answer_by = clock_.Now() + absl::Seconds(45);  // lease-break-time
  Async<Verdict> decided([&] { return arbiter_->Decide(r, [&] { ++let_go_; }); });
  clock_.WaitForWaiters(1);
  // The layout timeout (30 s) is within the budget (45 s - 5 s margin): defer waits 30 s.
  clock_.Advance(absl::Seconds(29));
  EXPECT_EQ(let_go_, 0);
  EXPECT_EQ(Live(lease.id)->state, LeaseState::kGranted);
  clock_.Advance(absl::Seconds(1));
  EXPECT_TRUE(decided.get().allowed);
  EXPECT_EQ(let_go_, 1);
  EXPECT_FALSE(Live(lease.id).has_value());
  EXPECT_THAT(decided.get().summary, HasSubstr("defer gave up"));
}

TEST_F(GuardArbiterTest, LeaseBreakUnderDeferIsCutToTheBreakBudget) {
  const LeaseInfo lease = Pin("defer", 4, 1);
  GuardArbiter::Request r = Truncate("defer", 0, Interception::kDelayOnly);
  r.answer_by = clock_.Now() + absl::Seconds(15);  // A short lease-break-time.
  Async<Verdict> decided([&] { return arbiter_->Decide(r, [&] { ++let_go_; }); });
  clock_.WaitForWaiters(1);
  clock_.Advance(absl::Seconds(10));  // 15 s - 5 s margin.
  EXPECT_TRUE(decided.get().allowed);
  EXPECT_FALSE(Live(lease.id).has_value());
}

TEST_F(GuardArbiterTest, LeaseBreakUnderRevokeCutsTheGraceToTheBudget) {
  const LeaseInfo lease = Pin("revoke", 4, 1);
  GuardArbiter::Request r = Truncate("revoke", 0, Interception::kDelayOnly);
  r.answer_by = clock_.Now() + absl::Seconds(7);  // Budget 2 s < grace 5 s.
  Async<Verdict> decided([&] { return arbiter_->Decide(r, [&] { ++let_go_; }); });
  clock_.WaitForWaiters(1);
  EXPECT_EQ(Live(lease.id)->recall_deadline, clock_.Now() + absl::Seconds(2));
  EXPECT_THAT(Live(lease.id)->reason, HasSubstr("caught by file lease"));
  clock_.Advance(absl::Seconds(2));
  EXPECT_TRUE(decided.get().allowed);
  EXPECT_EQ(let_go_, 1);
  EXPECT_FALSE(Live(lease.id).has_value());
}

TEST_F(GuardArbiterTest, LeaseBreakReleasedDuringTheGraceGoesAheadEarly) {
  const LeaseInfo lease = Pin("revoke", 4, 1);
  GuardArbiter::Request r = Truncate("revoke", 0, Interception::kDelayOnly);
  r.answer_by = clock_.Now() + absl::Seconds(45);
  Async<Verdict> decided([&] { return arbiter_->Decide(r, [&] { ++let_go_; }); });
  clock_.WaitForWaiters(1);
  ASSERT_OK(service_->Release("holder", lease.id));
  EXPECT_TRUE(decided.get().allowed);
  EXPECT_THAT(decided.get().summary, HasSubstr(absl::StrCat("released [", lease.id, "]")));
}

TEST(GuardArbiterDescribe, NamesTheChange) {
  ClassifiedChange c;
  c.kind = ClassifiedChange::Kind::kPunch;
  c.offset = 4096;
  c.length = 8192;
  c.call = "fallocate(2) PUNCH_HOLE";
  EXPECT_EQ(GuardArbiter::Describe(c, 65536),
            "out-of-band fallocate(2) PUNCH_HOLE of bytes [4096, 12288)");
  c.kind = ClassifiedChange::Kind::kShift;
  c.call = "fallocate(2) COLLAPSE_RANGE";
  EXPECT_EQ(GuardArbiter::Describe(c, 65536),
            "out-of-band fallocate(2) COLLAPSE_RANGE from byte 4096");
}

}  // namespace
}  // namespace pinbroker::guard
