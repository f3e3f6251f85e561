#include "common/runtime_paths.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/errno_status.h"

namespace pinbroker {

std::string DefaultRuntimeDir() {
  if (geteuid() == 0) return "/run/pinbroker";
  const char* xdg = std::getenv("XDG_RUNTIME_DIR");
  if (xdg != nullptr && *xdg != '\0') return absl::StrCat(xdg, "/pinbroker");
  return absl::StrCat("/tmp/pinbroker-", geteuid());
}

absl::Status CheckPrivateDir(const std::string& dir) {
  struct stat st;
  if (lstat(dir.c_str(), &st) != 0) return ErrnoToStatus(errno, absl::StrCat("lstat ", dir));
  const auto refuse = [&dir](absl::string_view why) {
    return absl::FailedPreconditionError(absl::StrCat(
        "runtime directory ", dir, " ", why,
        "; it must be a directory of your own with mode 0700. Someone else may have made it to "
        "pose as the broker: remove it (or set XDG_RUNTIME_DIR) and start again"));
  };
  if (S_ISLNK(st.st_mode)) return refuse("is a symlink");
  if (!S_ISDIR(st.st_mode)) return refuse("is not a directory");
  if (st.st_uid != geteuid()) {
    return refuse(absl::StrCat("belongs to uid ", st.st_uid, ", not to you (uid ", geteuid(), ")"));
  }
  if ((st.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof(mode), "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return refuse(absl::StrCat("has mode ", mode, " (others may enter it)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> DefaultClientEndpoint() {
  const std::string runtime = DefaultRuntimeDir();
  const std::string own = absl::StrCat(runtime, "/pinbroker.sock");
  struct stat st;
  if (lstat(own.c_str(), &st) == 0) {
    if (geteuid() != 0) {
      if (absl::Status s = CheckPrivateDir(runtime); !s.ok()) return s;
    }
    return absl::StrCat("unix:", own);
  }
  const std::string system = kSystemSocket;
  if (geteuid() != 0 && lstat(system.c_str(), &st) == 0) return absl::StrCat("unix:", system);
  return absl::StrCat("unix:", own);
}

}  // namespace pinbroker
