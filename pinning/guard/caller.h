// Caller inspection: which system call, with which arguments, a thread that the guard is holding
// (in a fanotify permission event or a file-lease break) is making.
//
// While the kernel waits for the guard's answer the caller sleeps inside its system call, so
// /proc/<tid>/syscall shows that call's number and raw arguments, stably. Reading it needs
// ptrace-read access to the caller (root, CAP_SYS_PTRACE, or same uid without Yama
// restrictions) and the caller must be visible in the broker's pid namespace; otherwise the
// functions here fail and the guard treats the caller as unidentified (docs/GUARD.md).
//
// Thread-safety: stateless; every function is safe to call concurrently. None of them opens,
// reads or maps a file the guard watches: they read procfs and the caller's memory only.
#pragma once

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "pinning/file_info.h"

namespace pinbroker::guard {

struct CallerSyscall {
  pid_t tid = 0;
  int64_t nr = -1;  // System call number of the broker's own architecture.
  std::array<uint64_t, 6> args{};
  std::string line;  // The raw /proc line, to notice when the caller has moved on.
};

// Parses /proc/<tid>/syscall text: "<nr> <arg0> ... <arg5> <sp> <pc>". UNAVAILABLE for
// "running" (not blocked), FAILED_PRECONDITION for "-1 <sp> <pc>" (blocked outside a system
// call), INVALID_ARGUMENT for anything else unparsable.
absl::StatusOr<CallerSyscall> ParseProcSyscall(absl::string_view text);

// Reads and parses /proc/<tid>/syscall. NOT_FOUND if the thread is gone, PERMISSION_DENIED
// without ptrace access, INVALID_ARGUMENT for tid <= 0 (a caller outside our pid namespace).
absl::StatusOr<CallerSyscall> ReadCallerSyscall(pid_t tid);

// "pid 4242 (truncate)" for logs and recall reasons; "a process outside the broker's pid
// namespace" for tid 0.
std::string CallerName(pid_t tid);

// ReadCallerSyscall() for a caller that is about to block for the guard: the kernel wakes the
// guard a moment before the caller is asleep, and a running thread's line says "running", so
// this retries that case (only) for up to `limit` of real time.
absl::StatusOr<CallerSyscall> ReadBlockedCallerSyscall(pid_t tid, absl::Duration limit);

// True if `tid` is a thread of the broker's own process.
bool IsOwnThread(pid_t tid);

// Threads of any process currently blocked breaking a file lease (their wchan is
// "__break_lease"), with the system call each is in. Scans /proc: O(threads on the system).
// A breaker signals the lease holder just before it goes to sleep, so a scan right after the
// signal may not see it yet: callers retry.
std::vector<CallerSyscall> FindLeaseBreakers();

// The file a path argument of a blocked caller names: `path_addr` in the caller's memory,
// relative to its `dirfd` (AT_FDCWD: its working directory; ignored for absolute paths), as
// the caller's root and working directory see it. Follows symlinks like open(2) without
// O_NOFOLLOW. Errors: the caller's memory or /proc entries cannot be read, or no such file.
absl::StatusOr<FileId> ResolveCallerPath(pid_t tid, int dirfd, uint64_t path_addr);

// The `flags` of the struct open_how at `how_addr` in the caller's memory (openat2(2)).
absl::StatusOr<uint64_t> ReadCallerOpenHowFlags(pid_t tid, uint64_t how_addr);

// Waits, polling /proc, until `caller` has left the system call it was blocked in (its line
// changed, it exited) or `done` returns true, for at most `limit` of real time: after the
// guard lets a change through, the kernel still has to make it. True if it saw the end.
bool WaitForSyscallExit(const CallerSyscall& caller, absl::Duration limit,
                        absl::FunctionRef<bool()> done);
inline bool WaitForSyscallExit(const CallerSyscall& caller, absl::Duration limit) {
  return WaitForSyscallExit(caller, limit, [] { return false; });
}

}  // namespace pinbroker::guard
