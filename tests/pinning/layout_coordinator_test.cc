// LayoutCoordinator, driven through PinService on a real file in a temporary directory with a
// fake backend: every policy path, affected-page arithmetic, serialization, and races between
// pins and layout changes. Time is simulated; threads that wait are observed with
// WaitForWaiters() before time moves.
#include "pinning/layout_coordinator.h"

#include <algorithm>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/engine_fixture.h"
#include "tests/testing/log_capture.h"

namespace pinbroker {
namespace {

using ::pinbroker::testing::Async;
using ::pinbroker::testing::FakeBackend;
using ::pinbroker::testing::LogCapture;
using ::pinbroker::testing::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using Kind = FakeBackend::Call::Kind;
using Result = absl::StatusOr<LayoutResult>;

class LayoutCoordinatorTest : public ::pinbroker::testing::EngineTest {
 protected:
  Result Truncate(uint64_t size, std::optional<LayoutPolicy> policy) {
    return service_->Truncate(Layout(policy), size);
  }
  Result Punch(uint64_t offset, uint64_t length, std::optional<LayoutPolicy> policy) {
    return service_->PunchHole(Layout(policy), offset, length);
  }
  bool Live(LeaseId id) {
    for (const auto& l : service_->ListLeases({})) {
      if (l.id == id) return true;
    }
    return false;
  }
};

// --- refuse ---

TEST_F(LayoutCoordinatorTest, RefuseFailsNamingTheBusyLeasesAndChangesNothing) {
  LeaseInfo lease = PinPages(5, 2, "session-9");
  EXPECT_THAT(Truncate(2 * page_, LayoutPolicy::kRefuse),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr(absl::StrCat("lease ", lease.id)), HasSubstr("session-9"),
                             HasSubstr("defer or revoke"))));
  EXPECT_EQ(FileSize(), kPages * page_);
  EXPECT_TRUE(Live(lease.id));
  EXPECT_EQ(backend_.held(), 1u);
  // The block was lifted: pins in the range work again.
  EXPECT_OK(service_->Pin(Request(6 * page_, 1)));
}

TEST_F(LayoutCoordinatorTest, RefuseAppliesWhenNothingIsPinnedThere) {
  PinPages(0, 2);
  ASSERT_OK_AND_ASSIGN(LayoutResult r, Truncate(2 * page_, LayoutPolicy::kRefuse));
  EXPECT_EQ(FileSize(), 2 * page_);
  EXPECT_EQ(r.size_before, kPages * page_);
  EXPECT_EQ(r.size_after, 2 * page_);
  EXPECT_EQ(r.affected, (PageRange{2, kPageRangeToInfinity}));
}

// --- defer ---

TEST_F(LayoutCoordinatorTest, DeferReturnsOnlyAfterTheLeaseIsReleased) {
  LeaseInfo lease = PinPages(4, 1);
  Async<Result> truncate([&] { return Truncate(page_, LayoutPolicy::kDefer); });
  clock_.WaitForWaiters(1);
  EXPECT_EQ(FileSize(), kPages * page_);  // Still waiting: nothing applied.
  ASSERT_OK(service_->Release("s1", lease.id));
  ASSERT_OK(truncate.get().status());
  EXPECT_THAT(truncate.get()->released, ElementsAre(lease.id));
  EXPECT_THAT(truncate.get()->recalled, IsEmpty());
  EXPECT_THAT(truncate.get()->revoked, IsEmpty());
  EXPECT_EQ(FileSize(), page_);
}

TEST_F(LayoutCoordinatorTest, DeferSendsNoRecall) {
  LeaseInfo lease = PinPages(4, 1);
  auto watch = service_->Watch("s1");
  Async<Result> truncate([&] { return Truncate(page_, LayoutPolicy::kDefer); });
  clock_.WaitForWaiters(1);
  EXPECT_FALSE(watch.events->TryNext().has_value());
  ASSERT_OK(service_->Release("s1", lease.id));
  ASSERT_OK(truncate.get().status());
}

TEST_F(LayoutCoordinatorTest, DeferGivesUpAtTheDeadlineAndLeavesFileAndLeaseAlone) {
  LeaseInfo lease = PinPages(4, 1);
  LayoutRequest request = Layout(LayoutPolicy::kDefer);
  request.timeout = absl::Seconds(10);
  Async<Result> truncate([&] { return service_->Truncate(request, page_); });
  clock_.WaitForWaiters(1);
  clock_.Advance(absl::Seconds(10));
  EXPECT_THAT(truncate.get(),
              StatusIs(absl::StatusCode::kDeadlineExceeded,
                       AllOf(HasSubstr(absl::StrCat("lease ", lease.id)), HasSubstr("unchanged"))));
  EXPECT_EQ(FileSize(), kPages * page_);
  EXPECT_TRUE(Live(lease.id));
  ASSERT_OK_AND_ASSIGN(FileDescription d, service_->DescribeFile("exp", "data"));
  EXPECT_THAT(d.blocked, IsEmpty());
}

TEST_F(LayoutCoordinatorTest, DeferCountsAnExpiryAsDrained) {
  LeaseInfo lease = PinPages(4, 1);  // TTL 60 s; layout timeout 30 s.
  LayoutRequest request = Layout(LayoutPolicy::kDefer);
  request.timeout = absl::Seconds(90);
  Async<Result> truncate([&] { return service_->Truncate(request, page_); });
  clock_.WaitForWaiters(1);
  clock_.Advance(absl::Seconds(60));
  ASSERT_OK(truncate.get().status());
  EXPECT_THAT(truncate.get()->expired, ElementsAre(lease.id));
  EXPECT_EQ(FileSize(), page_);
}

// --- revoke ---

TEST_F(LayoutCoordinatorTest, RevokeRecallsWithTheGraceDeadline) {
  LeaseInfo lease = PinPages(4, 1);
  auto watch = service_->Watch("s1");
  Async<Result> truncate([&] { return Truncate(page_, LayoutPolicy::kRevoke); });
  clock_.WaitForWaiters(1);
  ASSERT_OK_AND_ASSIGN(LeaseEvent recall, watch.events->Next(absl::InfinitePast()));
  EXPECT_EQ(recall.type, LeaseEvent::Type::kRecalled);
  EXPECT_EQ(recall.lease.id, lease.id);
  EXPECT_EQ(recall.lease.state, LeaseState::kRecalling);
  EXPECT_EQ(recall.lease.recall_deadline, clock_.Now() + absl::Seconds(5));
  EXPECT_THAT(recall.lease.reason, HasSubstr("truncate"));
  // Recalling leases cannot be renewed.
  EXPECT_THAT(service_->Renew("s1", lease.id, absl::Seconds(10)),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("recalled")));
  ASSERT_OK(service_->Release("s1", lease.id));
  ASSERT_OK(truncate.get().status());
}

TEST_F(LayoutCoordinatorTest, RevokeFinishesEarlyWhenTheHolderReleases) {
  LeaseInfo lease = PinPages(4, 1);
  Async<Result> truncate([&] { return Truncate(page_, LayoutPolicy::kRevoke); });
  clock_.WaitForWaiters(1);
  ASSERT_OK(service_->Release("s1", lease.id));
  ASSERT_OK(truncate.get().status());
  EXPECT_THAT(truncate.get()->recalled, ElementsAre(lease.id));
  EXPECT_THAT(truncate.get()->released, ElementsAre(lease.id));
  EXPECT_THAT(truncate.get()->revoked, IsEmpty());
  EXPECT_EQ(backend_.count(Kind::kRevoke), 0u);
  EXPECT_EQ(truncate.get()->waited, absl::ZeroDuration());
  EXPECT_EQ(FileSize(), page_);
}

TEST_F(LayoutCoordinatorTest, RevokeWaitsForGraceThenInvalidates) {
  LeaseInfo lease = PinPages(4, 1);
  auto watch = service_->Watch("s1");
  Async<Result> truncate([&] { return Truncate(page_, LayoutPolicy::kRevoke); });
  clock_.WaitForWaiters(1);
  clock_.Advance(absl::Seconds(4));
  EXPECT_EQ(backend_.count(Kind::kRevoke), 0u);
  EXPECT_EQ(FileSize(), kPages * page_);
  clock_.Advance(absl::Seconds(1));
  ASSERT_OK(truncate.get().status());
  EXPECT_THAT(truncate.get()->revoked, ElementsAre(lease.id));
  EXPECT_EQ(backend_.count(Kind::kRevoke), 1u);
  EXPECT_EQ(FileSize(), page_);
  std::vector<LeaseEvent::Type> types;
  while (auto e = watch.events->TryNext()) types.push_back((*e)->type);
  EXPECT_THAT(types, ElementsAre(LeaseEvent::Type::kRecalled, LeaseEvent::Type::kRevoked));
  EXPECT_THAT(service_->Release("s1", lease.id),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("revoked")));
}

TEST_F(LayoutCoordinatorTest, RevokeUsesTheRequestGraceOverTheExportDefault) {
  PinPages(4, 1);
  LayoutRequest request = Layout(LayoutPolicy::kRevoke);
  request.grace = absl::Seconds(1);
  Async<Result> truncate([&] { return service_->Truncate(request, page_); });
  clock_.WaitForWaiters(1);
  clock_.Advance(absl::Seconds(1));
  ASSERT_OK(truncate.get().status());
  EXPECT_EQ(truncate.get()->revoked.size(), 1u);
}

TEST_F(LayoutCoordinatorTest, RevokeWithZeroGraceInvalidatesAtOnce) {
  LeaseInfo lease = PinPages(4, 1);
  LayoutRequest request = Layout(LayoutPolicy::kRevoke);
  request.grace = absl::ZeroDuration();
  ASSERT_OK_AND_ASSIGN(LayoutResult r, service_->Truncate(request, 0));
  EXPECT_THAT(r.revoked, ElementsAre(lease.id));
  EXPECT_EQ(FileSize(), 0u);
}

TEST_F(LayoutCoordinatorTest, ExportDefaultPolicyAppliesWhenTheRequestHasNone) {
  PinPages(4, 1);
  Async<Result> truncate([&] { return Truncate(page_, std::nullopt); });  // Export: revoke.
  clock_.WaitForWaiters(1);
  clock_.Advance(absl::Seconds(5));
  ASSERT_OK(truncate.get().status());
  EXPECT_EQ(truncate.get()->policy, LayoutPolicy::kRevoke);
  EXPECT_EQ(truncate.get()->revoked.size(), 1u);
}

TEST_F(LayoutCoordinatorTest, RevokeOnlyTouchesLeasesInTheAffectedRange) {
  LeaseInfo kept = PinPages(0, 2, "a");
  LeaseInfo gone = PinPages(3, 1, "b");
  auto watch_a = service_->Watch("a");
  LayoutRequest request = Layout(LayoutPolicy::kRevoke);
  request.grace = absl::ZeroDuration();
  ASSERT_OK_AND_ASSIGN(LayoutResult r, service_->Truncate(request, 2 * page_));
  EXPECT_THAT(r.revoked, ElementsAre(gone.id));
  EXPECT_TRUE(Live(kept.id));
  EXPECT_FALSE(watch_a.events->TryNext().has_value());
}

TEST_F(LayoutCoordinatorTest,
       BackendFailureToRevokeKeepsThosePagesBusyRevokesTheRestChangesNothing) {
  LeaseInfo failing = PinPages(4, 1);
  LeaseInfo other = PinPages(6, 1);
  backend_.FailNextRevoke(absl::UnavailableError("device gone"));
  LayoutRequest request = Layout(LayoutPolicy::kRevoke);
  request.grace = absl::ZeroDuration();
  request.timeout = absl::Seconds(1);
  EXPECT_THAT(service_->Truncate(request, page_),
              StatusIs(absl::StatusCode::kInternal,
                       AllOf(HasSubstr("device gone"), HasSubstr("unchanged"))));
  EXPECT_EQ(FileSize(), kPages * page_);
  EXPECT_FALSE(Live(other.id));  // Overdue like the first: revoked all the same.
  ASSERT_OK_AND_ASSIGN(FileDescription d, service_->DescribeFile("exp", "data"));
  ASSERT_EQ(d.busy.size(), 1u);  // Still protected: the backend may still hold those pages.
  EXPECT_EQ(d.busy[0].lease, failing.id);
  EXPECT_THAT(d.leases, IsEmpty());
}

// --- affected pages ---

TEST_F(LayoutCoordinatorTest, PageHoldingTheNewEndOfFileCountsAsAffected) {
  PinPages(2, 1);
  EXPECT_THAT(Truncate(2 * page_ + 100, LayoutPolicy::kRefuse),
              StatusIs(absl::StatusCode::kFailedPrecondition, ::testing::_));
  EXPECT_OK(Truncate(3 * page_, LayoutPolicy::kRefuse).status());
}

TEST_F(LayoutCoordinatorTest, GrowingCountsTheOldLastPage) {
  ASSERT_OK(Truncate(3 * page_ + 50, LayoutPolicy::kRefuse).status());
  ASSERT_OK(service_->Pin(Request(3 * page_, 50)).status());  // The partial last page.
  EXPECT_THAT(Truncate(10 * page_, LayoutPolicy::kRefuse),
              StatusIs(absl::StatusCode::kFailedPrecondition, ::testing::_));
  ASSERT_OK_AND_ASSIGN(LayoutResult r, Truncate(3 * page_ + 50, LayoutPolicy::kRefuse));
  EXPECT_TRUE(r.affected.empty());  // Same size: nothing affected.
}

TEST_F(LayoutCoordinatorTest, PunchCountsPartialPagesAtBothEdges) {
  LeaseInfo left = PinPages(1, 1, "left");
  LeaseInfo right = PinPages(3, 1, "right");
  LeaseInfo outside = PinPages(5, 1, "outside");
  auto status = Punch(2 * page_ - 1, page_ + 2, LayoutPolicy::kRefuse).status();
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kFailedPrecondition,
                               AllOf(HasSubstr(absl::StrCat("lease ", left.id)),
                                     HasSubstr(absl::StrCat("lease ", right.id)))));
  EXPECT_THAT(std::string(status.message()),
              ::testing::Not(HasSubstr(absl::StrCat("lease ", outside.id, " "))));
}

TEST_F(LayoutCoordinatorTest, PunchKeepsTheSizeAndReportsTheAffectedPages) {
  ASSERT_OK_AND_ASSIGN(LayoutResult r, Punch(page_ + 1, page_, LayoutPolicy::kRefuse));
  EXPECT_EQ(r.affected, (PageRange{1, 3}));
  EXPECT_EQ(r.size_after, kPages * page_);
  EXPECT_EQ(FileSize(), kPages * page_);
}

// --- bad input ---

TEST_F(LayoutCoordinatorTest, PunchAtOrPastEndOfFileIsOutOfRange) {
  EXPECT_THAT(Punch(kPages * page_, 1, LayoutPolicy::kRevoke),
              StatusIs(absl::StatusCode::kOutOfRange, HasSubstr("nothing to punch")));
}

TEST_F(LayoutCoordinatorTest, PunchWithZeroOrOverflowingLengthIsInvalidArgument) {
  EXPECT_THAT(Punch(0, 0, LayoutPolicy::kRevoke),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("positive")));
  EXPECT_THAT(Punch(page_, ~uint64_t{0}, LayoutPolicy::kRevoke),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("largest file offset")));
}

TEST_F(LayoutCoordinatorTest, TruncateBeyondTheLargestOffsetIsInvalidArgument) {
  EXPECT_THAT(Truncate(~uint64_t{0}, LayoutPolicy::kRevoke),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("largest file offset")));
  EXPECT_EQ(FileSize(), kPages * page_);
}

TEST_F(LayoutCoordinatorTest, LayoutChangesOnReadOnlyExportsArePermissionDenied) {
  LayoutRequest request = Layout(LayoutPolicy::kRevoke);
  request.export_name = "ro";
  EXPECT_THAT(service_->Truncate(request, 0),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("read-only")));
  EXPECT_EQ(FileSize(), kPages * page_);
}

// --- concurrency with pins and other changes ---

TEST_F(LayoutCoordinatorTest, PinsInsideABlockedRangeFailWithAbortedOthersProceed) {
  LeaseInfo lease = PinPages(4, 1);
  Async<Result> truncate([&] { return Truncate(2 * page_, LayoutPolicy::kDefer); });
  clock_.WaitForWaiters(1);
  EXPECT_THAT(
      service_->Pin(Request(5 * page_, 1)),
      StatusIs(absl::StatusCode::kAborted, AllOf(HasSubstr("truncate"), HasSubstr("retry"))));
  EXPECT_OK(service_->Pin(Request(0, page_)));  // Unaffected range: not held up.
  ASSERT_OK_AND_ASSIGN(FileDescription d, service_->DescribeFile("exp", "data"));
  ASSERT_EQ(d.blocked.size(), 1u);
  EXPECT_EQ(d.blocked[0].range, (PageRange{2, kPageRangeToInfinity}));
  EXPECT_THAT(d.blocked[0].reason, HasSubstr("defer"));
  ASSERT_OK(service_->Release("s1", lease.id));
  ASSERT_OK(truncate.get().status());
}

TEST_F(LayoutCoordinatorTest, WaitingPinProceedsAfterTheChangeWhenStillInRange) {
  LeaseInfo lease = PinPages(3, 1);
  Async<Result> truncate([&] { return Truncate(3 * page_ + 100, LayoutPolicy::kDefer); });
  clock_.WaitForWaiters(1);
  PinRequest survives = Request(3 * page_, 50);
  survives.wait_if_blocked = absl::Seconds(30);
  PinRequest cut_off = Request(5 * page_, 50);
  cut_off.wait_if_blocked = absl::Seconds(30);
  Async<absl::StatusOr<LeaseInfo>> pin_ok([&] { return service_->Pin(survives); });
  Async<absl::StatusOr<LeaseInfo>> pin_gone([&] { return service_->Pin(cut_off); });
  clock_.WaitForWaiters(3);
  ASSERT_OK(service_->Release("s1", lease.id));
  ASSERT_OK(truncate.get().status());
  EXPECT_OK(pin_ok.get().status());
  EXPECT_THAT(pin_gone.get(), StatusIs(absl::StatusCode::kOutOfRange, HasSubstr("end of file")));
}

TEST_F(LayoutCoordinatorTest, PinBeingSetUpWhenABlockArrivesIsAbortedAndUndone) {
  Async<Result>* truncate = nullptr;
  backend_.SetPinHook([&](const PinSpec&) {
    // The backend is mid-pin: a truncate over the range starts and waits for it to drain.
    truncate = new Async<Result>([&] { return Truncate(0, LayoutPolicy::kDefer); });
    clock_.WaitForWaiters(1);
  });
  EXPECT_THAT(service_->Pin(Request(page_, page_)),
              StatusIs(absl::StatusCode::kAborted, HasSubstr("retry the pin")));
  backend_.SetPinHook(nullptr);
  ASSERT_NE(truncate, nullptr);
  ASSERT_OK(truncate->get().status());
  delete truncate;
  EXPECT_EQ(backend_.held(), 0u);
  EXPECT_EQ(backend_.count(Kind::kRelease), 1u);
  EXPECT_THAT(service_->ListLeases({}), IsEmpty());
  EXPECT_EQ(FileSize(), 0u);
}

TEST_F(LayoutCoordinatorTest, SecondChangeOnTheFileWaitsForTheFirst) {
  LeaseInfo lease = PinPages(4, 1);
  Async<Result> first([&] { return Truncate(2 * page_, LayoutPolicy::kDefer); });
  clock_.WaitForWaiters(1);
  Async<Result> second([&] { return Punch(0, page_, LayoutPolicy::kRefuse); });
  clock_.WaitForWaiters(2);
  ASSERT_OK(service_->Release("s1", lease.id));
  ASSERT_OK(first.get().status());
  ASSERT_OK(second.get().status());
  EXPECT_EQ(FileSize(), 2 * page_);
}

TEST_F(LayoutCoordinatorTest, QueuedChangeGivesUpAtItsDeadline) {
  LeaseInfo lease = PinPages(4, 1);
  Async<Result> first([&] { return Truncate(2 * page_, LayoutPolicy::kDefer); });
  clock_.WaitForWaiters(1);
  LayoutRequest request = Layout(LayoutPolicy::kRefuse);
  request.timeout = absl::Seconds(2);
  Async<Result> second([&] { return service_->PunchHole(request, 0, page_); });
  clock_.WaitForWaiters(2);
  clock_.Advance(absl::Seconds(2));
  EXPECT_THAT(second.get(),
              StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("another layout change")));
  ASSERT_OK(service_->Release("s1", lease.id));
  ASSERT_OK(first.get().status());
}

TEST_F(LayoutCoordinatorTest, RevocationIsLoggedWithTheLeaseThePathAndTheReason) {
  LogCapture log;
  LeaseInfo lease = PinPages(4, 1, "session-7");
  LayoutRequest request = Layout(LayoutPolicy::kRevoke);
  request.grace = absl::ZeroDuration();
  ASSERT_OK(service_->Truncate(request, page_).status());
  const std::string id = absl::StrCat("lease ", lease.id, " ");
  EXPECT_GT(log.Count({absl::StrCat("recalled 1 lease (lease ", lease.id, "): owner=session-7"),
                       "path=data", "truncate"}),
            0u);
  EXPECT_GT(log.Count({id + "revoked", "path=data", "session-7", "grace period"}), 0u);
  EXPECT_GT(log.Count({"layout truncate", "revoked [" + std::to_string(lease.id) + "]"}), 0u);
}

TEST_F(LayoutCoordinatorTest, AFanOutLogsOneRecallLinePerOwnerAndOneEndLinePerLease) {
  LogCapture log;
  std::vector<LeaseId> many;
  for (uint64_t page = 0; page < 6; ++page) many.push_back(PinPages(page, 1, "many").id);
  const LeaseId one = PinPages(7, 1, "one").id;
  LayoutRequest request = Layout(LayoutPolicy::kRevoke);
  request.grace = absl::ZeroDuration();
  ASSERT_OK(service_->Truncate(request, 0).status());
  EXPECT_EQ(log.Count({"] recalled "}), 2u);  // Not the change's own line, "recalled [...]".
  EXPECT_EQ(
      log.Count({absl::StrCat("recalled 6 leases (lease ", many[0], ", lease ", many[1], ", lease ",
                              many[2], ", lease ", many[3], " and 2 more): owner=many"),
                 "path=data", "truncate"}),
      1u);
  EXPECT_EQ(log.Count({absl::StrCat("recalled 1 lease (lease ", one, "): owner=one")}), 1u);
  for (LeaseId id : many) {
    EXPECT_EQ(log.Count({absl::StrCat("lease ", id, " revoked")}), 1u) << id;
  }
  EXPECT_EQ(log.Count({absl::StrCat("lease ", one, " revoked")}), 1u);
}

TEST_F(LayoutCoordinatorTest, FileStateIsForgottenAfterTheChange) {
  ASSERT_OK(Truncate(page_, LayoutPolicy::kRevoke).status());
  EXPECT_EQ(service_->tracked_files(), 0u);
}

}  // namespace
}  // namespace pinbroker
