// BrokerTest: a real in-process Broker (gRPC server, PinBroker service, engine) on a Unix socket
// in a temporary directory, over a FakeBackend and a SimulatedClock, with a generated stub to
// call it. One export "exp" holds an 8-page file "data"; export "ro" is the same directory,
// read-only.
//
// For tests whose callers are other users: ConnectAs() connects to a broker's Unix socket as a
// real kernel identity (a helper thread takes a uid, gid and groups for itself alone: raw
// setgroups/setresgid/setresuid system calls change only the calling thread; the kernel
// records its credentials for the connection at connect(2)), and PeerClient calls the broker
// over that connection. Taking another uid needs root (CAP_SETUID/CAP_SETGID).
//
// Thread-compatible: tests call it from the test thread and from threads they join.
#pragma once

#include <grpcpp/create_channel.h>
#include <grpcpp/create_channel_posix.h>
#include <grpcpp/security/credentials.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "api/status_convert.h"
#include "broker/broker.h"
#include "common/simulated_clock.h"
#include "gtest/gtest.h"
#include "pinbroker/v1/pinbroker.grpc.pb.h"
#include "tests/testing/fake_backend.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace pinbroker::broker::testing {

namespace v1 = ::pinbroker::v1;

// A unary RPC of the generated stub: &v1::PinBroker::Stub::Pin.
template <typename Request, typename Response>
using UnaryRpc = grpc::Status (v1::PinBroker::Stub::*)(grpc::ClientContext*, const Request&,
                                                       Response*);

// Any unary RPC of `stub` as absl::StatusOr of its response.
template <typename Request, typename Response>
absl::StatusOr<Response> CallRpc(v1::PinBroker::Stub* stub, UnaryRpc<Request, Response> method,
                                 const Request& request) {
  grpc::ClientContext context;
  Response response;
  const grpc::Status status = (stub->*method)(&context, request, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  return response;
}

// The kernel identity a connection's peer has.
struct UnixPeer {
  uid_t uid;
  gid_t gid;
  std::vector<gid_t> groups;
};

// A Unix-socket connection to `path` whose peer credentials are `who`'s, or -1.
inline int ConnectAs(const std::string& path, const UnixPeer& who) {
  int fd = -1;
  std::thread([&] {
    // This thread only: the raw system calls (glibc's wrappers would change every thread).
    if (syscall(SYS_setgroups, who.groups.size(), who.groups.data()) != 0) return;
    if (syscall(SYS_setresgid, -1, who.gid, -1) != 0) return;
    if (syscall(SYS_setresuid, -1, who.uid, -1) != 0) return;
    const int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    if (connect(s, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      close(s);
      return;
    }
    fd = s;
  }).join();  // The thread ends with its credentials; nothing to restore.
  return fd;
}

// A generated stub over one connected descriptor (from ConnectAs), which it owns.
class PeerClient {
 public:
  explicit PeerClient(int fd)
      : stub_(v1::PinBroker::NewStub(grpc::CreateInsecureChannelFromFd("broker", fd))) {}

  template <typename Request, typename Response>
  absl::StatusOr<Response> Call(UnaryRpc<Request, Response> method, const Request& request) {
    return CallRpc(stub_.get(), method, request);
  }

  absl::StatusOr<v1::SessionCredentials> OpenSession(const std::string& client_name = "test") {
    v1::OpenSessionRequest request;
    request.set_client_name(client_name);
    auto response = Call(&v1::PinBroker::Stub::OpenSession, request);
    if (!response.ok()) return response.status();
    return response->credentials();
  }

  v1::PinBroker::Stub* stub() { return stub_.get(); }

 private:
  std::unique_ptr<v1::PinBroker::Stub> stub_;
};

class BrokerTest : public ::testing::Test {
 protected:
  static constexpr uint64_t kPages = 8;

  void SetUp() override {
    dir_.WriteFile("data", std::string(kPages * page_, 'd'));
    v1::BrokerConfig config;
    config.add_listen(absl::StrCat("unix:", dir_.path(), "/s.sock"));
    for (bool read_only : {false, true}) {
      v1::ExportConfig* e = config.add_exports();
      e->set_name(read_only ? "ro" : "exp");
      e->set_root(dir_.path());
      e->set_read_only(read_only);
      e->mutable_grace()->set_seconds(5);
      e->mutable_default_ttl()->set_seconds(60);
      e->mutable_max_ttl()->set_seconds(600);
      e->mutable_layout_timeout()->set_seconds(30);
    }
    config.mutable_session_ttl()->set_seconds(30);
    Configure(config);
    auto backend = std::make_unique<pinbroker::testing::FakeBackend>();
    backend_ = backend.get();
    auto broker = Broker::Start(config, &clock_, std::move(backend));
    ASSERT_TRUE(broker.ok()) << broker.status();
    broker_ = *std::move(broker);
    channel_ =
        grpc::CreateChannel(broker_->addresses().front(), grpc::InsecureChannelCredentials());
    stub_ = v1::PinBroker::NewStub(channel_);
  }

  void TearDown() override { broker_.reset(); }

  // Waits (bounded) until `n` calls wait in the engine with their deadline timers set (a
  // waiting call holds no thread, so SimulatedClock::WaitForWaiters does not see it), so that
  // the clock may move.
  void AwaitParked(size_t n) {
    const absl::Time give_up = absl::Now() + absl::Seconds(120);
    while (broker_->engine().parked() < n && absl::Now() < give_up) {
      absl::SleepFor(absl::Milliseconds(1));
    }
    ASSERT_GE(broker_->engine().parked(), n) << "the calls never reached their wait";
  }

  // Lets a test change the configuration before the broker starts.
  virtual void Configure(v1::BrokerConfig& config) { (void)config; }

  v1::SessionCredentials OpenSession(const std::string& name = "test") {
    grpc::ClientContext context;
    v1::OpenSessionRequest request;
    request.set_client_name(name);
    v1::OpenSessionResponse response;
    const grpc::Status status = stub_->OpenSession(&context, request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response.credentials();
  }

  v1::PinRequest PinRequestFor(const v1::SessionCredentials& creds, uint64_t offset,
                               uint64_t length) const {
    v1::PinRequest request;
    *request.mutable_credentials() = creds;
    request.set_export_name("exp");
    request.set_path("data");
    request.set_offset(offset);
    request.set_length(length);
    request.set_access(v1::ACCESS_READ_WRITE);
    return request;
  }

  // Any unary RPC as absl::StatusOr of its response.
  template <typename Request, typename Response>
  absl::StatusOr<Response> Call(UnaryRpc<Request, Response> method, const Request& request) {
    return CallRpc(stub_.get(), method, request);
  }

  absl::StatusOr<v1::Lease> Pin(const v1::SessionCredentials& creds, uint64_t offset,
                                uint64_t length) {
    auto response = Call(&v1::PinBroker::Stub::Pin, PinRequestFor(creds, offset, length));
    if (!response.ok()) return response.status();
    return response->lease();
  }

  // The size of "data" now.
  uint64_t FileSize() {
    struct stat st;
    EXPECT_EQ(stat(dir_.Join("data").c_str(), &st), 0);
    return static_cast<uint64_t>(st.st_size);
  }

  v1::TruncateRequest TruncateRequestFor(uint64_t size, v1::LayoutPolicy policy) const {
    v1::TruncateRequest request;
    request.set_export_name("exp");
    request.set_path("data");
    request.set_new_size(size);
    request.mutable_options()->set_policy(policy);
    request.mutable_options()->set_initiator("test");
    return request;
  }

  const uint64_t page_ = SystemPageSize();
  SimulatedClock clock_;
  pinbroker::testing::TempDir dir_{"/tmp"};
  pinbroker::testing::FakeBackend* backend_ = nullptr;  // Owned by the broker.
  std::unique_ptr<Broker> broker_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::PinBroker::Stub> stub_;
};

}  // namespace pinbroker::broker::testing
