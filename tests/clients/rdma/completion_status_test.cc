// Tests of how work-completion statuses become errors naming the lease
// (clients/rdma/completion_status.h).

#include "clients/rdma/completion_status.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace pinbroker::client::rdma_internal {
namespace {

using ::pinbroker::testing::IsOk;
using ::pinbroker::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

TEST(CompletionStatusTest, SuccessIsOk) {
  EXPECT_THAT(CompletionStatus(IBV_WC_SUCCESS, "e-1", RdmaOpKind::kWrite, 4096), IsOk());
}

TEST(CompletionStatusTest, RemoteAccessErrorIsPermissionDeniedNamingTheLease) {
  EXPECT_THAT(
      CompletionStatus(IBV_WC_REM_ACCESS_ERR, "e-1", RdmaOpKind::kWrite, 4096),
      StatusIs(absl::StatusCode::kPermissionDenied,
               AllOf(HasSubstr("lease e-1: remote access error"),
                     HasSubstr("the lease was revoked or its key is not valid on this connection"),
                     HasSubstr("connection now in error state"), HasSubstr("WRITE of 4096"))));
}

TEST(CompletionStatusTest, FlushCarriesWhyTheConnectionBroke) {
  EXPECT_THAT(CompletionStatus(IBV_WC_WR_FLUSH_ERR, "e-2", RdmaOpKind::kRead, 8,
                               "lease e-1: remote access error"),
              StatusIs(absl::StatusCode::kUnavailable,
                       AllOf(HasSubstr("lease e-2: READ of 8 bytes was flushed"),
                             HasSubstr("(lease e-1: remote access error)"))));
  EXPECT_THAT(CompletionStatus(IBV_WC_WR_FLUSH_ERR, "e-2", RdmaOpKind::kRead, 8),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("broke before it ran")));
}

TEST(CompletionStatusTest, OtherErrors) {
  EXPECT_THAT(CompletionStatus(IBV_WC_RETRY_EXC_ERR, "e-3", RdmaOpKind::kFetchAdd, 8),
              StatusIs(absl::StatusCode::kUnavailable, AllOf(HasSubstr("lease e-3: FETCH_AND_ADD"),
                                                             HasSubstr("stopped answering"))));
  EXPECT_THAT(CompletionStatus(IBV_WC_REM_INV_REQ_ERR, "e-3", RdmaOpKind::kCompareSwap, 8),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("invalid request")));
  EXPECT_THAT(CompletionStatus(IBV_WC_LOC_PROT_ERR, "e-3", RdmaOpKind::kWrite, 1),
              StatusIs(absl::StatusCode::kInternal,
                       AllOf(HasSubstr("lease e-3"), HasSubstr("error state"))));
}

}  // namespace
}  // namespace pinbroker::client::rdma_internal
