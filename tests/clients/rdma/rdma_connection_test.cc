// Tests of RdmaConnection (include/pinbroker/rdma_connection.h).
//
// Without an RDMA device (this project's hosts): option validation, a broker without RDMA
// endpoints, the Client's credentials accessor, and the error for a missing device.
// With a device (the VM suite's guest: rxe0 10.77.0.1, rxe1 10.77.0.2; override with
// PINBROKER_TEST_RDMA_SERVER / PINBROKER_TEST_RDMA_CLIENT): the attach handshake against an
// rdma_cm listener in the test that plays the broker's side of include/pinbroker/rdma_wire.h — it
// checks the AttachRequest's bytes and answers with each AttachReject, or accepts.

#include "pinbroker/rdma_connection.h"

#include <arpa/inet.h>
#include <infiniband/verbs.h>
#include <poll.h>
#include <rdma/rdma_cma.h>
#include <sys/stat.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "broker/broker.h"
#include "common/real_clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pinbroker/rdma_wire.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace pinbroker::client {
namespace {

using ::pinbroker::testing::IsOk;
using ::pinbroker::testing::StatusIs;
using ::pinbroker::testing::TempDir;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;

constexpr char kToken[] = "0123456789abcdef0123456789ABCDEF";

// Why there is no usable RDMA device here, or "" if there is one.
std::string NoDeviceReason() {
  int n = 0;
  ibv_device** list = ibv_get_device_list(&n);
  if (list == nullptr) {
    return absl::StrCat("no RDMA device on this host (ibv_get_device_list: ", std::strerror(errno),
                        ")");
  }
  ibv_free_device_list(list);
  if (n == 0) return "no RDMA device on this host";
  return "";
}

std::string EnvOr(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? v : fallback;
}

// --- Without a device --------------------------------------------------------------------------

class RdmaConnectionHostTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(mkdir(dir_.Join("export").c_str(), 0755), 0);
    dir_.WriteFile("export/f", std::string(4 * 4096, 'f'));
    config_.add_listen(absl::StrCat("unix:", dir_.Join("s.sock")));
    config_.set_backend("host");  // Deterministic: no RDMA endpoints even where devices exist.
    v1::ExportConfig* e = config_.add_exports();
    e->set_name("e");
    e->set_root(dir_.Join("export"));
    auto broker = broker::Broker::Start(config_, &clock_);
    ASSERT_THAT(broker.status(), IsOk());
    broker_ = *std::move(broker);
    ClientOptions options;
    options.client_name = "rdma-host-test";
    auto client = Client::Connect(absl::StrCat("unix:", dir_.Join("s.sock")), options);
    ASSERT_THAT(client.status(), IsOk());
    client_ = *std::move(client);
  }

  TempDir dir_{"/tmp"};
  RealClock clock_;
  v1::BrokerConfig config_;
  std::unique_ptr<broker::Broker> broker_;
  std::unique_ptr<Client> client_;
};

TEST_F(RdmaConnectionHostTest, ClientExposesItsSessionCredentials) {
  const v1::SessionCredentials c = client_->credentials();
  EXPECT_EQ(c.session_id(), client_->session_id());
  EXPECT_THAT(c.token(), MatchesRegex("[0-9a-f]{32}"));
}

TEST_F(RdmaConnectionHostTest, BrokerWithoutRdmaEndpointsIsAFailedPrecondition) {
  EXPECT_THAT(RdmaConnection::Connect(*client_, {}),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("no RDMA endpoint"), HasSubstr("\"host\""))));
}

TEST(RdmaConnectionOptionsTest, InvalidOptionsAreRefusedBeforeAnyDeviceIsTouched) {
  v1::SessionCredentials c;
  c.set_session_id("s-1");
  c.set_token(kToken);
  EXPECT_THAT(RdmaConnection::Connect(c, {}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("address is required")));
  RdmaConnectOptions o;
  o.address = "10.77.0.1";
  o.send_queue_depth = 0;
  EXPECT_THAT(RdmaConnection::Connect(c, o),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("send_queue_depth")));
  o.send_queue_depth = 8;
  o.op_timeout = absl::ZeroDuration();
  EXPECT_THAT(RdmaConnection::Connect(c, o),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("op_timeout")));
  o.op_timeout = absl::Seconds(1);
  c.set_token("not-a-token");
  EXPECT_THAT(RdmaConnection::Connect(c, o),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("session token")));
  c.set_token(kToken);
  c.set_session_id(std::string(40, 's'));
  EXPECT_THAT(RdmaConnection::Connect(c, o),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("at most 32")));
}

TEST(RdmaConnectionNoDeviceTest, ConnectingWithoutADeviceSaysSo) {
  const std::string no_device = NoDeviceReason();
  if (no_device.empty())
    GTEST_SKIP() << "this host has an RDMA device; the test is for hosts without";
  v1::SessionCredentials c;
  c.set_session_id("s-1");
  c.set_token(kToken);
  RdmaConnectOptions o;
  o.address = "127.0.0.1";
  o.connect_timeout = absl::Seconds(2);
  EXPECT_THAT(RdmaConnection::Connect(c, o),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("RDMA device")));
}

// --- With a device: the handshake against a listener playing the broker --------------------------

// Accepts or rejects one connection at a time on `address`, recording the AttachRequest.
class AttachListener {
 public:
  enum class Answer { kAccept, kReject };

  ~AttachListener() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    if (child_ != nullptr) {
      rdma_destroy_qp(child_);
      rdma_destroy_id(child_);
    }
    if (pd_ != nullptr) ibv_dealloc_pd(pd_);
    if (cq_ != nullptr) ibv_destroy_cq(cq_);
    if (id_ != nullptr) rdma_destroy_id(id_);
    if (channel_ != nullptr) rdma_destroy_event_channel(channel_);
  }

  // Binds and listens; the skip reason if the address is not an RDMA device's.
  std::string Listen(const std::string& address) {
    channel_ = rdma_create_event_channel();
    if (channel_ == nullptr)
      return absl::StrCat("rdma_create_event_channel: ", std::strerror(errno));
    if (rdma_create_id(channel_, &id_, nullptr, RDMA_PS_TCP) != 0) return "rdma_create_id failed";
    sockaddr_in sin = {};
    sin.sin_family = AF_INET;
    if (inet_pton(AF_INET, address.c_str(), &sin.sin_addr) != 1) return "bad listener address";
    if (rdma_bind_addr(id_, reinterpret_cast<sockaddr*>(&sin)) != 0) {
      return absl::StrCat(address, " is not an RDMA device's address here (rdma_bind_addr: ",
                          std::strerror(errno), "); set PINBROKER_TEST_RDMA_SERVER");
    }
    if (rdma_listen(id_, 4) != 0) return absl::StrCat("rdma_listen: ", std::strerror(errno));
    port_ = ntohs(rdma_get_src_port(id_));
    thread_ = std::thread([this] { Loop(); });
    return "";
  }

  void Answer(Answer answer, rdma_wire::RejectCode code = rdma_wire::RejectCode::kUnavailable,
              std::string message = "") {
    absl::MutexLock lock(&mu_);
    answer_ = answer;
    code_ = code;
    message_ = std::move(message);
  }

  uint16_t port() const { return port_; }
  rdma_wire::AttachRequest last_request() {
    absl::MutexLock lock(&mu_);
    return last_;
  }
  size_t last_length() {
    absl::MutexLock lock(&mu_);
    return last_length_;
  }
  bool WaitDisconnected() {
    absl::MutexLock lock(&mu_);
    return mu_.AwaitWithTimeout(absl::Condition(&disconnected_), absl::Seconds(30));
  }

 private:
  void Loop() {
    while (!stop_) {
      pollfd pfd = {channel_->fd, POLLIN, 0};
      if (poll(&pfd, 1, 100) <= 0) continue;
      rdma_cm_event* event = nullptr;
      if (rdma_get_cm_event(channel_, &event) != 0) continue;
      if (event->event == RDMA_CM_EVENT_CONNECT_REQUEST) {
        OnRequest(event);
      } else if (event->event == RDMA_CM_EVENT_DISCONNECTED) {
        rdma_disconnect(event->id);
        absl::MutexLock lock(&mu_);
        disconnected_ = true;
      }
      rdma_ack_cm_event(event);
    }
  }

  void OnRequest(rdma_cm_event* event) {
    absl::MutexLock lock(&mu_);
    last_length_ = event->param.conn.private_data_len;
    last_ = rdma_wire::AttachRequest();
    std::memcpy(&last_, event->param.conn.private_data,
                std::min<size_t>(sizeof(last_), event->param.conn.private_data_len));
    if (answer_ == Answer::kReject) {
      rdma_wire::AttachReject r = rdma_wire::MakeReject(code_, message_);
      rdma_reject(event->id, &r, sizeof(r));
      return;
    }
    rdma_cm_id* child = event->id;
    if (pd_ == nullptr) {
      pd_ = ibv_alloc_pd(child->verbs);
      cq_ = ibv_create_cq(child->verbs, 8, nullptr, nullptr, 0);
    }
    ibv_qp_init_attr attr = {};
    attr.send_cq = cq_;
    attr.recv_cq = cq_;
    attr.qp_type = IBV_QPT_RC;
    attr.cap.max_send_wr = attr.cap.max_recv_wr = 4;
    attr.cap.max_send_sge = attr.cap.max_recv_sge = 1;
    rdma_create_qp(child, pd_, &attr);
    rdma_conn_param param = {};
    param.responder_resources = event->param.conn.initiator_depth;
    param.initiator_depth = event->param.conn.responder_resources;
    rdma_accept(child, &param);
    child_ = child;
    disconnected_ = false;
  }

  rdma_event_channel* channel_ = nullptr;
  rdma_cm_id* id_ = nullptr;
  rdma_cm_id* child_ = nullptr;  // Touched by the listener thread, then by the destructor.
  ibv_pd* pd_ = nullptr;
  ibv_cq* cq_ = nullptr;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  absl::Mutex mu_;
  enum Answer answer_ ABSL_GUARDED_BY(mu_) = Answer::kAccept;
  rdma_wire::RejectCode code_ ABSL_GUARDED_BY(mu_) = rdma_wire::RejectCode::kUnavailable;
  std::string message_ ABSL_GUARDED_BY(mu_);
  rdma_wire::AttachRequest last_ ABSL_GUARDED_BY(mu_);
  size_t last_length_ ABSL_GUARDED_BY(mu_) = 0;
  bool disconnected_ ABSL_GUARDED_BY(mu_) = false;
};

class RdmaConnectionDeviceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::string why = NoDeviceReason(); !why.empty()) GTEST_SKIP() << why;
    if (std::string why = listener_.Listen(EnvOr("PINBROKER_TEST_RDMA_SERVER", "10.77.0.1"));
        !why.empty()) {
      GTEST_SKIP() << why;
    }
    credentials_.set_session_id("e1-s42");
    credentials_.set_token(kToken);
    options_.address = EnvOr("PINBROKER_TEST_RDMA_SERVER", "10.77.0.1");
    options_.port = listener_.port();
    options_.source_address = EnvOr("PINBROKER_TEST_RDMA_CLIENT", "10.77.0.2");
    options_.connect_timeout = absl::Seconds(20);
  }

  AttachListener listener_;
  v1::SessionCredentials credentials_;
  RdmaConnectOptions options_;
};

TEST_F(RdmaConnectionDeviceTest, SendsTheAttachRequestAndConnects) {
  listener_.Answer(AttachListener::Answer::kAccept);
  ASSERT_OK_AND_ASSIGN(auto connection, RdmaConnection::Connect(credentials_, options_));
  EXPECT_THAT(connection->status(), IsOk());
  EXPECT_EQ(connection->session_id(), "e1-s42");
  EXPECT_FALSE(connection->device().empty());
  EXPECT_GT(connection->path_mtu(), 0u);
  EXPECT_THAT(connection->peer(), HasSubstr(options_.address));
  EXPECT_THAT(connection->local_address(), HasSubstr(options_.source_address));

  const rdma_wire::AttachRequest r = listener_.last_request();
  EXPECT_GE(listener_.last_length(), sizeof(rdma_wire::AttachRequest));
  EXPECT_EQ(r.magic, rdma_wire::kMagic);
  EXPECT_EQ(r.version, rdma_wire::kVersion);
  EXPECT_EQ(std::string(r.session_id, r.session_id_length), "e1-s42");
  EXPECT_EQ(r.token[0], 0x01);
  EXPECT_EQ(r.token[15], 0xef);

  ASSERT_OK_AND_ASSIGN(LocalBuffer buffer, connection->AllocateBuffer(100));
  EXPECT_EQ(reinterpret_cast<uintptr_t>(buffer.data()) % 4096, 0u);  // Page-aligned.
  EXPECT_EQ(buffer.size(), 100u);
  EXPECT_THAT(connection->Close(), IsOk());
  EXPECT_TRUE(listener_.WaitDisconnected());
  EXPECT_THAT(connection->status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("closed")));
}

TEST_F(RdmaConnectionDeviceTest, RejectsMapToStatusCodesWithTheBrokersMessage) {
  struct Case {
    rdma_wire::RejectCode code;
    absl::StatusCode want;
  };
  for (const Case& c :
       {Case{rdma_wire::RejectCode::kUnauthenticated, absl::StatusCode::kUnauthenticated},
        Case{rdma_wire::RejectCode::kAlreadyAttached, absl::StatusCode::kAlreadyExists},
        Case{rdma_wire::RejectCode::kUnavailable, absl::StatusCode::kUnavailable},
        Case{rdma_wire::RejectCode::kMalformed, absl::StatusCode::kInvalidArgument}}) {
    const std::string message = absl::StrCat("test reject ", static_cast<int>(c.code));
    listener_.Answer(AttachListener::Answer::kReject, c.code, message);
    EXPECT_THAT(RdmaConnection::Connect(credentials_, options_),
                StatusIs(c.want, HasSubstr(message)));
  }
}

TEST_F(RdmaConnectionDeviceTest, NothingListeningIsUnavailable) {
  RdmaConnectOptions o = options_;
  o.port = static_cast<uint16_t>(listener_.port() + 1);
  EXPECT_THAT(RdmaConnection::Connect(credentials_, o),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("rejected")));
}

}  // namespace
}  // namespace pinbroker::client
