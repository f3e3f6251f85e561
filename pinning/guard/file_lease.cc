#include "pinning/guard/file_lease.h"

#include <fcntl.h>

#include <cerrno>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "common/errno_status.h"

namespace pinbroker::guard {

absl::Status ArmReadLease(int fd, int signal, pid_t tid) {
  struct f_owner_ex owner = {F_OWNER_TID, tid};
  if (::fcntl(fd, F_SETOWN_EX, &owner) != 0) return ErrnoToStatus(errno, "fcntl(F_SETOWN_EX)");
  if (::fcntl(fd, F_SETSIG, signal) != 0) return ErrnoToStatus(errno, "fcntl(F_SETSIG)");
  if (::fcntl(fd, F_SETLEASE, F_RDLCK) == 0) return absl::OkStatus();
  const int err = errno;
  if (err == EAGAIN || err == EBUSY) {
    return absl::FailedPreconditionError(
        "the file is open for writing (by the broker's read-write pins or another process); a "
        "read lease needs no writer");
  }
  if (err == EACCES || err == EPERM) {
    return absl::PermissionDeniedError("taking a file lease needs the file's owner or CAP_LEASE");
  }
  if (err == EINVAL) {
    return absl::FailedPreconditionError("this filesystem does not support file leases");
  }
  return ErrnoToStatus(err, "fcntl(F_SETLEASE, F_RDLCK)");
}

void ReleaseLease(int fd) { ::fcntl(fd, F_SETLEASE, F_UNLCK); }

bool LeaseBreaking(int fd) {
  // While a read lease is being broken F_GETLEASE reports its target type, F_UNLCK.
  return ::fcntl(fd, F_GETLEASE) == F_UNLCK;
}

int LeaseBreakSeconds() {
  std::ifstream in("/proc/sys/fs/lease-break-time");
  int seconds = 45;
  if (!(in >> seconds) || seconds < 0) seconds = 45;
  return seconds;
}

}  // namespace pinbroker::guard
