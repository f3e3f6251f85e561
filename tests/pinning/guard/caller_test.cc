// Caller inspection: parsing /proc/<tid>/syscall, and reading a real blocked thread's system
// call, identity and path arguments from procfs and its memory.
#include "pinning/guard/caller.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace pinbroker::guard {
namespace {

using ::pinbroker::testing::StatusIs;
using ::pinbroker::testing::TempDir;
using ::testing::HasSubstr;

TEST(ParseProcSyscall, ReadsNumberAndArguments) {
  ASSERT_OK_AND_ASSIGN(
      CallerSyscall call,
      ParseProcSyscall("285 0x3 0x3 0x1000 0x2000 0x0 0x0 0x7ffcfe8d7658 0x7f25bf01cdc3\n"));
  EXPECT_EQ(call.nr, 285);
  EXPECT_EQ(call.args[0], 3u);
  EXPECT_EQ(call.args[1], 3u);
  EXPECT_EQ(call.args[2], 0x1000u);
  EXPECT_EQ(call.args[3], 0x2000u);
  EXPECT_EQ(call.line, "285 0x3 0x3 0x1000 0x2000 0x0 0x0 0x7ffcfe8d7658 0x7f25bf01cdc3");
}

TEST(ParseProcSyscall, RunningAndNotInASyscallAreDistinctErrors) {
  EXPECT_THAT(ParseProcSyscall("running\n"),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("running")));
  EXPECT_THAT(ParseProcSyscall("-1 0x7ffd21d11848 0x7ff426249483"),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("outside")));
  EXPECT_THAT(ParseProcSyscall("77 0x3"), StatusIs(absl::StatusCode::kInvalidArgument,
                                                   "unexpected /proc syscall line '77 0x3'"));
  EXPECT_THAT(ParseProcSyscall("77 3 0 0 0 0 0 0 0"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unexpected")));
}

TEST(ReadCallerSyscall, ShowsTheCallABlockedThreadIsIn) {
  int pipe_fds[2];
  ASSERT_EQ(pipe(pipe_fds), 0);
  std::atomic<pid_t> tid{0};
  std::thread reader([&] {
    tid = static_cast<pid_t>(syscall(SYS_gettid));
    char c;
    (void)!read(pipe_fds[0], &c, 1);
  });
  while (tid == 0) std::this_thread::yield();
  // Until the thread is asleep in read(2) its line says "running" or shows another call.
  absl::StatusOr<CallerSyscall> call;
  const absl::Time give_up = absl::Now() + absl::Seconds(30);
  do {
    call = ReadCallerSyscall(tid);
  } while ((!call.ok() || call->nr != SYS_read) && absl::Now() < give_up);
  ASSERT_OK(call.status());
  EXPECT_EQ(call->nr, SYS_read);
  EXPECT_EQ(call->args[0], static_cast<uint64_t>(pipe_fds[0]));
  EXPECT_EQ(call->args[2], 1u);
  EXPECT_EQ(call->tid, tid);
  EXPECT_TRUE(IsOwnThread(tid));
  ASSERT_EQ(write(pipe_fds[1], "x", 1), 1);
  reader.join();
  // Gone threads are NOT_FOUND; tid 0 (outside our pid namespace) is refused by name.
  EXPECT_THAT(ReadCallerSyscall(tid), StatusIs(absl::StatusCode::kNotFound, HasSubstr("gone")));
  EXPECT_THAT(ReadCallerSyscall(0),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("pid namespace")));
  close(pipe_fds[0]);
  close(pipe_fds[1]);
}

TEST(CallerIdentity, OwnThreadsAndNames) {
  const pid_t self = static_cast<pid_t>(syscall(SYS_gettid));
  EXPECT_TRUE(IsOwnThread(self));
  EXPECT_FALSE(IsOwnThread(0));
  if (getpid() != 1) {
    EXPECT_FALSE(IsOwnThread(1));
  }
  EXPECT_THAT(CallerName(self), HasSubstr(absl::StrCat("pid ", self, " (")));
  EXPECT_EQ(CallerName(0), "a process outside the broker's pid namespace");
}

TEST(ResolveCallerPath, ResolvesAbsoluteRelativeAndDirfdPathsAsTheCallerSeesThem) {
  TempDir dir;
  dir.WriteFile("target", "x");
  struct stat st;
  ASSERT_EQ(stat(dir.Join("target").c_str(), &st), 0);
  const FileId want{static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino)};
  const pid_t self = static_cast<pid_t>(syscall(SYS_gettid));

  const std::string absolute = dir.Join("target");
  EXPECT_THAT(ResolveCallerPath(self, AT_FDCWD, reinterpret_cast<uint64_t>(absolute.c_str())),
              ::pinbroker::testing::IsOkAndHolds(want));
  const int dirfd = open(dir.path().c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  ASSERT_GE(dirfd, 0);
  const char* relative = "target";
  EXPECT_THAT(ResolveCallerPath(self, dirfd, reinterpret_cast<uint64_t>(relative)),
              ::pinbroker::testing::IsOkAndHolds(want));
  const char* missing = "missing";
  EXPECT_THAT(ResolveCallerPath(self, dirfd, reinterpret_cast<uint64_t>(missing)),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("missing")));
  close(dirfd);
}

TEST(WaitForSyscallExit, ReturnsWhenTheThreadMovesOnOrAtTheLimit) {
  int pipe_fds[2];
  ASSERT_EQ(pipe(pipe_fds), 0);
  std::atomic<pid_t> tid{0};
  std::thread reader([&] {
    tid = static_cast<pid_t>(syscall(SYS_gettid));
    char c;
    (void)!read(pipe_fds[0], &c, 1);
  });
  while (tid == 0) std::this_thread::yield();
  absl::StatusOr<CallerSyscall> call;
  do {
    call = ReadCallerSyscall(tid);
  } while (!call.ok() || call->nr != SYS_read);
  // Still blocked: the wait gives up at its (short) limit.
  EXPECT_FALSE(WaitForSyscallExit(*call, absl::Milliseconds(20)));
  // A predicate that says "done" ends it at once.
  EXPECT_TRUE(WaitForSyscallExit(*call, absl::Seconds(30), [] { return true; }));
  ASSERT_EQ(write(pipe_fds[1], "x", 1), 1);
  reader.join();
  EXPECT_TRUE(WaitForSyscallExit(*call, absl::Seconds(30)));  // The thread is gone.
  close(pipe_fds[0]);
  close(pipe_fds[1]);
}

}  // namespace
}  // namespace pinbroker::guard
