#include "tests/vm/scenarios/oob_call.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace pinbroker::scenarios {
namespace {

// Runs in the forked child: async-signal-safe calls only. Returns the failing call's errno.
int MakeChange(const char* path, const OobChange& c) {
  if (c.op == OobOp::kTruncate) {
    return truncate(path, static_cast<off_t>(c.size)) == 0 ? 0 : errno;
  }
  const int flags = O_WRONLY | O_CLOEXEC | (c.op == OobOp::kOpenTrunc ? O_TRUNC : 0);
  const int fd = open(path, flags);
  if (fd < 0) return errno;
  int err = 0;
  switch (c.op) {
    case OobOp::kFtruncate:
      if (ftruncate(fd, static_cast<off_t>(c.size)) != 0) err = errno;
      break;
    case OobOp::kPunch:
      if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(c.offset),
                    static_cast<off_t>(c.length)) != 0) {
        err = errno;
      }
      break;
    case OobOp::kPwrite: {
      const ssize_t n = pwrite(fd, c.data.data(), c.data.size(), static_cast<off_t>(c.offset));
      if (n < 0) err = errno;
      if (n >= 0 && static_cast<size_t>(n) != c.data.size()) err = EIO;
      break;
    }
    case OobOp::kOpenTrunc:
    case OobOp::kTruncate:
      break;
  }
  close(fd);
  return err;
}

}  // namespace

std::string Describe(const OobChange& c) {
  switch (c.op) {
    case OobOp::kTruncate:
      return absl::StrCat("truncate(2) to ", c.size);
    case OobOp::kFtruncate:
      return absl::StrCat("ftruncate(2) to ", c.size);
    case OobOp::kPunch:
      return absl::StrCat("fallocate(2) PUNCH_HOLE [", c.offset, ", +", c.length, ")");
    case OobOp::kOpenTrunc:
      return "open(2) O_TRUNC";
    case OobOp::kPwrite:
      return absl::StrCat("pwrite(2) [", c.offset, ", +", c.data.size(), ")");
  }
  return "?";
}

absl::string_view UnguardedEntry(OobOp op) {
  switch (op) {
    case OobOp::kTruncate:
      return "truncate(2)";
    case OobOp::kFtruncate:
      return "ftruncate(2)";
    case OobOp::kPunch:
      return "fallocate(2) PUNCH_HOLE";
    case OobOp::kOpenTrunc:
      return "open(2) O_TRUNC";
    case OobOp::kPwrite:
      return "";
  }
  return "";
}

void Apply(const OobChange& c, std::string& file) {
  switch (c.op) {
    case OobOp::kTruncate:
    case OobOp::kFtruncate:
      file.resize(c.size, '\0');
      break;
    case OobOp::kPunch:
      if (c.offset < file.size()) {
        std::fill_n(file.begin() + c.offset, std::min<uint64_t>(c.length, file.size() - c.offset),
                    '\0');
      }
      break;
    case OobOp::kOpenTrunc:
      file.clear();
      break;
    case OobOp::kPwrite:
      if (file.size() < c.offset + c.data.size()) file.resize(c.offset + c.data.size(), '\0');
      file.replace(c.offset, c.data.size(), c.data);
      break;
  }
}

absl::StatusOr<std::unique_ptr<OutOfBandCall>> OutOfBandCall::Start(const std::string& path,
                                                                    const OobChange& change) {
  const absl::Time started = absl::Now();
  const pid_t pid = fork();
  if (pid < 0) return absl::InternalError(absl::StrCat("fork: ", std::strerror(errno)));
  if (pid == 0) _exit(std::min(MakeChange(path.c_str(), change), 255));
  return std::unique_ptr<OutOfBandCall>(new OutOfBandCall(pid, started));
}

OutOfBandCall::~OutOfBandCall() {
  if (Poll()) return;
  kill(pid_, SIGKILL);
  int status = 0;
  waitpid(pid_, &status, 0);
}

bool OutOfBandCall::Poll() {
  if (exited_) return true;
  int status = 0;
  const pid_t r = waitpid(pid_, &status, WNOHANG);
  if (r != pid_) return false;
  exited_ = true;
  finished_ = absl::Now();
  result_ = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return true;
}

bool OutOfBandCall::Running() { return !Poll(); }

absl::StatusOr<int> OutOfBandCall::Wait(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  // Polls a process, not a timer: the child's exit is what is waited for.
  while (!Poll()) {
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(absl::StrCat("the other process (pid ", pid_,
                                                      ") is still in its call after ",
                                                      absl::FormatDuration(Elapsed())));
    }
    absl::SleepFor(absl::Milliseconds(5));
  }
  if (result_ < 0) {
    return absl::InternalError(absl::StrCat("the other process (pid ", pid_, ") did not exit"));
  }
  return result_;
}

absl::Duration OutOfBandCall::Elapsed() const {
  return (exited_ ? finished_ : absl::Now()) - started_;
}

}  // namespace pinbroker::scenarios
