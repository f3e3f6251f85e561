// Tests of the C++ client library (clients/cpp) against an in-process broker on a Unix socket,
// with the host backend. The broker and the clients share one clock: a RealClock, or, for the
// tests about TTLs, grace periods and lapses (ClientSimTest), a SimulatedClock that only the
// test moves. Waits are event-driven (absl::Notification set by a callback) or poll the
// broker's engine or the client's state, always with a generous bound; none sleeps for a timer.

#include "pinbroker/client.h"

#include <sys/stat.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "broker/broker.h"
#include "common/real_clock.h"
#include "common/simulated_clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/clients/unix_proxy.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace pinbroker::client {
namespace {

using ::pinbroker::testing::IsOk;
using ::pinbroker::testing::StatusIs;
using ::pinbroker::testing::TempDir;
using ::testing::_;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// The safety bound of every wait; an event that should arrive within milliseconds.
constexpr absl::Duration kBound = absl::Seconds(30);
constexpr uint64_t kFilePages = 16;

// Polls `done` (for broker state that has no event to wait on) until it holds or kBound passes.
template <typename F>
bool WaitUntil(F done) {
  const absl::Time give_up = absl::Now() + kBound;
  while (!done()) {
    if (absl::Now() > give_up) return false;
    absl::SleepFor(absl::Milliseconds(2));
  }
  return true;
}

bool Wait(absl::Notification& n) { return n.WaitForNotificationWithTimeout(kBound); }

LayoutOptions Revoke(absl::Duration grace) {
  LayoutOptions o;
  o.policy = v1::LAYOUT_POLICY_REVOKE;
  o.grace = grace;
  return o;
}

class ClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(mkdir(dir_.Join("export").c_str(), 0755), 0);
    dir_.WriteFile("export/f", std::string(kFilePages * 4096, 'f'));
    dir_.WriteFile("export/g", std::string(kFilePages * 4096, 'g'));
    config_.add_listen(absl::StrCat("unix:", socket_path()));
    v1::ExportConfig* e = config_.add_exports();
    e->set_name("e");
    e->set_root(dir_.Join("export"));
    v1::ExportConfig* ro = config_.add_exports();
    ro->set_name("ro");
    ro->set_root(dir_.Join("export"));
    ro->set_read_only(true);
    StartBroker();
  }

  void StartBroker() {
    auto broker = broker::Broker::Start(config_, clock_);
    ASSERT_THAT(broker.status(), IsOk());
    broker_ = *std::move(broker);
  }

  std::string socket_path() const { return dir_.Join("s.sock"); }
  std::string endpoint() const { return absl::StrCat("unix:", socket_path()); }

  std::unique_ptr<Client> Connect(const std::string& name, ClientOptions options = {},
                                  std::string endpoint = "") {
    options.client_name = name;
    options.clock = clock_;
    auto client = Client::Connect(endpoint.empty() ? this->endpoint() : endpoint, options);
    EXPECT_THAT(client.status(), IsOk());
    return client.ok() ? *std::move(client) : nullptr;
  }

  static PinOptions Pin(const std::string& path, uint64_t offset = 0, uint64_t length = 4096) {
    PinOptions o;
    o.export_name = "e";
    o.path = path;
    o.offset = offset;
    o.length = length;
    o.access = v1::ACCESS_READ_WRITE;
    return o;
  }

  std::vector<LeaseInfo> EngineLeases() { return broker_->engine().ListLeases(LeaseFilter{}); }

  TempDir dir_{"/tmp"};
  RealClock real_clock_;
  SimulatedClock sim_clock_;
  Clock* clock_ = &real_clock_;  // The broker's and every client's.
  v1::BrokerConfig config_;
  std::unique_ptr<broker::Broker> broker_;
};

// The broker and the clients on a SimulatedClock: TTLs, grace periods and the session's lapse
// pass only when the test advances time.
class ClientSimTest : public ClientTest {
 protected:
  ClientSimTest() { clock_ = &sim_clock_; }
};

TEST_F(ClientTest, PinAndRelease) {
  auto client = Connect("pin-release");
  ASSERT_NE(client, nullptr);
  EXPECT_FALSE(client->session_id().empty());
  EXPECT_EQ(client->broker_epoch(), broker_->epoch());
  EXPECT_TRUE(client->watching());

  ASSERT_OK_AND_ASSIGN(auto lease, client->Pin(Pin("f", 100, 5000)));
  EXPECT_THAT(lease->id(), HasSubstr(broker_->epoch()));
  EXPECT_EQ(lease->range().offset, 0u);  // Whole pages.
  EXPECT_EQ(lease->range().length, 2 * broker_->engine().page_size());
  EXPECT_EQ(lease->mode(), v1::REGISTRATION_MODE_HOST);
  EXPECT_EQ(lease->access(), v1::ACCESS_READ_WRITE);
  EXPECT_EQ(lease->state(), LeaseState::kGranted);
  EXPECT_GT(lease->expires_at(), absl::Now());
  ASSERT_EQ(EngineLeases().size(), 1u);
  EXPECT_EQ(EngineLeases()[0].owner, client->session_id());

  EXPECT_OK(lease->Release());
  EXPECT_EQ(lease->state(), LeaseState::kReleased);
  EXPECT_THAT(EngineLeases(), IsEmpty());
  // A second release names the lease and says it is gone.
  EXPECT_THAT(lease->Release(),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr(lease->id() + " is no longer held")));
  EXPECT_THAT(lease->Renew(), StatusIs(absl::StatusCode::kNotFound, HasSubstr(lease->id())));
}

TEST_F(ClientTest, LeaseDestructorReleases) {
  auto client = Connect("destructor");
  ASSERT_NE(client, nullptr);
  ASSERT_OK_AND_ASSIGN(auto lease, client->Pin(Pin("f")));
  ASSERT_EQ(EngineLeases().size(), 1u);
  lease.reset();
  EXPECT_THAT(EngineLeases(), IsEmpty());
}

TEST_F(ClientTest, ClientDestructorClosesSessionAndLeasesOutliveIt) {
  auto client = Connect("closer");
  ASSERT_NE(client, nullptr);
  ASSERT_OK_AND_ASSIGN(auto a, client->Pin(Pin("f", 0)));
  ASSERT_OK_AND_ASSIGN(auto b, client->Pin(Pin("g", 4096)));
  ASSERT_EQ(EngineLeases().size(), 2u);
  ASSERT_EQ(broker_->sessions().size(), 1u);
  client.reset();
  EXPECT_THAT(EngineLeases(), IsEmpty());
  EXPECT_EQ(broker_->sessions().size(), 0u);
  // The handles outlive the client: they say what happened and refuse to act.
  EXPECT_EQ(a->state(), LeaseState::kReleased);
  EXPECT_THAT(b->Release(), StatusIs(absl::StatusCode::kNotFound, HasSubstr(b->id())));
}

TEST_F(ClientTest, ExplicitCloseIsIdempotentAndLaterCallsFail) {
  auto client = Connect("close-twice");
  ASSERT_NE(client, nullptr);
  ASSERT_OK_AND_ASSIGN(auto lease, client->Pin(Pin("f")));
  EXPECT_OK(client->Close());
  EXPECT_OK(client->Close());
  EXPECT_THAT(EngineLeases(), IsEmpty());
  EXPECT_THAT(client->Pin(Pin("f")).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("closed")));
  EXPECT_THAT(client->GetInfo().status(), StatusIs(absl::StatusCode::kFailedPrecondition, _));
}

TEST_F(ClientSimTest, BackgroundRenewalKeepsShortLeaseAlivePastItsTtl) {
  auto client = Connect("renewer");
  ASSERT_NE(client, nullptr);
  PinOptions o = Pin("f");
  o.ttl = absl::Seconds(1);
  std::atomic<int> revoked{0};
  o.on_revoked = [&](Lease&, absl::string_view) { ++revoked; };
  ASSERT_OK_AND_ASSIGN(auto lease, client->Pin(o));
  const absl::Time first_expiry = lease->expires_at();
  EXPECT_LE(first_expiry - lease->granted_at(), absl::Seconds(1));

  // Every half TTL the library renews the lease by its whole TTL. Four half TTLs take time a
  // whole TTL past the first expiry, each step waiting for that step's renewal to come back.
  for (int i = 0; i < 4; ++i) {
    sim_clock_.Advance(absl::Milliseconds(500));
    const absl::Time renewed_until = sim_clock_.Now() + absl::Seconds(1);
    ASSERT_TRUE(WaitUntil([&] { return lease->expires_at() >= renewed_until; })) << "renewal " << i;
  }
  // The original TTL has run out, and the broker's expiry has moved with the renewals.
  EXPECT_GT(sim_clock_.Now(), first_expiry + absl::Milliseconds(100));
  const std::vector<LeaseInfo> leases = EngineLeases();
  ASSERT_EQ(leases.size(), 1u);
  EXPECT_GE(leases[0].expires_at, first_expiry + absl::Milliseconds(900));
  EXPECT_GT(lease->expires_at(), first_expiry);
  EXPECT_EQ(lease->state(), LeaseState::kGranted);
  EXPECT_EQ(revoked.load(), 0);
  ASSERT_OK_AND_ASSIGN(v1::ListLeasesResponse listed, client->ListLeases());
  ASSERT_EQ(listed.leases_size(), 1);
  EXPECT_EQ(listed.leases(0).lease_id(), lease->id());
  EXPECT_OK(lease->Renew());
  EXPECT_OK(lease->Release());
}

TEST_F(ClientTest, RecallRunsCallbackAndReleaseInsideItCompletesTheTruncate) {
  auto holder = Connect("holder");
  auto other = Connect("truncater");
  ASSERT_NE(holder, nullptr);
  ASSERT_NE(other, nullptr);

  absl::Notification recalled;
  std::string reason;
  absl::Time deadline;
  absl::Status release_status = absl::UnknownError("not called");
  LeaseState state_in_callback = LeaseState::kGranted;
  PinOptions o = Pin("f", 8 * 4096);
  o.on_recall = [&](Lease& lease, absl::string_view why, absl::Time by) {
    reason = std::string(why);
    deadline = by;
    state_in_callback = lease.state();
    release_status = lease.Release();  // Calling back into the library from its callback.
    recalled.Notify();
  };
  ASSERT_OK_AND_ASSIGN(auto lease, holder->Pin(o));

  ASSERT_OK_AND_ASSIGN(v1::LayoutChangeResponse result,
                       other->Truncate("e", "f", 4096, Revoke(absl::Seconds(5))));
  ASSERT_TRUE(Wait(recalled));
  EXPECT_THAT(result.recalled_lease_ids(), ElementsAre(lease->id()));
  EXPECT_THAT(result.released_lease_ids(), ElementsAre(lease->id()));
  EXPECT_THAT(result.revoked_lease_ids(), IsEmpty());
  EXPECT_EQ(result.size_after(), 4096u);
  EXPECT_EQ(state_in_callback, LeaseState::kRecalling);
  EXPECT_THAT(reason, HasSubstr("truncate"));
  EXPECT_GT(deadline, absl::Now() - absl::Seconds(5));
  EXPECT_LT(deadline, absl::InfiniteFuture());
  EXPECT_OK(release_status);
  EXPECT_EQ(lease->state(), LeaseState::kReleased);
}

TEST_F(ClientSimTest, IgnoredRecallIsRevokedAfterGraceAndOperationsNameTheLease) {
  auto holder = Connect("ignorer");
  auto other = Connect("truncater");
  ASSERT_NE(holder, nullptr);
  ASSERT_NE(other, nullptr);

  absl::Notification recalled;
  absl::Notification revoked;
  std::string revoke_reason;
  LeaseState state_in_callback = LeaseState::kGranted;
  PinOptions o = Pin("f", 4 * 4096);
  o.on_recall = [&](Lease&, absl::string_view, absl::Time) { recalled.Notify(); };
  o.on_revoked = [&](Lease& lease, absl::string_view why) {
    revoke_reason = std::string(why);
    state_in_callback = lease.state();
    revoked.Notify();
  };
  ASSERT_OK_AND_ASSIGN(auto lease, holder->Pin(o));

  // The truncate returns once the grace has run out.
  absl::StatusOr<v1::LayoutChangeResponse> result;
  std::thread truncater(
      [&] { result = other->Truncate("e", "f", 0, Revoke(absl::Milliseconds(200))); });
  ASSERT_TRUE(Wait(recalled));
  EXPECT_FALSE(revoked.HasBeenNotified());
  sim_clock_.Advance(absl::Milliseconds(200));
  ASSERT_TRUE(Wait(revoked));
  truncater.join();
  ASSERT_THAT(result.status(), IsOk());
  EXPECT_THAT(result->revoked_lease_ids(), ElementsAre(lease->id()));
  EXPECT_EQ(state_in_callback, LeaseState::kRevoked);
  EXPECT_EQ(lease->state(), LeaseState::kRevoked);
  EXPECT_THAT(revoke_reason, HasSubstr("truncate"));
  EXPECT_THAT(lease->reason(), HasSubstr("truncate"));
  EXPECT_THAT(lease->Release(),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("lease " + lease->id() +
                                                              " is no longer held: "
                                                              "revoked")));
  EXPECT_THAT(lease->Renew(), StatusIs(absl::StatusCode::kNotFound, HasSubstr(lease->id())));
  EXPECT_THAT(EngineLeases(), IsEmpty());
}

TEST_F(ClientTest, ReleaseOnRecallReleasesWithoutAnyCallback) {
  auto holder = Connect("auto-release");
  auto other = Connect("truncater");
  ASSERT_NE(holder, nullptr);
  ASSERT_NE(other, nullptr);
  PinOptions o = Pin("g");
  o.release_on_recall = true;
  ASSERT_OK_AND_ASSIGN(auto lease, holder->Pin(o));

  ASSERT_OK_AND_ASSIGN(v1::LayoutChangeResponse result,
                       other->PunchHole("e", "g", 0, 4096, Revoke(absl::Seconds(5))));
  EXPECT_THAT(result.recalled_lease_ids(), ElementsAre(lease->id()));
  EXPECT_THAT(result.released_lease_ids(), ElementsAre(lease->id()));
  EXPECT_THAT(result.revoked_lease_ids(), IsEmpty());
  // The release happened before the punch hole returned; its RPC answer may still be on its
  // way to the holder's library.
  ASSERT_TRUE(WaitUntil([&] { return lease->state() == LeaseState::kReleased; }));
}

TEST_F(ClientSimTest, RecalledLeaseIsNotRenewedAndExpires) {
  auto holder = Connect("recalled-expires");
  auto other = Connect("truncater");
  ASSERT_NE(holder, nullptr);
  ASSERT_NE(other, nullptr);
  absl::Notification ended;
  PinOptions o = Pin("f");
  o.ttl = absl::Seconds(1);
  o.on_revoked = [&](Lease&, absl::string_view) { ended.Notify(); };
  ASSERT_OK_AND_ASSIGN(auto lease, holder->Pin(o));
  absl::StatusOr<v1::LayoutChangeResponse> result;
  std::thread truncater([&] { result = other->Truncate("e", "f", 0, Revoke(absl::Seconds(60))); });
  ASSERT_TRUE(WaitUntil([&] { return lease->state() == LeaseState::kRecalling; }));
  // The grace is far longer than the TTL: once the TTL has passed, the lease can only have
  // ended by expiring, which it does only if the library stopped renewing it when it was
  // recalled.
  sim_clock_.Advance(absl::Seconds(1));
  ASSERT_TRUE(Wait(ended));
  truncater.join();
  ASSERT_THAT(result.status(), IsOk());
  EXPECT_THAT(result->expired_lease_ids(), ElementsAre(lease->id()));
  EXPECT_EQ(lease->state(), LeaseState::kExpired);
  EXPECT_THAT(lease->Release(), StatusIs(absl::StatusCode::kNotFound, HasSubstr("expired")));
}

TEST_F(ClientTest, LeaseMayBeDestroyedInsideItsOwnCallback) {
  auto holder = Connect("self-destroy");
  auto other = Connect("truncater");
  ASSERT_NE(holder, nullptr);
  ASSERT_NE(other, nullptr);
  std::unique_ptr<Lease> lease;
  absl::Mutex mu;
  absl::Notification destroyed;
  PinOptions o = Pin("f");
  o.on_recall = [&](Lease&, absl::string_view, absl::Time) {
    std::unique_ptr<Lease> mine;
    {
      absl::MutexLock lock(&mu);
      mine = std::move(lease);
    }
    mine.reset();  // ~Lease on the callback thread releases it.
    destroyed.Notify();
  };
  std::string id;
  {
    ASSERT_OK_AND_ASSIGN(auto pinned, holder->Pin(o));
    id = pinned->id();
    absl::MutexLock lock(&mu);
    lease = std::move(pinned);
  }
  ASSERT_OK_AND_ASSIGN(v1::LayoutChangeResponse result,
                       other->Truncate("e", "f", 0, Revoke(absl::Seconds(5))));
  ASSERT_TRUE(Wait(destroyed));
  EXPECT_THAT(result.released_lease_ids(), ElementsAre(id));
}

TEST_F(ClientTest, ClientsAreIsolated) {
  auto a = Connect("a");
  auto b = Connect("b");
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  ASSERT_OK_AND_ASSIGN(auto lease, a->Pin(Pin("f")));

  EXPECT_THAT(b->ReleaseLeaseId(lease->id()),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("another session")));
  EXPECT_EQ(lease->state(), LeaseState::kGranted);
  ASSERT_EQ(EngineLeases().size(), 1u);

  // Anyone may list; the lease belongs to a's session.
  v1::ListLeasesRequest mine;
  mine.set_session_id(b->session_id());
  ASSERT_OK_AND_ASSIGN(v1::ListLeasesResponse b_leases, b->ListLeases(mine));
  EXPECT_THAT(b_leases.leases(), IsEmpty());
  v1::ListLeasesRequest theirs;
  theirs.set_session_id(a->session_id());
  ASSERT_OK_AND_ASSIGN(v1::ListLeasesResponse a_leases, b->ListLeases(theirs));
  ASSERT_EQ(a_leases.leases_size(), 1);
  EXPECT_EQ(a_leases.leases(0).lease_id(), lease->id());

  // Its owner may release it by id, and the handle follows.
  EXPECT_OK(a->ReleaseLeaseId(lease->id()));
  EXPECT_EQ(lease->state(), LeaseState::kReleased);
}

TEST_F(ClientTest, ErrorsCarryTheBrokersCodes) {
  auto client = Connect("errors");
  ASSERT_NE(client, nullptr);
  EXPECT_THAT(client->Pin(Pin("f", kFilePages * 4096, 4096)).status(),
              StatusIs(absl::StatusCode::kOutOfRange, _));
  EXPECT_THAT(client->Pin(Pin("f", 0, 0)).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, _));
  EXPECT_THAT(client->Pin(Pin("../s.sock")).status(),
              StatusIs(absl::StatusCode::kPermissionDenied, _));
  EXPECT_THAT(client->Pin(Pin("missing")).status(), StatusIs(absl::StatusCode::kNotFound, _));
  PinOptions ro = Pin("f");
  ro.export_name = "ro";
  EXPECT_THAT(client->Pin(ro).status(), StatusIs(absl::StatusCode::kPermissionDenied, _));
  PinOptions unknown = Pin("f");
  unknown.export_name = "nope";
  EXPECT_THAT(client->Pin(unknown).status(), StatusIs(absl::StatusCode::kNotFound, _));
  EXPECT_THAT(client->DescribeFile("e", "missing").status(),
              StatusIs(absl::StatusCode::kNotFound, _));
  EXPECT_THAT(client->Truncate("ro", "f", 0).status(),
              StatusIs(absl::StatusCode::kPermissionDenied, _));

  // A refused layout change names the lease in the way.
  ASSERT_OK_AND_ASSIGN(auto lease, client->Pin(Pin("f")));
  LayoutOptions refuse;
  refuse.policy = v1::LAYOUT_POLICY_REFUSE;
  EXPECT_THAT(client->Truncate("e", "f", 0, refuse).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr(lease->id())));

  // The wrappers return the broker's answers.
  ASSERT_OK_AND_ASSIGN(v1::DescribeFileResponse file, client->DescribeFile("e", "f"));
  EXPECT_EQ(file.size(), kFilePages * 4096);
  ASSERT_EQ(file.leases_size(), 1);
  EXPECT_EQ(file.leases(0).lease_id(), lease->id());
  ASSERT_OK_AND_ASSIGN(v1::GetInfoResponse info, client->GetInfo());
  EXPECT_EQ(info.epoch(), broker_->epoch());
  EXPECT_EQ(info.live_leases(), 1u);

  // Options and transport.
  ClientOptions chatty;
  chatty.keepalive_time = absl::Seconds(1);
  EXPECT_THAT(Client::Connect(endpoint(), chatty).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("keepalive")));
  EXPECT_THAT(Client::Connect(absl::StrCat("unix:", dir_.Join("nobody.sock")), {}).status(),
              StatusIs(absl::StatusCode::kUnavailable, _));
}

// Regression: destroying a Client could abort the process ("ref_counted.h assertion failed:
// prior > 0"). The Watch reactor was dropped on a gRPC callback thread after Close() had
// returned, taking the last channel reference with it, so gRPC shut its shared callback
// completion queue down from that queue's own thread. With no other channel alive, each
// iteration below is a chance to hit it; before the fix about one run in three of 300 did.
TEST_F(ClientTest, RegressionDestroyingClientsNeverDropsTheLastChannelOnAGrpcThread) {
  for (int i = 0; i < 150; ++i) {
    std::unique_ptr<Client> client = Connect(absl::StrCat("churn-", i));
    ASSERT_NE(client, nullptr);
    client.reset();
  }
  EXPECT_THAT(EngineLeases(), IsEmpty());
}

TEST_F(ClientSimTest, BrokerShutdownRevokesLeasesThenSessionIsLost) {
  absl::Notification recalled;
  absl::Notification revoked;
  absl::Notification lost;
  absl::Status lost_status;
  ClientOptions options;
  options.session_ttl = absl::Seconds(1);
  options.on_session_lost = [&](const absl::Status& why) {
    lost_status = why;
    lost.Notify();
  };
  auto client = Connect("shutdown", options);
  ASSERT_NE(client, nullptr);
  PinOptions o = Pin("f");
  o.on_recall = [&](Lease&, absl::string_view, absl::Time) { recalled.Notify(); };
  o.on_revoked = [&](Lease&, absl::string_view) { revoked.Notify(); };
  ASSERT_OK_AND_ASSIGN(auto lease, client->Pin(o));

  size_t revoked_count = 0;
  std::thread shutdown([&] { revoked_count = broker_->Shutdown(absl::Milliseconds(200)); });
  ASSERT_TRUE(Wait(recalled));
  sim_clock_.Advance(absl::Milliseconds(200));  // The shutdown's grace runs out.
  ASSERT_TRUE(Wait(revoked));
  shutdown.join();
  EXPECT_EQ(revoked_count, 1u);
  EXPECT_EQ(lease->state(), LeaseState::kRevoked);
  EXPECT_THAT(lease->reason(), HasSubstr("shutting down"));

  // Nothing answers any more; once the session TTL has passed without contact, it is lost.
  ASSERT_TRUE(WaitUntil([&] { return !client->watching(); }));
  EXPECT_FALSE(lost.HasBeenNotified());
  EXPECT_OK(client->session_status());
  sim_clock_.Advance(absl::Seconds(1));
  ASSERT_TRUE(Wait(lost));
  EXPECT_THAT(lost_status, StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("session")));
  EXPECT_THAT(client->session_status(), StatusIs(absl::StatusCode::kUnauthenticated, _));
  EXPECT_FALSE(client->watching());
  EXPECT_THAT(client->Pin(Pin("f")).status(), StatusIs(absl::StatusCode::kUnauthenticated, _));
  EXPECT_THAT(lease->Release(), StatusIs(absl::StatusCode::kNotFound, HasSubstr(lease->id())));
}

TEST_F(ClientTest, BrokerRestartEndsSessionWithUnauthenticated) {
  absl::Notification lost;
  absl::Status lost_status;
  ClientOptions options;
  options.on_session_lost = [&](const absl::Status& why) {
    lost_status = why;
    lost.Notify();
  };
  auto client = Connect("restart", options);
  ASSERT_NE(client, nullptr);
  ASSERT_OK_AND_ASSIGN(auto lease, client->Pin(Pin("f")));
  broker_->Shutdown(absl::ZeroDuration());
  broker_.reset();
  StartBroker();
  ASSERT_NE(broker_, nullptr);

  // The client reopens its Watch stream against the new broker, which does not know the
  // session.
  ASSERT_TRUE(Wait(lost));
  EXPECT_THAT(lost_status,
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("is not open here")));
  EXPECT_EQ(lease->state(), LeaseState::kRevoked);
  EXPECT_THAT(client->Pin(Pin("f")).status(), StatusIs(absl::StatusCode::kUnauthenticated, _));

  // A new client works.
  auto fresh = Connect("fresh");
  ASSERT_NE(fresh, nullptr);
  ASSERT_OK_AND_ASSIGN(auto again, fresh->Pin(Pin("f")));
  EXPECT_EQ(again->state(), LeaseState::kGranted);
}

// Connections through a proxy that the test can cut, to break the Watch stream while the
// broker (and the session) live on.
class ClientReconnectTest : public ClientTest {
 protected:
  void SetUp() override {
    ClientTest::SetUp();
    proxy_ = std::make_unique<testing::UnixProxy>(dir_.Join("p.sock"), socket_path());
  }
  void TearDown() override { proxy_.reset(); }

  std::unique_ptr<testing::UnixProxy> proxy_;
};

TEST_F(ClientReconnectTest, LeaseRevokedWhileDisconnectedIsReportedFromTheNewSnapshot) {
  absl::Notification revoked;
  std::string reason;
  auto holder = Connect("far-away", {}, proxy_->address());
  auto other = Connect("truncater");
  ASSERT_NE(holder, nullptr);
  ASSERT_NE(other, nullptr);
  PinOptions doomed = Pin("f");
  doomed.on_revoked = [&](Lease&, absl::string_view why) {
    reason = std::string(why);
    revoked.Notify();
  };
  ASSERT_OK_AND_ASSIGN(auto lost_lease, holder->Pin(doomed));
  ASSERT_OK_AND_ASSIGN(auto kept_lease, holder->Pin(Pin("g")));

  proxy_->CutAndBlock();
  // The recall and the revocation go to a stream nobody reads.
  ASSERT_OK_AND_ASSIGN(v1::LayoutChangeResponse result,
                       other->Truncate("e", "f", 0, Revoke(absl::Milliseconds(100))));
  EXPECT_THAT(result.revoked_lease_ids(), ElementsAre(lost_lease->id()));
  EXPECT_EQ(lost_lease->state(), LeaseState::kGranted);  // The client cannot know yet.
  proxy_->Unblock();

  ASSERT_TRUE(Wait(revoked));
  EXPECT_THAT(reason, HasSubstr("Watch stream was down"));
  EXPECT_EQ(lost_lease->state(), LeaseState::kRevoked);
  EXPECT_GE(holder->watch_reconnects(), 1u);
  EXPECT_OK(holder->session_status());
  EXPECT_EQ(kept_lease->state(), LeaseState::kGranted);
  EXPECT_OK(kept_lease->Release());
}

TEST_F(ClientReconnectTest, RecallMissedWhileDisconnectedIsDeliveredFromTheNewSnapshot) {
  absl::Notification recalled;
  std::string reason;
  auto holder = Connect("far-away", {}, proxy_->address());
  auto other = Connect("truncater");
  ASSERT_NE(holder, nullptr);
  ASSERT_NE(other, nullptr);
  PinOptions o = Pin("f");
  o.on_recall = [&](Lease& lease, absl::string_view why, absl::Time) {
    reason = std::string(why);
    EXPECT_OK(lease.Release());
    recalled.Notify();
  };
  ASSERT_OK_AND_ASSIGN(auto lease, holder->Pin(o));

  proxy_->CutAndBlock();
  absl::StatusOr<v1::LayoutChangeResponse> result;
  std::thread truncater([&] { result = other->Truncate("e", "f", 0, Revoke(absl::Seconds(60))); });
  ASSERT_TRUE(WaitUntil([&] {
    const std::vector<LeaseInfo> leases = EngineLeases();
    return leases.size() == 1 && leases[0].state == pinbroker::LeaseState::kRecalling;
  }));
  proxy_->Unblock();
  ASSERT_TRUE(Wait(recalled));
  truncater.join();
  ASSERT_THAT(result.status(), IsOk());
  EXPECT_THAT(result->released_lease_ids(), ElementsAre(lease->id()));
  EXPECT_THAT(reason, HasSubstr("truncate"));
  EXPECT_EQ(lease->state(), LeaseState::kReleased);
}

}  // namespace
}  // namespace pinbroker::client
