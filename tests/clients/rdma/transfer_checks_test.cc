// Tests of the checks every RDMA operation on a lease passes before it is posted
// (include/pinbroker/rdma_transfer_checks.h): bounds, access, atomics, and the device constraints
// the broker publishes (required_alignment, max_transfer_size, constraint_reason).

#include <cstdint>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pinbroker/rdma_transfer_checks.h"
#include "tests/testing/status_matchers.h"

namespace pinbroker::client {
namespace {

using ::pinbroker::testing::IsOk;
using ::pinbroker::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

constexpr char kOdpReason[] = "rxe ODP places data correctly only in whole pages";

LeaseLimits Plain(bool writable = true) {
  LeaseLimits l;
  l.lease_id = "e1-7";
  l.writable = writable;
  l.remote_address = 0x7f0000000000;
  l.length = 64 * 1024;
  return l;
}

LeaseLimits Constrained() {
  LeaseLimits l = Plain();
  l.required_alignment = 4096;
  l.max_transfer_size = 16 * 1024;
  l.constraint_reason = kOdpReason;
  return l;
}

TEST(LeaseLimitsTest, FromTheBrokersLease) {
  v1::Lease lease;
  lease.set_lease_id("e1-9");
  lease.set_access(v1::ACCESS_READ_WRITE);
  lease.mutable_rdma()->set_remote_address(0x1000);
  lease.mutable_rdma()->set_length(8192);
  lease.mutable_rdma()->set_required_alignment(4096);
  lease.mutable_rdma()->set_max_transfer_size(4096);
  lease.mutable_rdma()->set_constraint_reason("why");
  const LeaseLimits l = LeaseLimits::From(lease);
  EXPECT_EQ(l.lease_id, "e1-9");
  EXPECT_TRUE(l.writable);
  EXPECT_EQ(l.remote_address, 0x1000u);
  EXPECT_EQ(l.length, 8192u);
  EXPECT_EQ(l.required_alignment, 4096u);
  EXPECT_EQ(l.max_transfer_size, 4096u);
  EXPECT_EQ(l.constraint_reason, "why");
  lease.set_access(v1::ACCESS_READ);
  EXPECT_FALSE(LeaseLimits::From(lease).writable);
}

TEST(CheckLeaseOpTest, UnconstrainedLeaseAllowsAnyInRangeTransfer) {
  EXPECT_THAT(CheckLeaseOp(Plain(), RdmaOpKind::kWrite, 3, 5), IsOk());
  EXPECT_THAT(CheckLeaseOp(Plain(), RdmaOpKind::kRead, 0, 64 * 1024), IsOk());
  EXPECT_THAT(CheckLeaseOp(Plain(), RdmaOpKind::kRead, 64 * 1024 - 1, 1), IsOk());
  LeaseLimits zero_alignment = Plain();
  zero_alignment.required_alignment = 0;  // Taken as 1.
  EXPECT_THAT(CheckLeaseOp(zero_alignment, RdmaOpKind::kWrite, 1, 1), IsOk());
}

TEST(CheckLeaseOpTest, BoundsAndZeroLength) {
  EXPECT_THAT(CheckLeaseOp(Plain(), RdmaOpKind::kWrite, 0, 0),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("lease e1-7"), HasSubstr("zero bytes"))));
  EXPECT_THAT(CheckLeaseOp(Plain(), RdmaOpKind::kRead, 64 * 1024, 1),
              StatusIs(absl::StatusCode::kOutOfRange,
                       AllOf(HasSubstr("lease e1-7: READ of 1 bytes at offset 65536"),
                             HasSubstr("65536 bytes"))));
  // No overflow: a huge offset plus a length that wraps around is still out of range.
  EXPECT_THAT(CheckLeaseOp(Plain(), RdmaOpKind::kRead, UINT64_MAX - 1, 4),
              StatusIs(absl::StatusCode::kOutOfRange, HasSubstr("beyond")));
  EXPECT_THAT(CheckLeaseOp(Plain(), RdmaOpKind::kRead, 4096, UINT64_MAX),
              StatusIs(absl::StatusCode::kOutOfRange, HasSubstr("beyond")));
}

TEST(CheckLeaseOpTest, ReadOnlyLeaseRefusesWritesAndAtomics) {
  const LeaseLimits ro = Plain(/*writable=*/false);
  EXPECT_THAT(CheckLeaseOp(ro, RdmaOpKind::kRead, 0, 8), IsOk());
  for (RdmaOpKind kind : {RdmaOpKind::kWrite, RdmaOpKind::kFetchAdd, RdmaOpKind::kCompareSwap}) {
    EXPECT_THAT(CheckLeaseOp(ro, kind, 0, 8),
                StatusIs(absl::StatusCode::kPermissionDenied,
                         AllOf(HasSubstr("lease e1-7"), HasSubstr("read-only"))))
        << RdmaOpName(kind);
  }
}

TEST(CheckLeaseOpTest, AtomicsNeedEightAlignedBytes) {
  EXPECT_THAT(CheckLeaseOp(Plain(), RdmaOpKind::kFetchAdd, 64, 8), IsOk());
  EXPECT_THAT(CheckLeaseOp(Plain(), RdmaOpKind::kCompareSwap, 0, 8), IsOk());
  EXPECT_THAT(CheckLeaseOp(Plain(), RdmaOpKind::kFetchAdd, 4, 8),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("FETCH_AND_ADD at offset 4"), HasSubstr("8-byte"))));
  EXPECT_THAT(CheckLeaseOp(Plain(), RdmaOpKind::kCompareSwap, 8, 16),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("moves 8 bytes")));
  LeaseLimits odd_base = Plain();
  odd_base.remote_address += 4;  // The absolute address matters too.
  EXPECT_THAT(CheckLeaseOp(odd_base, RdmaOpKind::kFetchAdd, 8, 8),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("8-byte")));
  EXPECT_THAT(CheckLeaseOp(Plain(), RdmaOpKind::kFetchAdd, 64 * 1024, 8),
              StatusIs(absl::StatusCode::kOutOfRange, HasSubstr("beyond")));
}

TEST(CheckLeaseOpTest, RequiredAlignmentNamesTheConstraintAndTheReason) {
  const LeaseLimits c = Constrained();
  EXPECT_THAT(CheckLeaseOp(c, RdmaOpKind::kWrite, 8192, 4096), IsOk());
  EXPECT_THAT(CheckLeaseOp(c, RdmaOpKind::kWrite, 100, 4096),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("lease e1-7: WRITE at offset 100"),
                             HasSubstr("required_alignment 4096"), HasSubstr(kOdpReason))));
  EXPECT_THAT(CheckLeaseOp(c, RdmaOpKind::kRead, 4096, 1000),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("READ of 1000 bytes"), HasSubstr("required_alignment"),
                             HasSubstr(kOdpReason))));
  // An 8-byte atomic cannot cover a whole 4 KiB unit: refused rather than risked.
  EXPECT_THAT(CheckLeaseOp(c, RdmaOpKind::kFetchAdd, 0, 8),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("required_alignment")));
  LeaseLimits no_reason = c;
  no_reason.constraint_reason.clear();
  EXPECT_THAT(CheckLeaseOp(no_reason, RdmaOpKind::kRead, 1, 4096),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("gave no reason")));
}

TEST(CheckLeaseOpTest, MaxTransferSize) {
  const LeaseLimits c = Constrained();
  EXPECT_THAT(CheckLeaseOp(c, RdmaOpKind::kWrite, 0, 16 * 1024), IsOk());
  EXPECT_THAT(CheckLeaseOp(c, RdmaOpKind::kWrite, 0, 20 * 1024),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("20480 bytes exceeds the lease's max_transfer_size 16384"),
                             HasSubstr(kOdpReason))));
  LeaseLimits only_max = Plain();
  only_max.max_transfer_size = 100;
  EXPECT_THAT(CheckLeaseOp(only_max, RdmaOpKind::kRead, 5, 100), IsOk());
  EXPECT_THAT(CheckLeaseOp(only_max, RdmaOpKind::kRead, 5, 101),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("max_transfer_size 100")));
}

TEST(CheckLeaseOpTest, PathMtuBelowTheAlignmentIsAPreconditionFailure) {
  const LeaseLimits c = Constrained();
  EXPECT_THAT(CheckLeaseOp(c, RdmaOpKind::kWrite, 0, 4096, /*path_mtu=*/4096), IsOk());
  EXPECT_THAT(CheckLeaseOp(c, RdmaOpKind::kWrite, 0, 4096, /*path_mtu=*/1024),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("path MTU is 1024"), HasSubstr("required_alignment 4096"),
                             HasSubstr(kOdpReason))));
  // Unconstrained leases do not care about the MTU.
  EXPECT_THAT(CheckLeaseOp(Plain(), RdmaOpKind::kWrite, 0, 4096, /*path_mtu=*/1024), IsOk());
}

TEST(CheckLeaseOpTest, DeviceMessageSize) {
  EXPECT_THAT(CheckLeaseOp(Plain(), RdmaOpKind::kRead, 0, 4096, 0, /*max_message=*/4096), IsOk());
  EXPECT_THAT(CheckLeaseOp(Plain(), RdmaOpKind::kRead, 0, 8192, 0, /*max_message=*/4096),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("device's largest message")));
}

TEST(CheckLocalRangeTest, WithinTheBuffer) {
  EXPECT_THAT(CheckLocalRange(RdmaOpKind::kWrite, 4096, 0, 4096), IsOk());
  EXPECT_THAT(CheckLocalRange(RdmaOpKind::kWrite, 4096, 1, 4096),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("4096-byte local buffer")));
  EXPECT_THAT(CheckLocalRange(RdmaOpKind::kRead, 4096, UINT64_MAX, 2),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("beyond")));
  EXPECT_THAT(CheckLocalRange(RdmaOpKind::kFetchAdd, 4096, 4, 8),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not 8-byte aligned")));
}

}  // namespace
}  // namespace pinbroker::client
