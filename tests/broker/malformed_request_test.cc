// Requests that protobuf will not parse, sent as raw bytes to a real in-process broker: a
// `string` field that is not UTF-8 (at the top and nested) and bytes that are no message at
// all. Each is INVALID_ARGUMENT saying why, on the synchronous calls and on those served on
// gRPC's callback API alike; it changes nothing, writes no log line per request, and the broker
// goes on serving.
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/support/byte_buffer.h>

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "broker/protobuf_log.h"
#include "gmock/gmock.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/stubs/logging.h"
#include "gtest/gtest.h"
#include "pinbroker/log_sink.h"
#include "tests/broker/broker_fixture.h"
#include "tests/broker/wire_bytes.h"
#include "tests/testing/log_capture.h"

namespace pinbroker::broker {
namespace {

using ::pinbroker::testing::LengthDelimitedField;
using ::testing::AllOf;
using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

constexpr char kNotUtf8[] = "da\xfe\xff";

// Every line the broker logs while it lives.
class MalformedRequestTest : public testing::BrokerTest {
 protected:
  std::vector<std::string> Lines() const { return log_.Lines(); }

  // `bytes` as the request of RPC `method` (its name in the service), as it would come off the
  // wire.
  grpc::Status RawCall(const std::string& method, const std::string& bytes) {
    const google::protobuf::MethodDescriptor* rpc =
        google::protobuf::DescriptorPool::generated_pool()
            ->FindServiceByName(v1::PinBroker::service_full_name())
            ->FindMethodByName(method);
    EXPECT_NE(rpc, nullptr) << method;
    if (rpc == nullptr) return grpc::Status::CANCELLED;
    grpc::GenericStub stub(channel_);
    grpc::Slice slice(bytes);
    grpc::ByteBuffer request(&slice, 1);
    grpc::ByteBuffer response;
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    absl::Notification done;
    grpc::Status status;
    stub.UnaryCall(&context, absl::StrCat("/", rpc->service()->full_name(), "/", rpc->name()),
                   grpc::StubOptions(), &request, &response, [&](grpc::Status s) {
                     status = std::move(s);
                     done.Notify();
                   });
    done.WaitForNotification();  // The call's deadline bounds the wait.
    return status;
  }

  ::pinbroker::testing::LogCapture log_;  // The process's log sink for the whole test.
};

MATCHER_P(IsInvalidArgumentNaming, field, "") {
  *result_listener << "status " << arg.error_code() << " \"" << arg.error_message() << "\"";
  return arg.error_code() == grpc::StatusCode::INVALID_ARGUMENT &&
         absl::StrContains(arg.error_message(),
                           absl::StrCat("field ", field, " is not valid UTF-8"));
}

TEST_F(MalformedRequestTest, ANonUtf8ClientNameOpensNoSession) {
  const grpc::Status status =
      RawCall("OpenSession",
              LengthDelimitedField(v1::OpenSessionRequest::kClientNameFieldNumber, kNotUtf8));
  EXPECT_THAT(status, IsInvalidArgumentNaming("pinbroker.v1.OpenSessionRequest.client_name"));
  EXPECT_THAT(status.error_message(), Not(HasSubstr("da")));
  EXPECT_EQ(broker_->sessions().size(), 0u);
  OpenSession();  // The broker goes on serving.
  EXPECT_EQ(broker_->sessions().size(), 1u);
}

TEST_F(MalformedRequestTest, ANonUtf8PathPinsNothing) {
  const v1::SessionCredentials creds = OpenSession();
  v1::PinRequest pin = PinRequestFor(creds, 0, page_);
  pin.clear_path();
  const grpc::Status status =
      RawCall("Pin", pin.SerializeAsString() +
                         LengthDelimitedField(v1::PinRequest::kPathFieldNumber, kNotUtf8));
  EXPECT_THAT(status, IsInvalidArgumentNaming("pinbroker.v1.PinRequest.path"));
  EXPECT_EQ(broker_->engine().live_lease_count(), 0u);
  EXPECT_EQ(backend_->pinned_bytes(), 0u);
  EXPECT_OK(Pin(creds, 0, page_).status());
}

TEST_F(MalformedRequestTest, ANonUtf8NestedSessionIdPinsNothing) {
  const v1::SessionCredentials creds = OpenSession();
  v1::PinRequest pin = PinRequestFor(creds, 0, page_);
  pin.mutable_credentials()->clear_session_id();
  const grpc::Status status = RawCall(
      "Pin",
      pin.SerializeAsString() +
          LengthDelimitedField(
              v1::PinRequest::kCredentialsFieldNumber,
              LengthDelimitedField(v1::SessionCredentials::kSessionIdFieldNumber, kNotUtf8)));
  EXPECT_THAT(status, IsInvalidArgumentNaming("pinbroker.v1.PinRequest.credentials.session_id"));
  EXPECT_EQ(broker_->engine().live_lease_count(), 0u);
  EXPECT_OK(Pin(creds, 0, page_).status());
}

// Truncate, PunchHole, RevokeLease and Watch are served on gRPC's callback API, whose typed
// handlers (grpc 1.51) would answer UNIMPLEMENTED with no message; the broker decodes their
// requests itself and answers as for the others.
TEST_F(MalformedRequestTest, ANonUtf8NestedInitiatorTruncatesNothing) {
  const v1::SessionCredentials creds = OpenSession();
  auto lease = Pin(creds, 0, page_);
  ASSERT_OK(lease.status());
  v1::TruncateRequest truncate = TruncateRequestFor(0, v1::LAYOUT_POLICY_REVOKE);
  truncate.mutable_options()->clear_initiator();
  const grpc::Status status =
      RawCall("Truncate",
              truncate.SerializeAsString() +
                  LengthDelimitedField(
                      v1::TruncateRequest::kOptionsFieldNumber,
                      LengthDelimitedField(v1::LayoutOptions::kInitiatorFieldNumber, kNotUtf8)));
  EXPECT_THAT(status, IsInvalidArgumentNaming("pinbroker.v1.TruncateRequest.options.initiator"));
  EXPECT_EQ(FileSize(), kPages * page_);
  EXPECT_EQ(broker_->engine().live_lease_count(), 1u);  // Not recalled either.
  v1::ReleaseRequest release;
  *release.mutable_credentials() = creds;
  release.set_lease_id(lease->lease_id());
  EXPECT_OK(Call(&v1::PinBroker::Stub::Release, release).status());
  truncate.mutable_options()->set_initiator("test");
  EXPECT_OK(Call(&v1::PinBroker::Stub::Truncate, truncate).status());
  EXPECT_EQ(FileSize(), 0u);
}

TEST_F(MalformedRequestTest, ANonUtf8PathPunchesNoHole) {
  v1::PunchHoleRequest punch;
  punch.set_export_name("exp");
  punch.set_offset(0);
  punch.set_length(page_);
  const grpc::Status status = RawCall(
      "PunchHole", punch.SerializeAsString() +
                       LengthDelimitedField(v1::PunchHoleRequest::kPathFieldNumber, kNotUtf8));
  EXPECT_THAT(status, IsInvalidArgumentNaming("pinbroker.v1.PunchHoleRequest.path"));
  EXPECT_EQ(FileSize(), kPages * page_);
  EXPECT_EQ(dir_.ReadFile("data"), std::string(kPages * page_, 'd'));  // No byte zeroed.
}

TEST_F(MalformedRequestTest, ANonUtf8ReasonRevokesNothing) {
  const v1::SessionCredentials creds = OpenSession();
  auto lease = Pin(creds, 0, page_);
  ASSERT_OK(lease.status());
  v1::RevokeLeaseRequest revoke;
  revoke.set_lease_id(lease->lease_id());
  const grpc::Status status =
      RawCall("RevokeLease",
              revoke.SerializeAsString() +
                  LengthDelimitedField(v1::RevokeLeaseRequest::kReasonFieldNumber, kNotUtf8));
  EXPECT_THAT(status, IsInvalidArgumentNaming("pinbroker.v1.RevokeLeaseRequest.reason"));
  EXPECT_EQ(broker_->engine().live_lease_count(), 1u);
  revoke.set_reason("test");
  auto revoked = Call(&v1::PinBroker::Stub::RevokeLease, revoke);
  ASSERT_OK(revoked.status());
  EXPECT_TRUE(revoked->revoked());
  EXPECT_EQ(broker_->engine().live_lease_count(), 0u);
}

TEST_F(MalformedRequestTest, ANonUtf8SessionIdOpensNoWatch) {
  const v1::SessionCredentials creds = OpenSession();
  const grpc::Status status = RawCall(
      "Watch", LengthDelimitedField(
                   v1::WatchRequest::kCredentialsFieldNumber,
                   LengthDelimitedField(v1::SessionCredentials::kSessionIdFieldNumber, kNotUtf8)));
  EXPECT_THAT(status, IsInvalidArgumentNaming("pinbroker.v1.WatchRequest.credentials.session_id"));
  EXPECT_EQ(broker_->sessions().List().at(0).watchers, 0);
}

TEST_F(MalformedRequestTest, BytesThatAreNoMessageAreInvalidArgument) {
  const grpc::Status status = RawCall("Pin", std::string("\xff\xff\xff\xff", 4));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(status.error_message(), "request is not a valid pinbroker.v1.PinRequest message");
  EXPECT_EQ(broker_->engine().live_lease_count(), 0u);
}

TEST_F(MalformedRequestTest, AFloodOfNonUtf8RequestsWritesNoLogLinePerRequest) {
  const std::string bytes =
      LengthDelimitedField(v1::OpenSessionRequest::kClientNameFieldNumber, kNotUtf8);
  const std::vector<std::string> before = Lines();
  for (int i = 0; i < 50; ++i) {
    ASSERT_THAT(RawCall("OpenSession", bytes),
                IsInvalidArgumentNaming("pinbroker.v1.OpenSessionRequest.client_name"));
  }
  EXPECT_EQ(Lines(), before);
  // Protobuf's other messages still reach the broker's log.
  GOOGLE_LOG(WARNING) << "a protobuf warning";
  EXPECT_THAT(Lines(), Contains(AllOf(HasSubstr("W pinbroker] libprotobuf "),
                                      HasSubstr("] a protobuf warning"))));
}

TEST(ProtobufLogTest, OnlyTheUtf8ParseComplaintIsDropped) {
  std::vector<std::pair<LogSeverity, std::string>> lines;
  SetLogSink([&](LogSeverity severity, absl::string_view line) {
    lines.emplace_back(severity, std::string(line));
  });
  ForwardProtobufLog(google::protobuf::LOGLEVEL_ERROR, "wire_format_lite.cc", 581,
                     "String field 'pinbroker.v1.PinRequest.path' contains invalid UTF-8 data "
                     "when parsing a protocol buffer. Use the 'bytes' type if you intend to "
                     "send raw bytes. ");
  EXPECT_THAT(lines, IsEmpty());
  ForwardProtobufLog(google::protobuf::LOGLEVEL_ERROR, "wire_format_lite.cc", 581,
                     "String field 'pinbroker.v1.Lease.path' contains invalid UTF-8 data when "
                     "serializing a protocol buffer. Use the 'bytes' type if you intend to send "
                     "raw bytes. ");
  ForwardProtobufLog(google::protobuf::LOGLEVEL_WARNING, "descriptor.cc", 7, "other");
  SetLogSink(nullptr);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0].first, LogSeverity::kError);
  EXPECT_THAT(lines[0].second, HasSubstr("when serializing"));
  EXPECT_EQ(lines[1].first, LogSeverity::kWarning);
  EXPECT_EQ(lines[1].second, "W pinbroker] libprotobuf descriptor.cc:7] other");
}

}  // namespace
}  // namespace pinbroker::broker
