// Tests of LeaseGate (clients/rdma/lease_gate.h): admission, closing, ending and draining of a
// lease's RDMA operations. Waits are bounded; none sleeps for a timer.

#include "clients/rdma/lease_gate.h"

#include <thread>

#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace pinbroker::client::rdma_internal {
namespace {

using ::pinbroker::testing::IsOk;
using ::pinbroker::testing::StatusIs;
using ::testing::HasSubstr;

TEST(LeaseGateTest, AdmitsAndCounts) {
  LeaseGate gate;
  EXPECT_THAT(gate.Admit(false), IsOk());
  EXPECT_THAT(gate.Admit(false), IsOk());
  EXPECT_EQ(gate.in_flight(), 2);
  gate.Done();
  EXPECT_EQ(gate.in_flight(), 1);
  EXPECT_FALSE(gate.AwaitDrained(absl::InfinitePast()));
  gate.Done();
  EXPECT_TRUE(gate.AwaitDrained(absl::InfinitePast()));
}

TEST(LeaseGateTest, ClosedGateRefusesEvenProbesAndKeepsTheFirstReason) {
  LeaseGate gate;
  gate.Close(absl::FailedPreconditionError("lease e-1 is being recalled"));
  gate.Close(absl::FailedPreconditionError("lease e-1 is being released"));
  EXPECT_THAT(gate.Admit(false),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("recalled")));
  EXPECT_THAT(gate.Admit(true),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("recalled")));
  EXPECT_EQ(gate.in_flight(), 0);
}

TEST(LeaseGateTest, EndedGateAdmitsOnlyProbes) {
  LeaseGate gate;
  gate.MarkEnded(absl::NotFoundError("lease e-1 was revoked"));
  EXPECT_THAT(gate.Admit(false), StatusIs(absl::StatusCode::kNotFound, HasSubstr("revoked")));
  EXPECT_THAT(gate.Admit(true), IsOk());
  EXPECT_EQ(gate.in_flight(), 1);
}

TEST(LeaseGateTest, DrainWaitsForTheLastOperation) {
  LeaseGate gate;
  ASSERT_THAT(gate.Admit(false), IsOk());
  gate.Close(absl::FailedPreconditionError("recalled"));
  absl::Notification waiting;
  std::thread completer([&] {
    waiting.WaitForNotification();
    gate.Done();
  });
  waiting.Notify();
  EXPECT_TRUE(gate.AwaitDrained(absl::Now() + absl::Seconds(30)));
  completer.join();
  EXPECT_EQ(gate.in_flight(), 0);
}

}  // namespace
}  // namespace pinbroker::client::rdma_internal
