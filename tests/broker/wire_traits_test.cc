// The request types' wire traits (pinbroker/v1/wire_traits.h): a request protobuf will not
// parse is INVALID_ARGUMENT naming the first string field that is not UTF-8 (nested and
// repeated fields too), or saying the message is malformed; a valid one parses as before. Used
// through pinbroker.grpc.pb.h, as gRPC uses them.
#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/slice.h>

#include <string>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "google/protobuf/descriptor.h"
#include "gtest/gtest.h"
#include "pinbroker/v1/config.pb.h"
#include "pinbroker/v1/pinbroker.grpc.pb.h"
#include "tests/broker/wire_bytes.h"

namespace pinbroker::v1::wire {
namespace {

using ::pinbroker::testing::LengthDelimitedField;
using ::testing::AllOf;
using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr std::string_view kNotUtf8 = "ab\xff\xfe";  // Stops being UTF-8 at byte 2.

grpc::Status Deserialize(const std::string& bytes, PinRequest* request) {
  grpc::Slice slice(bytes);
  grpc::ByteBuffer buffer(&slice, 1);
  return grpc::SerializationTraits<PinRequest>::Deserialize(&buffer, request);
}

PinRequest ValidPin() {
  PinRequest request;
  request.mutable_credentials()->set_session_id("s-1");
  request.set_export_name("exp");
  request.set_path("data");
  request.set_length(4096);
  return request;
}

TEST(WireTraitsTest, ProtobufItselfRefusesTheseBytes) {
  // The premise: without the traits, this is the parse that fails with no reason given.
  PinRequest request;
  EXPECT_FALSE(
      request.ParseFromString(ValidPin().SerializeAsString() +
                              LengthDelimitedField(PinRequest::kPathFieldNumber, kNotUtf8)));
}

TEST(WireTraitsTest, ANonUtf8StringIsInvalidArgumentNamingItsFieldAndOffset) {
  const grpc::Status status = DiagnoseUnparsable(
      ValidPin().SerializeAsString() + LengthDelimitedField(PinRequest::kPathFieldNumber, kNotUtf8),
      *PinRequest::descriptor());
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(status.error_message(),
            "field pinbroker.v1.PinRequest.path is not valid UTF-8 (at byte 2); every string "
            "field must be UTF-8 text");
}

TEST(WireTraitsTest, NestedFieldsAreNamedByTheirPath) {
  TruncateRequest truncate;
  truncate.set_export_name("exp");
  truncate.mutable_options()->set_policy(LAYOUT_POLICY_REVOKE);
  const std::string bytes =
      truncate.SerializeAsString() +
      LengthDelimitedField(TruncateRequest::kOptionsFieldNumber,
                           LengthDelimitedField(LayoutOptions::kInitiatorFieldNumber, kNotUtf8));
  EXPECT_FALSE(TruncateRequest().ParseFromString(bytes));
  const grpc::Status status = DiagnoseUnparsable(bytes, *TruncateRequest::descriptor());
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(),
              HasSubstr("field pinbroker.v1.TruncateRequest.options.initiator is not valid "
                        "UTF-8 (at byte 2)"));
}

TEST(WireTraitsTest, RepeatedAndMapFieldsAreNamedWithTheirIndex) {
  // Any message type: these fields are in responses and the config.
  CloseSessionResponse close;
  close.add_released_lease_ids("l-0");
  const std::string list =
      close.SerializeAsString() +
      LengthDelimitedField(CloseSessionResponse::kReleasedLeaseIdsFieldNumber, kNotUtf8);
  EXPECT_THAT(DiagnoseUnparsable(list, *CloseSessionResponse::descriptor()).error_message(),
              HasSubstr("field pinbroker.v1.CloseSessionResponse.released_lease_ids[1] is not "
                        "valid UTF-8"));

  BrokerConfig config;
  (*config.mutable_tls()->mutable_principal_uids())["spiffe://a"] = 1;
  // A map entry is a message of a key (field 1) and a value (field 2).
  const std::string entry = LengthDelimitedField(1, kNotUtf8);
  const std::string map =
      config.SerializeAsString() +
      LengthDelimitedField(BrokerConfig::kTlsFieldNumber,
                           LengthDelimitedField(TlsConfig::kPrincipalUidsFieldNumber, entry));
  EXPECT_FALSE(BrokerConfig().ParseFromString(map));
  EXPECT_THAT(DiagnoseUnparsable(map, *BrokerConfig::descriptor()).error_message(),
              HasSubstr("field pinbroker.v1.BrokerConfig.tls.principal_uids[0].key is not "
                        "valid UTF-8"));
}

TEST(WireTraitsTest, TheMessageQuotesNoClientBytes) {
  const std::string secret = absl::StrCat("token-", std::string(200, 'x'), "\xff");
  const grpc::Status status = DiagnoseUnparsable(
      LengthDelimitedField(PinRequest::kPathFieldNumber, secret), *PinRequest::descriptor());
  EXPECT_THAT(status.error_message(), AllOf(HasSubstr("pinbroker.v1.PinRequest.path"),
                                            Not(HasSubstr("token-")), Not(HasSubstr("\xff"))));
}

TEST(WireTraitsTest, OtherMalformedBytesAreNotAValidMessage) {
  const std::string whole =
      ValidPin().SerializeAsString() + LengthDelimitedField(PinRequest::kPathFieldNumber, "data");
  const std::string cut = whole.substr(0, whole.size() - 2);  // A length past the end.
  for (const std::string& bytes : {cut, std::string("\xff\xff\xff\xff", 4)}) {
    EXPECT_FALSE(PinRequest().ParseFromString(bytes));
    const grpc::Status status = DiagnoseUnparsable(bytes, *PinRequest::descriptor());
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_EQ(status.error_message(), "request is not a valid pinbroker.v1.PinRequest message");
  }
}

TEST(WireTraitsTest, GrpcDeserializesThroughTheTraits) {
  PinRequest parsed;
  const grpc::Status bad = Deserialize(
      ValidPin().SerializeAsString() + LengthDelimitedField(PinRequest::kPathFieldNumber, kNotUtf8),
      &parsed);
  EXPECT_EQ(bad.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(bad.error_message(), HasSubstr("pinbroker.v1.PinRequest.path"));

  parsed.Clear();
  const grpc::Status good = Deserialize(ValidPin().SerializeAsString(), &parsed);
  EXPECT_TRUE(good.ok()) << good.error_message();
  EXPECT_EQ(parsed.SerializeAsString(), ValidPin().SerializeAsString());
}

TEST(WireTraitsTest, EveryRequestTypeOfTheServiceHasTheTraits) {
  const google::protobuf::ServiceDescriptor* service =
      google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(
          PinBroker::service_full_name());
  ASSERT_NE(service, nullptr);
  for (int i = 0; i < service->method_count(); ++i) {
    EXPECT_THAT(RequestTypesWithWireTraits(),
                Contains(std::string_view(service->method(i)->input_type()->full_name())))
        << "add " << service->method(i)->input_type()->name()
        << " to PINBROKER_V1_REQUEST_TYPES (pinbroker/v1/wire_traits.h)";
  }
}

}  // namespace
}  // namespace pinbroker::v1::wire
