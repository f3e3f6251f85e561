// End-to-end tests of RdmaLease (include/pinbroker/rdma_lease.h) against the real broker, in
// process, with its RDMA backend on a real device: the broker on rxe0 (10.77.0.1), the client on
// rxe1 (10.77.0.2), as in the VM suite's guest (override with PINBROKER_TEST_RDMA_SERVER /
// PINBROKER_TEST_RDMA_CLIENT; the export lives under $PB_TMPFS if set). On hosts without an RDMA
// device every test skips with the reason. Bytes are always checked in the file itself.
//
// Waits are event-driven (absl::Notification from callbacks) with a generous bound.

#include "pinbroker/rdma_lease.h"

#include <infiniband/verbs.h>
#include <sys/stat.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "broker/broker.h"
#include "common/real_clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pinbroker/rdma_connection.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace pinbroker::client {
namespace {

using ::pinbroker::testing::IsOk;
using ::pinbroker::testing::StatusIs;
using ::pinbroker::testing::TempDir;
using ::testing::AllOf;
using ::testing::HasSubstr;

constexpr absl::Duration kBound = absl::Seconds(60);
constexpr uint64_t kFileBytes = 256 * 1024;

std::string EnvOr(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? v : fallback;
}

std::string NoDeviceReason() {
  int n = 0;
  ibv_device** list = ibv_get_device_list(&n);
  if (list == nullptr) {
    return absl::StrCat("no RDMA device on this host (ibv_get_device_list: ", std::strerror(errno),
                        ")");
  }
  ibv_free_device_list(list);
  return n == 0 ? "no RDMA device on this host" : "";
}

class RdmaLeaseTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::string why = NoDeviceReason(); !why.empty()) GTEST_SKIP() << why;
    dir_ = std::make_unique<TempDir>(EnvOr("PB_TMPFS", ""));
    ASSERT_EQ(mkdir(dir_->Join("export").c_str(), 0755), 0);
    dir_->WriteFile("export/f", std::string(kFileBytes, 'f'));
    v1::BrokerConfig config;
    config.add_listen(absl::StrCat("unix:", dir_->Join("s.sock")));
    config.set_backend("rdma");
    config.mutable_rdma()->set_address(EnvOr("PINBROKER_TEST_RDMA_SERVER", "10.77.0.1"));
    config.mutable_rdma()->set_port(7491);
    v1::ExportConfig* e = config.add_exports();
    e->set_name("e");
    e->set_root(dir_->Join("export"));
    e->set_default_policy(v1::LAYOUT_POLICY_REVOKE);
    auto broker = broker::Broker::Start(config, &clock_);
    if (!broker.ok()) GTEST_SKIP() << "no RDMA broker here: " << broker.status();
    broker_ = *std::move(broker);
    client_ = NewClient("rdma-lease-test");
    ASSERT_NE(client_, nullptr);
    connection_ = Attach(*client_);
    ASSERT_NE(connection_, nullptr);
  }

  void TearDown() override {
    connection_.reset();
    client_.reset();
    broker_.reset();
  }

  std::unique_ptr<Client> NewClient(const std::string& name) {
    ClientOptions options;
    options.client_name = name;
    auto client = Client::Connect(absl::StrCat("unix:", dir_->Join("s.sock")), options);
    EXPECT_THAT(client.status(), IsOk());
    return client.ok() ? *std::move(client) : nullptr;
  }

  RdmaConnectOptions ConnectOptions() const {
    RdmaConnectOptions o;
    o.source_address = EnvOr("PINBROKER_TEST_RDMA_CLIENT", "10.77.0.2");
    o.connect_timeout = absl::Seconds(30);
    return o;
  }

  std::unique_ptr<RdmaConnection> Attach(Client& client) {
    auto connection = RdmaConnection::Connect(client, ConnectOptions());
    EXPECT_THAT(connection.status(), IsOk());
    return connection.ok() ? *std::move(connection) : nullptr;
  }

  static RdmaPinOptions Pin(uint64_t offset, uint64_t length,
                            v1::Access access = v1::ACCESS_READ_WRITE) {
    RdmaPinOptions o;
    o.export_name = "e";
    o.path = "f";
    o.offset = offset;
    o.length = length;
    o.access = access;
    return o;
  }

  std::string FileBytes(uint64_t offset, uint64_t length) const {
    return dir_->ReadFile("export/f").substr(offset, length);
  }

  static LayoutOptions Revoke(absl::Duration grace) {
    LayoutOptions o;
    o.policy = v1::LAYOUT_POLICY_REVOKE;
    o.grace = grace;
    return o;
  }
  v1::LayoutChangeResponse TruncateRevoke(absl::Duration grace) {
    auto response = client_->Truncate("e", "f", 0, Revoke(grace));
    EXPECT_THAT(response.status(), IsOk());
    return response.ok() ? *response : v1::LayoutChangeResponse();
  }
  v1::LayoutChangeResponse PunchRevoke(uint64_t offset, uint64_t length, absl::Duration grace) {
    auto response = client_->PunchHole("e", "f", offset, length, Revoke(grace));
    EXPECT_THAT(response.status(), IsOk());
    return response.ok() ? *response : v1::LayoutChangeResponse();
  }

  RealClock clock_;
  std::unique_ptr<TempDir> dir_;
  std::unique_ptr<broker::Broker> broker_;
  std::unique_ptr<Client> client_;
  std::unique_ptr<RdmaConnection> connection_;
};

TEST_F(RdmaLeaseTest, WriteReadAndAtomicsLandInTheFile) {
  ASSERT_OK_AND_ASSIGN(auto lease, RdmaLease::Pin(*client_, *connection_, Pin(4096, 8192)));
  EXPECT_EQ(lease->length(), 8192u);
  EXPECT_NE(lease->rdma().rkey(), 0u);
  ASSERT_OK_AND_ASSIGN(LocalBuffer buffer, connection_->AllocateBuffer(8192));
  for (size_t i = 0; i < 8192; ++i) buffer.data()[i] = static_cast<uint8_t>(i * 7 + 3);
  ASSERT_THAT(lease->Write(0, buffer, 0, 8192), IsOk());
  EXPECT_EQ(FileBytes(4096, 8192), std::string(reinterpret_cast<char*>(buffer.data()), 8192));

  ASSERT_OK_AND_ASSIGN(LocalBuffer back, connection_->AllocateBuffer(8192));
  ASSERT_THAT(lease->Read(100, back, 0, 1000), IsOk());  // Unconstrained: any offset.
  EXPECT_EQ(std::memcmp(back.data(), buffer.data() + 100, 1000), 0);

  uint64_t word;
  std::memcpy(&word, buffer.data() + 64, 8);
  ASSERT_OK_AND_ASSIGN(uint64_t before, lease->FetchAdd(64, 5));
  EXPECT_EQ(before, word);
  ASSERT_OK_AND_ASSIGN(uint64_t seen, lease->CompareSwap(64, word + 5, 42));
  EXPECT_EQ(seen, word + 5);
  uint64_t in_file;
  std::memcpy(&in_file, FileBytes(4096 + 64, 8).data(), 8);
  EXPECT_EQ(in_file, 42u);

  EXPECT_THAT(lease->Write(8000, buffer, 0, 200),
              StatusIs(absl::StatusCode::kOutOfRange, HasSubstr(lease->id())));
  EXPECT_THAT(lease->FetchAdd(4, 1),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("8-byte")));
  EXPECT_THAT(lease->Release(), IsOk());
  EXPECT_THAT(
      lease->Write(0, buffer, 0, 8),
      StatusIs(absl::StatusCode::kNotFound, AllOf(HasSubstr(lease->id()), HasSubstr("released"))));
}

TEST_F(RdmaLeaseTest, ReadOnlyLeaseReadsButRefusesWrites) {
  ASSERT_OK_AND_ASSIGN(auto lease,
                       RdmaLease::Pin(*client_, *connection_, Pin(0, 4096, v1::ACCESS_READ)));
  ASSERT_OK_AND_ASSIGN(LocalBuffer buffer, connection_->AllocateBuffer(4096));
  ASSERT_THAT(lease->Read(0, buffer, 0, 4096), IsOk());
  EXPECT_EQ(std::string(reinterpret_cast<char*>(buffer.data()), 4096), std::string(4096, 'f'));
  EXPECT_THAT(lease->Write(0, buffer, 0, 4096),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("read-only")));
  EXPECT_THAT(lease->FetchAdd(0, 1),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("read-only")));
  EXPECT_THAT(connection_->status(), IsOk());  // Refused before posting: nothing broke.
}

TEST_F(RdmaLeaseTest, RecallDrainsInFlightWritesThenReleases) {
  absl::Notification recalled;
  int in_flight_at_callback = -1;
  LeaseState state_at_callback = LeaseState::kGranted;
  RdmaPinOptions pin = Pin(0, kFileBytes);
  pin.on_recall = [&](RdmaLease& lease, absl::string_view reason, absl::Time) {
    in_flight_at_callback = lease.in_flight();
    state_at_callback = lease.state();
    EXPECT_THAT(std::string(reason), HasSubstr("truncate"));
    recalled.Notify();
  };
  ASSERT_OK_AND_ASSIGN(auto lease, RdmaLease::Pin(*client_, *connection_, pin));
  ASSERT_OK_AND_ASSIGN(LocalBuffer buffer, connection_->AllocateBuffer(kFileBytes));
  std::memset(buffer.data(), 'w', kFileBytes);
  std::vector<PendingOp> ops;
  for (uint64_t off = 0; off < kFileBytes; off += 32768) {
    ASSERT_OK_AND_ASSIGN(PendingOp op, lease->StartWrite(off, buffer, off, 32768));
    ops.push_back(op);
  }
  const v1::LayoutChangeResponse change = TruncateRevoke(absl::Seconds(30));
  ASSERT_TRUE(recalled.WaitForNotificationWithTimeout(kBound));
  EXPECT_EQ(in_flight_at_callback, 0);
  EXPECT_EQ(state_at_callback, LeaseState::kReleased);
  EXPECT_THAT(change.released_lease_ids(), ::testing::ElementsAre(lease->id()));
  EXPECT_THAT(change.revoked_lease_ids(), ::testing::IsEmpty());
  for (const PendingOp& op : ops) EXPECT_THAT(op.Wait(), IsOk());  // Drained, not flushed.
  EXPECT_THAT(
      lease->Write(0, buffer, 0, 8),
      StatusIs(absl::StatusCode::kNotFound, AllOf(HasSubstr(lease->id()), HasSubstr("released"))));
  EXPECT_THAT(connection_->status(), IsOk());
}

TEST_F(RdmaLeaseTest, RevocationIsAnErrorNamingTheLease) {
  absl::Notification revoked;
  RdmaPinOptions pin = Pin(0, 4096);
  pin.stop_on_recall = false;  // Ignore the recall: the broker revokes after the grace.
  pin.release_on_recall = false;
  pin.on_revoked = [&](RdmaLease&, absl::string_view) { revoked.Notify(); };
  ASSERT_OK_AND_ASSIGN(auto lease, RdmaLease::Pin(*client_, *connection_, pin));
  ASSERT_OK_AND_ASSIGN(auto other, RdmaLease::Pin(*client_, *connection_, Pin(8192, 4096)));
  ASSERT_OK_AND_ASSIGN(LocalBuffer buffer, connection_->AllocateBuffer(4096));
  ASSERT_THAT(lease->Write(0, buffer, 0, 4096), IsOk());

  // Only the first page: `other` is not in the way.
  const v1::LayoutChangeResponse change = PunchRevoke(0, 4096, absl::Milliseconds(300));
  EXPECT_THAT(change.revoked_lease_ids(), ::testing::ElementsAre(lease->id()));
  ASSERT_TRUE(revoked.WaitForNotificationWithTimeout(kBound));
  EXPECT_EQ(lease->state(), LeaseState::kRevoked);
  EXPECT_THAT(
      lease->Write(0, buffer, 0, 4096),
      StatusIs(absl::StatusCode::kNotFound, AllOf(HasSubstr(lease->id()), HasSubstr("revoked"))));
  // The window is really gone: a probe through it is refused by the device.
  RdmaOpOptions probe;
  probe.after_end = true;
  EXPECT_THAT(lease->Write(0, buffer, 0, 4096, probe),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       AllOf(HasSubstr(lease->id()), HasSubstr("remote access error"))));
  EXPECT_THAT(connection_->status(),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("remote access error")));
  EXPECT_THAT(
      other->Write(0, buffer, 0, 4096),
      StatusIs(absl::StatusCode::kUnavailable, AllOf(HasSubstr(other->id()), HasSubstr("broken"))));
}

TEST_F(RdmaLeaseTest, AttachRulesAndForeignSessions) {
  // One connection per session.
  EXPECT_THAT(RdmaConnection::Connect(*client_, ConnectOptions()),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("rejected")));
  // A wrong token is refused by the broker.
  v1::SessionCredentials forged = client_->credentials();
  std::string token = forged.token();
  token[0] = token[0] == '0' ? '1' : '0';
  forged.set_token(token);
  RdmaConnectOptions o = ConnectOptions();
  auto info = client_->GetInfo();
  ASSERT_THAT(info.status(), IsOk());
  ASSERT_GT(info->rdma_endpoints_size(), 0);
  o.address = info->rdma_endpoints(0).address();
  o.port = static_cast<uint16_t>(info->rdma_endpoints(0).port());
  EXPECT_THAT(RdmaConnection::Connect(forged, o),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("rejected")));
  // Another session's connection cannot carry this session's leases.
  auto other_client = NewClient("other");
  ASSERT_NE(other_client, nullptr);
  EXPECT_THAT(RdmaLease::Pin(*other_client, *connection_, Pin(0, 4096)),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("not to this client")));
  // Without a connection the broker grants no RDMA lease.
  PinOptions plain;
  plain.export_name = "e";
  plain.path = "f";
  plain.length = 4096;
  plain.access = v1::ACCESS_READ_WRITE;
  plain.rdma = true;
  EXPECT_THAT(other_client->Pin(plain).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, ::testing::_));
}

}  // namespace
}  // namespace pinbroker::client
