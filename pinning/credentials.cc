#include "pinning/credentials.h"

#include <sys/fsuid.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/log.h"

namespace pinbroker {
namespace {

// The calling thread's supplementary groups (getgroups(2) reads the thread's own).
std::vector<gid_t> ThreadGroups() {
  const int n = ::getgroups(0, nullptr);
  std::vector<gid_t> groups(n > 0 ? static_cast<size_t>(n) : 0);
  if (n > 0) {
    const int got = ::getgroups(n, groups.data());
    groups.resize(got > 0 ? static_cast<size_t>(got) : 0);
  }
  return groups;
}

// The raw system call: this thread only (see the header).
int SetThreadGroups(const std::vector<gid_t>& groups) {
  return static_cast<int>(::syscall(SYS_setgroups, groups.size(), groups.data()));
}

std::vector<gid_t> Sorted(std::vector<gid_t> groups) {
  std::sort(groups.begin(), groups.end());
  groups.erase(std::unique(groups.begin(), groups.end()), groups.end());
  return groups;
}

// setfsuid/setfsgid report no errors: they return the previous value whether or not they
// changed it. Asking with an invalid id (-1) returns the current one without changing it.
uid_t CurrentFsUid() { return static_cast<uid_t>(::setfsuid(static_cast<uid_t>(-1))); }
gid_t CurrentFsGid() { return static_cast<gid_t>(::setfsgid(static_cast<gid_t>(-1))); }

}  // namespace

std::string UnixCredentials::Describe() const {
  return absl::StrCat("uid ", uid, " gid ", gid, " groups ",
                      groups.empty() ? "-" : absl::StrJoin(groups, ","));
}

UnixCredentials NobodyCredentials() {
  UnixCredentials nobody;
  nobody.uid = 65534;
  nobody.gid = 65534;
  return nobody;
}

ScopedFsCredentials::ScopedFsCredentials(const UnixCredentials& credentials) {
  saved_uid_ = CurrentFsUid();
  saved_gid_ = CurrentFsGid();
  saved_groups_ = ThreadGroups();
  if (saved_uid_ == credentials.uid && saved_gid_ == credentials.gid &&
      Sorted(saved_groups_) == Sorted(credentials.groups)) {
    return;  // Already acting as the caller (e.g. a non-root broker serving its own user).
  }
  changed_ = true;
  const auto refuse = [&](absl::string_view what) {
    Restore();
    changed_ = false;
    groups_changed_ = false;
    status_ = absl::PermissionDeniedError(absl::StrCat(
        "the broker (uid ", ::geteuid(), ") cannot act with the caller's credentials (",
        credentials.Describe(), "): ", what,
        "; run the broker as root, or connect as the broker's own user"));
  };
  // Groups first: setgroups needs CAP_SETGID, which an fsuid change does not drop, but doing it
  // while still privileged keeps the order obvious.
  if (SetThreadGroups(credentials.groups) != 0) {
    refuse(absl::StrCat("setgroups failed: ", std::strerror(errno)));
    return;
  }
  groups_changed_ = true;
  ::setfsgid(credentials.gid);
  if (CurrentFsGid() != credentials.gid) {
    refuse("setfsgid was refused (no CAP_SETGID)");
    return;
  }
  ::setfsuid(credentials.uid);
  if (CurrentFsUid() != credentials.uid) {
    refuse("setfsuid was refused (no CAP_SETUID)");
    return;
  }
}

ScopedFsCredentials::~ScopedFsCredentials() {
  if (changed_) Restore();
}

void ScopedFsCredentials::Restore() {
  // Uid first: back to fsuid 0 restores the filesystem capabilities needed for nothing below,
  // but CAP_SETGID (never dropped) is what the other two need.
  ::setfsuid(saved_uid_);
  ::setfsgid(saved_gid_);
  const int groups_rc = groups_changed_ ? SetThreadGroups(saved_groups_) : 0;
  if (CurrentFsUid() != saved_uid_ || CurrentFsGid() != saved_gid_ || groups_rc != 0) {
    PB_LOG(ERROR) << "could not restore the thread's filesystem credentials (fsuid "
                  << CurrentFsUid() << ", wanted " << saved_uid_ << "); aborting rather than "
                  << "serving later calls with a caller's identity";
    std::abort();
  }
}

}  // namespace pinbroker
