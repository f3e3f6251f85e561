#include "pinning/lease_table.h"

#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/simulated_clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pinning/event_queue.h"
#include "pinning/lease.h"
#include "tests/testing/status_matchers.h"

namespace pinbroker {
namespace {

using ::pinbroker::testing::IsOkAndHolds;
using ::pinbroker::testing::StatusIs;
using ::testing::_;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::Field;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::Optional;

constexpr absl::Duration kTtl = absl::Seconds(10);
const FileId kFileA{1, 100};
const FileId kFileB{1, 200};

// The ids of `leases`, in order.
std::vector<LeaseId> Ids(const std::vector<LeaseInfo>& leases) {
  std::vector<LeaseId> ids;
  for (const LeaseInfo& lease : leases) ids.push_back(lease.id);
  return ids;
}

// Takes every event queued in `queue` without waiting, as "type:id"
// ("granted:3"); a queue error ends the list as its code name
// ("RESOURCE_EXHAUSTED").
std::vector<std::string> Drain(EventQueue& queue) {
  std::vector<std::string> out;
  while (auto next = queue.TryNext()) {
    if (!next->ok()) {
      out.push_back(absl::StatusCodeToString(next->status().code()));
      break;
    }
    out.push_back(absl::StrCat(LeaseEventTypeName((*next)->type), ":", (*next)->lease.id));
  }
  return out;
}

std::string Event(absl::string_view type, LeaseId id) { return absl::StrCat(type, ":", id); }

class LeaseTableTest : public ::testing::Test {
 protected:
  LeaseTableTest() { MakeTable(LeaseTable::Options()); }

  void MakeTable(LeaseTable::Options options) {
    options.page_size = 4096;  // The leases below are in 4 KiB pages.
    table_ = std::make_unique<LeaseTable>(
        &clock_, [this](const LeaseInfo& lease) { OnExpired(lease); }, options);
  }

  // The expiry handler: records the lease and, like the engine, finishes it.
  void OnExpired(const LeaseInfo& lease) {
    bool finish;
    {
      absl::MutexLock lock(&mu_);
      expired_.push_back(lease);
      finish = finish_on_expiry_;
    }
    if (finish) table_->Finish(lease.id);
  }

  std::vector<LeaseInfo> Expired() {
    absl::MutexLock lock(&mu_);
    return expired_;
  }

  void set_finish_on_expiry(bool finish) {
    absl::MutexLock lock(&mu_);
    finish_on_expiry_ = finish;
  }

  // A granted lease with a fresh id, not yet inserted.
  LeaseInfo NewLease(std::string owner, absl::Duration ttl = kTtl,
                     std::string export_name = "scratch", FileId file = kFileA) {
    LeaseInfo lease;
    lease.id = table_->NewId();
    lease.owner = std::move(owner);
    lease.export_name = std::move(export_name);
    lease.path = "data/file.bin";
    lease.file = file;
    lease.pages = PageRange{0, 4};
    lease.offset = 0;
    lease.length = 4 * 4096;
    lease.access = Access::kRead;
    lease.mode = RegistrationMode::kHost;
    lease.state = LeaseState::kGranted;
    lease.granted_at = clock_.Now();
    lease.expires_at = clock_.Now() + ttl;
    return lease;
  }

  // Inserts a new granted lease and returns it.
  LeaseInfo Grant(std::string owner, absl::Duration ttl = kTtl, std::string export_name = "scratch",
                  FileId file = kFileA) {
    LeaseInfo lease = NewLease(std::move(owner), ttl, std::move(export_name), file);
    EXPECT_OK(table_->Insert(lease));
    return lease;
  }

  // Ends `id` by revocation and finishes it.
  void RevokeAndFinish(LeaseId id, std::string reason) {
    EXPECT_OK(table_->BeginRevoke(id, std::move(reason)));
    table_->Finish(id);
  }

  absl::Mutex mu_;
  std::vector<LeaseInfo> expired_ ABSL_GUARDED_BY(mu_);
  bool finish_on_expiry_ ABSL_GUARDED_BY(mu_) = true;
  SimulatedClock clock_;
  std::unique_ptr<LeaseTable> table_;  // Last: destroyed before the clock and the handler state.
};

// --- NewId ---

TEST_F(LeaseTableTest, NewIdReturnsUniqueIncreasingNonZeroIds) {
  LeaseId previous = 0;
  for (int i = 0; i < 100; ++i) {
    const LeaseId id = table_->NewId();
    EXPECT_GT(id, previous);
    previous = id;
  }
}

// --- Insert ---

TEST_F(LeaseTableTest, InsertMakesTheLeaseLive) {
  const LeaseInfo lease = Grant("alice");
  ASSERT_OK_AND_ASSIGN(const LeaseInfo got, table_->Get(lease.id));
  EXPECT_EQ(got.id, lease.id);
  EXPECT_EQ(got.owner, "alice");
  EXPECT_EQ(got.state, LeaseState::kGranted);
  EXPECT_EQ(got.expires_at, lease.expires_at);
  EXPECT_EQ(table_->live_count(), 1u);
}

TEST_F(LeaseTableTest, ALeaseReadsBackAsInserted) {
  LeaseInfo lease = NewLease("alice");
  lease.pages = PageRange{3, 10};
  lease.offset = 3 * 4096;
  lease.length = 7 * 4096;
  lease.granted_at = clock_.Now() + absl::Nanoseconds(17);
  lease.expires_at = lease.granted_at + absl::Seconds(30);
  lease.access = Access::kReadWrite;
  lease.guards_layout = false;
  ASSERT_OK(table_->Insert(lease));
  ASSERT_OK(table_->Recall(lease.id, "truncate", clock_.Now() + absl::Seconds(5)).status());
  ASSERT_OK_AND_ASSIGN(const LeaseInfo got, table_->Get(lease.id));
  EXPECT_EQ(got.owner, "alice");
  EXPECT_EQ(got.export_name, "scratch");
  EXPECT_EQ(got.path, "data/file.bin");
  EXPECT_EQ(got.file, kFileA);
  EXPECT_EQ(got.pages, (PageRange{3, 10}));
  EXPECT_EQ(got.offset, 3u * 4096);
  EXPECT_EQ(got.length, 7u * 4096);
  EXPECT_EQ(got.granted_at, lease.granted_at);
  EXPECT_EQ(got.expires_at, lease.expires_at);
  EXPECT_EQ(got.recall_deadline, clock_.Now() + absl::Seconds(5));
  EXPECT_EQ(got.state, LeaseState::kRecalling);
  EXPECT_EQ(got.reason, "truncate");
  EXPECT_EQ(got.access, Access::kReadWrite);
  EXPECT_FALSE(got.guards_layout);
}

TEST_F(LeaseTableTest, InsertRejectsBytesThatAreNotItsPages) {
  LeaseInfo lease = NewLease("alice");
  lease.length = 4 * 4096 - 1;
  EXPECT_THAT(table_->Insert(lease),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not its pages")));
  lease.length = 4 * 4096;
  EXPECT_OK(table_->Insert(lease));  // The id is still usable: nothing was taken.
}

TEST_F(LeaseTableTest, InsertEmitsGrantedToTheOwnersSubscriber) {
  auto alice = table_->Subscribe("alice");
  const LeaseInfo lease = Grant("alice");
  auto next = alice.events->TryNext();
  ASSERT_TRUE(next.has_value());
  ASSERT_OK_AND_ASSIGN(const LeaseEvent event, *next);
  EXPECT_EQ(event.type, LeaseEvent::Type::kGranted);
  EXPECT_EQ(event.lease.id, lease.id);
  EXPECT_EQ(event.lease.state, LeaseState::kGranted);
  EXPECT_EQ(event.at, clock_.Now());
}

TEST_F(LeaseTableTest, InsertEmitsGrantedToEverySubscriberOfTheOwner) {
  auto first = table_->Subscribe("alice");
  auto second = table_->Subscribe("alice");
  const LeaseInfo lease = Grant("alice");
  EXPECT_THAT(Drain(*first.events), ElementsAre(Event("granted", lease.id)));
  EXPECT_THAT(Drain(*second.events), ElementsAre(Event("granted", lease.id)));
}

TEST_F(LeaseTableTest, InsertDoesNotNotifyOtherOwners) {
  auto bob = table_->Subscribe("bob");
  Grant("alice");
  EXPECT_THAT(Drain(*bob.events), IsEmpty());
}

TEST_F(LeaseTableTest, InsertRejectsANonGrantedLease) {
  auto alice = table_->Subscribe("alice");
  LeaseInfo lease = NewLease("alice");
  lease.state = LeaseState::kRecalling;
  EXPECT_THAT(table_->Insert(lease), StatusIs(absl::StatusCode::kFailedPrecondition, _));
  EXPECT_THAT(table_->Get(lease.id), StatusIs(absl::StatusCode::kNotFound, _));
  EXPECT_THAT(Drain(*alice.events), IsEmpty());
}

TEST_F(LeaseTableTest, InsertRejectsAnIdNotIssuedByNewId) {
  LeaseInfo lease = NewLease("alice");
  lease.id += 1000;
  EXPECT_THAT(table_->Insert(lease), StatusIs(absl::StatusCode::kFailedPrecondition, _));
  EXPECT_EQ(table_->live_count(), 0u);
}

TEST_F(LeaseTableTest, InsertRejectsIdZero) {
  LeaseInfo lease = NewLease("alice");
  lease.id = 0;
  EXPECT_THAT(table_->Insert(lease), StatusIs(absl::StatusCode::kFailedPrecondition, _));
}

TEST_F(LeaseTableTest, InsertRejectsTheIdOfALiveLease) {
  const LeaseInfo lease = Grant("alice");
  LeaseInfo again = lease;
  again.owner = "bob";
  EXPECT_THAT(table_->Insert(again), StatusIs(absl::StatusCode::kFailedPrecondition, _));
  ASSERT_OK_AND_ASSIGN(const LeaseInfo got, table_->Get(lease.id));
  EXPECT_EQ(got.owner, "alice");
}

TEST_F(LeaseTableTest, InsertRejectsTheIdOfAnEndingLease) {
  const LeaseInfo lease = Grant("alice");
  ASSERT_OK(table_->BeginRelease("alice", lease.id));
  EXPECT_THAT(table_->Insert(lease), StatusIs(absl::StatusCode::kFailedPrecondition, _));
}

TEST_F(LeaseTableTest, InsertRejectsTheIdOfARetiredLease) {
  const LeaseInfo lease = Grant("alice");
  ASSERT_OK(table_->BeginRelease("alice", lease.id));
  table_->Finish(lease.id);
  EXPECT_THAT(table_->Insert(lease), StatusIs(absl::StatusCode::kFailedPrecondition, _));
  EXPECT_EQ(table_->live_count(), 0u);
}

// Regression: the reuse check used to rely on tombstones, which are bounded.
TEST_F(LeaseTableTest, InsertRejectsARetiredIdEvenAfterItsTombstoneIsEvicted) {
  LeaseTable::Options options;
  options.tombstones = 1;
  MakeTable(options);
  const LeaseInfo first = Grant("alice");
  const LeaseInfo second = Grant("alice");
  RevokeAndFinish(first.id, "one");
  RevokeAndFinish(second.id, "two");  // Evicts first's tombstone.
  EXPECT_THAT(table_->Insert(first), StatusIs(absl::StatusCode::kFailedPrecondition, _));
  EXPECT_EQ(table_->live_count(), 0u);
}

TEST_F(LeaseTableTest, InsertRejectsADiscardedId) {
  const LeaseInfo lease = NewLease("alice");
  table_->DiscardId(lease.id);
  EXPECT_THAT(table_->Insert(lease), StatusIs(absl::StatusCode::kFailedPrecondition, _));
}

TEST_F(LeaseTableTest, SubscribeDropsTheOwnersClosedSubscriptions) {
  auto first = table_->Subscribe("alice");
  auto other = table_->Subscribe("other");
  EXPECT_EQ(table_->subscription_count(), 2u);
  first.events->Close();
  EXPECT_EQ(table_->subscription_count(), 2u);  // Held until alice's next Subscribe or event.
  auto again = table_->Subscribe("alice");
  EXPECT_EQ(table_->subscription_count(), 2u);  // other + the new one; the closed one is gone.
}

TEST_F(LeaseTableTest, ClosedSubscriptionsOfEveryOwnerStayBounded) {
  // Owners that subscribe once, close and never come back: the periodic sweep keeps what the
  // table holds within a constant factor of the open subscriptions.
  auto open = table_->Subscribe("open");
  size_t most = 0;
  for (int i = 0; i < 5000; ++i) {
    auto sub = table_->Subscribe(absl::StrCat("once-", i));
    sub.events->Close();
    most = std::max(most, table_->subscription_count());
  }
  EXPECT_LE(most, LeaseTable::kMinSweepAt + 1);
  EXPECT_GE(table_->subscription_count(), 1u);  // The open one is never dropped.
  EXPECT_FALSE(open.events->closed());
}

// --- Get ---

TEST_F(LeaseTableTest, GetOfAnUnknownLeaseIsNotFound) {
  EXPECT_THAT(table_->Get(12345), StatusIs(absl::StatusCode::kNotFound, _));
}

TEST_F(LeaseTableTest, GetOfAnEndingLeaseIsNotFound) {
  const LeaseInfo lease = Grant("alice");
  ASSERT_OK(table_->BeginRevoke(lease.id, "admin"));
  EXPECT_THAT(table_->Get(lease.id), StatusIs(absl::StatusCode::kNotFound, _));
}

// --- Renew ---

TEST_F(LeaseTableTest, RenewSetsExpiresAtToNowPlusTtl) {
  const LeaseInfo lease = Grant("alice");
  clock_.Advance(absl::Seconds(3));
  EXPECT_THAT(table_->Renew("alice", lease.id, absl::Seconds(20)),
              IsOkAndHolds(Field(&LeaseInfo::expires_at, clock_.Now() + absl::Seconds(20))));
  EXPECT_THAT(table_->Get(lease.id),
              IsOkAndHolds(Field(&LeaseInfo::expires_at, clock_.Now() + absl::Seconds(20))));
}

TEST_F(LeaseTableTest, RenewEmitsNoEvent) {
  auto alice = table_->Subscribe("alice");
  const LeaseInfo lease = Grant("alice");
  ASSERT_OK(table_->Renew("alice", lease.id, kTtl));
  EXPECT_THAT(Drain(*alice.events), ElementsAre(Event("granted", lease.id)));
}

TEST_F(LeaseTableTest, RenewByAForeignOwnerIsNotFoundWithoutRevealingTheLease) {
  LeaseInfo lease = NewLease("alice", kTtl, "secret-export");
  lease.path = "private/diary.txt";
  ASSERT_OK(table_->Insert(lease));
  EXPECT_THAT(table_->Renew("bob", lease.id, kTtl),
              StatusIs(absl::StatusCode::kNotFound,
                       AllOf(Not(HasSubstr("alice")), Not(HasSubstr("secret-export")),
                             Not(HasSubstr("diary")), Not(HasSubstr("granted")))));
}

TEST_F(LeaseTableTest, RenewByAForeignOwnerLeavesTheExpiryUnchanged) {
  const LeaseInfo lease = Grant("alice");
  ASSERT_THAT(table_->Renew("bob", lease.id, absl::Hours(1)),
              StatusIs(absl::StatusCode::kNotFound, _));
  EXPECT_THAT(table_->Get(lease.id), IsOkAndHolds(Field(&LeaseInfo::expires_at, lease.expires_at)));
}

TEST_F(LeaseTableTest, RenewOfAnUnknownLeaseIsNotFound) {
  EXPECT_THAT(table_->Renew("alice", 12345, kTtl), StatusIs(absl::StatusCode::kNotFound, _));
}

TEST_F(LeaseTableTest, RenewOfARecallingLeaseFailsWithFailedPrecondition) {
  const LeaseInfo lease = Grant("alice");
  ASSERT_OK(table_->Recall(lease.id, "file truncated", clock_.Now() + absl::Seconds(5)));
  EXPECT_THAT(table_->Renew("alice", lease.id, kTtl),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("file truncated")));
}

TEST_F(LeaseTableTest, RenewOfAnEndingLeaseIsNotFound) {
  const LeaseInfo lease = Grant("alice");
  ASSERT_OK(table_->BeginRelease("alice", lease.id));
  EXPECT_THAT(table_->Renew("alice", lease.id, kTtl), StatusIs(absl::StatusCode::kNotFound, _));
}

// --- Recall ---

TEST_F(LeaseTableTest, RecallMovesAGrantedLeaseToRecallingWithDeadlineAndReason) {
  const LeaseInfo lease = Grant("alice");
  const absl::Time deadline = clock_.Now() + absl::Seconds(5);
  ASSERT_OK_AND_ASSIGN(const LeaseInfo recalled, table_->Recall(lease.id, "truncate", deadline));
  EXPECT_EQ(recalled.state, LeaseState::kRecalling);
  EXPECT_EQ(recalled.recall_deadline, deadline);
  EXPECT_EQ(recalled.reason, "truncate");
  EXPECT_THAT(table_->Get(lease.id),
              IsOkAndHolds(AllOf(Field(&LeaseInfo::state, LeaseState::kRecalling),
                                 Field(&LeaseInfo::recall_deadline, deadline))));
}

TEST_F(LeaseTableTest, RecallEmitsRecalledWithDeadlineAndReason) {
  const LeaseInfo lease = Grant("alice");
  auto alice = table_->Subscribe("alice");
  const absl::Time deadline = clock_.Now() + absl::Seconds(5);
  ASSERT_OK(table_->Recall(lease.id, "truncate", deadline));
  auto next = alice.events->TryNext();
  ASSERT_TRUE(next.has_value());
  ASSERT_OK_AND_ASSIGN(const LeaseEvent event, *next);
  EXPECT_EQ(event.type, LeaseEvent::Type::kRecalled);
  EXPECT_EQ(event.lease.id, lease.id);
  EXPECT_EQ(event.lease.recall_deadline, deadline);
  EXPECT_EQ(event.lease.reason, "truncate");
}

TEST_F(LeaseTableTest, SecondRecallKeepsTheEarlierDeadlineAndReason) {
  const LeaseInfo lease = Grant("alice");
  const absl::Time first_deadline = clock_.Now() + absl::Seconds(5);
  ASSERT_OK(table_->Recall(lease.id, "first", first_deadline));
  EXPECT_THAT(table_->Recall(lease.id, "second", clock_.Now() + absl::Seconds(50)),
              IsOkAndHolds(AllOf(Field(&LeaseInfo::recall_deadline, first_deadline),
                                 Field(&LeaseInfo::reason, "first"))));
}

TEST_F(LeaseTableTest, SecondRecallEmitsNothing) {
  const LeaseInfo lease = Grant("alice");
  ASSERT_OK(table_->Recall(lease.id, "first", clock_.Now() + absl::Seconds(5)));
  auto alice = table_->Subscribe("alice");
  ASSERT_OK(table_->Recall(lease.id, "second", clock_.Now() + absl::Seconds(50)));
  EXPECT_THAT(Drain(*alice.events), IsEmpty());
}

TEST_F(LeaseTableTest, RecallOfAnUnknownLeaseIsNotFound) {
  EXPECT_THAT(table_->Recall(12345, "truncate", clock_.Now()),
              StatusIs(absl::StatusCode::kNotFound, _));
}

TEST_F(LeaseTableTest, RecallOfAnEndingLeaseIsNotFound) {
  const LeaseInfo lease = Grant("alice");
  ASSERT_OK(table_->BeginRelease("alice", lease.id));
  EXPECT_THAT(table_->Recall(lease.id, "truncate", clock_.Now()),
              StatusIs(absl::StatusCode::kNotFound, _));
}

// --- BeginRelease / BeginRevoke ---

TEST_F(LeaseTableTest, BeginReleaseReturnsTheLeaseInStateReleased) {
  const LeaseInfo lease = Grant("alice");
  EXPECT_THAT(table_->BeginRelease("alice", lease.id),
              IsOkAndHolds(AllOf(Field(&LeaseInfo::id, lease.id),
                                 Field(&LeaseInfo::state, LeaseState::kReleased))));
}

TEST_F(LeaseTableTest, BeginReleaseByAForeignOwnerIsNotFoundAndKeepsTheLease) {
  const LeaseInfo lease = Grant("alice");
  EXPECT_THAT(table_->BeginRelease("bob", lease.id),
              StatusIs(absl::StatusCode::kNotFound, Not(HasSubstr("alice"))));
  EXPECT_THAT(table_->Get(lease.id), IsOkAndHolds(Field(&LeaseInfo::state, LeaseState::kGranted)));
}

TEST_F(LeaseTableTest, BeginReleaseRemovesTheLeaseFromList) {
  const LeaseInfo kept = Grant("alice");
  const LeaseInfo released = Grant("alice");
  ASSERT_OK(table_->BeginRelease("alice", released.id));
  EXPECT_THAT(Ids(table_->List(LeaseFilter())), ElementsAre(kept.id));
  EXPECT_EQ(table_->live_count(), 1u);
}

TEST_F(LeaseTableTest, BeginReleaseEmitsNothingBeforeFinish) {
  auto alice = table_->Subscribe("alice");
  const LeaseInfo lease = Grant("alice");
  ASSERT_OK(table_->BeginRelease("alice", lease.id));
  EXPECT_THAT(Drain(*alice.events), ElementsAre(Event("granted", lease.id)));
}

TEST_F(LeaseTableTest, SecondBeginReleaseIsNotFound) {
  const LeaseInfo lease = Grant("alice");
  ASSERT_OK(table_->BeginRelease("alice", lease.id));
  EXPECT_THAT(table_->BeginRelease("alice", lease.id), StatusIs(absl::StatusCode::kNotFound, _));
}

TEST_F(LeaseTableTest, BeginReleaseOfARecallingLeaseSucceedsAndKeepsTheRecallReason) {
  const LeaseInfo lease = Grant("alice");
  ASSERT_OK(table_->Recall(lease.id, "file truncated", clock_.Now() + absl::Seconds(5)));
  EXPECT_THAT(table_->BeginRelease("alice", lease.id),
              IsOkAndHolds(AllOf(Field(&LeaseInfo::state, LeaseState::kReleased),
                                 Field(&LeaseInfo::reason, HasSubstr("file truncated")))));
}

TEST_F(LeaseTableTest, BeginRevokeReturnsTheLeaseInStateRevokedWithTheReason) {
  const LeaseInfo lease = Grant("alice");
  EXPECT_THAT(table_->BeginRevoke(lease.id, "admin request"),
              IsOkAndHolds(AllOf(Field(&LeaseInfo::state, LeaseState::kRevoked),
                                 Field(&LeaseInfo::reason, "admin request"))));
}

TEST_F(LeaseTableTest, BeginRevokeOfARecallingLeaseSucceeds) {
  const LeaseInfo lease = Grant("alice");
  ASSERT_OK(table_->Recall(lease.id, "truncate", clock_.Now() + absl::Seconds(5)));
  EXPECT_THAT(table_->BeginRevoke(lease.id, "recall deadline passed"),
              IsOkAndHolds(Field(&LeaseInfo::state, LeaseState::kRevoked)));
}

TEST_F(LeaseTableTest, BeginRevokeOfAnUnknownLeaseIsNotFound) {
  EXPECT_THAT(table_->BeginRevoke(12345, "admin"), StatusIs(absl::StatusCode::kNotFound, _));
}

TEST_F(LeaseTableTest, BeginRevokeAfterBeginReleaseIsNotFound) {
  const LeaseInfo lease = Grant("alice");
  ASSERT_OK(table_->BeginRelease("alice", lease.id));
  EXPECT_THAT(table_->BeginRevoke(lease.id, "admin"), StatusIs(absl::StatusCode::kNotFound, _));
  EXPECT_EQ(table_->EndState(lease.id), LeaseState::kReleased);
}

TEST_F(LeaseTableTest, BeginReleaseAfterBeginRevokeIsNotFound) {
  const LeaseInfo lease = Grant("alice");
  ASSERT_OK(table_->BeginRevoke(lease.id, "admin"));
  EXPECT_THAT(table_->BeginRelease("alice", lease.id), StatusIs(absl::StatusCode::kNotFound, _));
  EXPECT_EQ(table_->EndState(lease.id), LeaseState::kRevoked);
}

// --- Finish ---

TEST_F(LeaseTableTest, FinishAfterReleaseEmitsReleased) {
  auto alice = table_->Subscribe("alice");
  const LeaseInfo lease = Grant("alice");
  ASSERT_OK(table_->BeginRelease("alice", lease.id));
  table_->Finish(lease.id);
  EXPECT_THAT(Drain(*alice.events),
              ElementsAre(Event("granted", lease.id), Event("released", lease.id)));
}

TEST_F(LeaseTableTest, FinishAfterRevokeEmitsRevokedWithTheReason) {
  const LeaseInfo lease = Grant("alice");
  auto alice = table_->Subscribe("alice");
  ASSERT_OK(table_->BeginRevoke(lease.id, "admin request"));
  table_->Finish(lease.id);
  auto next = alice.events->TryNext();
  ASSERT_TRUE(next.has_value());
  ASSERT_OK_AND_ASSIGN(const LeaseEvent event, *next);
  EXPECT_EQ(event.type, LeaseEvent::Type::kRevoked);
  EXPECT_EQ(event.lease.state, LeaseState::kRevoked);
  EXPECT_EQ(event.lease.reason, "admin request");
}

TEST_F(LeaseTableTest, SecondFinishEmitsNothing) {
  const LeaseInfo lease = Grant("alice");
  auto alice = table_->Subscribe("alice");
  ASSERT_OK(table_->BeginRevoke(lease.id, "admin"));
  table_->Finish(lease.id);
  table_->Finish(lease.id);
  EXPECT_THAT(Drain(*alice.events), ElementsAre(Event("revoked", lease.id)));
}

TEST_F(LeaseTableTest, FinishOfALiveLeaseDoesNothing) {
  const LeaseInfo lease = Grant("alice");
  auto alice = table_->Subscribe("alice");
  table_->Finish(lease.id);
  EXPECT_THAT(table_->Get(lease.id), IsOkAndHolds(Field(&LeaseInfo::state, LeaseState::kGranted)));
  EXPECT_THAT(Drain(*alice.events), IsEmpty());
}

TEST_F(LeaseTableTest, FinishOfAnUnknownLeaseDoesNothing) {
  Grant("alice");
  table_->Finish(12345);
  EXPECT_EQ(table_->live_count(), 1u);
  EXPECT_EQ(table_->EndState(12345), std::nullopt);
}

TEST_F(LeaseTableTest, FinishRetiresTheLease) {
  const LeaseInfo lease = Grant("alice");
  ASSERT_OK(table_->BeginRelease("alice", lease.id));
  table_->Finish(lease.id);
  EXPECT_TRUE(table_->AwaitEmpty(clock_.Now()));
}

// --- Tombstones ---

TEST_F(LeaseTableTest, NotFoundTellsTheOwnerTheLeaseWasRevokedAndWhy) {
  const LeaseInfo lease = Grant("alice");
  RevokeAndFinish(lease.id, "file truncated by admin");
  EXPECT_THAT(table_->Renew("alice", lease.id, kTtl),
              StatusIs(absl::StatusCode::kNotFound,
                       AllOf(HasSubstr("revoked"), HasSubstr("file truncated by admin"))));
}

TEST_F(LeaseTableTest, NotFoundTellsTheOwnerTheLeaseExpired) {
  const LeaseInfo lease = Grant("alice");
  clock_.Advance(kTtl);
  EXPECT_THAT(table_->Renew("alice", lease.id, kTtl),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("expired")));
}

TEST_F(LeaseTableTest, NotFoundTellsTheOwnerTheLeaseWasReleased) {
  const LeaseInfo lease = Grant("alice");
  ASSERT_OK(table_->BeginRelease("alice", lease.id));
  table_->Finish(lease.id);
  EXPECT_THAT(table_->BeginRelease("alice", lease.id),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("released")));
}

TEST_F(LeaseTableTest, NotFoundDoesNotTellAForeignOwnerWhatHappened) {
  const LeaseInfo lease = Grant("alice");
  RevokeAndFinish(lease.id, "file truncated by admin");
  EXPECT_THAT(table_->Renew("bob", lease.id, kTtl),
              StatusIs(absl::StatusCode::kNotFound,
                       AllOf(Not(HasSubstr("revoked")), Not(HasSubstr("truncated")),
                             Not(HasSubstr("alice")))));
}

TEST_F(LeaseTableTest, NotFoundForAnEndingLeaseDoesNotTellAForeignOwnerWhatHappened) {
  const LeaseInfo lease = Grant("alice");
  ASSERT_OK(table_->BeginRevoke(lease.id, "file truncated by admin"));
  EXPECT_THAT(table_->Renew("bob", lease.id, kTtl),
              StatusIs(absl::StatusCode::kNotFound,
                       AllOf(Not(HasSubstr("revoked")), Not(HasSubstr("truncated")))));
}

TEST_F(LeaseTableTest, OldestTombstoneIsDroppedBeyondCapacity) {
  LeaseTable::Options options;
  options.tombstones = 2;
  MakeTable(options);
  const LeaseInfo first = Grant("alice");
  const LeaseInfo second = Grant("alice");
  const LeaseInfo third = Grant("alice");
  RevokeAndFinish(first.id, "reason-one");
  RevokeAndFinish(second.id, "reason-two");
  RevokeAndFinish(third.id, "reason-three");
  EXPECT_THAT(table_->Renew("alice", first.id, kTtl),
              StatusIs(absl::StatusCode::kNotFound,
                       AllOf(Not(HasSubstr("revoked")), Not(HasSubstr("reason-one")))));
  EXPECT_THAT(table_->Renew("alice", second.id, kTtl),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("reason-two")));
  EXPECT_THAT(table_->Renew("alice", third.id, kTtl),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("reason-three")));
}

// Regression: tombstones were bounded only in count, so 4096 ended leases with a 1 MiB reason
// (a layout change's initiator) kept 4 GiB after the leases ended.
TEST_F(LeaseTableTest, TombstonesAreBoundedInBytesAndCutLongReasons) {
  LeaseTable::Options options;
  options.tombstone_bytes = 64 << 10;
  MakeTable(options);
  const std::string huge(1 << 20, 'r');
  for (int i = 0; i < 200; ++i) RevokeAndFinish(Grant("alice").id, huge);
  EXPECT_LE(table_->tombstone_text_bytes(), options.tombstone_bytes);
  EXPECT_GT(table_->tombstone_count(), 0u);
  // The newest is still explained, by the start of its reason only.
  const LeaseInfo last = Grant("alice");
  RevokeAndFinish(last.id, huge);
  const absl::Status status = table_->Renew("alice", last.id, kTtl).status();
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kNotFound, HasSubstr("rrr...")));
  EXPECT_LT(status.message().size(), 1024u);
}

TEST_F(LeaseTableTest, TombstonesKeepTheirCountLimitWithinTheByteLimit) {
  LeaseTable::Options options;
  options.tombstones = 3;
  MakeTable(options);
  for (int i = 0; i < 10; ++i) RevokeAndFinish(Grant("alice").id, "short");
  EXPECT_EQ(table_->tombstone_count(), 3u);
}

TEST_F(LeaseTableTest, ListByOwnerOrFileUsesOnlyThoseLeasesInIdOrder) {
  const LeaseInfo a1 = Grant("alice", kTtl, "scratch", kFileA);
  const LeaseInfo b1 = Grant("bob", kTtl, "scratch", kFileB);
  const LeaseInfo a2 = Grant("alice", kTtl, "scratch", kFileB);
  const LeaseInfo ended = Grant("alice", kTtl, "scratch", kFileB);
  ASSERT_OK(table_->BeginRevoke(ended.id, "ending"));  // Ending: listed by neither.
  LeaseFilter alice;
  alice.owner = "alice";
  std::vector<LeaseId> ids;
  for (const LeaseInfo& l : table_->List(alice)) ids.push_back(l.id);
  EXPECT_THAT(ids, ElementsAre(a1.id, a2.id));
  LeaseFilter on_b;
  on_b.file = kFileB;
  ids.clear();
  for (const LeaseInfo& l : table_->List(on_b)) ids.push_back(l.id);
  EXPECT_THAT(ids, ElementsAre(b1.id, a2.id));
  on_b.owner = "bob";
  ids.clear();
  for (const LeaseInfo& l : table_->List(on_b)) ids.push_back(l.id);
  EXPECT_THAT(ids, ElementsAre(b1.id));
  EXPECT_TRUE(table_->HasLiveLeases(kFileB));
  EXPECT_EQ(table_->live_count(), 3u);
  table_->Finish(ended.id);
  RevokeAndFinish(b1.id, "x");
  RevokeAndFinish(a2.id, "x");
  EXPECT_FALSE(table_->HasLiveLeases(kFileB));
  EXPECT_TRUE(table_->HasLiveLeases(kFileA));
  EXPECT_EQ(table_->live_count(), 1u);
}

// --- EndState ---

TEST_F(LeaseTableTest, EndStateOfALiveLeaseIsNullopt) {
  const LeaseInfo lease = Grant("alice");
  EXPECT_EQ(table_->EndState(lease.id), std::nullopt);
}

TEST_F(LeaseTableTest, EndStateOfAnUnknownLeaseIsNullopt) {
  EXPECT_EQ(table_->EndState(12345), std::nullopt);
}

TEST_F(LeaseTableTest, EndStateOfAnEndingLeaseIsItsTerminalState) {
  const LeaseInfo lease = Grant("alice");
  ASSERT_OK(table_->BeginRevoke(lease.id, "admin"));
  EXPECT_EQ(table_->EndState(lease.id), LeaseState::kRevoked);
}

TEST_F(LeaseTableTest, EndStateOfARetiredLeaseComesFromItsTombstone) {
  const LeaseInfo released = Grant("alice");
  ASSERT_OK(table_->BeginRelease("alice", released.id));
  table_->Finish(released.id);
  const LeaseInfo expired = Grant("alice");
  clock_.Advance(kTtl);
  EXPECT_EQ(table_->EndState(released.id), LeaseState::kReleased);
  EXPECT_EQ(table_->EndState(expired.id), LeaseState::kExpired);
}

TEST_F(LeaseTableTest, EndStateIsForgottenWithTheTombstone) {
  LeaseTable::Options options;
  options.tombstones = 1;
  MakeTable(options);
  const LeaseInfo first = Grant("alice");
  const LeaseInfo second = Grant("alice");
  RevokeAndFinish(first.id, "admin");
  RevokeAndFinish(second.id, "admin");
  EXPECT_EQ(table_->EndState(first.id), std::nullopt);
  EXPECT_EQ(table_->EndState(second.id), LeaseState::kRevoked);
}

// --- Expiry ---

TEST_F(LeaseTableTest, LeaseDoesNotExpireBeforeItsTtl) {
  const LeaseInfo lease = Grant("alice");
  clock_.Advance(kTtl - absl::Milliseconds(1));
  EXPECT_THAT(Expired(), IsEmpty());
  EXPECT_THAT(table_->Get(lease.id), IsOkAndHolds(Field(&LeaseInfo::state, LeaseState::kGranted)));
}

TEST_F(LeaseTableTest, LeaseExpiresWhenTimeReachesItsExpiry) {
  const LeaseInfo lease = Grant("alice");
  clock_.Advance(kTtl - absl::Milliseconds(1));
  clock_.Advance(absl::Milliseconds(1));
  ASSERT_EQ(Expired().size(), 1u);
  EXPECT_EQ(Expired()[0].id, lease.id);
  EXPECT_EQ(Expired()[0].state, LeaseState::kExpired);
  EXPECT_THAT(table_->Get(lease.id), StatusIs(absl::StatusCode::kNotFound, _));
}

TEST_F(LeaseTableTest, ExpiryHandlerIsCalledOncePerLease) {
  Grant("alice");
  clock_.Advance(kTtl);
  clock_.Advance(absl::Hours(1));
  EXPECT_EQ(Expired().size(), 1u);
}

TEST_F(LeaseTableTest, ExpiredLeaseIsEndingUntilTheHandlerFinishesIt) {
  set_finish_on_expiry(false);
  const LeaseInfo lease = Grant("alice");
  auto alice = table_->Subscribe("alice");
  clock_.Advance(kTtl);
  ASSERT_EQ(Expired().size(), 1u);
  EXPECT_EQ(table_->EndState(lease.id), LeaseState::kExpired);
  EXPECT_THAT(table_->Get(lease.id), StatusIs(absl::StatusCode::kNotFound, _));
  EXPECT_THAT(Drain(*alice.events), IsEmpty());
  EXPECT_FALSE(table_->AwaitEmpty(clock_.Now()));
}

TEST_F(LeaseTableTest, FinishAfterExpiryEmitsExpired) {
  set_finish_on_expiry(false);
  const LeaseInfo lease = Grant("alice");
  auto alice = table_->Subscribe("alice");
  clock_.Advance(kTtl);
  table_->Finish(lease.id);
  auto next = alice.events->TryNext();
  ASSERT_TRUE(next.has_value());
  ASSERT_OK_AND_ASSIGN(const LeaseEvent event, *next);
  EXPECT_EQ(event.type, LeaseEvent::Type::kExpired);
  EXPECT_EQ(event.lease.state, LeaseState::kExpired);
  EXPECT_EQ(event.at, clock_.Now());
}

TEST_F(LeaseTableTest, RenewalPostponesExpiry) {
  const LeaseInfo lease = Grant("alice");
  clock_.Advance(absl::Seconds(5));
  ASSERT_OK(table_->Renew("alice", lease.id, kTtl));          // Now expires at 15s.
  clock_.Advance(absl::Seconds(10) - absl::Milliseconds(1));  // Past the original 10s.
  EXPECT_THAT(Expired(), IsEmpty());
  EXPECT_THAT(table_->Get(lease.id), IsOkAndHolds(Field(&LeaseInfo::state, LeaseState::kGranted)));
  clock_.Advance(absl::Milliseconds(1));
  ASSERT_EQ(Expired().size(), 1u);
  EXPECT_EQ(Expired()[0].id, lease.id);
}

TEST_F(LeaseTableTest, RenewWithAShorterTtlBringsExpiryForward) {
  const LeaseInfo lease = Grant("alice", absl::Seconds(100));
  ASSERT_OK(table_->Renew("alice", lease.id, absl::Seconds(2)));
  clock_.Advance(absl::Seconds(2));
  ASSERT_EQ(Expired().size(), 1u);
  EXPECT_EQ(Expired()[0].id, lease.id);
}

TEST_F(LeaseTableTest, LeasesExpireInOrderAsTimeAdvances) {
  std::vector<LeaseId> by_ttl(10);
  for (int seconds : {7, 3, 5, 1, 9}) {
    by_ttl[seconds] = Grant("alice", absl::Seconds(seconds)).id;
  }
  std::vector<std::vector<LeaseId>> expired_by_second;
  for (int second = 1; second <= 10; ++second) {
    clock_.Advance(absl::Seconds(1));
    expired_by_second.push_back(Ids(Expired()));
  }
  EXPECT_THAT(expired_by_second[0], ElementsAre(by_ttl[1]));
  EXPECT_THAT(expired_by_second[1], ElementsAre(by_ttl[1]));
  EXPECT_THAT(expired_by_second[2], ElementsAre(by_ttl[1], by_ttl[3]));
  EXPECT_THAT(expired_by_second[4], ElementsAre(by_ttl[1], by_ttl[3], by_ttl[5]));
  EXPECT_THAT(expired_by_second[6], ElementsAre(by_ttl[1], by_ttl[3], by_ttl[5], by_ttl[7]));
  EXPECT_THAT(expired_by_second[7], ElementsAre(by_ttl[1], by_ttl[3], by_ttl[5], by_ttl[7]));
  EXPECT_THAT(expired_by_second[9],
              ElementsAre(by_ttl[1], by_ttl[3], by_ttl[5], by_ttl[7], by_ttl[9]));
}

TEST_F(LeaseTableTest, OneAdvanceExpiresEveryDueLeaseAtItsOwnTime) {
  const LeaseInfo late = Grant("alice", absl::Seconds(7));
  const LeaseInfo early = Grant("alice", absl::Seconds(2));
  auto alice = table_->Subscribe("alice");
  const absl::Time start = clock_.Now();
  clock_.Advance(absl::Seconds(10));
  EXPECT_THAT(Ids(Expired()), ElementsAre(early.id, late.id));
  std::vector<std::pair<LeaseId, absl::Time>> expired_at;
  while (auto next = alice.events->TryNext()) {
    ASSERT_OK_AND_ASSIGN(const LeaseEvent event, *next);
    ASSERT_EQ(event.type, LeaseEvent::Type::kExpired);
    expired_at.emplace_back(event.lease.id, event.at);
  }
  EXPECT_THAT(expired_at, ElementsAre(std::pair(early.id, start + absl::Seconds(2)),
                                      std::pair(late.id, start + absl::Seconds(7))));
}

TEST_F(LeaseTableTest, LeasesWithTheSameExpiryExpireTogether) {
  const LeaseInfo first = Grant("alice");
  const LeaseInfo second = Grant("bob");
  clock_.Advance(kTtl);
  EXPECT_THAT(Ids(Expired()), ElementsAre(first.id, second.id));
}

TEST_F(LeaseTableTest, ReleasedLeaseIsNotExpiredLater) {
  auto alice = table_->Subscribe("alice");
  const LeaseInfo lease = Grant("alice");
  ASSERT_OK(table_->BeginRelease("alice", lease.id));
  table_->Finish(lease.id);
  clock_.Advance(absl::Hours(1));
  EXPECT_THAT(Expired(), IsEmpty());
  EXPECT_THAT(Drain(*alice.events),
              ElementsAre(Event("granted", lease.id), Event("released", lease.id)));
}

TEST_F(LeaseTableTest, EndingLeaseIsNotExpired) {
  const LeaseInfo lease = Grant("alice");
  ASSERT_OK(table_->BeginRevoke(lease.id, "admin"));
  clock_.Advance(absl::Hours(1));
  EXPECT_THAT(Expired(), IsEmpty());
  EXPECT_EQ(table_->EndState(lease.id), LeaseState::kRevoked);
}

TEST_F(LeaseTableTest, RecallingLeaseStillExpiresAtItsExpiry) {
  const LeaseInfo lease = Grant("alice");
  ASSERT_OK(table_->Recall(lease.id, "truncate", clock_.Now() + absl::Hours(1)));
  clock_.Advance(kTtl);
  ASSERT_EQ(Expired().size(), 1u);
  EXPECT_EQ(Expired()[0].state, LeaseState::kExpired);
}

// --- List ---

class LeaseTableListTest : public LeaseTableTest {
 protected:
  LeaseTableListTest()
      : alice_a_(Grant("alice", kTtl, "exp-a", kFileA)),
        bob_a_(Grant("bob", kTtl, "exp-a", kFileB)),
        alice_b_(Grant("alice", kTtl, "exp-b", kFileB)) {}

  LeaseFilter Filter() { return LeaseFilter(); }

  const LeaseInfo alice_a_;
  const LeaseInfo bob_a_;
  const LeaseInfo alice_b_;
};

TEST_F(LeaseTableListTest, WithoutFilterReturnsEveryLiveLeaseInIdOrder) {
  EXPECT_THAT(Ids(table_->List(Filter())), ElementsAre(alice_a_.id, bob_a_.id, alice_b_.id));
}

TEST_F(LeaseTableListTest, FiltersByOwner) {
  LeaseFilter filter;
  filter.owner = "alice";
  EXPECT_THAT(Ids(table_->List(filter)), ElementsAre(alice_a_.id, alice_b_.id));
}

TEST_F(LeaseTableListTest, FiltersByExport) {
  LeaseFilter filter;
  filter.export_name = "exp-a";
  EXPECT_THAT(Ids(table_->List(filter)), ElementsAre(alice_a_.id, bob_a_.id));
}

TEST_F(LeaseTableListTest, FiltersByFile) {
  LeaseFilter filter;
  filter.file = kFileB;
  EXPECT_THAT(Ids(table_->List(filter)), ElementsAre(bob_a_.id, alice_b_.id));
}

TEST_F(LeaseTableListTest, CombinesFilters) {
  LeaseFilter filter;
  filter.owner = "alice";
  filter.file = kFileB;
  EXPECT_THAT(Ids(table_->List(filter)), ElementsAre(alice_b_.id));
}

TEST_F(LeaseTableListTest, ReturnsNothingWhenNoLeaseMatches) {
  LeaseFilter filter;
  filter.owner = "carol";
  EXPECT_THAT(table_->List(filter), IsEmpty());
}

TEST_F(LeaseTableListTest, IncludesRecallingLeases) {
  ASSERT_OK(table_->Recall(bob_a_.id, "truncate", clock_.Now() + absl::Seconds(5)));
  LeaseFilter filter;
  filter.owner = "bob";
  EXPECT_THAT(table_->List(filter), ElementsAre(Field(&LeaseInfo::state, LeaseState::kRecalling)));
}

TEST_F(LeaseTableListTest, LiveCountCountsGrantedAndRecallingButNotEndingLeases) {
  ASSERT_OK(table_->Recall(bob_a_.id, "truncate", clock_.Now() + absl::Seconds(5)));
  ASSERT_OK(table_->BeginRelease("alice", alice_b_.id));
  EXPECT_EQ(table_->live_count(), 2u);
}

// --- Subscribe ---

TEST_F(LeaseTableTest, SubscribeSnapshotHoldsExactlyTheOwnersLiveLeasesInIdOrder) {
  const LeaseInfo first = Grant("alice");
  Grant("bob");
  const LeaseInfo ending = Grant("alice");
  const LeaseInfo last = Grant("alice");
  ASSERT_OK(table_->BeginRelease("alice", ending.id));
  auto alice = table_->Subscribe("alice");
  EXPECT_THAT(Ids(alice.snapshot), ElementsAre(first.id, last.id));
}

TEST_F(LeaseTableTest, SubscribeSnapshotShowsTheCurrentStateOfEachLease) {
  const LeaseInfo lease = Grant("alice");
  ASSERT_OK(table_->Recall(lease.id, "truncate", clock_.Now() + absl::Seconds(5)));
  auto alice = table_->Subscribe("alice");
  EXPECT_THAT(alice.snapshot, ElementsAre(AllOf(Field(&LeaseInfo::state, LeaseState::kRecalling),
                                                Field(&LeaseInfo::reason, "truncate"))));
}

TEST_F(LeaseTableTest, SubscribeDoesNotRepeatTheSnapshotAsEvents) {
  Grant("alice");
  auto alice = table_->Subscribe("alice");
  EXPECT_THAT(Drain(*alice.events), IsEmpty());
}

TEST_F(LeaseTableTest, SubscriberReceivesEventsInTheOrderTheTableAppliedThem) {
  auto alice = table_->Subscribe("alice");
  const LeaseInfo first = Grant("alice");
  const LeaseInfo second = Grant("alice");
  ASSERT_OK(table_->Recall(first.id, "truncate", clock_.Now() + absl::Seconds(5)));
  ASSERT_OK(table_->BeginRelease("alice", first.id));
  table_->Finish(first.id);
  RevokeAndFinish(second.id, "admin");
  EXPECT_THAT(Drain(*alice.events),
              ElementsAre(Event("granted", first.id), Event("granted", second.id),
                          Event("recalled", first.id), Event("released", first.id),
                          Event("revoked", second.id)));
}

TEST_F(LeaseTableTest, SubscriberWaitingInNextIsWokenByAnEvent) {
  auto alice = table_->Subscribe("alice");
  std::optional<absl::StatusOr<LeaseEvent>> result;
  std::thread consumer([&] { result = alice.events->Next(absl::InfiniteFuture()); });
  clock_.WaitForWaiters(1);
  const LeaseInfo lease = Grant("alice");
  consumer.join();
  ASSERT_TRUE(result.has_value());
  EXPECT_THAT(*result,
              IsOkAndHolds(AllOf(Field(&LeaseEvent::type, LeaseEvent::Type::kGranted),
                                 Field(&LeaseEvent::lease, Field(&LeaseInfo::id, lease.id)))));
}

TEST_F(LeaseTableTest, SubscriptionOnReadyHookIsCalledForEachEvent) {
  // Shared: the table still calls the hook when it closes the queue at destruction.
  auto calls = std::make_shared<int>(0);
  auto alice = table_->Subscribe("alice", [calls] { ++*calls; });
  const LeaseInfo lease = Grant("alice");
  ASSERT_OK(table_->Recall(lease.id, "truncate", clock_.Now() + absl::Seconds(5)));
  EXPECT_EQ(*calls, 2);
}

TEST_F(LeaseTableTest, DestroyingTheTableClosesSubscriptionsAndCallsTheirHooks) {
  auto calls = std::make_shared<int>(0);
  auto alice = table_->Subscribe("alice", [calls] { ++*calls; });
  table_.reset();
  EXPECT_EQ(*calls, 1);
  EXPECT_TRUE(alice.events->closed());
}

TEST_F(LeaseTableTest, SubscriptionQueueHasTheConfiguredCapacity) {
  LeaseTable::Options options;
  options.queue_capacity = 7;
  MakeTable(options);
  auto alice = table_->Subscribe("alice");
  EXPECT_EQ(alice.events->capacity(), 7u);
}

TEST_F(LeaseTableTest, OverflowingSubscriberGetsResourceExhaustedAfterItsQueuedEvents) {
  LeaseTable::Options options;
  options.queue_capacity = 2;
  MakeTable(options);
  auto slow = table_->Subscribe("alice");
  const LeaseInfo first = Grant("alice");
  const LeaseInfo second = Grant("alice");
  Grant("alice");
  EXPECT_THAT(Drain(*slow.events), ElementsAre(Event("granted", first.id),
                                               Event("granted", second.id), "RESOURCE_EXHAUSTED"));
}

TEST_F(LeaseTableTest, TableKeepsServingOtherSubscribersAfterOneOverflows) {
  LeaseTable::Options options;
  options.queue_capacity = 2;
  MakeTable(options);
  auto slow = table_->Subscribe("alice");
  auto fast = table_->Subscribe("alice");
  auto bob = table_->Subscribe("bob");
  std::vector<std::string> fast_events;
  for (int i = 0; i < 4; ++i) {
    Grant("alice");
    for (std::string& e : Drain(*fast.events)) fast_events.push_back(std::move(e));
  }
  const LeaseInfo bobs = Grant("bob");
  ASSERT_TRUE(slow.events->overflowed());
  EXPECT_EQ(fast_events.size(), 4u);
  EXPECT_FALSE(fast.events->overflowed());
  EXPECT_THAT(Drain(*bob.events), ElementsAre(Event("granted", bobs.id)));
}

TEST_F(LeaseTableTest, OverflowedSubscriberCanResubscribeForAFreshSnapshot) {
  LeaseTable::Options options;
  options.queue_capacity = 1;
  MakeTable(options);
  auto slow = table_->Subscribe("alice");
  const LeaseInfo first = Grant("alice");
  const LeaseInfo second = Grant("alice");
  ASSERT_TRUE(slow.events->overflowed());
  auto again = table_->Subscribe("alice");
  EXPECT_THAT(Ids(again.snapshot), ElementsAre(first.id, second.id));
  const LeaseInfo third = Grant("alice");
  EXPECT_THAT(Drain(*again.events), ElementsAre(Event("granted", third.id)));
}

TEST_F(LeaseTableTest, ClosedSubscriptionIsReleasedByTheTableOnTheNextEvent) {
  auto alice = table_->Subscribe("alice");
  alice.events->Close();
  Grant("alice");
  EXPECT_EQ(alice.events.use_count(), 1);
}

TEST_F(LeaseTableTest, ClosedSubscriptionIsReleasedByTheTableOnTheNextSubscribe) {
  auto closed = table_->Subscribe("alice");
  closed.events->Close();
  auto open = table_->Subscribe("alice");
  EXPECT_EQ(closed.events.use_count(), 1);
}

TEST_F(LeaseTableTest, OtherSubscribersKeepReceivingAfterOneCloses) {
  auto closed = table_->Subscribe("alice");
  auto open = table_->Subscribe("alice");
  closed.events->Close();
  const LeaseInfo first = Grant("alice");
  const LeaseInfo second = Grant("alice");
  EXPECT_THAT(Drain(*open.events),
              ElementsAre(Event("granted", first.id), Event("granted", second.id)));
  EXPECT_THAT(closed.events->TryNext(), Optional(StatusIs(absl::StatusCode::kCancelled, _)));
}

TEST_F(LeaseTableTest, OwnerCanSubscribeAgainAfterItsOnlySubscriptionClosed) {
  auto closed = table_->Subscribe("alice");
  closed.events->Close();
  Grant("alice");  // Prunes the closed queue and with it the owner's subscriber
                   // list.
  auto again = table_->Subscribe("alice");
  const LeaseInfo lease = Grant("alice");
  EXPECT_THAT(Drain(*again.events), ElementsAre(Event("granted", lease.id)));
}

// --- AwaitEmpty ---

TEST_F(LeaseTableTest, AwaitEmptyOnAnEmptyTableReturnsTrueImmediately) {
  EXPECT_TRUE(table_->AwaitEmpty(clock_.Now()));
}

TEST_F(LeaseTableTest, AwaitEmptyReturnsTrueWhenTheLastLeaseFinishes) {
  const LeaseInfo lease = Grant("alice");
  bool result = false;
  std::thread waiter([&] { result = table_->AwaitEmpty(clock_.Now() + absl::Minutes(1)); });
  clock_.WaitForWaiters(1);
  ASSERT_OK(table_->BeginRelease("alice", lease.id));
  table_->Finish(lease.id);
  waiter.join();
  EXPECT_TRUE(result);
}

TEST_F(LeaseTableTest, AwaitEmptyKeepsWaitingWhileALeaseIsEnding) {
  const LeaseInfo lease = Grant("alice");
  bool result = false;
  std::thread waiter([&] { result = table_->AwaitEmpty(clock_.Now() + absl::Minutes(1)); });
  clock_.WaitForWaiters(1);
  ASSERT_OK(table_->BeginRelease("alice", lease.id));
  EXPECT_EQ(clock_.waiter_count(), 1u);
  table_->Finish(lease.id);  // Lets the waiter go.
  waiter.join();
  EXPECT_TRUE(result);
}

TEST_F(LeaseTableTest, AwaitEmptyReturnsTrueWhenTheLastLeaseExpires) {
  Grant("alice");
  bool result = false;
  std::thread waiter([&] { result = table_->AwaitEmpty(clock_.Now() + absl::Minutes(1)); });
  clock_.WaitForWaiters(1);
  clock_.Advance(kTtl);
  waiter.join();
  EXPECT_TRUE(result);
}

TEST_F(LeaseTableTest, AwaitEmptyReturnsFalseAtTheDeadline) {
  Grant("alice", absl::Hours(1));
  bool result = true;
  std::thread waiter([&] { result = table_->AwaitEmpty(clock_.Now() + absl::Seconds(5)); });
  clock_.WaitForWaiters(1);
  clock_.Advance(absl::Seconds(5));
  waiter.join();
  EXPECT_FALSE(result);
}

// --- Destruction ---

TEST_F(LeaseTableTest, DestroyingTheTableCancelsItsExpiryTimers) {
  Grant("alice");
  Grant("bob", absl::Seconds(3));
  ASSERT_GT(clock_.pending_timers(), 0u);
  table_.reset();
  EXPECT_EQ(clock_.pending_timers(), 0u);
}

TEST_F(LeaseTableTest, DestroyingTheTableWithLiveLeasesNeverCallsTheHandler) {
  Grant("alice");
  table_.reset();
  clock_.Advance(absl::Hours(1));
  EXPECT_THAT(Expired(), IsEmpty());
}

TEST_F(LeaseTableTest, DestroyingTheTableClosesSubscriptions) {
  auto alice = table_->Subscribe("alice");
  const LeaseInfo lease = Grant("alice");
  table_.reset();
  EXPECT_TRUE(alice.events->closed());
  EXPECT_THAT(alice.events->Next(absl::InfiniteFuture()),
              IsOkAndHolds(Field(&LeaseEvent::type, LeaseEvent::Type::kGranted)));
  EXPECT_THAT(alice.events->Next(absl::InfiniteFuture()),
              StatusIs(absl::StatusCode::kCancelled, _));
}

TEST_F(LeaseTableTest, ARecallFannedOutPastTheQueueCapacityReachesTheSubscriberWhole) {
  LeaseTable::Options options;
  options.queue_capacity = 4;
  MakeTable(options);
  std::vector<LeaseInfo> leases;
  for (int i = 0; i < 40; ++i) leases.push_back(Grant("alice"));
  auto sub = table_->Subscribe("alice");  // After the grants: the queue holds only the fan-out.
  for (const LeaseInfo& lease : leases) {
    ASSERT_OK(table_->Recall(lease.id, "fan-out", clock_.Now() + absl::Seconds(5)).status());
  }
  for (const LeaseInfo& lease : leases) {
    ASSERT_OK(table_->BeginRelease("alice", lease.id).status());
    table_->Finish(lease.id);
  }
  EXPECT_FALSE(sub.events->overflowed());
  const std::vector<std::string> got = Drain(*sub.events);
  ASSERT_EQ(got.size(), 80u);
  for (size_t i = 0; i < leases.size(); ++i) {
    EXPECT_EQ(got[i], Event("recalled", leases[i].id));
    EXPECT_EQ(got[leases.size() + i], Event("released", leases[i].id));
  }
}

// --- batches ---

TEST_F(LeaseTableTest, RecallManyAnnouncesEachGrantedLeaseOnceAndSkipsEndedAndUnknownOnes) {
  const LeaseInfo granted = Grant("alice");
  const LeaseInfo recalling = Grant("alice");
  const LeaseInfo ending = Grant("alice");
  const absl::Time first_deadline = clock_.Now() + absl::Seconds(5);
  ASSERT_OK(table_->Recall(recalling.id, "earlier", first_deadline));
  ASSERT_OK(table_->BeginRelease("alice", ending.id));
  auto alice = table_->Subscribe("alice");
  const absl::Time deadline = clock_.Now() + absl::Seconds(30);
  const std::vector<LeaseTable::Recalled> out =
      table_->RecallMany({recalling.id, 12345, granted.id, ending.id}, "truncate", deadline);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].lease.id, recalling.id);
  EXPECT_FALSE(out[0].announced);
  EXPECT_EQ(out[0].lease.recall_deadline, first_deadline);
  EXPECT_EQ(out[0].lease.reason, "earlier");
  EXPECT_EQ(out[1].lease.id, granted.id);
  EXPECT_TRUE(out[1].announced);
  EXPECT_EQ(out[1].lease.state, LeaseState::kRecalling);
  EXPECT_EQ(out[1].lease.recall_deadline, deadline);
  EXPECT_EQ(out[1].lease.reason, "truncate");
  EXPECT_THAT(Drain(*alice.events), ElementsAre(Event("recalled", granted.id)));
  EXPECT_THAT(table_->Get(ending.id), StatusIs(absl::StatusCode::kNotFound, _));
}

TEST_F(LeaseTableTest, BatchesPastOneLockHoldReachEveryQueueOfEveryOwnerInTableOrder) {
  // Three batches' worth, alternating owners; alice watches twice, carol not at all.
  const size_t n = 2 * LeaseTable::kRecallBatch + 3;
  std::vector<LeaseId> all, alice_ids, bob_ids;
  for (size_t i = 0; i < n; ++i) {
    const char* owner = i % 3 == 0 ? "alice" : i % 3 == 1 ? "bob" : "carol";
    const LeaseId id = Grant(owner).id;
    all.push_back(id);
    if (i % 3 == 0) alice_ids.push_back(id);
    if (i % 3 == 1) bob_ids.push_back(id);
  }
  auto alice1 = table_->Subscribe("alice");
  auto alice2 = table_->Subscribe("alice");
  auto bob = table_->Subscribe("bob");
  ASSERT_EQ(table_->RecallMany(all, "fan-out", clock_.Now() + absl::Seconds(5)).size(), n);
  std::vector<absl::StatusOr<LeaseInfo>> claimed = table_->BeginRevokeMany(all, "overdue");
  ASSERT_EQ(claimed.size(), n);
  for (const auto& lease : claimed) {
    ASSERT_OK(lease.status());
    EXPECT_EQ(lease->state, LeaseState::kRevoked);
    EXPECT_EQ(lease->reason, "overdue");
  }
  table_->FinishMany(all);
  auto expected = [](const std::vector<LeaseId>& ids) {
    std::vector<std::string> out;
    for (LeaseId id : ids) out.push_back(Event("recalled", id));
    for (LeaseId id : ids) out.push_back(Event("revoked", id));
    return out;
  };
  EXPECT_EQ(Drain(*alice1.events), expected(alice_ids));
  EXPECT_EQ(Drain(*alice2.events), expected(alice_ids));
  EXPECT_EQ(Drain(*bob.events), expected(bob_ids));
  EXPECT_EQ(table_->live_count(), 0u);
  EXPECT_EQ(table_->EndState(all.back()), LeaseState::kRevoked);
}

TEST_F(LeaseTableTest, BeginRevokeManyIsNotFoundForLeasesNotLiveAndFinishManySkipsThem) {
  const LeaseInfo live = Grant("alice");
  const LeaseInfo ending = Grant("alice");
  ASSERT_OK(table_->BeginRelease("alice", ending.id));
  std::vector<absl::StatusOr<LeaseInfo>> claimed =
      table_->BeginRevokeMany({ending.id, live.id, 999}, "overdue");
  ASSERT_EQ(claimed.size(), 3u);
  EXPECT_THAT(claimed[0], StatusIs(absl::StatusCode::kNotFound, _));
  EXPECT_OK(claimed[1].status());
  EXPECT_THAT(claimed[2], StatusIs(absl::StatusCode::kNotFound, _));
  table_->FinishMany({live.id, 999});
  EXPECT_EQ(table_->EndState(live.id), LeaseState::kRevoked);
  // The release that claimed `ending` still finishes it as released.
  table_->Finish(ending.id);
  EXPECT_EQ(table_->EndState(ending.id), LeaseState::kReleased);
}

TEST_F(LeaseTableTest, ABatchThatOverflowsAQueueStillReachesTheOthers) {
  LeaseTable::Options options;
  options.queue_bytes = 3 * EventQueue::BytesOf(LeaseEvent{});  // Fewer than the batch.
  MakeTable(options);
  std::vector<LeaseId> ids;
  for (int i = 0; i < 8; ++i) ids.push_back(Grant("alice").id);
  auto small = table_->Subscribe("alice");
  ASSERT_EQ(table_->RecallMany(ids, "fan-out", clock_.Now() + absl::Seconds(5)).size(), 8u);
  const std::vector<std::string> got = Drain(*small.events);
  ASSERT_FALSE(got.empty());
  EXPECT_EQ(got.back(), "RESOURCE_EXHAUSTED");
  for (size_t i = 0; i + 1 < got.size(); ++i) EXPECT_EQ(got[i], Event("recalled", ids[i]));
  // Every lease was recalled although its event was dropped; a fresh subscription sees them.
  auto fresh = table_->Subscribe("alice");
  ASSERT_EQ(fresh.snapshot.size(), 8u);
  for (const LeaseInfo& lease : fresh.snapshot) EXPECT_EQ(lease.state, LeaseState::kRecalling);
}

}  // namespace
}  // namespace pinbroker
