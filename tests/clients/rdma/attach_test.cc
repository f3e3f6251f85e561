// Tests of the client's half of the RDMA attach handshake (clients/rdma/attach.h): the
// AttachRequest's bytes, token decoding and its limits, and how rejects map to status codes.

#include "clients/rdma/attach.h"

#include <cstring>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace pinbroker::client::rdma_internal {
namespace {

using ::pinbroker::testing::IsOk;
using ::pinbroker::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kToken[] = "00ff10a5B7c3d4e5f60718293a4b5c6d";

TEST(AttachRequestTest, CarriesMagicVersionSessionAndRawToken) {
  ASSERT_OK_AND_ASSIGN(rdma_wire::AttachRequest r, EncodeAttachRequest("s-12", kToken));
  EXPECT_EQ(r.magic, rdma_wire::kMagic);
  EXPECT_EQ(r.version, rdma_wire::kVersion);
  EXPECT_EQ(r.session_id_length, 4);
  EXPECT_EQ(std::string(r.session_id, r.session_id_length), "s-12");
  EXPECT_EQ(r.session_id[4], '\0');  // The rest stays zero.
  const uint8_t want[16] = {0x00, 0xff, 0x10, 0xa5, 0xb7, 0xc3, 0xd4, 0xe5,
                            0xf6, 0x07, 0x18, 0x29, 0x3a, 0x4b, 0x5c, 0x6d};
  EXPECT_EQ(std::memcmp(r.token, want, sizeof(want)), 0);
  // Little-endian on the wire: the first bytes spell the magic's low byte first.
  uint8_t bytes[sizeof(r)];
  std::memcpy(bytes, &r, sizeof(r));
  EXPECT_EQ(bytes[0], 0x31);  // '1' of "PBR1"
  EXPECT_EQ(bytes[3], 0x50);  // 'P'
  EXPECT_EQ(bytes[8], 0x00);  // token[0]
  EXPECT_EQ(bytes[9], 0xff);  // token[1]
  EXPECT_EQ(bytes[24], 's');  // session_id[0]
}

TEST(AttachRequestTest, SessionIdOfExactlyTheLimitFits) {
  const std::string id(rdma_wire::kMaxSessionIdBytes, 'x');
  ASSERT_OK_AND_ASSIGN(rdma_wire::AttachRequest r, EncodeAttachRequest(id, kToken));
  EXPECT_EQ(r.session_id_length, rdma_wire::kMaxSessionIdBytes);
  EXPECT_EQ(std::string(r.session_id, r.session_id_length), id);
}

TEST(AttachRequestTest, RefusesTooLongAndEmptySessionIds) {
  EXPECT_THAT(EncodeAttachRequest(std::string(rdma_wire::kMaxSessionIdBytes + 1, 'x'), kToken),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("at most 32")));
  EXPECT_THAT(EncodeAttachRequest("", kToken),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("empty session id")));
}

TEST(AttachRequestTest, RefusesMalformedTokensWithoutEchoingThem) {
  const std::string short_token = "abcdef0123";
  EXPECT_THAT(EncodeAttachRequest("s", short_token),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("10 characters"), Not(HasSubstr(short_token)))));
  std::string bad(kToken);
  bad[7] = 'g';
  EXPECT_THAT(EncodeAttachRequest("s", bad),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("not hexadecimal (character 7)"), Not(HasSubstr(bad)))));
  EXPECT_THAT(EncodeAttachRequest("s", std::string(kToken) + "0"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("33 characters")));
}

std::string RejectBytes(uint16_t code, const std::string& message, size_t pad_to = 0) {
  rdma_wire::AttachReject r =
      rdma_wire::MakeReject(static_cast<rdma_wire::RejectCode>(code), message);
  std::string bytes(reinterpret_cast<const char*>(&r), sizeof(r));
  if (bytes.size() < pad_to) bytes.resize(pad_to, '\0');  // IB CM pads to 148 bytes.
  return bytes;
}

absl::Status Map(const std::string& bytes, int cm_status = 28) {
  return RejectToStatus(bytes.data(), bytes.size(), cm_status, "10.77.0.1:7471");
}

TEST(RejectTest, MapsEachCodeWithTheBrokersMessage) {
  EXPECT_THAT(Map(RejectBytes(1, "bad magic")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("10.77.0.1:7471"), HasSubstr("malformed attach request"),
                             HasSubstr("bad magic"))));
  EXPECT_THAT(Map(RejectBytes(2, "unknown session s-1", 148)),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("unknown session s-1")));
  EXPECT_THAT(
      Map(RejectBytes(3, "session s-1 is attached from 10.77.0.2")),
      StatusIs(absl::StatusCode::kAlreadyExists, AllOf(HasSubstr("already has an RDMA connection"),
                                                       HasSubstr("attached from 10.77.0.2"))));
  EXPECT_THAT(Map(RejectBytes(4, "shutting down")),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("shutting down")));
  EXPECT_THAT(Map(RejectBytes(99, "future")),
              StatusIs(absl::StatusCode::kUnavailable,
                       AllOf(HasSubstr("unknown reject code"), HasSubstr("(code 99)"))));
}

TEST(RejectTest, AMessageWithoutTerminatorIsCutAtItsField) {
  rdma_wire::AttachReject r = rdma_wire::MakeReject(rdma_wire::RejectCode::kUnavailable, "");
  std::memset(r.message, 'm', sizeof(r.message));  // No NUL anywhere.
  const std::string bytes(reinterpret_cast<const char*>(&r), sizeof(r));
  absl::Status s = Map(bytes);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(s.message()), HasSubstr(std::string(sizeof(r.message) - 1, 'm')));
  EXPECT_THAT(std::string(s.message()), Not(HasSubstr(std::string(sizeof(r.message), 'm'))));
}

TEST(RejectTest, ATruncatedRejectStillMapsItsCode) {
  const std::string bytes = RejectBytes(2, "wrong token").substr(0, 6);  // Magic and code only.
  EXPECT_THAT(Map(bytes), StatusIs(absl::StatusCode::kUnauthenticated,
                                   HasSubstr("rejected (unauthenticated)")));
}

TEST(RejectTest, ARejectWithoutAttachRejectNamesTheCmReason) {
  EXPECT_THAT(RejectToStatus(nullptr, 0, 8, "10.77.0.1:9999"),
              StatusIs(absl::StatusCode::kUnavailable,
                       AllOf(HasSubstr("10.77.0.1:9999"), HasSubstr("nothing listens"),
                             HasSubstr("reason 8"))));
  const std::string zeros(148, '\0');
  EXPECT_THAT(Map(zeros, 28), StatusIs(absl::StatusCode::kUnavailable,
                                       HasSubstr("rejected by the peer application")));
  EXPECT_THAT(Map("PB", 3), StatusIs(absl::StatusCode::kUnavailable, HasSubstr("reason 3")));
}

}  // namespace
}  // namespace pinbroker::client::rdma_internal
