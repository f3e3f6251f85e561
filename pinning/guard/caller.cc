#include "pinning/guard/caller.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "common/errno_status.h"
#include "common/scoped_fd.h"

namespace pinbroker::guard {
namespace {

// Reads a small procfs file whole (procfs files report size 0, so read until EOF).
absl::StatusOr<std::string> ReadProcFile(const std::string& path) {
  ScopedFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return ErrnoToStatus(errno, absl::StrCat("open ", path));
  std::string out;
  char buf[512];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoToStatus(errno, absl::StrCat("read ", path));
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

bool ParseHex(absl::string_view word, uint64_t* out) {
  if (!absl::ConsumePrefix(&word, "0x")) return false;
  return absl::SimpleHexAtoi(word, out);
}

// Reads up to `len` bytes at `addr` of process `tid`; returns how many were read.
ssize_t ReadRemote(pid_t tid, uint64_t addr, void* buf, size_t len) {
  struct iovec local = {buf, len};
  struct iovec remote = {reinterpret_cast<void*>(addr), len};
  return ::process_vm_readv(tid, &local, 1, &remote, 1, 0);
}

absl::StatusOr<std::string> ReadRemoteString(pid_t tid, uint64_t addr) {
  std::string out;
  char chunk[256];
  while (out.size() < PATH_MAX) {
    // Stay within one page per read: the string may end just before an unmapped page.
    const uint64_t to_page_end = 4096 - ((addr + out.size()) % 4096);
    const size_t want = std::min<uint64_t>(sizeof(chunk), to_page_end);
    const ssize_t n = ReadRemote(tid, addr + out.size(), chunk, want);
    if (n <= 0) {
      return ErrnoToStatus(n < 0 ? errno : EFAULT,
                           absl::StrCat("reading a path argument of thread ", tid));
    }
    const char* nul = static_cast<const char*>(std::memchr(chunk, '\0', static_cast<size_t>(n)));
    if (nul != nullptr) {
      out.append(chunk, static_cast<size_t>(nul - chunk));
      return out;
    }
    out.append(chunk, static_cast<size_t>(n));
  }
  return absl::InvalidArgumentError(absl::StrCat("path argument of thread ", tid, " too long"));
}

}  // namespace

absl::StatusOr<CallerSyscall> ParseProcSyscall(absl::string_view text) {
  text = absl::StripAsciiWhitespace(text);
  if (text == "running") {
    return absl::UnavailableError("the thread is running, not blocked in a system call");
  }
  std::vector<absl::string_view> words = absl::StrSplit(text, ' ', absl::SkipEmpty());
  if (words.size() == 3 && words[0] == "-1") {
    return absl::FailedPreconditionError("the thread is blocked outside a system call");
  }
  CallerSyscall call;
  if (words.size() != 9 || !absl::SimpleAtoi(words[0], &call.nr) || call.nr < 0) {
    return absl::InvalidArgumentError(absl::StrCat("unexpected /proc syscall line '", text, "'"));
  }
  for (size_t i = 0; i < call.args.size(); ++i) {
    if (!ParseHex(words[i + 1], &call.args[i])) {
      return absl::InvalidArgumentError(absl::StrCat("unexpected /proc syscall line '", text, "'"));
    }
  }
  call.line = std::string(text);
  return call;
}

absl::StatusOr<CallerSyscall> ReadCallerSyscall(pid_t tid) {
  if (tid <= 0) {
    return absl::InvalidArgumentError(
        "the caller is not visible in the broker's pid namespace (fanotify reported pid 0)");
  }
  absl::StatusOr<std::string> text = ReadProcFile(absl::StrCat("/proc/", tid, "/syscall"));
  if (!text.ok()) {
    if (absl::IsNotFound(text.status()) || text.status().code() == absl::StatusCode::kUnknown) {
      return absl::NotFoundError(absl::StrCat("thread ", tid, " is gone"));
    }
    return text.status();
  }
  absl::StatusOr<CallerSyscall> call = ParseProcSyscall(*text);
  if (call.ok()) call->tid = tid;
  return call;
}

absl::StatusOr<CallerSyscall> ReadBlockedCallerSyscall(pid_t tid, absl::Duration limit) {
  const absl::Time give_up = absl::Now() + limit;
  absl::Duration pause = absl::Microseconds(20);
  for (;;) {
    absl::StatusOr<CallerSyscall> call = ReadCallerSyscall(tid);
    if (call.ok() || !absl::IsUnavailable(call.status()) || absl::Now() >= give_up) return call;
    std::this_thread::sleep_for(absl::ToChronoMicroseconds(pause));
    pause = std::min(pause * 2, absl::Milliseconds(2));
  }
}

std::string CallerName(pid_t tid) {
  if (tid <= 0) return "a process outside the broker's pid namespace";
  absl::StatusOr<std::string> comm = ReadProcFile(absl::StrCat("/proc/", tid, "/comm"));
  if (!comm.ok()) return absl::StrCat("pid ", tid);
  return absl::StrCat("pid ", tid, " (", absl::StripAsciiWhitespace(*comm), ")");
}

bool IsOwnThread(pid_t tid) { return tid > 0 && ::syscall(SYS_tgkill, ::getpid(), tid, 0) == 0; }

std::vector<CallerSyscall> FindLeaseBreakers() {
  std::vector<CallerSyscall> out;
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) return out;
  while (const dirent* process = ::readdir(proc)) {
    pid_t pid = 0;
    if (!absl::SimpleAtoi(process->d_name, &pid)) continue;
    const std::string task_dir = absl::StrCat("/proc/", pid, "/task");
    DIR* tasks = ::opendir(task_dir.c_str());
    if (tasks == nullptr) continue;  // Exited meanwhile.
    while (const dirent* task = ::readdir(tasks)) {
      pid_t tid = 0;
      if (!absl::SimpleAtoi(task->d_name, &tid)) continue;
      absl::StatusOr<std::string> wchan = ReadProcFile(absl::StrCat(task_dir, "/", tid, "/wchan"));
      if (!wchan.ok() || absl::StripAsciiWhitespace(*wchan) != "__break_lease") continue;
      absl::StatusOr<CallerSyscall> call = ReadCallerSyscall(tid);
      if (call.ok()) out.push_back(*std::move(call));
    }
    ::closedir(tasks);
  }
  ::closedir(proc);
  return out;
}

absl::StatusOr<FileId> ResolveCallerPath(pid_t tid, int dirfd, uint64_t path_addr) {
  absl::StatusOr<std::string> path = ReadRemoteString(tid, path_addr);
  if (!path.ok()) return path.status();
  if (path->empty()) return absl::NotFoundError("empty path argument");
  std::string where;
  if ((*path)[0] == '/') {
    where = absl::StrCat("/proc/", tid, "/root", *path);
  } else if (dirfd == AT_FDCWD) {
    where = absl::StrCat("/proc/", tid, "/cwd/", *path);
  } else {
    where = absl::StrCat("/proc/", tid, "/fd/", dirfd, "/", *path);
  }
  struct stat st;
  if (::stat(where.c_str(), &st) != 0) return ErrnoToStatus(errno, absl::StrCat("stat ", where));
  return FileId{static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino)};
}

absl::StatusOr<uint64_t> ReadCallerOpenHowFlags(pid_t tid, uint64_t how_addr) {
  struct open_how how = {};
  if (ReadRemote(tid, how_addr, &how, sizeof(how.flags)) !=
      static_cast<ssize_t>(sizeof(how.flags))) {
    return ErrnoToStatus(errno == 0 ? EFAULT : errno,
                         absl::StrCat("reading the open_how of thread ", tid));
  }
  return how.flags;
}

bool WaitForSyscallExit(const CallerSyscall& caller, absl::Duration limit,
                        absl::FunctionRef<bool()> done) {
  const absl::Time give_up = absl::Now() + limit;
  absl::Duration pause = absl::Microseconds(200);
  const std::string path = absl::StrCat("/proc/", caller.tid, "/syscall");
  for (;;) {
    if (done()) return true;
    absl::StatusOr<std::string> now = ReadProcFile(path);
    if (!now.ok()) return true;  // The thread is gone.
    const absl::string_view line = absl::StripAsciiWhitespace(*now);
    if (line != "running" && line != caller.line) return true;
    if (absl::Now() >= give_up) return false;
    std::this_thread::sleep_for(absl::ToChronoMicroseconds(pause));
    pause = std::min(pause * 2, absl::Milliseconds(5));
  }
}

}  // namespace pinbroker::guard
