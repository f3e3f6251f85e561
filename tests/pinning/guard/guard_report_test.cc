// What DescribeFile reports as guard and unguarded operations for each set of armed mechanisms.
#include "pinning/guard/guard_report.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pinbroker::guard {
namespace {

using ::testing::ElementsAre;

// Whenever opens are intercepted (a file lease or FAN_OPEN_PERM), openat2's flags are read
// from the caller's memory and can change under the guard; with neither, open(2) O_TRUNC as a
// whole is listed instead.
TEST(ReportFor, NothingArmedLeavesEveryLayoutChangeUnguarded) {
  const GuardReport r = ReportFor({});
  EXPECT_EQ(r.guard, "none");
  EXPECT_THAT(r.unguarded_operations,
              ElementsAre("truncate(2)", "ftruncate(2)", "fallocate(2) PUNCH_HOLE",
                          "open(2) O_TRUNC", "open(2) O_RDONLY|O_TRUNC"));
}

TEST(ReportFor, PreContentAndOpenPermissionLeaveOnlyPunchesThatEscapeIdentification) {
  GuardReport r = ReportFor({.fanotify = true, .open_perm = true, .writers_predate_mark = true});
  EXPECT_EQ(r.guard, "fanotify");
  EXPECT_THAT(r.unguarded_operations,
              ElementsAre(kOpPunchPreopened, kOpPunchUnidentified, kOpOpenat2FlagsChanged));
  r = ReportFor({.fanotify = true, .open_perm = true, .writers_predate_mark = false});
  EXPECT_THAT(r.unguarded_operations, ElementsAre(kOpPunchUnidentified, kOpOpenat2FlagsChanged));
}

TEST(ReportFor, OpenPermissionAloneCatchesOTruncOpensOnly) {
  const GuardReport r = ReportFor({.open_perm = true});
  EXPECT_EQ(r.guard, "fanotify");
  EXPECT_THAT(r.unguarded_operations,
              ElementsAre("truncate(2)", "ftruncate(2)", "fallocate(2) PUNCH_HOLE",
                          kOpOpenat2FlagsChanged));
}

TEST(ReportFor, LeaseAloneMissesCallsOnOpenDescriptorsAndReadOnlyOTrunc) {
  const GuardReport r = ReportFor({.lease = true});
  EXPECT_EQ(r.guard, "lease");
  EXPECT_THAT(r.unguarded_operations,
              ElementsAre("ftruncate(2)", "fallocate(2) PUNCH_HOLE", "open(2) O_RDONLY|O_TRUNC",
                          kOpOpenat2FlagsChanged));
}

TEST(ReportFor, OpenPermissionAndLeaseWithoutPreContent) {
  const GuardReport r = ReportFor({.open_perm = true, .lease = true});
  EXPECT_EQ(r.guard, "fanotify+lease");
  EXPECT_THAT(r.unguarded_operations,
              ElementsAre("ftruncate(2)", "fallocate(2) PUNCH_HOLE", kOpOpenat2FlagsChanged));
}

TEST(UnguardedReport, IsWhatFilesWithoutAGuardReport) {
  const GuardReport r = UnguardedReport();
  EXPECT_EQ(r.guard, "none");
  EXPECT_THAT(r.unguarded_operations,
              ElementsAre("truncate(2)", "ftruncate(2)", "fallocate(2) PUNCH_HOLE",
                          "open(2) O_TRUNC", "unlink(2)"));
}

}  // namespace
}  // namespace pinbroker::guard
