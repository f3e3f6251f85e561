// OpRecord (clients/rdma/op_record.h): completed once, releases its lease gate, and wakes a
// waiter. No device needed.
#include "clients/rdma/op_record.h"

#include <memory>
#include <thread>

#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace pinbroker::client::rdma_internal {
namespace {

TEST(OpRecordTest, CompletesOnceAndReleasesTheGate) {
  auto gate = std::make_shared<LeaseGate>();
  ASSERT_TRUE(gate->Admit(/*after_end=*/false).ok());
  OpSpec spec;
  spec.kind = RdmaOpKind::kFetchAdd;
  spec.lease_id = "l-1";
  spec.gate = gate;
  OpRecord record(spec);
  EXPECT_FALSE(record.done());
  EXPECT_EQ(gate->in_flight(), 1);

  record.Complete(absl::OkStatus(), 41);
  EXPECT_TRUE(record.done());
  EXPECT_TRUE(record.status().ok());
  EXPECT_EQ(record.atomic_result(), 41u);
  EXPECT_EQ(gate->in_flight(), 0);
  EXPECT_EQ(record.spec().gate, nullptr);  // Dropped with the completion.
  EXPECT_EQ(record.spec().lease_id, "l-1");

  // Later outcomes are ignored, and the gate is not released twice.
  ASSERT_TRUE(gate->Admit(/*after_end=*/false).ok());
  record.Complete(absl::UnavailableError("flushed"), 7);
  EXPECT_TRUE(record.status().ok());
  EXPECT_EQ(record.atomic_result(), 41u);
  EXPECT_EQ(gate->in_flight(), 1);
}

TEST(OpRecordTest, AwaitDoneReturnsFalseAtTheDeadlineAndTrueOnceCompleted) {
  OpRecord record(OpSpec{});
  EXPECT_FALSE(record.AwaitDone(absl::Now()));
  std::thread completer([&] { record.Complete(absl::DataLossError("x"), 0); });
  EXPECT_TRUE(record.AwaitDone(absl::InfiniteFuture()));
  completer.join();
  EXPECT_EQ(record.status().code(), absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace pinbroker::client::rdma_internal
