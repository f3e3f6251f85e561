// TCP callers through a real in-process Broker: TLS only, client certificates required and
// verified (mTLS), the identity is the certificate's URI SAN (else its subject CN). Certificates
// are made with openssl when the test runs: a CA, the server's, good clients, a client signed by
// another CA, and an expired one. Skips with the reason when openssl is missing.
#include <fcntl.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "api/status_convert.h"
#include "broker/broker.h"
#include "pinbroker/client.h"
#include "common/simulated_clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pinbroker/v1/pinbroker.grpc.pb.h"
#include "tests/testing/fake_backend.h"
#include "tests/testing/run_command.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace pinbroker::broker {
namespace {

namespace v1 = ::pinbroker::v1;
using ::pinbroker::testing::StatusIs;
using ::testing::_;
using ::testing::HasSubstr;

constexpr uid_t kMappedUid = 61001;

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (system("command -v openssl >/dev/null 2>&1") != 0) {
      GTEST_SKIP() << "openssl is not installed (scripts/setup.sh installs it)";
    }
    MakeCertificates();
    ASSERT_EQ(chmod(dir_.path().c_str(), 0755), 0);
    ASSERT_EQ(mkdir(dir_.Join("exp").c_str(), 0755), 0);
    dir_.WriteFile("exp/public", std::string(8192, 'p'));
    v1::BrokerConfig config;
    config.add_listen("127.0.0.1:0");
    v1::ExportConfig* e = config.add_exports();
    e->set_name("exp");
    e->set_root(dir_.Join("exp"));
    v1::TlsConfig* tls = config.mutable_tls();
    tls->set_cert_file(dir_.Join("server.pem"));
    tls->set_key_file(dir_.Join("server.key"));
    tls->set_client_ca_file(dir_.Join("ca.pem"));
    (*tls->mutable_principal_uids())["bob"] = kMappedUid;
    auto broker =
        Broker::Start(config, &clock_, std::make_unique<pinbroker::testing::FakeBackend>());
    ASSERT_TRUE(broker.ok()) << broker.status();
    broker_ = *std::move(broker);
  }

  void Run(const std::string& command) {
    ASSERT_EQ(
        pinbroker::testing::RunLogged(absl::StrCat("cd ", dir_.path(), " && ", command), &log_), 0)
        << log_;
  }

  // Key and CSR `name` with subject CN `cn` and extensions `ext` (openssl -extfile syntax),
  // signed by CA `ca` for `days`.
  void Issue(const std::string& name, const std::string& cn, const std::string& ext,
             const std::string& ca, int days) {
    Run(absl::StrCat("openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ",
                     name, ".key -out ", name, ".csr -subj /CN=", cn));
    std::string extfile;
    if (!ext.empty()) {
      dir_.WriteFile(name + ".ext", ext + "\n");
      extfile = absl::StrCat(" -extfile ", name, ".ext");
    }
    Run(absl::StrCat("openssl x509 -req -in ", name, ".csr -CA ", ca, ".pem -CAkey ", ca,
                     ".key -CAcreateserial -days ", days, " -out ", name, ".pem", extfile));
  }

  void MakeCertificates() {
    for (const char* ca : {"ca", "otherca"}) {
      Run(
          absl::StrCat("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
                       "-keyout ",
                       ca, ".key -out ", ca, ".pem -days 2 -subj /CN=", ca));
    }
    Issue("server", "localhost", "subjectAltName=DNS:localhost,IP:127.0.0.1", "ca", 2);
    Issue("alice", "alice", "subjectAltName=URI:spiffe://pinbroker.test/alice", "ca", 2);
    Issue("bob", "bob", "", "ca", 2);
    Issue("mallory", "mallory", "subjectAltName=URI:spiffe://pinbroker.test/alice", "otherca", 2);
    Issue("expired", "expired", "subjectAltName=URI:spiffe://pinbroker.test/alice", "ca", -1);
  }

  // A stub over TLS presenting client certificate `name` ("" for none).
  std::unique_ptr<v1::PinBroker::Stub> Connect(const std::string& name) {
    grpc::SslCredentialsOptions options;
    options.pem_root_certs = Slurp(dir_.Join("ca.pem"));
    if (!name.empty()) {
      options.pem_private_key = Slurp(dir_.Join(name + ".key"));
      options.pem_cert_chain = Slurp(dir_.Join(name + ".pem"));
    }
    grpc::ChannelArguments args;
    args.SetSslTargetNameOverride("localhost");
    return v1::PinBroker::NewStub(grpc::CreateCustomChannel(broker_->addresses().front(),
                                                            grpc::SslCredentials(options), args));
  }

  static absl::StatusOr<v1::SessionCredentials> OpenSession(v1::PinBroker::Stub& stub) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    v1::OpenSessionRequest request;
    v1::OpenSessionResponse response;
    const grpc::Status status = stub.OpenSession(&context, request, &response);
    if (!status.ok()) return FromGrpcStatus(status);
    return response.credentials();
  }

  static absl::Status Pin(v1::PinBroker::Stub& stub, const v1::SessionCredentials& creds,
                          const std::string& path, v1::Access access) {
    grpc::ClientContext context;
    v1::PinRequest request;
    *request.mutable_credentials() = creds;
    request.set_export_name("exp");
    request.set_path(path);
    request.set_length(1);
    request.set_access(access);
    v1::PinResponse response;
    return FromGrpcStatus(stub.Pin(&context, request, &response));
  }

  SimulatedClock clock_;
  pinbroker::testing::TempDir dir_{"/tmp"};
  std::string log_;
  std::unique_ptr<Broker> broker_;
};

TEST_F(TlsTest, ClientCertificateUriSanIsTheIdentity) {
  auto alice = Connect("alice");
  auto session = OpenSession(*alice);
  ASSERT_OK(session.status());
  auto owner = broker_->sessions().OwnerOf(session->session_id());
  ASSERT_OK(owner.status());
  EXPECT_EQ(owner->key, "tls:spiffe://pinbroker.test/alice");
  // Unmapped: nobody's file permissions. A world-readable file reads; writing is refused.
  EXPECT_OK(Pin(*alice, *session, "public", v1::ACCESS_READ));
  EXPECT_THAT(Pin(*alice, *session, "public", v1::ACCESS_READ_WRITE),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("uid 65534")));
}

TEST_F(TlsTest, SubjectCnNamesACertificateWithoutUriSanAndMapsToALocalUser) {
  const std::string path = dir_.Join("exp/bobs");
  dir_.WriteFile("exp/bobs", std::string(8192, 'b'));
  if (geteuid() != 0) GTEST_SKIP() << "needs root: the broker takes on the mapped uid";
  ASSERT_EQ(chown(path.c_str(), kMappedUid, kMappedUid), 0);
  ASSERT_EQ(chmod(path.c_str(), 0600), 0);
  auto bob = Connect("bob");
  auto session = OpenSession(*bob);
  ASSERT_OK(session.status());
  EXPECT_EQ(broker_->sessions().OwnerOf(session->session_id())->key, "tls:bob");
  EXPECT_OK(Pin(*bob, *session, "bobs", v1::ACCESS_READ_WRITE));
  auto alice = Connect("alice");
  auto alice_session = OpenSession(*alice);
  ASSERT_OK(alice_session.status());
  EXPECT_THAT(Pin(*alice, *alice_session, "bobs", v1::ACCESS_READ),
              StatusIs(absl::StatusCode::kPermissionDenied, _));
}

TEST_F(TlsTest, AnotherPrincipalsTokenIsRefused) {
  auto alice = Connect("alice");
  auto session = OpenSession(*alice);
  ASSERT_OK(session.status());
  auto bob = Connect("bob");
  EXPECT_THAT(Pin(*bob, *session, "public", v1::ACCESS_READ),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("belongs to tls spiffe://pinbroker.test/alice")));
  EXPECT_EQ(broker_->engine().live_lease_count(), 0u);
}

TEST_F(TlsTest, NoCertificateWrongCaAndExpiredCertificateAreRefusedAtTheHandshake) {
  for (const std::string name : {"", "mallory", "expired"}) {
    auto stub = Connect(name);
    EXPECT_THAT(OpenSession(*stub), StatusIs(absl::StatusCode::kUnavailable, _))
        << "client certificate '" << name << "'";
  }
  EXPECT_EQ(broker_->sessions().size(), 0u);
}

TEST_F(TlsTest, TheCppClientPresentsItsCertificateFromClientOptions) {
  pinbroker::client::ClientOptions options;
  options.client_name = "cpp-over-tls";
  options.tls.ca_file = dir_.Join("ca.pem");
  options.tls.cert_file = dir_.Join("alice.pem");
  options.tls.key_file = dir_.Join("alice.key");
  options.tls.server_name = "localhost";
  auto client = pinbroker::client::Client::Connect(broker_->addresses().front(), options);
  ASSERT_OK(client.status());
  auto owner = broker_->sessions().OwnerOf((*client)->session_id());
  ASSERT_OK(owner.status());
  EXPECT_EQ(owner->key, "tls:spiffe://pinbroker.test/alice");
  client->reset();

  // Without a certificate the handshake fails; nothing is opened.
  options.tls.cert_file.clear();
  options.tls.key_file.clear();
  EXPECT_THAT(pinbroker::client::Client::Connect(broker_->addresses().front(), options).status(),
              StatusIs(absl::StatusCode::kUnavailable, _));
  // A key without its certificate, a file that is not there, TLS on a Unix socket: refused
  // before any connection.
  options.tls.key_file = dir_.Join("alice.key");
  EXPECT_THAT(pinbroker::client::Client::Connect(broker_->addresses().front(), options).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("both")));
  options.tls.cert_file = dir_.Join("missing.pem");
  EXPECT_THAT(pinbroker::client::Client::Connect(broker_->addresses().front(), options).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("missing.pem")));
  EXPECT_THAT(pinbroker::client::Client::Connect("unix:/nonexistent.sock", options).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("TCP endpoints only")));
  EXPECT_EQ(broker_->sessions().size(), 0u);
}

TEST(TcpConfigTest, PlaintextTcpNeedsInsecureTcpAndLoopback) {
  pinbroker::testing::TempDir dir("/tmp");
  SimulatedClock clock;
  v1::BrokerConfig config;
  v1::ExportConfig* e = config.add_exports();
  e->set_name("exp");
  e->set_root(dir.path());
  config.add_listen("127.0.0.1:0");
  EXPECT_THAT(
      Broker::Start(config, &clock, std::make_unique<pinbroker::testing::FakeBackend>()).status(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("needs TLS")));
  config.set_insecure_tcp(true);
  config.set_listen(0, "0.0.0.0:0");
  EXPECT_THAT(
      Broker::Start(config, &clock, std::make_unique<pinbroker::testing::FakeBackend>()).status(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("only on loopback")));
  config.set_listen(0, "127.0.0.1:0");
  auto broker = Broker::Start(config, &clock, std::make_unique<pinbroker::testing::FakeBackend>());
  ASSERT_OK(broker.status());
  // Its callers are anonymous: a session is theirs, but no file beyond what nobody may read.
  auto stub = v1::PinBroker::NewStub(
      grpc::CreateChannel((*broker)->addresses().front(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  v1::OpenSessionResponse response;
  ASSERT_TRUE(stub->OpenSession(&context, v1::OpenSessionRequest(), &response).ok());
  EXPECT_EQ((*broker)->sessions().OwnerOf(response.credentials().session_id())->key, "anonymous");
}

}  // namespace
}  // namespace pinbroker::broker
