// The PinBroker gRPC service, end to end in one process: every RPC and its error paths, through
// the generated stub and a real gRPC server, on a simulated clock.
#include "broker/pin_broker_service.h"

#include <sys/stat.h>

#include <atomic>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "broker/config.h"
#include "broker/proto_convert.h"
#include "broker/request_limits.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/broker/broker_fixture.h"

namespace pinbroker::broker {
namespace {

using ::pinbroker::testing::IsOk;
using ::pinbroker::testing::StatusIs;
using ::testing::_;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using ::testing::SizeIs;
using Stub = v1::PinBroker::Stub;
using Code = absl::StatusCode;

class PinBrokerServiceTest : public testing::BrokerTest {
 protected:
  std::vector<v1::Lease> List(const v1::ListLeasesRequest& request = {}) {
    auto response = Call(&Stub::ListLeases, request);
    EXPECT_OK(response.status());
    return response.ok()
               ? std::vector<v1::Lease>(response->leases().begin(), response->leases().end())
               : std::vector<v1::Lease>{};
  }
};

// --- broker ---

TEST_F(PinBrokerServiceTest, GetInfoDescribesTheBroker) {
  ASSERT_OK_AND_ASSIGN(v1::GetInfoResponse info, Call(&Stub::GetInfo, v1::GetInfoRequest()));
  EXPECT_EQ(info.epoch(), broker_->epoch());
  EXPECT_EQ(info.backend(), "fake");
  EXPECT_EQ(info.page_size(), page_);
  ASSERT_THAT(info.exports(), SizeIs(2));
  EXPECT_EQ(info.exports(0).name(), "exp");
  EXPECT_EQ(info.exports(0).default_policy(), v1::LAYOUT_POLICY_REVOKE);
  EXPECT_EQ(info.exports(0).grace().seconds(), 5);
  EXPECT_TRUE(info.exports(1).read_only());
  EXPECT_EQ(info.session_ttl().seconds(), 30);
  EXPECT_FALSE(info.version().empty());
}

TEST_F(PinBrokerServiceTest, EchoReturnsThePayload) {
  v1::EchoRequest request;
  request.set_payload("ping");
  ASSERT_OK_AND_ASSIGN(v1::EchoResponse response, Call(&Stub::Echo, request));
  EXPECT_EQ(response.payload(), "ping");
}

// --- sessions ---

TEST_F(PinBrokerServiceTest, OpenSessionGivesAnIdAnd128BitToken) {
  v1::SessionCredentials a = OpenSession();
  v1::SessionCredentials b = OpenSession();
  EXPECT_THAT(a.token(), MatchesRegex("[0-9a-f]{32}"));
  EXPECT_NE(a.token(), b.token());
  EXPECT_NE(a.session_id(), b.session_id());
  EXPECT_THAT(a.session_id(), HasSubstr(broker_->epoch()));
}

TEST_F(PinBrokerServiceTest, NegativeSessionTtlIsInvalidArgument) {
  v1::OpenSessionRequest request;
  request.mutable_ttl()->set_seconds(-1);
  EXPECT_THAT(Call(&Stub::OpenSession, request),
              StatusIs(Code::kInvalidArgument, HasSubstr("ttl")));
}

TEST_F(PinBrokerServiceTest, PinWithoutCredentialsIsUnauthenticated) {
  EXPECT_THAT(Pin(v1::SessionCredentials(), 0, 1),
              StatusIs(Code::kUnauthenticated, HasSubstr("OpenSession")));
  EXPECT_EQ(backend_->held(), 0u);
}

TEST_F(PinBrokerServiceTest, PinWithAWrongTokenIsUnauthenticated) {
  v1::SessionCredentials creds = OpenSession();
  creds.set_token(std::string(32, '0'));
  EXPECT_THAT(Pin(creds, 0, 1), StatusIs(Code::kUnauthenticated, HasSubstr("wrong token")));
}

TEST_F(PinBrokerServiceTest, LapsedSessionIsUnauthenticatedButItsLeasesLiveOutTheirTtl) {
  v1::SessionCredentials creds = OpenSession();
  ASSERT_OK_AND_ASSIGN(v1::Lease lease, Pin(creds, 0, page_));
  clock_.Advance(absl::Seconds(30));  // Session TTL, no renewal, no watch.
  EXPECT_THAT(Pin(creds, 0, 1), StatusIs(Code::kUnauthenticated, HasSubstr("open a new session")));
  EXPECT_THAT(List(), SizeIs(1));
  clock_.Advance(absl::Seconds(30));  // The lease's 60 s TTL.
  EXPECT_THAT(List(), SizeIs(0));
  EXPECT_EQ(backend_->count(pinbroker::testing::FakeBackend::Call::Kind::kRevoke), 1u);
}

TEST_F(PinBrokerServiceTest, RenewSessionPostponesTheLapse) {
  v1::SessionCredentials creds = OpenSession();
  clock_.Advance(absl::Seconds(20));
  v1::RenewSessionRequest request;
  *request.mutable_credentials() = creds;
  ASSERT_OK(Call(&Stub::RenewSession, request).status());
  clock_.Advance(absl::Seconds(20));
  EXPECT_OK(Pin(creds, 0, 1).status());
}

TEST_F(PinBrokerServiceTest, CloseSessionReleasesItsLeasesAndEndsIt) {
  v1::SessionCredentials creds = OpenSession();
  ASSERT_OK_AND_ASSIGN(v1::Lease a, Pin(creds, 0, page_));
  ASSERT_OK_AND_ASSIGN(v1::Lease b, Pin(creds, page_, page_));
  v1::CloseSessionRequest request;
  *request.mutable_credentials() = creds;
  ASSERT_OK_AND_ASSIGN(v1::CloseSessionResponse response, Call(&Stub::CloseSession, request));
  EXPECT_THAT(response.released_lease_ids(), ElementsAre(a.lease_id(), b.lease_id()));
  EXPECT_EQ(backend_->held(), 0u);
  EXPECT_THAT(Pin(creds, 0, 1), StatusIs(Code::kUnauthenticated, ::testing::_));
}

// Regression: CloseSession used to list the session's leases while pins that had authenticated
// before the close were still being set up; those were granted afterwards and outlived the
// session (185 orphans in 200 rounds). Now a pin is granted only if its session is still open at
// that moment. Real threads race the close many times; no lease of a closed session may remain.
TEST_F(PinBrokerServiceTest, NoLeaseOutlivesItsSessionWhenCloseRacesPins) {
  constexpr int kRounds = 1000;
  constexpr int kPinners = 2;
  constexpr int kPinsPerPinner = 8;  // Bounded: each pinner stops at the first refusal anyway.
  int granted_before_close = 0;
  for (int round = 0; round < kRounds; ++round) {
    const v1::SessionCredentials creds = OpenSession("racer");
    std::vector<std::thread> pinners;
    std::atomic<int> granted{0};
    for (int p = 0; p < kPinners; ++p) {
      pinners.emplace_back([&] {
        for (int i = 0; i < kPinsPerPinner; ++i) {
          if (!Pin(creds, 0, 1).ok()) return;  // UNAUTHENTICATED once the close won.
          ++granted;
        }
      });
    }
    v1::CloseSessionRequest close;
    *close.mutable_credentials() = creds;
    ASSERT_OK(Call(&Stub::CloseSession, close).status());
    for (std::thread& t : pinners) t.join();
    granted_before_close += granted.load();
    v1::ListLeasesRequest mine;
    mine.set_session_id(creds.session_id());
    ASSERT_THAT(List(mine), SizeIs(0)) << "round " << round << ": a lease outlived its session";
  }
  EXPECT_EQ(backend_->held(), 0u);
  // The race was exercised: some pins got in before their session closed.
  EXPECT_GT(granted_before_close, 0);
}

// --- request limits ---

// Regression: 1 MiB client names were accepted and kept (300 of them: +320 MB).
TEST_F(PinBrokerServiceTest, AnOversizedClientNameIsInvalidArgumentNamingTheLimit) {
  v1::OpenSessionRequest request;
  request.set_client_name(std::string(1 << 20, 'n'));
  EXPECT_THAT(Call(&Stub::OpenSession, request),
              StatusIs(Code::kInvalidArgument,
                       AllOf(HasSubstr("client_name"), HasSubstr("limit is 256 bytes"))));
  request.set_client_name(std::string(256, 'n'));
  EXPECT_OK(Call(&Stub::OpenSession, request).status());
}

// Regression: a 3 MiB path came back as a 12 MiB error message (RESOURCE_EXHAUSTED on the
// client side).
TEST_F(PinBrokerServiceTest, AHugePathIsInvalidArgumentWithAShortMessage) {
  v1::SessionCredentials creds = OpenSession();
  v1::PinRequest request = PinRequestFor(creds, 0, 1);
  request.set_path(std::string(3 << 20, 'p'));
  const absl::StatusOr<v1::PinResponse> pinned = Call(&Stub::Pin, request);
  EXPECT_THAT(pinned, StatusIs(Code::kInvalidArgument,
                               AllOf(HasSubstr("path"), HasSubstr("limit is 4096 bytes"))));
  EXPECT_LT(pinned.status().message().size(), 256u);
  v1::DescribeFileRequest describe;
  describe.set_export_name("exp");
  describe.set_path(request.path());
  EXPECT_THAT(Call(&Stub::DescribeFile, describe), StatusIs(Code::kInvalidArgument, _));
  EXPECT_THAT(List(), SizeIs(0));
}

// Regression: a PunchHole with a 1 MiB initiator over 500 leases kept 524 MB after they ended
// (the initiator is in every recall reason and tombstone) and logged 1 GB.
TEST_F(PinBrokerServiceTest, AnOversizedInitiatorIsRefusedBeforeTouchingAnyLease) {
  v1::SessionCredentials creds = OpenSession();
  ASSERT_OK_AND_ASSIGN(v1::Lease lease, Pin(creds, 0, page_));
  v1::PunchHoleRequest request;
  request.set_export_name("exp");
  request.set_path("data");
  request.set_offset(0);
  request.set_length(page_);
  request.mutable_options()->set_policy(v1::LAYOUT_POLICY_REVOKE);
  request.mutable_options()->set_initiator(std::string(1 << 20, 'i'));
  EXPECT_THAT(Call(&Stub::PunchHole, request),
              StatusIs(Code::kInvalidArgument,
                       AllOf(HasSubstr("options.initiator"), HasSubstr("limit is 256 bytes"))));
  ASSERT_THAT(List(), SizeIs(1));
  EXPECT_EQ(List()[0].state(), v1::LEASE_STATE_GRANTED);
  v1::TruncateRequest truncate = TruncateRequestFor(0, v1::LAYOUT_POLICY_REVOKE);
  *truncate.mutable_options() = request.options();
  EXPECT_THAT(Call(&Stub::Truncate, truncate), StatusIs(Code::kInvalidArgument, _));
  EXPECT_EQ(FileSize(), kPages * page_);
}

// The validators reject text that is not UTF-8 (requests built in-process, or string fields
// that arrive as bytes). Over the wire such a proto3 string already fails the parse, before any
// handler runs; the wire traits answer that (malformed_request_test.cc).
TEST(RequestLimitsTest, NonUtf8StringsAreInvalidArgumentNamingTheField) {
  v1::PinRequest pin;
  pin.set_export_name("exp");
  pin.set_path("bad\xff\xfe");
  EXPECT_THAT(Validate(pin), StatusIs(Code::kInvalidArgument,
                                      AllOf(HasSubstr("path"), HasSubstr("not valid UTF-8"))));
  v1::OpenSessionRequest open;
  open.set_client_name(std::string("\xc0\x80", 2));  // Overlong NUL.
  EXPECT_THAT(Validate(open), StatusIs(Code::kInvalidArgument, HasSubstr("client_name")));
  open.set_client_name("\xed\xa0\x80");  // A UTF-16 surrogate.
  EXPECT_THAT(Validate(open), StatusIs(Code::kInvalidArgument, _));
  open.set_client_name("db-writer-7 \xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
  EXPECT_OK(Validate(open));
}

TEST(QuoteClientInputTest, QuotesAShortEscapedPrefix) {
  EXPECT_EQ(QuoteClientInput("a\nb"), "\"a\\nb\"");
  const std::string quoted = QuoteClientInput(std::string(1 << 20, '\xff'));
  EXPECT_LT(quoted.size(), 300u);
  EXPECT_THAT(quoted, HasSubstr("(1048576 bytes)"));
}

// --- leases ---

TEST_F(PinBrokerServiceTest, PinReturnsThePageAlignedLease) {
  v1::SessionCredentials creds = OpenSession();
  ASSERT_OK_AND_ASSIGN(v1::Lease lease, Pin(creds, 100, page_));
  EXPECT_THAT(lease.lease_id(), MatchesRegex(broker_->epoch() + "-[0-9]+"));
  EXPECT_EQ(lease.session_id(), creds.session_id());
  EXPECT_EQ(lease.range().offset(), 0u);
  EXPECT_EQ(lease.range().length(), 2 * page_);
  EXPECT_EQ(lease.access(), v1::ACCESS_READ_WRITE);
  EXPECT_EQ(lease.mode(), v1::REGISTRATION_MODE_HOST);
  EXPECT_EQ(lease.state(), v1::LEASE_STATE_GRANTED);
  EXPECT_EQ(lease.expires_at().seconds() - lease.granted_at().seconds(), 60);
  EXPECT_EQ(lease.path(), "data");
  EXPECT_NE(lease.file().inode(), 0u);
}

TEST_F(PinBrokerServiceTest, BadPinRequestsGetTheRightCodeAndLeaveNothing) {
  v1::SessionCredentials creds = OpenSession();
  struct Case {
    std::function<void(v1::PinRequest&)> edit;
    Code code;
    const char* says;
  };
  const std::vector<Case> cases = {
      {[](v1::PinRequest& r) { r.set_access(v1::ACCESS_UNSPECIFIED); }, Code::kInvalidArgument,
       "access"},
      {[](v1::PinRequest& r) { r.set_length(0); }, Code::kInvalidArgument, "length"},
      {[](v1::PinRequest& r) { r.mutable_ttl()->set_seconds(-5); }, Code::kInvalidArgument, "ttl"},
      {[](v1::PinRequest& r) { r.set_path("../data"); }, Code::kPermissionDenied, "outside"},
      {[](v1::PinRequest& r) { r.set_path("/etc/passwd"); }, Code::kInvalidArgument, "relative"},
      {[](v1::PinRequest& r) { r.set_path("nope"); }, Code::kNotFound, "nope"},
      {[](v1::PinRequest& r) { r.set_export_name("nope"); }, Code::kNotFound, "exp, ro"},
      {[this](v1::PinRequest& r) { r.set_offset(kPages * page_); }, Code::kOutOfRange,
       "end of file"},
      {[](v1::PinRequest& r) { r.set_export_name("ro"); }, Code::kPermissionDenied, "read-only"},
  };
  for (const Case& c : cases) {
    v1::PinRequest request = PinRequestFor(creds, 0, page_);
    c.edit(request);
    EXPECT_THAT(Call(&Stub::Pin, request), StatusIs(c.code, HasSubstr(c.says)))
        << request.ShortDebugString();
  }
  EXPECT_EQ(backend_->held(), 0u);
  EXPECT_THAT(List(), SizeIs(0));
}

TEST_F(PinBrokerServiceTest, RenewExtendsTheLease) {
  v1::SessionCredentials creds = OpenSession();
  ASSERT_OK_AND_ASSIGN(v1::Lease lease, Pin(creds, 0, page_));
  clock_.Advance(absl::Seconds(10));
  v1::RenewRequest request;
  *request.mutable_credentials() = creds;
  request.set_lease_id(lease.lease_id());
  request.mutable_ttl()->set_seconds(100);
  ASSERT_OK_AND_ASSIGN(v1::RenewResponse response, Call(&Stub::Renew, request));
  EXPECT_EQ(response.lease().expires_at().seconds(), lease.granted_at().seconds() + 110);
}

TEST_F(PinBrokerServiceTest, LeaseIdsAreCheckedForShapeEpochAndOwner) {
  v1::SessionCredentials owner = OpenSession("owner");
  v1::SessionCredentials other = OpenSession("other");
  ASSERT_OK_AND_ASSIGN(v1::Lease lease, Pin(owner, 0, page_));
  v1::ReleaseRequest request;
  *request.mutable_credentials() = other;
  request.set_lease_id(lease.lease_id());
  EXPECT_THAT(Call(&Stub::Release, request), StatusIs(Code::kNotFound, HasSubstr("no lease")));
  request.set_lease_id("garbage");
  EXPECT_THAT(Call(&Stub::Release, request),
              StatusIs(Code::kInvalidArgument, HasSubstr("malformed")));
  request.set_lease_id("00000000-1");
  EXPECT_THAT(Call(&Stub::Release, request),
              StatusIs(Code::kNotFound, HasSubstr("earlier run of the broker")));
  EXPECT_EQ(backend_->held(), 1u);
}

TEST_F(PinBrokerServiceTest, ReleaseEndsTheLeaseOnce) {
  v1::SessionCredentials creds = OpenSession();
  ASSERT_OK_AND_ASSIGN(v1::Lease lease, Pin(creds, 0, page_));
  v1::ReleaseRequest request;
  *request.mutable_credentials() = creds;
  request.set_lease_id(lease.lease_id());
  ASSERT_OK(Call(&Stub::Release, request).status());
  EXPECT_EQ(backend_->held(), 0u);
  EXPECT_THAT(Call(&Stub::Release, request),
              StatusIs(Code::kNotFound, AllOf(HasSubstr(lease.lease_id()), HasSubstr("released"))));
}

TEST_F(PinBrokerServiceTest, ListLeasesFiltersBySessionExportAndFile) {
  v1::SessionCredentials a = OpenSession("a");
  v1::SessionCredentials b = OpenSession("b");
  ASSERT_OK(Pin(a, 0, page_).status());
  ASSERT_OK(Pin(b, page_, page_).status());
  EXPECT_THAT(List(), SizeIs(2));
  v1::ListLeasesRequest by_session;
  by_session.set_session_id(b.session_id());
  ASSERT_THAT(List(by_session), SizeIs(1));
  EXPECT_EQ(List(by_session)[0].session_id(), b.session_id());
  v1::ListLeasesRequest by_file;
  by_file.set_export_name("exp");
  by_file.set_path("data");
  EXPECT_THAT(List(by_file), SizeIs(2));
  v1::ListLeasesRequest path_only;
  path_only.set_path("data");
  EXPECT_THAT(Call(&Stub::ListLeases, path_only),
              StatusIs(Code::kInvalidArgument, HasSubstr("export_name")));
}

TEST_F(PinBrokerServiceTest, ListLeasesPagesInLeaseIdOrder) {
  v1::SessionCredentials creds = OpenSession();
  std::vector<std::string> pinned;
  for (int i = 0; i < 7; ++i) {
    ASSERT_OK_AND_ASSIGN(v1::Lease lease, Pin(creds, 0, page_));
    pinned.push_back(lease.lease_id());
  }
  v1::ListLeasesRequest request;
  request.set_page_size(3);
  std::vector<std::string> listed;
  std::vector<int> page_sizes;
  for (int pages = 0; pages < 10; ++pages) {
    ASSERT_OK_AND_ASSIGN(v1::ListLeasesResponse page, Call(&Stub::ListLeases, request));
    page_sizes.push_back(page.leases_size());
    for (const v1::Lease& lease : page.leases()) listed.push_back(lease.lease_id());
    if (page.next_page_token().empty()) break;
    request.set_page_token(page.next_page_token());
  }
  EXPECT_THAT(page_sizes, ElementsAre(3, 3, 1));
  // Granted in id order, so listed in the order pinned, each once.
  EXPECT_EQ(listed, pinned);

  // A page size above the maximum is clamped, not refused.
  v1::ListLeasesRequest huge;
  huge.set_page_size(RequestLimits::kMaxLeasePage * 10);
  ASSERT_OK_AND_ASSIGN(v1::ListLeasesResponse all, Call(&Stub::ListLeases, huge));
  EXPECT_EQ(all.leases_size(), 7);
  EXPECT_TRUE(all.next_page_token().empty());
}

TEST_F(PinBrokerServiceTest, ListLeasesRejectsBadPageTokensAndSizes) {
  v1::SessionCredentials creds = OpenSession();
  ASSERT_OK(Pin(creds, 0, page_).status());
  v1::ListLeasesRequest garbage;
  garbage.set_page_token("not a token");
  EXPECT_THAT(
      Call(&Stub::ListLeases, garbage),
      StatusIs(Code::kInvalidArgument, AllOf(HasSubstr("page_token"), HasSubstr("first page"))));
  v1::ListLeasesRequest other_run;
  other_run.set_page_token(
      absl::StrCat(broker_->epoch() == "00000000" ? "11111111" : "00000000", "-1"));
  EXPECT_THAT(Call(&Stub::ListLeases, other_run),
              StatusIs(Code::kInvalidArgument, HasSubstr("page_token")));
  v1::ListLeasesRequest negative;
  negative.set_page_size(-1);
  EXPECT_THAT(Call(&Stub::ListLeases, negative),
              StatusIs(Code::kInvalidArgument, HasSubstr("page_size")));
  EXPECT_THAT(List(), SizeIs(1));  // Nothing lost.
}

// --- files and layout changes ---

TEST_F(PinBrokerServiceTest, DescribeFileShowsSizeBusyRangesAndGuard) {
  v1::SessionCredentials creds = OpenSession();
  ASSERT_OK_AND_ASSIGN(v1::Lease lease, Pin(creds, page_, page_));
  v1::DescribeFileRequest request;
  request.set_export_name("exp");
  request.set_path("data");
  ASSERT_OK_AND_ASSIGN(v1::DescribeFileResponse d, Call(&Stub::DescribeFile, request));
  EXPECT_EQ(d.size(), kPages * page_);
  EXPECT_FALSE(d.dax());
  ASSERT_THAT(d.busy(), SizeIs(1));
  EXPECT_EQ(d.busy(0).lease_id(), lease.lease_id());
  EXPECT_EQ(d.busy(0).range().offset(), page_);
  EXPECT_EQ(d.busy(0).range().length(), page_);
  EXPECT_THAT(d.leases(), SizeIs(1));
  // The file guard is on by default; what it can arm depends on the kernel, the filesystem and
  // the privileges here (docs/GUARD.md). The RPC reports exactly the engine's view.
  ASSERT_NE(broker_->file_guard(), nullptr);
  ASSERT_OK_AND_ASSIGN(FileDescription engine_view, broker_->engine().DescribeFile("exp", "data"));
  EXPECT_EQ(d.guard(), engine_view.guard);
  EXPECT_THAT(d.unguarded_operations(),
              ::testing::ElementsAreArray(engine_view.unguarded_operations));
}

TEST_F(PinBrokerServiceTest, RefusedTruncateNamesThePublicLeaseId) {
  v1::SessionCredentials creds = OpenSession();
  ASSERT_OK_AND_ASSIGN(v1::Lease lease, Pin(creds, 4 * page_, page_));
  EXPECT_THAT(Call(&Stub::Truncate, TruncateRequestFor(page_, v1::LAYOUT_POLICY_REFUSE)),
              StatusIs(Code::kFailedPrecondition, HasSubstr(lease.lease_id())));
  EXPECT_EQ(FileSize(), kPages * page_);
}

TEST_F(PinBrokerServiceTest, RevokedTruncateReportsTheLeasesAndApplies) {
  v1::SessionCredentials creds = OpenSession();
  ASSERT_OK_AND_ASSIGN(v1::Lease lease, Pin(creds, 4 * page_, page_));
  v1::TruncateRequest request = TruncateRequestFor(page_, v1::LAYOUT_POLICY_REVOKE);
  request.mutable_options()->mutable_grace()->set_seconds(0);
  ASSERT_OK_AND_ASSIGN(v1::LayoutChangeResponse r, Call(&Stub::Truncate, request));
  EXPECT_THAT(r.recalled_lease_ids(), ElementsAre(lease.lease_id()));
  EXPECT_THAT(r.revoked_lease_ids(), ElementsAre(lease.lease_id()));
  EXPECT_EQ(r.size_before(), kPages * page_);
  EXPECT_EQ(r.size_after(), page_);
  EXPECT_EQ(r.affected().offset(), page_);
  EXPECT_TRUE(r.affected().to_end_of_file());
  EXPECT_EQ(FileSize(), page_);
}

TEST_F(PinBrokerServiceTest, DeferredTruncateReturnsAfterTheRelease) {
  v1::SessionCredentials creds = OpenSession();
  ASSERT_OK_AND_ASSIGN(v1::Lease lease, Pin(creds, 4 * page_, page_));
  absl::StatusOr<v1::LayoutChangeResponse> result;
  std::thread truncate(
      [&] { result = Call(&Stub::Truncate, TruncateRequestFor(page_, v1::LAYOUT_POLICY_DEFER)); });
  AwaitParked(1);
  EXPECT_EQ(FileSize(), kPages * page_);
  v1::ReleaseRequest release;
  *release.mutable_credentials() = creds;
  release.set_lease_id(lease.lease_id());
  ASSERT_OK(Call(&Stub::Release, release).status());
  truncate.join();
  ASSERT_OK(result.status());
  EXPECT_THAT(result->released_lease_ids(), ElementsAre(lease.lease_id()));
  EXPECT_EQ(FileSize(), page_);
}

TEST_F(PinBrokerServiceTest, DeferredTruncateTimesOutWithTheFileUnchanged) {
  v1::SessionCredentials creds = OpenSession();
  ASSERT_OK(Pin(creds, 4 * page_, page_).status());
  v1::TruncateRequest request = TruncateRequestFor(page_, v1::LAYOUT_POLICY_DEFER);
  request.mutable_options()->mutable_timeout()->set_seconds(3);
  absl::StatusOr<v1::LayoutChangeResponse> result;
  std::thread truncate([&] { result = Call(&Stub::Truncate, request); });
  AwaitParked(1);
  clock_.Advance(absl::Seconds(3));
  truncate.join();
  EXPECT_THAT(result, StatusIs(Code::kDeadlineExceeded, HasSubstr("unchanged")));
  EXPECT_EQ(FileSize(), kPages * page_);
}

TEST_F(PinBrokerServiceTest, BadLayoutOptionsAreInvalidArgument) {
  v1::TruncateRequest request = TruncateRequestFor(0, static_cast<v1::LayoutPolicy>(42));
  EXPECT_THAT(Call(&Stub::Truncate, request),
              StatusIs(Code::kInvalidArgument, HasSubstr("policy")));
  request = TruncateRequestFor(0, v1::LAYOUT_POLICY_REVOKE);
  request.mutable_options()->mutable_grace()->set_seconds(-1);
  EXPECT_THAT(Call(&Stub::Truncate, request), StatusIs(Code::kInvalidArgument, HasSubstr("grace")));
  EXPECT_EQ(FileSize(), kPages * page_);
}

TEST_F(PinBrokerServiceTest, LayoutTimeoutAndGraceAreCappedByTheExport) {
  v1::SessionCredentials creds = OpenSession();
  ASSERT_OK_AND_ASSIGN(v1::Lease lease, Pin(creds, 4 * page_, page_));
  const std::string cap = absl::FormatDuration(kDefaultMaxLayoutTimeout);
  v1::TruncateRequest defer = TruncateRequestFor(page_, v1::LAYOUT_POLICY_DEFER);
  defer.mutable_options()->mutable_timeout()->set_seconds(1000000000);
  EXPECT_THAT(Call(&Stub::Truncate, defer),
              StatusIs(Code::kInvalidArgument,
                       AllOf(HasSubstr("options.timeout"), HasSubstr("at most " + cap))));
  v1::TruncateRequest revoke = TruncateRequestFor(page_, v1::LAYOUT_POLICY_REVOKE);
  ToProto(kDefaultMaxGrace + absl::Seconds(1), revoke.mutable_options()->mutable_grace());
  EXPECT_THAT(Call(&Stub::Truncate, revoke),
              StatusIs(Code::kInvalidArgument,
                       AllOf(HasSubstr("options.grace"),
                             HasSubstr("at most " + absl::FormatDuration(kDefaultMaxGrace)))));
  v1::RevokeLeaseRequest admin_revoke;
  admin_revoke.set_lease_id(lease.lease_id());
  ToProto(kDefaultMaxGrace + absl::Seconds(1), admin_revoke.mutable_grace());
  EXPECT_THAT(Call(&Stub::RevokeLease, admin_revoke),
              StatusIs(Code::kInvalidArgument, HasSubstr("grace")));
  // Nothing changed: the file keeps its size and the lease is still held.
  EXPECT_EQ(FileSize(), kPages * page_);
  EXPECT_THAT(List(), SizeIs(1));

  // Up to the cap is accepted (a truncate past the lease: nothing to wait for).
  v1::TruncateRequest at_cap = TruncateRequestFor(6 * page_, v1::LAYOUT_POLICY_DEFER);
  ToProto(kDefaultMaxLayoutTimeout, at_cap.mutable_options()->mutable_timeout());
  EXPECT_OK(Call(&Stub::Truncate, at_cap).status());
  EXPECT_EQ(FileSize(), 6 * page_);
}

TEST_F(PinBrokerServiceTest, PunchHoleAppliesAndChecksItsRange) {
  v1::PunchHoleRequest request;
  request.set_export_name("exp");
  request.set_path("data");
  request.set_offset(page_);
  request.set_length(page_);
  request.mutable_options()->set_policy(v1::LAYOUT_POLICY_REFUSE);
  ASSERT_OK_AND_ASSIGN(v1::LayoutChangeResponse r, Call(&Stub::PunchHole, request));
  EXPECT_EQ(r.affected().offset(), page_);
  EXPECT_EQ(r.affected().length(), page_);
  EXPECT_EQ(dir_.ReadFile("data").substr(page_, page_), std::string(page_, '\0'));
  request.set_offset(kPages * page_);
  EXPECT_THAT(Call(&Stub::PunchHole, request), StatusIs(Code::kOutOfRange, HasSubstr("past")));
  request.set_export_name("ro");
  request.set_offset(0);
  EXPECT_THAT(Call(&Stub::PunchHole, request), StatusIs(Code::kPermissionDenied, ::testing::_));
}

// --- watch ---

class WatchStream {
 public:
  WatchStream(v1::PinBroker::Stub* stub, const v1::SessionCredentials& creds) {
    v1::WatchRequest request;
    *request.mutable_credentials() = creds;
    reader_ = stub->Watch(&context_, request);
  }
  ~WatchStream() {
    if (finished_) return;
    context_.TryCancel();
    v1::WatchEvent ignored;
    while (reader_->Read(&ignored)) {
    }
    reader_->Finish().IgnoreError();
  }
  // The next event, or nullopt when the stream ended (see status()).
  std::optional<v1::WatchEvent> Next() {
    v1::WatchEvent event;
    if (!reader_->Read(&event)) return std::nullopt;
    return event;
  }
  grpc::Status Finish() {
    if (!finished_) {
      finished_ = true;
      status_ = reader_->Finish();
    }
    return status_;
  }

 private:
  bool finished_ = false;
  grpc::Status status_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReader<v1::WatchEvent>> reader_;
};

TEST_F(PinBrokerServiceTest, WatchSendsTheSnapshotThenChangesInOrder) {
  v1::SessionCredentials creds = OpenSession();
  ASSERT_OK_AND_ASSIGN(v1::Lease before, Pin(creds, 0, page_));
  WatchStream watch(stub_.get(), creds);
  auto e = watch.Next();
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->type(), v1::WatchEvent::SNAPSHOT);
  EXPECT_EQ(e->lease().lease_id(), before.lease_id());
  e = watch.Next();
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->type(), v1::WatchEvent::SNAPSHOT_COMPLETE);

  ASSERT_OK_AND_ASSIGN(v1::Lease after, Pin(creds, 4 * page_, page_));
  v1::TruncateRequest request = TruncateRequestFor(page_, v1::LAYOUT_POLICY_REVOKE);
  request.mutable_options()->mutable_grace()->set_seconds(0);
  ASSERT_OK(Call(&Stub::Truncate, request).status());
  std::vector<std::pair<v1::WatchEvent::Type, std::string>> seen;
  for (int i = 0; i < 3; ++i) {
    e = watch.Next();
    ASSERT_TRUE(e.has_value());
    seen.emplace_back(e->type(), e->lease().lease_id());
  }
  EXPECT_THAT(seen, ElementsAre(std::pair(v1::WatchEvent::GRANTED, after.lease_id()),
                                std::pair(v1::WatchEvent::RECALLED, after.lease_id()),
                                std::pair(v1::WatchEvent::REVOKED, after.lease_id())));
}

TEST_F(PinBrokerServiceTest, RecallCarriesTheGraceDeadlineAndReason) {
  v1::SessionCredentials creds = OpenSession();
  ASSERT_OK_AND_ASSIGN(v1::Lease lease, Pin(creds, 4 * page_, page_));
  WatchStream watch(stub_.get(), creds);
  ASSERT_TRUE(watch.Next().has_value());  // SNAPSHOT
  ASSERT_TRUE(watch.Next().has_value());  // SNAPSHOT_COMPLETE
  absl::StatusOr<v1::LayoutChangeResponse> result;
  std::thread truncate(
      [&] { result = Call(&Stub::Truncate, TruncateRequestFor(page_, v1::LAYOUT_POLICY_REVOKE)); });
  auto recall = watch.Next();
  ASSERT_TRUE(recall.has_value());
  EXPECT_EQ(recall->type(), v1::WatchEvent::RECALLED);
  EXPECT_EQ(recall->lease().state(), v1::LEASE_STATE_RECALLING);
  EXPECT_EQ(recall->lease().recall_deadline().seconds(), recall->at().seconds() + 5);
  EXPECT_THAT(recall->lease().reason(), HasSubstr("truncate"));
  v1::ReleaseRequest release;
  *release.mutable_credentials() = creds;
  release.set_lease_id(lease.lease_id());
  ASSERT_OK(Call(&Stub::Release, release).status());
  truncate.join();
  ASSERT_OK(result.status());
  EXPECT_THAT(result->released_lease_ids(), ElementsAre(lease.lease_id()));
}

TEST_F(PinBrokerServiceTest, WatchWithAWrongTokenEndsUnauthenticated) {
  v1::SessionCredentials creds = OpenSession();
  creds.set_token("nope");
  WatchStream watch(stub_.get(), creds);
  EXPECT_FALSE(watch.Next().has_value());
  EXPECT_EQ(watch.Finish().error_code(), grpc::StatusCode::UNAUTHENTICATED);
}

// Regression: a rejected Watch that the client then cancelled was finished twice (abort).
TEST_F(PinBrokerServiceTest, CancellingARejectedWatchDoesNotCrashTheBroker) {
  v1::SessionCredentials creds;
  creds.set_session_id("x");
  creds.set_token("y");
  for (int i = 0; i < 200; ++i) {
    grpc::ClientContext context;
    v1::WatchRequest request;
    *request.mutable_credentials() = creds;
    auto reader = stub_->Watch(&context, request);
    context.TryCancel();
    const grpc::Status status = reader->Finish();
    EXPECT_FALSE(status.ok());
  }
  EXPECT_OK(Call(&Stub::GetInfo, v1::GetInfoRequest()).status());
}

TEST_F(PinBrokerServiceTest, AnOpenWatchKeepsTheSessionAlive) {
  v1::SessionCredentials creds = OpenSession();
  {
    WatchStream watch(stub_.get(), creds);
    ASSERT_TRUE(watch.Next().has_value());  // SNAPSHOT_COMPLETE: the stream is registered.
    clock_.Advance(absl::Minutes(5));
    EXPECT_OK(Pin(creds, 0, 1).status());
  }
}

TEST_F(PinBrokerServiceTest, ShutdownRecallsRevokesAndEndsWatchesUnavailable) {
  v1::SessionCredentials creds = OpenSession();
  ASSERT_OK_AND_ASSIGN(v1::Lease lease, Pin(creds, 0, page_));
  WatchStream watch(stub_.get(), creds);
  ASSERT_TRUE(watch.Next().has_value());  // SNAPSHOT
  ASSERT_TRUE(watch.Next().has_value());  // SNAPSHOT_COMPLETE
  std::thread shutdown([&] { broker_->Shutdown(absl::Seconds(2)); });
  auto recall = watch.Next();
  ASSERT_TRUE(recall.has_value());
  EXPECT_EQ(recall->type(), v1::WatchEvent::RECALLED);
  EXPECT_THAT(Pin(creds, page_, 1), StatusIs(Code::kUnavailable, HasSubstr("shutting down")));
  clock_.WaitForWaiters(1);
  clock_.Advance(absl::Seconds(2));
  auto revoked = watch.Next();
  ASSERT_TRUE(revoked.has_value());
  EXPECT_EQ(revoked->type(), v1::WatchEvent::REVOKED);
  EXPECT_EQ(revoked->lease().lease_id(), lease.lease_id());
  EXPECT_FALSE(watch.Next().has_value());
  EXPECT_EQ(watch.Finish().error_code(), grpc::StatusCode::UNAVAILABLE);
  shutdown.join();
  EXPECT_EQ(backend_->held(), 0u);
}

}  // namespace
}  // namespace pinbroker::broker
