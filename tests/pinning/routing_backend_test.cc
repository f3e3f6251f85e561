#include "pinning/routing_backend.h"

#include <memory>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/fake_backend.h"
#include "tests/testing/status_matchers.h"

namespace pinbroker {
namespace {

using ::pinbroker::testing::FakeBackend;
using ::pinbroker::testing::IsOk;
using ::pinbroker::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

PinSpec Spec(LeaseId lease, bool rdma) {
  PinSpec spec;
  spec.lease = lease;
  spec.owner = "s1";
  spec.bytes = ByteRange{0, 4096};
  spec.rdma = rdma;
  return spec;
}

class RoutingBackendTest : public ::testing::Test {
 protected:
  RoutingBackendTest() {
    auto host = std::make_unique<FakeBackend>();
    auto rdma = std::make_unique<FakeBackend>();
    host_ = host.get();
    rdma_ = rdma.get();
    rdma_->set_mode(RegistrationMode::kPinned);
    routing_ = std::make_unique<RoutingBackend>(std::move(host), std::move(rdma), "");
  }

  FakeBackend* host_;
  FakeBackend* rdma_;
  std::unique_ptr<RoutingBackend> routing_;
};

TEST_F(RoutingBackendTest, RdmaPinsGoToTheRdmaBackendOthersToTheHost) {
  auto host_pin = routing_->Pin(Spec(1, false));
  auto rdma_pin = routing_->Pin(Spec(2, true));
  ASSERT_THAT(host_pin.status(), IsOk());
  ASSERT_THAT(rdma_pin.status(), IsOk());
  EXPECT_TRUE(host_->IsHeld(1));
  EXPECT_TRUE(rdma_->IsHeld(2));
  EXPECT_FALSE(host_->IsHeld(2));
  EXPECT_EQ(rdma_pin->mode, RegistrationMode::kPinned);
  EXPECT_NE(host_pin->handle, rdma_pin->handle);

  ASSERT_THAT(routing_->Revoke(rdma_pin->handle), IsOk());
  EXPECT_EQ(rdma_->count(FakeBackend::Call::Kind::kRevoke), 1u);
  ASSERT_THAT(routing_->Release(host_pin->handle), IsOk());
  EXPECT_EQ(host_->count(FakeBackend::Call::Kind::kRelease), 1u);
  EXPECT_EQ(host_->held() + rdma_->held(), 0u);
  EXPECT_THAT(routing_->Release(host_pin->handle),
              StatusIs(absl::StatusCode::kNotFound, ::testing::_));
}

TEST_F(RoutingBackendTest, FailedRevokeKeepsTheHandleForARetry) {
  auto pin = routing_->Pin(Spec(1, true));
  ASSERT_THAT(pin.status(), IsOk());
  rdma_->FailNextRevoke(absl::InternalError("window still bound"));
  EXPECT_THAT(routing_->Revoke(pin->handle), StatusIs(absl::StatusCode::kInternal, ::testing::_));
  EXPECT_THAT(routing_->Revoke(pin->handle), IsOk());
}

TEST_F(RoutingBackendTest, NameAndBytesCoverBothBackends) {
  EXPECT_EQ(routing_->name(), "fake");
  ASSERT_THAT(routing_->Pin(Spec(1, false)).status(), IsOk());
  ASSERT_THAT(routing_->Pin(Spec(2, true)).status(), IsOk());
  EXPECT_EQ(routing_->pinned_bytes(), host_->pinned_bytes() + rdma_->pinned_bytes());
}

TEST(RoutingBackendWithoutRdmaTest, RdmaPinsFailSayingWhyAndHostPinsWork) {
  auto host = std::make_unique<FakeBackend>();
  FakeBackend* fake = host.get();
  RoutingBackend routing(std::move(host), nullptr,
                         "no RDMA device: ibv_get_device_list failed: ENOSYS");
  EXPECT_THAT(routing.Pin(Spec(1, true)).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("this broker has no RDMA device (no RDMA device: "
                                       "ibv_get_device_list failed: ENOSYS)"),
                             HasSubstr("pin without rdma"))));
  EXPECT_EQ(fake->held(), 0u);
  EXPECT_THAT(routing.Pin(Spec(2, false)).status(), IsOk());
  EXPECT_EQ(routing.name(), "fake");
}

}  // namespace
}  // namespace pinbroker
