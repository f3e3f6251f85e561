// The classifier that tells a punch from a write, and an O_TRUNC open from a plain writer, by the
// caller's system call; and what it does when the caller cannot be identified.
#include "pinning/guard/change_classifier.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/syscall.h>

#include "gtest/gtest.h"

namespace pinbroker::guard {
namespace {

using Kind = ClassifiedChange::Kind;

CallerSyscall Call(int64_t nr, std::array<uint64_t, 6> args = {}) {
  CallerSyscall c;
  c.tid = 42;
  c.nr = nr;
  c.args = args;
  return c;
}

TEST(ClassifyPreAccess, TruncatesUseTheLengthArgumentNotTheEventRange) {
  // truncate to 500000 bytes: the event reports the page holding the new EOF, count 4096.
  ClassifiedChange c = ClassifyPreAccess(499712, 4096, Call(SYS_ftruncate, {3, 500000}));
  EXPECT_EQ(c.kind, Kind::kTruncate);
  EXPECT_EQ(c.new_size, 500000u);
  EXPECT_EQ(c.call, "ftruncate(2)");
  c = ClassifyPreAccess(0, 0, Call(SYS_truncate, {0x7fff0000, 0}));
  EXPECT_EQ(c.kind, Kind::kTruncate);
  EXPECT_EQ(c.new_size, 0u);
  EXPECT_EQ(c.call, "truncate(2)");
  EXPECT_TRUE(c.changes_layout());
}

TEST(ClassifyPreAccess, FallocateModesThatFreeOrMoveBlocksAreLayoutChanges) {
  const std::array<uint64_t, 6> punch = {3, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 4096, 8192};
  ClassifiedChange c = ClassifyPreAccess(4096, 8192, Call(SYS_fallocate, punch));
  EXPECT_EQ(c.kind, Kind::kPunch);
  EXPECT_EQ(c.offset, 4096u);
  EXPECT_EQ(c.length, 8192u);
  EXPECT_EQ(c.call, "fallocate(2) PUNCH_HOLE");

  c = ClassifyPreAccess(0, 4096, Call(SYS_fallocate, {3, FALLOC_FL_ZERO_RANGE, 0, 4096}));
  EXPECT_EQ(c.kind, Kind::kPunch);
  EXPECT_EQ(c.call, "fallocate(2) ZERO_RANGE");
  c = ClassifyPreAccess(0, 4096, Call(SYS_fallocate, {3, 0x40, 0, 4096}));
  EXPECT_EQ(c.kind, Kind::kPunch);
  c = ClassifyPreAccess(8192, 4096, Call(SYS_fallocate, {3, FALLOC_FL_COLLAPSE_RANGE, 8192, 4096}));
  EXPECT_EQ(c.kind, Kind::kShift);
  EXPECT_EQ(c.offset, 8192u);
  c = ClassifyPreAccess(8192, 4096, Call(SYS_fallocate, {3, FALLOC_FL_INSERT_RANGE, 8192, 4096}));
  EXPECT_EQ(c.kind, Kind::kShift);
  EXPECT_EQ(c.call, "fallocate(2) INSERT_RANGE");
}

TEST(ClassifyPreAccess, AllocationWritesReadsAndMappingsAreOrdinaryAccess) {
  EXPECT_EQ(ClassifyPreAccess(0, 8192, Call(SYS_fallocate, {3, 0, 0, 8192})).kind, Kind::kAccess);
  EXPECT_EQ(ClassifyPreAccess(0, 8192, Call(SYS_fallocate, {3, FALLOC_FL_KEEP_SIZE, 0, 8192})).kind,
            Kind::kAccess);
  // A write of the same range as a punch: told apart by the system call.
  ClassifiedChange c = ClassifyPreAccess(4096, 8192, Call(SYS_pwrite64, {3, 0, 8192, 4096}));
  EXPECT_EQ(c.kind, Kind::kAccess);
  EXPECT_EQ(c.call, "pwrite64(2)");
  for (int64_t nr : {SYS_read, SYS_write, SYS_pread64, SYS_writev, SYS_pwritev2, SYS_mmap,
                     SYS_copy_file_range, SYS_splice, SYS_sendfile, SYS_io_submit}) {
    EXPECT_EQ(ClassifyPreAccess(0, 4096, Call(nr)).kind, Kind::kAccess) << nr;
    EXPECT_FALSE(ClassifyPreAccess(0, 4096, Call(nr)).changes_layout()) << nr;
  }
  // A zero-length write is an ordinary access too, although its event has count 0.
  EXPECT_EQ(ClassifyPreAccess(4096, 0, Call(SYS_write, {3, 0, 0})).kind, Kind::kAccess);
}

TEST(ClassifyPreAccess, UnidentifiedCallers) {
  // Without the system call: count 0 can only be a truncate to a page-aligned size.
  ClassifiedChange c = ClassifyPreAccess(8192, 0, std::nullopt);
  EXPECT_EQ(c.kind, Kind::kTruncate);
  EXPECT_EQ(c.new_size, 8192u);
  EXPECT_EQ(c.call, "unidentified caller");
  // Anything else may be a write: never held, checked afterwards.
  c = ClassifyPreAccess(4096, 4096, std::nullopt);
  EXPECT_EQ(c.kind, Kind::kUnknown);
  EXPECT_FALSE(c.changes_layout());
  // io_uring hides the operation behind io_uring_enter(2).
  c = ClassifyPreAccess(0, 4096, Call(SYS_io_uring_enter));
  EXPECT_EQ(c.kind, Kind::kUnknown);
  EXPECT_EQ(c.call, "io_uring_enter(2)");
  EXPECT_EQ(ClassifyPreAccess(0, 4096, Call(9999)).call, "system call 9999");
}

TEST(ClassifyLeaseBreak, OpensWithOTruncTruncateToZeroOtherWriterOpensDoNot) {
  ClassifiedChange c = ClassifyLeaseBreak(Call(
      SYS_openat, {static_cast<uint64_t>(AT_FDCWD), 0x1000, O_WRONLY | O_CREAT | O_TRUNC, 0666}));
  EXPECT_EQ(c.kind, Kind::kTruncate);
  EXPECT_EQ(c.new_size, 0u);
  EXPECT_EQ(c.call, "openat(2) O_TRUNC");
  c = ClassifyLeaseBreak(Call(SYS_open, {0x1000, O_RDWR | O_TRUNC}));
  EXPECT_EQ(c.kind, Kind::kTruncate);
  EXPECT_EQ(ClassifyLeaseBreak(Call(SYS_creat, {0x1000, 0644})).kind, Kind::kTruncate);

  c = ClassifyLeaseBreak(Call(SYS_openat, {static_cast<uint64_t>(AT_FDCWD), 0x1000, O_WRONLY}));
  EXPECT_EQ(c.kind, Kind::kAccess);
  EXPECT_EQ(c.call, "openat(2) for writing");

  c = ClassifyLeaseBreak(Call(SYS_truncate, {0x1000, 12345}));
  EXPECT_EQ(c.kind, Kind::kTruncate);
  EXPECT_EQ(c.new_size, 12345u);

  // openat2 keeps its flags in memory: with them read, as openat; without, unknown.
  EXPECT_EQ(ClassifyLeaseBreak(Call(SYS_openat2), uint64_t{O_WRONLY | O_TRUNC}).kind,
            Kind::kTruncate);
  EXPECT_EQ(ClassifyLeaseBreak(Call(SYS_openat2), std::nullopt).kind, Kind::kUnknown);
  EXPECT_EQ(ClassifyLeaseBreak(Call(SYS_rename)).kind, Kind::kUnknown);
}

TEST(ClassifyOpen, ReadsTheFlagsOfTheOpenAboutToHappen) {
  using K = OpenIntent::Kind;
  const uint64_t cwd = static_cast<uint64_t>(AT_FDCWD);
  EXPECT_EQ(ClassifyOpen(Call(SYS_openat, {cwd, 0x1000, O_RDONLY}), std::nullopt).kind, K::kRead);
  OpenIntent o = ClassifyOpen(Call(SYS_openat, {cwd, 0x1000, O_WRONLY | O_NONBLOCK}), std::nullopt);
  EXPECT_EQ(o.kind, K::kWrite);
  EXPECT_EQ(o.call, "openat(2) for writing");
  o = ClassifyOpen(Call(SYS_openat, {cwd, 0x1000, O_WRONLY | O_CREAT | O_TRUNC}), std::nullopt);
  EXPECT_EQ(o.kind, K::kTruncate);
  EXPECT_EQ(o.call, "openat(2) O_TRUNC");
  // Read-only opens truncate too with O_TRUNC, and break no read lease: caught here.
  o = ClassifyOpen(Call(SYS_open, {0x1000, O_RDONLY | O_TRUNC}), std::nullopt);
  EXPECT_EQ(o.kind, K::kTruncate);
  EXPECT_EQ(o.call, "open(2) O_RDONLY|O_TRUNC");
  EXPECT_EQ(ClassifyOpen(Call(SYS_creat, {0x1000, 0644}), std::nullopt).kind, K::kTruncate);
  EXPECT_EQ(ClassifyOpen(Call(SYS_openat2), uint64_t{O_RDWR | O_TRUNC}).kind, K::kTruncate);
  EXPECT_EQ(ClassifyOpen(Call(SYS_openat2), std::nullopt).kind, K::kUnknown);
  EXPECT_EQ(ClassifyOpen(Call(SYS_io_uring_enter), std::nullopt).kind, K::kUnknown);
}

TEST(PathArgument, NamesWhereEachCallKeepsItsPath) {
  int path = -2, dirfd = -2;
  EXPECT_TRUE(PathArgument(Call(SYS_openat), &path, &dirfd));
  EXPECT_EQ(path, 1);
  EXPECT_EQ(dirfd, 0);
  EXPECT_TRUE(PathArgument(Call(SYS_truncate), &path, &dirfd));
  EXPECT_EQ(path, 0);
  EXPECT_EQ(dirfd, -1);
  EXPECT_FALSE(PathArgument(Call(SYS_ftruncate), &path, &dirfd));
}

}  // namespace
}  // namespace pinbroker::guard
