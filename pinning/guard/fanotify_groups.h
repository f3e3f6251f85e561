// fanotify groups of the file guard.
//
// PermissionGroup: a FAN_CLASS_PRE_CONTENT group with permission marks on the inodes of leased
// files. The kernel holds each caller until the guard answers its event; with FAN_REPORT_TID the
// event names the caller's thread. Two kinds of mark:
//   - FAN_OPEN_PERM (every kernel with CONFIG_FANOTIFY_ACCESS_PERMISSIONS, every filesystem,
//     tmpfs included): any open(2) of the file, raised before the open breaks a file lease and
//     before O_TRUNC truncates;
//   - FAN_PRE_ACCESS (Linux >= 6.14; ext4, xfs and their DAX modes; not tmpfs): truncate,
//     ftruncate, fallocate, read, write and mmap, with the byte range.
// Each event comes with a read-only descriptor of the file opened by the kernel with
// FMODE_NONOTIFY, so the guard may fstat it without raising events; closing the group answers
// every pending event with "allow" and drops every mark.
//
// NotifyGroup: a notification group with FAN_REPORT_FID and FAN_ATTRIB | FAN_MODIFY |
// FAN_DELETE_SELF marks: an unlink (link count change), a write, truncate or punch that has
// happened. It opens no descriptors; events name the file by (fsid, file handle).
//
// Thread-safety: Mark/Unmark/ReadEvents/answers may run concurrently (each is one system call
// on the group descriptor); the group must outlive every call.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/scoped_fd.h"

namespace pinbroker::guard {

class PermissionGroup {
 public:
  // PERMISSION_DENIED without CAP_SYS_ADMIN; UNIMPLEMENTED if the kernel has no fanotify.
  static absl::StatusOr<std::unique_ptr<PermissionGroup>> Open();

  int fd() const { return fd_.get(); }

  // Marks the inode of `file_fd` for FAN_OPEN_PERM, plus FAN_PRE_ACCESS if `pre_content`.
  // UNIMPLEMENTED: this kernel has no pre-content events (< 6.14: EINVAL); FAILED_PRECONDITION:
  // the filesystem does not offer them (EOPNOTSUPP: tmpfs and others). Nothing is marked then.
  absl::Status Mark(int file_fd, bool pre_content);
  void Unmark(int file_fd);

  struct Event {
    ScopedFd fd;    // The kernel's descriptor of the file; answer, then close it.
    pid_t tid = 0;  // The caller's thread; 0 if outside the broker's pid namespace.
    uint64_t mask = 0;
    bool has_range = false;
    uint64_t offset = 0;
    uint64_t count = 0;
  };
  // Every queued event, without blocking (empty if none).
  absl::StatusOr<std::vector<Event>> ReadEvents();

  // Answers the permission event whose descriptor is `event_fd`.
  absl::Status Allow(int event_fd);
  // Fails the caller with `err` (FAN_DENY_ERRNO), or with EPERM on kernels older than 6.14,
  // which accept no errno (FAN_DENY). Returns the errno the caller gets.
  absl::StatusOr<int> Deny(int event_fd, int err);

 private:
  explicit PermissionGroup(ScopedFd fd) : fd_(std::move(fd)) {}
  absl::Status Respond(int event_fd, uint32_t response);
  ScopedFd fd_;
  std::atomic<bool> errno_responses_{true};  // Cleared once the kernel refuses them.
};

class NotifyGroup {
 public:
  static absl::StatusOr<std::unique_ptr<NotifyGroup>> Open();

  int fd() const { return fd_.get(); }

  // FAILED_PRECONDITION if the filesystem cannot report file handles (older tmpfs).
  absl::Status Mark(int file_fd);
  void Unmark(int file_fd);

  struct Event {
    uint64_t mask = 0;
    std::string key;  // KeyOf() of the file; empty for FAN_Q_OVERFLOW.
  };
  absl::StatusOr<std::vector<Event>> ReadEvents();

  // (fsid, handle type, handle bytes) of the file open as `fd`, as events report it.
  static absl::StatusOr<std::string> KeyOf(int fd);

 private:
  explicit NotifyGroup(ScopedFd fd) : fd_(std::move(fd)) {}
  ScopedFd fd_;
};

}  // namespace pinbroker::guard
