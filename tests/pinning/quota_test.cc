// The quota accounting (pinning/quota.h) on its own, and the engine's use of it: a lease counts
// against its account and the broker-wide budget from before the backend pins until it ends,
// however it ends.
#include "pinning/quota.h"

#include <memory>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pinning/host_backend.h"
#include "pinning/pin_service.h"
#include "tests/testing/engine_fixture.h"
#include "tests/testing/status_matchers.h"

namespace pinbroker {
namespace {

using ::pinbroker::testing::StatusIs;
using ::testing::HasSubstr;

QuotaLimits Limits(uint64_t sessions, uint64_t leases, uint64_t bytes) {
  QuotaLimits limits;
  limits.max_sessions = sessions;
  limits.max_leases = leases;
  limits.max_pinned_bytes = bytes;
  limits.max_watches = 1;
  limits.max_blocked_calls = 1;
  return limits;
}

std::shared_ptr<QuotaAccount> Account(
    const QuotaLimits& limits, absl::flat_hash_map<std::string, ExportQuotaLimits> per = {}) {
  return std::make_shared<QuotaAccount>("uid 1001", limits, per);
}

TEST(QuotaCounterTest, RefusesPastTheLimitAndReportsTheUse) {
  QuotaCounter counter(10);
  uint64_t before = 0;
  EXPECT_TRUE(counter.TryAdd(7, &before));
  EXPECT_EQ(before, 0u);
  EXPECT_FALSE(counter.TryAdd(4, &before));
  EXPECT_EQ(before, 7u);
  EXPECT_EQ(counter.used(), 7u);
  EXPECT_TRUE(counter.TryAdd(3));
  EXPECT_FALSE(counter.TryAdd(1));
  counter.Sub(10);
  EXPECT_EQ(counter.used(), 0u);
  QuotaCounter unlimited;
  EXPECT_TRUE(unlimited.TryAdd(kUnlimited - 1));
  EXPECT_FALSE(unlimited.TryAdd(2));  // No wrap-around.
}

TEST(QuotaCounterTest, RacingReservationsNeverPassTheLimit) {
  QuotaCounter counter(1000);
  std::atomic<int> granted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 1000; ++i) {
        if (counter.TryAdd(1)) granted.fetch_add(1);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(granted.load(), 1000);
  EXPECT_EQ(counter.used(), 1000u);
}

TEST(QuotaHoldTest, GivesBackOnceWhenDestroyedResetOrMovedFrom) {
  QuotaCounter a(10), b(10);
  {
    QuotaHold hold;
    ASSERT_TRUE(a.TryAdd(2));
    hold.Add(&a, 2);
    QuotaHold other;
    ASSERT_TRUE(b.TryAdd(3));
    other.Add(&b, 3);
    hold.Absorb(std::move(other));
    EXPECT_EQ(b.used(), 3u);
    QuotaHold moved = std::move(hold);
    EXPECT_TRUE(hold.empty());  // NOLINT(bugprone-use-after-move): moved-from is empty.
    EXPECT_EQ(a.used(), 2u);
    EXPECT_EQ(b.used(), 3u);
  }
  EXPECT_EQ(a.used(), 0u);
  EXPECT_EQ(b.used(), 0u);
  QuotaHold hold;
  ASSERT_TRUE(a.TryAdd(1));
  hold.Add(&a, 1);
  hold.Reset();
  hold.Reset();
  EXPECT_EQ(a.used(), 0u);
}

TEST(QuotaHoldTest, GivesBackEveryAmountWhateverItsShape) {
  // A lease's hold (ones and one byte count) fits inline; other amounts, more counters and
  // absorbed holds of other accounts go beyond it. All of it comes back, once.
  std::vector<std::unique_ptr<QuotaCounter>> counters;
  for (int i = 0; i < 9; ++i) counters.push_back(std::make_unique<QuotaCounter>(1 << 20));
  const uint64_t amounts[] = {1, 4096, 1, 4096, 4096, 7, 1, 4096, 9};
  {
    QuotaHold hold;
    QuotaHold other;
    for (int i = 0; i < 9; ++i) {
      ASSERT_TRUE(counters[i]->TryAdd(amounts[i]));
      (i < 6 ? hold : other).Add(counters[i].get(), amounts[i]);
    }
    hold.Absorb(std::move(other));
    for (int i = 0; i < 9; ++i) EXPECT_EQ(counters[i]->used(), amounts[i]) << i;
    QuotaHold moved = std::move(hold);
    EXPECT_FALSE(moved.empty());
    EXPECT_TRUE(hold.empty());  // NOLINT(bugprone-use-after-move): moved-from is empty.
    for (int i = 0; i < 9; ++i) EXPECT_EQ(counters[i]->used(), amounts[i]) << i;
  }
  for (int i = 0; i < 9; ++i) EXPECT_EQ(counters[i]->used(), 0u) << i;
}

TEST(QuotaHoldTest, AHoldKeepsEveryAccountItHoldsCountersOfAlive) {
  ExportQuotaLimits on_export;
  on_export.max_leases = 5;
  std::weak_ptr<QuotaAccount> watch_a, watch_b;
  {
    QuotaHold hold;
    {
      auto a = Account(Limits(1, 5, 1 << 20), {{"exp", on_export}});
      auto b = Account(Limits(1, 5, 1 << 20));
      watch_a = a;
      watch_b = b;
      auto lease_a = a->ReserveLease("exp", 4096);
      auto lease_b = b->ReserveLease("exp", 8192);
      ASSERT_TRUE(lease_a.ok() && lease_b.ok());
      hold = *std::move(lease_a);
      hold.Absorb(*std::move(lease_b));
      EXPECT_EQ(a->used(QuotaKind::kPinnedBytes), 4096u);
      EXPECT_EQ(b->used(QuotaKind::kPinnedBytes), 8192u);
    }
    // Both accounts live on in the hold, whose counters they are.
    ASSERT_FALSE(watch_a.expired());
    ASSERT_FALSE(watch_b.expired());
    EXPECT_EQ(watch_a.lock()->used(QuotaKind::kLeases), 1u);
    EXPECT_EQ(watch_b.lock()->used(QuotaKind::kLeases), 1u);
  }
  EXPECT_TRUE(watch_a.expired());
  EXPECT_TRUE(watch_b.expired());
}

TEST(QuotaAccountTest, RefusalNamesTheQuotaTheIdentityTheUseAndTheLimit) {
  auto account = Account(Limits(2, 10, 100));
  auto first = account->Reserve(QuotaKind::kSessions);
  auto second = account->Reserve(QuotaKind::kSessions);
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_THAT(account->Reserve(QuotaKind::kSessions).status(),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       "uid 1001 holds 2 sessions; quota max_sessions is 2"));
  EXPECT_EQ(account->used(QuotaKind::kSessions), 2u);
  second->Reset();
  EXPECT_TRUE(account->Reserve(QuotaKind::kSessions).ok());  // And given back at once.
  EXPECT_EQ(account->used(QuotaKind::kSessions), 1u);

  auto watch = account->Reserve(QuotaKind::kWatches);
  ASSERT_TRUE(watch.ok());
  EXPECT_THAT(account->Reserve(QuotaKind::kWatches).status(),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       "uid 1001 holds 1 Watch streams; quota max_watches is 1"));
  auto blocked = account->Reserve(QuotaKind::kBlockedCalls);
  ASSERT_TRUE(blocked.ok());
  EXPECT_THAT(account->Reserve(QuotaKind::kBlockedCalls).status(),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       "uid 1001 holds 1 blocked calls; quota max_blocked_calls is 1"));
}

TEST(QuotaAccountTest, LeaseReservationIsAllOrNothing) {
  auto account = Account(Limits(1, 2, 100));
  auto lease = account->ReserveLease("exp", 60);
  ASSERT_TRUE(lease.ok());
  EXPECT_THAT(account->ReserveLease("exp", 50).status(),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       "uid 1001 holds 60 pinned bytes and this pin needs 50 more; quota "
                       "max_pinned_bytes is 100"));
  EXPECT_EQ(account->used(QuotaKind::kLeases), 1u);  // The refused pin's lease is not counted.
  auto second = account->ReserveLease("exp", 40);
  ASSERT_TRUE(second.ok());
  EXPECT_THAT(account->ReserveLease("exp", 1).status(),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       "uid 1001 holds 2 leases; quota max_leases is 2"));
  EXPECT_EQ(account->used(QuotaKind::kPinnedBytes), 100u);
  *lease = QuotaHold();
  *second = QuotaHold();
  EXPECT_EQ(account->used(QuotaKind::kLeases), 0u);
  EXPECT_EQ(account->used(QuotaKind::kPinnedBytes), 0u);
}

TEST(QuotaAccountTest, ExportLimitsApplyOnTopOfTheIdentitysOwn) {
  auto account = Account(Limits(1, 10, 1000), {{"small", ExportQuotaLimits{1, 50}}});
  auto on_small = account->ReserveLease("small", 10);
  ASSERT_TRUE(on_small.ok());
  EXPECT_THAT(account->ReserveLease("small", 10).status(),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       "uid 1001 holds 1 leases on export small; quota max_leases of export "
                       "small is 1"));
  auto elsewhere = account->ReserveLease("big", 500);
  EXPECT_TRUE(elsewhere.ok());
  EXPECT_EQ(account->used(QuotaKind::kLeases), 2u);
  on_small->Reset();
  EXPECT_THAT(account->ReserveLease("small", 60).status(),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("max_pinned_bytes of "
                                                                       "export small is 50")));
  EXPECT_EQ(account->used(QuotaKind::kLeases), 1u);
  EXPECT_EQ(account->used(QuotaKind::kPinnedBytes), 500u);
}

TEST(QuotaLedgerTest, OneAccountPerIdentityWhileAnythingHoldsIt) {
  QuotaLedger ledger({Limits(1, 1, 1), {}});
  auto a = ledger.AccountFor("uid:1", "uid 1");
  EXPECT_EQ(ledger.AccountFor("uid:1", "uid 1"), a);
  auto b = ledger.AccountFor("uid:2", "uid 2");
  EXPECT_NE(a, b);
  auto held = a->Reserve(QuotaKind::kSessions);
  ASSERT_TRUE(held.ok());
  EXPECT_FALSE(ledger.AccountFor("uid:1", "uid 1")->Reserve(QuotaKind::kSessions).ok());
  EXPECT_TRUE(b->Reserve(QuotaKind::kSessions).ok());  // Another identity is not affected.
  a.reset();
  b.reset();
  EXPECT_EQ(ledger.account_count(), 1u);  // The hold keeps uid 1's account.
  held->Reset();
  EXPECT_EQ(ledger.account_count(), 0u);
  EXPECT_TRUE(ledger.AccountFor("uid:1", "uid 1")->Reserve(QuotaKind::kSessions).ok());
}

// The engine: leases against an account and the budget.
class PinQuotaTest : public ::pinbroker::testing::EngineTest {
 protected:
  void StartWithBudget(uint64_t budget) {
    ExportOptions exp;
    exp.name = "exp";
    exp.root = dir_.path();
    exp.default_ttl = absl::Seconds(60);
    exp.max_ttl = absl::Seconds(600);
    PinService::Options options;
    options.pinned_bytes_budget = budget;
    service_.reset();
    auto service = PinService::Create(&clock_, &backend_, {exp}, options);
    ASSERT_TRUE(service.ok()) << service.status();
    service_ = *std::move(service);
  }
  PinRequest Charged(uint64_t first, uint64_t count, absl::Duration ttl = absl::ZeroDuration()) {
    PinRequest r = Request(first * page_, count * page_);
    r.account = account_;
    r.holder = "uid 1001";
    r.ttl = ttl;
    return r;
  }
  std::shared_ptr<QuotaAccount> account_ = Account(Limits(1, 3, 4 * SystemPageSize()));
};

TEST_F(PinQuotaTest, LeaseCountsFromPinUntilReleaseRevokeOrExpiry) {
  StartWithBudget(kUnlimited);
  auto released = service_->Pin(Charged(0, 1));
  auto revoked = service_->Pin(Charged(1, 1));
  auto expiring = service_->Pin(Charged(2, 2, absl::Seconds(10)));
  ASSERT_TRUE(released.ok() && revoked.ok() && expiring.ok());
  EXPECT_EQ(account_->used(QuotaKind::kLeases), 3u);
  EXPECT_EQ(account_->used(QuotaKind::kPinnedBytes), 4 * page_);
  const size_t pins = backend_.count(testing::FakeBackend::Call::Kind::kPin);
  EXPECT_THAT(service_->Pin(Charged(4, 1)).status(),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       "uid 1001 holds 3 leases; quota max_leases is 3"));
  EXPECT_EQ(backend_.count(testing::FakeBackend::Call::Kind::kPin), pins);  // Never pinned.
  EXPECT_EQ(service_->live_lease_count(), 3u);

  ASSERT_TRUE(service_->Release("s1", released->id).ok());
  EXPECT_EQ(account_->used(QuotaKind::kLeases), 2u);
  EXPECT_EQ(service_->RevokeLeases({revoked->id}, "test"), 1u);
  EXPECT_EQ(account_->used(QuotaKind::kLeases), 1u);
  EXPECT_EQ(account_->used(QuotaKind::kPinnedBytes), 2 * page_);
  clock_.Advance(absl::Seconds(11));
  EXPECT_FALSE(service_->IsLive(expiring->id));
  EXPECT_EQ(account_->used(QuotaKind::kLeases), 0u);
  EXPECT_EQ(account_->used(QuotaKind::kPinnedBytes), 0u);
  EXPECT_EQ(service_->budgeted_bytes(), 0u);
}

TEST_F(PinQuotaTest, BudgetRefusesAPinBeforeTheBackendPinsAnything) {
  StartWithBudget(3 * page_);
  auto lease = service_->Pin(Request(0, 2 * page_));
  ASSERT_TRUE(lease.ok()) << lease.status();
  EXPECT_EQ(service_->budgeted_bytes(), 2 * page_);
  const size_t pins = backend_.count(testing::FakeBackend::Call::Kind::kPin);
  EXPECT_THAT(
      service_->Pin(Charged(2, 2)).status(),
      StatusIs(absl::StatusCode::kResourceExhausted,
               absl::StrCat("the broker holds ", 2 * page_,
                            " pinned bytes and this pin by uid "
                            "1001 needs ",
                            2 * page_, " more; its budget max_pinned_bytes_total is ", 3 * page_)));
  EXPECT_EQ(backend_.count(testing::FakeBackend::Call::Kind::kPin), pins);
  EXPECT_EQ(service_->live_lease_count(), 1u);
  // The refused pin gave its account reservation back, and its busy range.
  EXPECT_EQ(account_->used(QuotaKind::kLeases), 0u);
  EXPECT_EQ(account_->used(QuotaKind::kPinnedBytes), 0u);
  EXPECT_TRUE(service_->Pin(Charged(2, 1)).ok());
  EXPECT_EQ(service_->budgeted_bytes(), 3 * page_);
}

TEST_F(PinQuotaTest, AFailedBackendPinGivesEverythingBack) {
  StartWithBudget(8 * page_);
  backend_.FailNextPin(absl::InternalError("injected"));
  EXPECT_EQ(service_->Pin(Charged(0, 2)).status().code(), absl::StatusCode::kInternal);
  EXPECT_EQ(account_->used(QuotaKind::kLeases), 0u);
  EXPECT_EQ(account_->used(QuotaKind::kPinnedBytes), 0u);
  EXPECT_EQ(service_->budgeted_bytes(), 0u);
}

// The engine names each lease's holder to the backend (PinRequest::holder): one identity's
// separate host pins use its share of the host backend's VMAs, not the whole limit.
TEST_F(PinQuotaTest, HostVmasAreChargedToTheLeasesHolder) {
  HostBackend host(HostBackend::Options{.max_vmas = 16});  // A share of 8 each.
  ExportOptions exp;
  exp.name = "exp";
  exp.root = dir_.path();
  auto created = PinService::Create(&clock_, &host, {exp});
  ASSERT_TRUE(created.ok()) << created.status();
  std::unique_ptr<PinService> service = *std::move(created);
  const auto as = [&](absl::string_view holder, uint64_t page) {
    PinRequest r = Request(page * page_, page_, holder, Access::kRead);
    r.holder = std::string(holder);
    return service->Pin(r);
  };
  std::vector<LeaseInfo> a;
  absl::StatusOr<LeaseInfo> lease;
  for (uint64_t page = 0; page < kPages; page += 2) {
    lease = as("uid 1001", page);
    if (!lease.ok()) break;
    a.push_back(*lease);
  }
  ASSERT_FALSE(a.empty());
  EXPECT_THAT(lease.status(),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       ::testing::AllOf(
                           HasSubstr(absl::StrCat("uid 1001 holds ", host.holder_vmas("uid 1001"))),
                           HasSubstr("share max_vmas is 8"))));
  EXPECT_EQ(service->live_lease_count(), a.size());  // The refused pin left nothing.
  EXPECT_EQ(service->budgeted_bytes(), a.size() * page_);

  ASSERT_OK_AND_ASSIGN(LeaseInfo b, as("uid 1002", kPages - 1));
  EXPECT_GT(host.holder_vmas("uid 1002"), 0u);
  // Releasing one of A's leases through the engine gives its share back.
  const uint64_t before = host.holder_vmas("uid 1001");
  ASSERT_OK(service->Release("uid 1001", a.back().id));
  EXPECT_LT(host.holder_vmas("uid 1001"), before);
  ASSERT_OK_AND_ASSIGN(LeaseInfo again, as("uid 1001", kPages - 1));
  EXPECT_EQ(host.holder_vmas("uid 1001"), before);
  a.back() = again;
  std::vector<LeaseId> ids = {b.id};
  for (const LeaseInfo& l : a) ids.push_back(l.id);
  EXPECT_EQ(service->RevokeLeases(ids, "test"), ids.size());
  EXPECT_EQ(host.holder_vmas("uid 1001"), 0u);
  EXPECT_EQ(host.holder_vmas("uid 1002"), 0u);
  EXPECT_EQ(host.vma_estimate(), 0u);
}

}  // namespace
}  // namespace pinbroker
