// The broker's RDMA wiring that can be tested without a device: the rdma configuration, the
// backend choice (auto / host / rdma) on a machine without RDMA, RDMA pins refused there, and
// the DescribeFile registrations conversion. With a device these run in the VM suite.
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "broker/broker.h"
#include "broker/config.h"
#include "broker/lease_id_codec.h"
#include "broker/proto_convert.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pinning/rdma/verbs_device.h"
#include "common/simulated_clock.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace pinbroker::broker {
namespace {

using ::pinbroker::testing::IsOk;
using ::pinbroker::testing::StatusIs;
using ::pinbroker::testing::TempDir;
using ::testing::AllOf;
using ::testing::HasSubstr;

TEST(RdmaConfigTest, DefaultsLeavePortAndAddressToTheBackend) {
  ASSERT_OK_AND_ASSIGN(rdma::VerbsOptions options, RdmaOptionsFromConfig(v1::BrokerConfig()));
  EXPECT_TRUE(options.devices.empty());
  EXPECT_EQ(options.port, 0);  // rdma_wire::kDefaultPort.
  EXPECT_EQ(options.address, "");
  EXPECT_EQ(options.verbs_timeout, absl::Seconds(5));
}

TEST(RdmaConfigTest, ParsesEverySetting) {
  ASSERT_OK_AND_ASSIGN(v1::BrokerConfig config, ParseConfig(R"pb(
                         backend: "rdma"
                         rdma {
                           devices: "rxe0"
                           devices: "rxe1"
                           port: 7999
                           address: "10.77.0.1"
                           verbs_timeout { seconds: 2 }
                         }
                       )pb"));
  ASSERT_OK_AND_ASSIGN(rdma::VerbsOptions options, RdmaOptionsFromConfig(config));
  EXPECT_THAT(options.devices, ::testing::ElementsAre("rxe0", "rxe1"));
  EXPECT_EQ(options.port, 7999);
  EXPECT_EQ(options.address, "10.77.0.1");
  EXPECT_EQ(options.verbs_timeout, absl::Seconds(2));
  EXPECT_EQ(BackendFromConfig(config).value(), BackendChoice::kRdma);
}

TEST(RdmaConfigTest, BadValuesAreInvalidArgumentNamingTheSetting) {
  v1::BrokerConfig config;
  config.mutable_rdma()->set_port(70000);
  EXPECT_THAT(RdmaOptionsFromConfig(config).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("rdma.port 70000")));
  config.mutable_rdma()->set_port(0);
  config.mutable_rdma()->set_address("fe80::1");
  EXPECT_THAT(RdmaOptionsFromConfig(config).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not an IPv4 address")));
  config.mutable_rdma()->clear_address();
  config.mutable_rdma()->add_devices("");
  EXPECT_THAT(RdmaOptionsFromConfig(config).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("empty device name")));
  config.mutable_rdma()->clear_devices();
  config.mutable_rdma()->mutable_verbs_timeout()->set_seconds(0);
  EXPECT_THAT(RdmaOptionsFromConfig(config).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("verbs_timeout")));
}

TEST(RdmaConfigTest, BackendChoices) {
  v1::BrokerConfig config;
  EXPECT_EQ(BackendFromConfig(config).value(), BackendChoice::kAuto);
  config.set_backend("auto");
  EXPECT_EQ(BackendFromConfig(config).value(), BackendChoice::kAuto);
  config.set_backend("host");
  EXPECT_EQ(BackendFromConfig(config).value(), BackendChoice::kHost);
  config.set_backend("verbs");
  EXPECT_THAT(BackendFromConfig(config).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("unknown backend 'verbs'"), HasSubstr("\"rdma\""))));
}

TEST(RdmaConfigTest, DeployExampleDocumentsTheRdmaSection) {
  ASSERT_OK_AND_ASSIGN(v1::BrokerConfig config,
                       LoadConfigFile(PINBROKER_SOURCE_DIR "/deploy/pinbrokerd.textproto"));
  EXPECT_EQ(config.rdma().port(), 7471u);
  ASSERT_OK_AND_ASSIGN(rdma::VerbsOptions options, RdmaOptionsFromConfig(config));
  EXPECT_EQ(options.verbs_timeout, absl::Seconds(5));
}

TEST(RegistrationProtoTest, DescribeFileCarriesTheBackendsRegistrations) {
  FileDescription file;
  RegistrationInfo stale;
  stale.device = "rxe0";
  stale.mode = RegistrationMode::kPinned;
  stale.range = ByteRange{0, 8 * 4096};
  stale.windows = 1;
  stale.stale = true;
  file.registrations.push_back(stale);
  RegistrationInfo odp = stale;
  odp.mode = RegistrationMode::kOdp;
  odp.stale = false;
  odp.windows = 3;
  file.registrations.push_back(odp);
  const LeaseIdCodec ids("e1");
  v1::DescribeFileResponse out;
  ToProto(file, ids, 4096, &out);
  ASSERT_EQ(out.registrations_size(), 2);
  EXPECT_EQ(out.registrations(0).device(), "rxe0");
  EXPECT_EQ(out.registrations(0).mode(), v1::REGISTRATION_MODE_PINNED);
  EXPECT_EQ(out.registrations(0).range().offset(), 0u);
  EXPECT_EQ(out.registrations(0).range().length(), 8u * 4096);
  EXPECT_TRUE(out.registrations(0).stale());
  EXPECT_EQ(out.registrations(1).mode(), v1::REGISTRATION_MODE_ODP);
  EXPECT_EQ(out.registrations(1).windows(), 3u);
  EXPECT_FALSE(out.registrations(1).stale());
}

// A broker chosen by its configuration (no injected backend), on a machine without RDMA.
class BrokerWithoutRdmaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto devices = rdma::OpenDevices({});
    if (devices.ok()) GTEST_SKIP() << "this machine has RDMA devices; the VM suite covers them";
    no_rdma_ = std::string(devices.status().message());
    dir_.WriteFile("data", std::string(2 * SystemPageSize(), 'd'));
    config_.add_listen(absl::StrCat("unix:", dir_.path(), "/s.sock"));
    v1::ExportConfig* e = config_.add_exports();
    e->set_name("exp");
    e->set_root(dir_.path());
  }

  std::string no_rdma_;
  SimulatedClock clock_;
  TempDir dir_{"/tmp"};
  v1::BrokerConfig config_;
};

TEST_F(BrokerWithoutRdmaTest, AutoServesHostPinsAndRefusesRdmaPinsSayingWhy) {
  config_.set_backend("auto");
  auto broker = Broker::Start(config_, &clock_);
  ASSERT_THAT(broker.status(), IsOk());
  EXPECT_EQ((*broker)->backend().name(), "host");
  EXPECT_EQ((*broker)->verbs(), nullptr);
  PinRequest request;
  request.owner = "s1";
  request.export_name = "exp";
  request.path = "data";
  request.length = 1;
  request.access = Access::kRead;
  auto host = (*broker)->engine().Pin(request);
  ASSERT_THAT(host.status(), IsOk());
  EXPECT_EQ(host->mode, RegistrationMode::kHost);
  EXPECT_TRUE(host->rdma.device.empty());
  request.rdma = true;
  EXPECT_THAT((*broker)->engine().Pin(request).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("this broker has no RDMA device"), HasSubstr(no_rdma_))));
}

TEST_F(BrokerWithoutRdmaTest, HostBackendRefusesRdmaPinsNamingTheConfiguration) {
  config_.set_backend("host");
  auto broker = Broker::Start(config_, &clock_);
  ASSERT_THAT(broker.status(), IsOk());
  PinRequest request;
  request.owner = "s1";
  request.export_name = "exp";
  request.path = "data";
  request.length = 1;
  request.rdma = true;
  EXPECT_THAT(
      (*broker)->engine().Pin(request).status(),
      StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("backend \"host\" is configured")));
}

TEST_F(BrokerWithoutRdmaTest, RdmaBackendFailsToStartSayingWhy) {
  config_.set_backend("rdma");
  EXPECT_THAT(Broker::Start(config_, &clock_).status(),
              StatusIs(absl::StatusCode::kUnavailable,
                       AllOf(HasSubstr("backend \"rdma\": no RDMA device"), HasSubstr(no_rdma_))));
}

}  // namespace
}  // namespace pinbroker::broker
