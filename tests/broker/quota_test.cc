// Quotas through a real in-process Broker: each identity (here: real kernel uids) is bounded in
// sessions, leases, pinned bytes, Watch streams, blocked calls and host-backend VMAs (a flood of
// separate one-page pins on the real host backend); exceeding one is
// RESOURCE_EXHAUSTED naming the quota, the identity, its use and the limit, leaves nothing
// behind, and does not affect another identity. Counts come back on release, close, lapse and
// expiry; the broker-wide budget refuses a pin before the backend pins anything.
//
// Callers with other uids connect from a thread that took that uid for itself alone
// (ConnectAs, broker_fixture.h); that needs root, and the tests skip with the reason otherwise.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "broker/broker.h"
#include "common/simulated_clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pinbroker/v1/pinbroker.grpc.pb.h"
#include "pinning/host_backend.h"
#include "tests/broker/broker_fixture.h"
#include "tests/testing/fake_backend.h"
#include "tests/testing/process_maps.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace pinbroker::broker {
namespace {

namespace v1 = ::pinbroker::v1;
using ::pinbroker::testing::MapCountOf;
using ::pinbroker::testing::StatusIs;
using ::testing::HasSubstr;

constexpr uid_t kUserA = 61011;
constexpr uid_t kUserB = 61012;

// A connection of one caller, with the calls these tests make.
class Client : public testing::PeerClient {
 public:
  using PeerClient::PeerClient;

  absl::Status CloseSession(const v1::SessionCredentials& creds) {
    v1::CloseSessionRequest request;
    *request.mutable_credentials() = creds;
    return Call(&v1::PinBroker::Stub::CloseSession, request).status();
  }
  absl::StatusOr<v1::Lease> Pin(const v1::SessionCredentials& creds, uint64_t first_page,
                                uint64_t pages, const std::string& export_name = "exp",
                                int64_t wait_if_blocked_seconds = 0) {
    v1::PinRequest request;
    request.mutable_wait_if_blocked()->set_seconds(wait_if_blocked_seconds);
    *request.mutable_credentials() = creds;
    request.set_export_name(export_name);
    request.set_path("data");
    request.set_offset(first_page * SystemPageSize());
    request.set_length(pages * SystemPageSize());
    request.set_access(v1::ACCESS_READ);
    request.mutable_ttl()->set_seconds(60);
    auto response = Call(&v1::PinBroker::Stub::Pin, request);
    if (!response.ok()) return response.status();
    return response->lease();
  }
  absl::Status Release(const v1::SessionCredentials& creds, const v1::Lease& lease) {
    v1::ReleaseRequest request;
    *request.mutable_credentials() = creds;
    request.set_lease_id(lease.lease_id());
    return Call(&v1::PinBroker::Stub::Release, request).status();
  }
  v1::QuotaUsage Usage() {
    auto info = Call(&v1::PinBroker::Stub::GetInfo, v1::GetInfoRequest());
    EXPECT_TRUE(info.ok()) << info.status();
    return info.ok() ? info->quota() : v1::QuotaUsage();
  }
  absl::StatusOr<v1::GetInfoResponse> Info() {
    return Call(&v1::PinBroker::Stub::GetInfo, v1::GetInfoRequest());
  }
};

// A connection to the broker at `socket` from uid (and gid) `uid`.
Client ConnectedAs(const std::string& socket, uid_t uid) {
  const int fd = testing::ConnectAs(socket, {uid, uid, {uid}});
  EXPECT_GE(fd, 0) << "connect as uid " << uid;
  return Client(fd);
}

class QuotaTest : public ::testing::Test {
 protected:
  static constexpr uint64_t kPages = 16;

  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root: callers take other uids (CAP_SETUID)";
    ASSERT_EQ(chmod(dir_.path().c_str(), 0755), 0);
    dir_.WriteFile("data", std::string(kPages * page_, 'q'));
    ASSERT_EQ(chmod(dir_.Join("data").c_str(), 0666), 0);
    v1::BrokerConfig config;
    socket_ = dir_.Join("s.sock");
    config.add_listen("unix:" + socket_);
    config.set_listen_mode("0666");
    for (const char* name : {"exp", "small"}) {
      v1::ExportConfig* e = config.add_exports();
      e->set_name(name);
      e->set_root(dir_.path());
    }
    config.mutable_exports(1)->mutable_quotas()->set_max_leases(1);
    config.mutable_session_ttl()->set_seconds(30);
    v1::QuotaConfig* q = config.mutable_quotas();
    q->set_max_sessions(2);
    q->set_max_leases(3);
    q->set_max_pinned_bytes(6 * page_);
    q->set_max_watches(1);
    q->set_max_blocked_calls(1);
    config.set_max_pinned_bytes_total(8 * page_);
    auto backend = std::make_unique<pinbroker::testing::FakeBackend>();
    backend_ = backend.get();
    auto broker = Broker::Start(config, &clock_, std::move(backend));
    ASSERT_TRUE(broker.ok()) << broker.status();
    broker_ = *std::move(broker);
  }

  Client As(uid_t uid) { return ConnectedAs(socket_, uid); }

  const uint64_t page_ = SystemPageSize();
  SimulatedClock clock_;
  pinbroker::testing::TempDir dir_{"/tmp"};
  std::string socket_;
  pinbroker::testing::FakeBackend* backend_ = nullptr;
  std::unique_ptr<Broker> broker_;
};

TEST_F(QuotaTest, SessionsAreBoundedPerIdentityAndComeBackOnCloseAndLapse) {
  Client a = As(kUserA);
  Client b = As(kUserB);
  auto s1 = a.OpenSession();
  auto s2 = a.OpenSession();
  ASSERT_TRUE(s1.ok() && s2.ok());
  EXPECT_THAT(a.OpenSession().status(),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       absl::StrCat("uid ", kUserA, " holds 2 sessions; quota max_sessions is 2")));
  EXPECT_EQ(broker_->sessions().size(), 2u);  // Nothing half-opened.
  auto other = b.OpenSession();
  ASSERT_TRUE(other.ok()) << other.status();
  EXPECT_TRUE(b.Pin(*other, 0, 1).ok());

  ASSERT_TRUE(a.CloseSession(*s1).ok());
  EXPECT_EQ(a.Usage().sessions(), 1u);
  auto s3 = a.OpenSession();
  ASSERT_TRUE(s3.ok()) << s3.status();
  clock_.Advance(absl::Seconds(31));  // Both of A's sessions lapse.
  const v1::QuotaUsage usage = a.Usage();
  EXPECT_EQ(usage.identity(), absl::StrCat("uid ", kUserA));
  EXPECT_EQ(usage.sessions(), 0u);
  EXPECT_EQ(usage.max_sessions(), 2u);
  EXPECT_TRUE(a.OpenSession().ok());
}

TEST_F(QuotaTest, LeasesAreBoundedPerIdentityAndComeBackOnReleaseCloseAndExpiry) {
  Client a = As(kUserA);
  Client b = As(kUserB);
  auto session = a.OpenSession();
  ASSERT_TRUE(session.ok());
  auto first = a.Pin(*session, 0, 1);
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE(a.Pin(*session, 1, 1).ok());
  ASSERT_TRUE(a.Pin(*session, 2, 1).ok());
  const size_t pins = backend_->count(pinbroker::testing::FakeBackend::Call::Kind::kPin);
  EXPECT_THAT(a.Pin(*session, 3, 1).status(),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       absl::StrCat("uid ", kUserA, " holds 3 leases; quota max_leases is 3")));
  EXPECT_EQ(backend_->count(pinbroker::testing::FakeBackend::Call::Kind::kPin), pins);
  EXPECT_EQ(broker_->engine().live_lease_count(), 3u);
  auto theirs = b.OpenSession();
  ASSERT_TRUE(theirs.ok());
  EXPECT_TRUE(b.Pin(*theirs, 3, 1).ok());

  ASSERT_TRUE(a.Release(*session, *first).ok());
  EXPECT_EQ(a.Usage().leases(), 2u);
  EXPECT_TRUE(a.Pin(*session, 0, 1).ok());
  ASSERT_TRUE(a.CloseSession(*session).ok());
  v1::QuotaUsage usage = a.Usage();
  EXPECT_EQ(usage.leases(), 0u);
  EXPECT_EQ(usage.pinned_bytes(), 0u);

  auto again = a.OpenSession();
  ASSERT_TRUE(again.ok());
  ASSERT_TRUE(a.Pin(*again, 4, 2).ok());
  EXPECT_EQ(a.Usage().pinned_bytes(), 2 * page_);
  clock_.Advance(absl::Seconds(61));  // The lease (and both sessions) run out.
  usage = a.Usage();
  EXPECT_EQ(usage.leases(), 0u);
  EXPECT_EQ(usage.pinned_bytes(), 0u);
  EXPECT_EQ(b.Usage().leases(), 0u);
}

TEST_F(QuotaTest, PinnedBytesPerIdentityPerExportAndTheBrokerBudget) {
  Client a = As(kUserA);
  Client b = As(kUserB);
  auto mine = a.OpenSession();
  auto theirs = b.OpenSession();
  ASSERT_TRUE(mine.ok() && theirs.ok());
  ASSERT_TRUE(a.Pin(*mine, 0, 5).ok());
  EXPECT_THAT(a.Pin(*mine, 5, 2).status(),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       absl::StrCat("uid ", kUserA, " holds ", 5 * page_,
                                    " pinned bytes and this pin needs ", 2 * page_,
                                    " more; quota max_pinned_bytes is ", 6 * page_)));
  // Export "small" allows each identity one lease.
  ASSERT_TRUE(a.Pin(*mine, 5, 1, "small").ok());
  EXPECT_THAT(b.Pin(*theirs, 6, 1, "small").status(), ::absl::OkStatus());
  EXPECT_THAT(b.Pin(*theirs, 7, 1, "small").status(),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       absl::StrCat("uid ", kUserB,
                                    " holds 1 leases on export small; quota max_leases of "
                                    "export small is 1")));
  // 7 of the broker's 8 pages are held; B's 2-page pin would pass its own quota, not the budget.
  const size_t pins = backend_->count(pinbroker::testing::FakeBackend::Call::Kind::kPin);
  EXPECT_THAT(b.Pin(*theirs, 8, 2).status(),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       absl::StrCat("the broker holds ", 7 * page_,
                                    " pinned bytes and this pin by "
                                    "uid ",
                                    kUserB, " needs ", 2 * page_,
                                    " more; its budget max_pinned_bytes_total is ", 8 * page_)));
  EXPECT_EQ(backend_->count(pinbroker::testing::FakeBackend::Call::Kind::kPin), pins);
  EXPECT_EQ(b.Usage().leases(), 1u);  // The refused pin left nothing behind.
  EXPECT_TRUE(b.Pin(*theirs, 8, 1).ok());
  auto info = b.Info();
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->max_pinned_bytes_total(), 8 * page_);
  EXPECT_EQ(info->quota().pinned_bytes(), 2 * page_);
  EXPECT_EQ(info->quota().max_pinned_bytes(), 6 * page_);
}

TEST_F(QuotaTest, WatchStreamsAreBoundedPerIdentity) {
  Client a = As(kUserA);
  Client b = As(kUserB);
  auto s1 = a.OpenSession();
  auto s2 = a.OpenSession();
  auto theirs = b.OpenSession();
  ASSERT_TRUE(s1.ok() && s2.ok() && theirs.ok());
  v1::WatchRequest request;
  *request.mutable_credentials() = *s1;
  auto first_context = std::make_unique<grpc::ClientContext>();
  auto first = a.stub()->Watch(first_context.get(), request);
  v1::WatchEvent event;
  ASSERT_TRUE(first->Read(&event));  // SNAPSHOT_COMPLETE: the stream is open.
  EXPECT_EQ(event.type(), v1::WatchEvent::SNAPSHOT_COMPLETE);

  *request.mutable_credentials() = *s2;
  grpc::ClientContext second_context;
  auto second = a.stub()->Watch(&second_context, request);
  EXPECT_FALSE(second->Read(&event));
  const grpc::Status refused = second->Finish();
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(refused.error_message(),
            absl::StrCat("uid ", kUserA, " holds 1 Watch streams; quota max_watches is 1"));

  *request.mutable_credentials() = *theirs;
  grpc::ClientContext their_context;
  auto their_stream = b.stub()->Watch(&their_context, request);
  ASSERT_TRUE(their_stream->Read(&event));
  EXPECT_EQ(b.Usage().watches(), 1u);
  their_context.TryCancel();
  while (their_stream->Read(&event)) {
  }
  their_stream->Finish().IgnoreError();

  first_context->TryCancel();
  while (first->Read(&event)) {
  }
  first->Finish().IgnoreError();
  // The stream's end reaches the broker asynchronously: wait for its count to come back.
  for (int i = 0; i < 500 && a.Usage().watches() != 0; ++i) absl::SleepFor(absl::Milliseconds(10));
  EXPECT_EQ(a.Usage().watches(), 0u);
}

TEST_F(QuotaTest, BlockedCallsAreBoundedPerIdentity) {
  Client a = As(kUserA);
  auto session = a.OpenSession();
  ASSERT_TRUE(session.ok());
  ASSERT_TRUE(a.Pin(*session, 0, 1).ok());
  const auto truncate = [](Client& client) {
    v1::TruncateRequest request;
    request.set_export_name("exp");
    request.set_path("data");
    request.set_new_size(0);
    request.mutable_options()->set_policy(v1::LAYOUT_POLICY_REVOKE);
    request.mutable_options()->mutable_grace()->set_seconds(10);
    return client.Call(&v1::PinBroker::Stub::Truncate, request).status();
  };
  // A's own lease holds the truncate in its revoke grace (on the simulated clock).
  absl::Status waited;
  Client a2 = As(kUserA);
  std::thread blocked([&] { waited = truncate(a2); });
  const auto recalling = [&] {
    for (const LeaseInfo& lease : broker_->engine().ListLeases(LeaseFilter())) {
      if (lease.state == LeaseState::kRecalling) return true;
    }
    return false;
  };
  // Until the truncate has recalled the lease (its grace deadline is set then).
  for (int i = 0; i < 500 && !recalling(); ++i) absl::SleepFor(absl::Milliseconds(10));
  EXPECT_EQ(a.Usage().blocked_calls(), 1u);
  EXPECT_THAT(truncate(a),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       absl::StrCat("uid ", kUserA,
                                    " holds 1 blocked calls; quota max_blocked_calls is 1")));
  // Another identity's calls are not held back by A's.
  Client b = As(kUserB);
  EXPECT_EQ(b.Usage().blocked_calls(), 0u);
  clock_.Advance(absl::Seconds(11));
  blocked.join();
  EXPECT_TRUE(waited.ok()) << waited;
  EXPECT_EQ(a.Usage().blocked_calls(), 0u);
}

TEST_F(QuotaTest, APinThatMayWaitIsABlockedCallAndIsGrantedWhenTheBlockLifts) {
  Client a = As(kUserA);
  auto a_session = a.OpenSession();
  ASSERT_TRUE(a_session.ok());
  ASSERT_TRUE(a.Pin(*a_session, 0, 1).ok());
  // A's punch of page 0 waits in its revoke grace for A's lease (on the simulated clock),
  // blocking new pins of the page meanwhile.
  absl::Status punched;
  Client a2 = As(kUserA);
  std::thread punch([&] {
    v1::PunchHoleRequest request;
    request.set_export_name("exp");
    request.set_path("data");
    request.set_offset(0);
    request.set_length(page_);
    request.mutable_options()->set_policy(v1::LAYOUT_POLICY_REVOKE);
    request.mutable_options()->mutable_grace()->set_seconds(10);
    punched = a2.Call(&v1::PinBroker::Stub::PunchHole, request).status();
  });
  const auto recalling = [&] {
    for (const LeaseInfo& lease : broker_->engine().ListLeases(LeaseFilter())) {
      if (lease.state == LeaseState::kRecalling) return true;
    }
    return false;
  };
  for (int i = 0; i < 500 && !recalling(); ++i) absl::SleepFor(absl::Milliseconds(10));
  ASSERT_TRUE(recalling());

  Client b = As(kUserB);
  auto b_session = b.OpenSession();
  ASSERT_TRUE(b_session.ok());
  EXPECT_THAT(b.Pin(*b_session, 0, 1),
              StatusIs(absl::StatusCode::kAborted, HasSubstr("blocked by a layout change")));
  absl::StatusOr<v1::Lease> waited = absl::UnknownError("not answered");
  std::thread waiting([&] { waited = b.Pin(*b_session, 0, 1, "exp", /*wait=*/60); });
  for (int i = 0; i < 500 && b.Usage().blocked_calls() == 0; ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(b.Usage().blocked_calls(), 1u);
  // The waiting pin is B's one blocked call; A's punch is A's.
  Client b2 = As(kUserB);
  EXPECT_THAT(b2.Pin(*b_session, 0, 1, "exp", /*wait=*/60),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       absl::StrCat("uid ", kUserB,
                                    " holds 1 blocked calls; quota max_blocked_calls is 1")));
  EXPECT_EQ(a.Usage().blocked_calls(), 1u);

  // The grace ends: A's lease is revoked, the hole punched, the block lifted, and B's pin goes on.
  clock_.Advance(absl::Seconds(11));
  punch.join();
  waiting.join();
  EXPECT_TRUE(punched.ok()) << punched;
  ASSERT_TRUE(waited.ok()) << waited.status();
  EXPECT_EQ(waited->range().offset(), 0u);
  EXPECT_EQ(waited->range().length(), page_);
  EXPECT_EQ(b.Usage().blocked_calls(), 0u);
  EXPECT_EQ(a.Usage().blocked_calls(), 0u);
}

// A real broker with the real host backend and the default limits, on a big tmpfs file.
class HostFloodTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root: callers take other uids (CAP_SETUID)";
    ASSERT_EQ(chmod(dir_.path().c_str(), 0755), 0);
    // Room for one identity's share of separate pages and then some. Allocated, not sparse: a pin
    // that faults in a hole changes the file's block count, and the guard sweeps the whole file
    // again on the next grant, which across thousands of holes would time the guard, not this.
    pages_ = 2 * HostBackend::DefaultMaxVmas() + 64;
    path_ = dir_.Join("big");
    dir_.WriteFile("big", "");
    {
      const int fd = open(path_.c_str(), O_RDWR | O_CLOEXEC);
      ASSERT_GE(fd, 0);
      EXPECT_EQ(posix_fallocate(fd, 0, static_cast<off_t>(pages_ * page_)), 0);
      close(fd);
    }
    ASSERT_EQ(chmod(path_.c_str(), 0666), 0);
    v1::BrokerConfig config;
    socket_ = dir_.Join("s.sock");
    config.add_listen("unix:" + socket_);
    config.set_listen_mode("0666");
    config.set_backend("host");
    v1::ExportConfig* e = config.add_exports();
    e->set_name("exp");
    e->set_root(dir_.path());
    auto broker = Broker::Start(config, &clock_);
    ASSERT_TRUE(broker.ok()) << broker.status();
    broker_ = *std::move(broker);
    ASSERT_NE(broker_->host_backend(), nullptr);
  }

  Client As(uid_t uid) { return ConnectedAs(socket_, uid); }

  absl::StatusOr<v1::Lease> PinPage(Client& client, const v1::SessionCredentials& creds,
                                    uint64_t page) {
    v1::PinRequest request;
    *request.mutable_credentials() = creds;
    request.set_export_name("exp");
    request.set_path("big");
    request.set_offset(page * page_);
    request.set_length(page_);
    request.set_access(v1::ACCESS_READ);
    auto response = client.Call(&v1::PinBroker::Stub::Pin, request);
    if (!response.ok()) return response.status();
    return response->lease();
  }

  const uint64_t page_ = SystemPageSize();
  uint64_t pages_ = 0;
  SimulatedClock clock_;
  pinbroker::testing::TempDir dir_{"/dev/shm"};
  std::string path_;
  std::string socket_;
  std::unique_ptr<Broker> broker_;
};

// Identity A floods one-page pins of separate pages until its share of the host backend's VMAs
// runs out; the broker's own mappings of the file stay within the limit, B still pins, and A's
// CloseSession gives everything back.
TEST_F(HostFloodTest, OneIdentityFloodingSeparatePagesLeavesTheOthersTheirShare) {
  Client a = As(kUserA);
  Client b = As(kUserB);
  auto mine = a.OpenSession();
  ASSERT_TRUE(mine.ok()) << mine.status();
  auto limits = a.Info();
  ASSERT_TRUE(limits.ok()) << limits.status();
  const uint64_t max_vmas_total = limits->max_vmas_total();
  const uint64_t share = limits->quota().max_vmas();
  EXPECT_EQ(max_vmas_total, HostBackend::DefaultMaxVmas());
  EXPECT_EQ(share, max_vmas_total / 2);

  uint64_t granted = 0;
  size_t most_vmas = 0;
  absl::Status refused;
  for (uint64_t page = 0; page < pages_; page += 2) {
    auto lease = PinPage(a, *mine, page);
    if (!lease.ok()) {
      refused = lease.status();
      break;
    }
    ++granted;
    if (granted % 512 == 0) most_vmas = std::max(most_vmas, MapCountOf(path_));
  }
  EXPECT_THAT(refused,
              StatusIs(absl::StatusCode::kResourceExhausted,
                       ::testing::AllOf(HasSubstr(absl::StrCat("uid ", kUserA, " holds")),
                                        HasSubstr(absl::StrCat("share max_vmas is ", share)))));
  ASSERT_GT(granted, 0u);
  most_vmas = std::max(most_vmas, MapCountOf(path_));  // The flood only ever added VMAs.
  EXPECT_LE(most_vmas, share);
  auto usage = a.Info();
  ASSERT_TRUE(usage.ok()) << usage.status();
  EXPECT_EQ(usage->live_leases(), granted);
  EXPECT_LE(usage->quota().vmas(), share);
  EXPECT_GT(usage->quota().vmas() + 2, share);  // No further separate page fits.
  EXPECT_LE(usage->vmas(), max_vmas_total);

  // B pins a separate page, and a page between two of A's, and releases them.
  auto theirs = b.OpenSession();
  ASSERT_TRUE(theirs.ok()) << theirs.status();
  auto far = PinPage(b, *theirs, pages_ - 1);
  ASSERT_TRUE(far.ok()) << far.status();
  auto between = PinPage(b, *theirs, 1);
  ASSERT_TRUE(between.ok()) << between.status();
  EXPECT_LE(MapCountOf(path_), max_vmas_total);
  auto b_usage = b.Info();
  ASSERT_TRUE(b_usage.ok()) << b_usage.status();
  EXPECT_GT(b_usage->quota().vmas(), 0u);
  EXPECT_TRUE(b.Release(*theirs, *far).ok());
  EXPECT_TRUE(b.Release(*theirs, *between).ok());
  EXPECT_EQ(b.Info()->quota().vmas(), 0u);

  v1::DescribeFileRequest describe;
  describe.set_export_name("exp");
  describe.set_path("big");
  auto described = a.Call(&v1::PinBroker::Stub::DescribeFile, describe);
  ASSERT_TRUE(described.ok()) << described.status();
  EXPECT_EQ(static_cast<uint64_t>(described->leases_size()), granted);

  EXPECT_TRUE(a.CloseSession(*mine).ok());
  v1::ListLeasesRequest list;
  auto listed = a.Call(&v1::PinBroker::Stub::ListLeases, list);
  ASSERT_TRUE(listed.ok()) << listed.status();
  EXPECT_EQ(listed->leases_size(), 0);
  EXPECT_EQ(broker_->engine().live_lease_count(), 0u);
  auto after = a.Info();
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->live_leases(), 0u);
  EXPECT_EQ(after->pinned_bytes(), 0u);
  EXPECT_EQ(after->quota().pinned_bytes(), 0u);
  EXPECT_EQ(after->quota().vmas(), 0u);
  EXPECT_EQ(after->vmas(), 0u);
  EXPECT_EQ(MapCountOf(path_), 0u);
}

}  // namespace
}  // namespace pinbroker::broker
