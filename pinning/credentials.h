// Credentials: whose filesystem permissions an open is judged by.
//
// The broker runs as root, but a caller may do through it only what it could do to the file
// itself. So the engine opens files for a caller with the caller's uid, gid and supplementary
// groups in force on the opening thread: ScopedFsCredentials sets the thread's fsuid and fsgid
// (setfsuid(2)/setfsgid(2)) and its supplementary groups with the raw setgroups system call,
// and restores all three when it goes out of scope. With an fsuid other than 0 the kernel drops
// CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER and the other filesystem capabilities from
// the thread's effective set (capabilities(7)), so mode bits, ownership, ACLs and search
// permission on every directory on the way are the kernel's decision, not a re-implementation.
//
// glibc's setgroups(3) changes every thread of the process (it broadcasts the change to all of
// them, like setuid(3)); the raw system call changes only the calling thread, which is what a
// per-call scope needs. setfsuid/setfsgid are per-thread in glibc already.
//
// Thread-safety: a ScopedFsCredentials affects only the thread that made it and must be
// destroyed on that thread, in reverse order of nesting. UnixCredentials is a value type.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/status.h"

namespace pinbroker {

struct UnixCredentials {
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;  // Supplementary groups (may include gid).

  // "uid 1001 gid 1001 groups 1001,27".
  std::string Describe() const;
  friend bool operator==(const UnixCredentials&, const UnixCredentials&) = default;
};

// The credentials of anybody the broker cannot name: nobody/nogroup, no supplementary groups.
UnixCredentials NobodyCredentials();

class ScopedFsCredentials {
 public:
  // Takes on `credentials` for filesystem access on this thread. When the thread already has
  // them (the broker's own user calling) nothing changes. status() is PERMISSION_DENIED when
  // the broker may not take them on (it lacks CAP_SETUID/CAP_SETGID: a non-root broker serving
  // another user); the thread's credentials are then unchanged.
  explicit ScopedFsCredentials(const UnixCredentials& credentials);
  // Restores the thread's previous fsuid, fsgid and groups. A failure to restore is a broken
  // invariant (the thread would keep a caller's identity) and aborts the process.
  ~ScopedFsCredentials();
  ScopedFsCredentials(const ScopedFsCredentials&) = delete;
  ScopedFsCredentials& operator=(const ScopedFsCredentials&) = delete;

  const absl::Status& status() const { return status_; }

 private:
  void Restore();

  absl::Status status_;
  bool changed_ = false;
  bool groups_changed_ = false;
  uid_t saved_uid_ = 0;
  gid_t saved_gid_ = 0;
  std::vector<gid_t> saved_groups_;
};

}  // namespace pinbroker
