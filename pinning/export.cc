#include "pinning/export.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/errno_status.h"
#include "common/status_macros.h"

namespace pinbroker {
namespace {

constexpr size_t kMaxExportNameLength = 64;

// Every path is resolved with these: no "..", absolute path or symlink may leave the root, and no
// /proc magic link (which could name any open file) is followed.
constexpr uint64_t kResolveFlags = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;

// 'text' with non-printable bytes (a NUL, an escape sequence) escaped, for messages and logs.
std::string Quote(absl::string_view text) { return absl::StrCat("'", absl::CHexEscape(text), "'"); }

bool IsExportNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-';
}

absl::Status ValidateName(absl::string_view name) {
  bool ok = !name.empty() && name.size() <= kMaxExportNameLength;
  for (char c : name) ok = ok && IsExportNameChar(c);
  if (ok) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("export name ", Quote(name),
                                                 " is invalid: use 1 to ", kMaxExportNameLength,
                                                 " characters from [A-Za-z0-9._-]"));
}

absl::Status ValidateDurations(const ExportOptions& o) {
  const auto bad = [&o](absl::string_view field, absl::Duration value, absl::string_view rule) {
    return absl::InvalidArgumentError(absl::StrCat("export ", Quote(o.name), ": ", field, " is ",
                                                   absl::FormatDuration(value), "; it must be ",
                                                   rule));
  };
  // Every duration ends up as a timer deadline; an infinite one would hold pins forever.
  const std::pair<absl::string_view, absl::Duration> all[] = {{"grace", o.grace},
                                                              {"layout_timeout", o.layout_timeout},
                                                              {"default_ttl", o.default_ttl},
                                                              {"max_ttl", o.max_ttl}};
  for (const auto& [field, value] : all) {
    if (value == absl::InfiniteDuration() || value == -absl::InfiniteDuration()) {
      return bad(field, value, "finite");
    }
  }
  if (o.grace < absl::ZeroDuration()) return bad("grace", o.grace, ">= 0");
  if (o.layout_timeout <= absl::ZeroDuration()) {
    return bad("layout_timeout", o.layout_timeout, "> 0");
  }
  if (o.default_ttl <= absl::ZeroDuration()) return bad("default_ttl", o.default_ttl, "> 0");
  if (o.max_ttl < o.default_ttl) {
    return bad("max_ttl", o.max_ttl,
               absl::StrCat(">= default_ttl (", absl::FormatDuration(o.default_ttl), ")"));
  }
  return absl::OkStatus();
}

// openat2(2) beneath `root_fd` with kResolveFlags (and RESOLVE_NO_XDEV unless mounts may be
// crossed); the new descriptor, or -1 with errno set.
int OpenBeneath(int root_fd, const std::string& path, uint64_t flags, bool cross_mounts) {
  struct open_how how = {};
  how.flags = flags;
  how.resolve = kResolveFlags | (cross_mounts ? 0 : RESOLVE_NO_XDEV);
  long fd;
  do {
    fd = ::syscall(SYS_openat2, root_fd, path.c_str(), &how, sizeof(how));
  } while (fd < 0 && errno == EINTR);
  return static_cast<int>(fd);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Export>> Export::Open(ExportOptions options) {
  RETURN_IF_ERROR(ValidateName(options.name));
  RETURN_IF_ERROR(ValidateDurations(options));
  const std::string export_name = Quote(options.name);
  if (options.root.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("export ", export_name, ": root is empty; set it to an existing directory"));
  }
  if (options.root.find('\0') != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("export ", export_name, ": root ",
                                                   Quote(options.root), " contains a NUL byte"));
  }

  ScopedFd root(::open(options.root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!root.valid()) {
    const int err = errno;
    const std::string where = absl::StrCat("export ", export_name, ": root ", Quote(options.root));
    switch (err) {
      case ENOENT:
        return absl::NotFoundError(
            absl::StrCat(where, " does not exist; create it or fix the export's root"));
      case ENOTDIR:
        return absl::FailedPreconditionError(
            absl::StrCat(where,
                         " is not a directory (or a component of it is not); an export "
                         "root must be a directory"));
      case EACCES:
        return absl::PermissionDeniedError(absl::StrCat(
            where,
            " cannot be reached: search permission denied on a component of it; grant the "
            "broker's user access"));
      default:
        return ErrnoToStatus(err, absl::StrCat("opening ", where));
    }
  }
  return std::unique_ptr<Export>(new Export(std::move(options), std::move(root)));
}

absl::Status Export::OpenError(const std::string& path, bool write, int err, bool for_io) const {
  const std::string export_name = Quote(name());
  const std::string file = absl::StrCat("file ", Quote(path), " in export ", export_name);
  switch (err) {
    case EXDEV:
      return absl::PermissionDeniedError(absl::StrCat(
          "path ", Quote(path), " resolves outside export ", export_name,
          " (via '..', an absolute symlink or a symlink leaving the root), or crosses a mount "
          "point beneath it (allowed only with the export's cross_mounts); name a file "
          "beneath the export root on its filesystem"));
    case ELOOP:
      return absl::InvalidArgumentError(absl::StrCat(
          "path ", Quote(path), " in export ", export_name,
          " has too many levels of symlinks or crosses a /proc magic link; name the file "
          "without them"));
    case ENOENT:
      return absl::NotFoundError(absl::StrCat("no file ", Quote(path), " in export ", export_name));
    case ENOTDIR:
      return absl::NotFoundError(absl::StrCat("no file ", Quote(path), " in export ", export_name,
                                              ": a component of the path is not a directory"));
    case ENAMETOOLONG:
      return absl::InvalidArgumentError(
          absl::StrCat("path ", Quote(path), " in export ", export_name, " is too long"));
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(absl::StrCat(
          "permission denied opening ", file, write ? " read-write" : " read-only",
          ": check the mode, owner and ACLs of the file and of its directories against the "
          "caller's user and groups"));
    case EROFS:
      return absl::PermissionDeniedError(
          absl::StrCat(file,
                       " is on a read-only filesystem; request read access or mark the "
                       "export read_only"));
    case EAGAIN:
      // The O_PATH open: a concurrent rename or mount raced a ".." (RESOLVE_BENEATH cannot
      // prove it stayed beneath). The I/O open: also O_NONBLOCK meeting a file lease.
      return for_io ? absl::UnavailableError(
                          absl::StrCat(file,
                                       " is busy (another process holds a file lease on it, or a "
                                       "concurrent rename raced path resolution); retry"))
                    : absl::AbortedError(
                          absl::StrCat("a concurrent rename or mount raced resolving ", Quote(path),
                                       " in export ", export_name, "; retry"));
    case ENOSYS:
      return absl::FailedPreconditionError(
          "openat2(2) is not available (or is blocked by a seccomp filter); pinbroker needs "
          "Linux >= 5.6 to open files safely beneath an export root");
    default:
      return ErrnoToStatus(err, absl::StrCat("openat2 of ", file, for_io ? " for I/O" : ""));
  }
}

absl::StatusOr<ResolvedFile> Export::Resolve(absl::string_view relative_path, Access access) const {
  const std::string export_name = Quote(name());
  if (relative_path.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("empty path in export ", export_name,
                                                   ": path must be relative to the export root"));
  }
  if (relative_path.find('\0') != absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat("path ", Quote(relative_path),
                                                   " contains a NUL byte; path must be relative "
                                                   "to the export root of export ",
                                                   export_name));
  }
  if (relative_path.front() == '/') {
    return absl::InvalidArgumentError(absl::StrCat("path ", Quote(relative_path), " is absolute",
                                                   "; path must be relative to the export root "
                                                   "of export ",
                                                   export_name));
  }
  const bool write = access == Access::kReadWrite;
  if (write && options_.read_only) {
    return absl::PermissionDeniedError(absl::StrCat(
        "export ", export_name, " is read-only; request read access to ", Quote(relative_path)));
  }

  const std::string path(relative_path);
  const std::string file = absl::StrCat("file ", Quote(path), " in export ", export_name);
  // O_PATH: resolves the path and names the inode without opening it for I/O, so FIFOs,
  // devices and sockets are inspected but never opened.
  ScopedFd path_fd(OpenBeneath(root_.get(), path, O_PATH | O_CLOEXEC, options_.cross_mounts));
  if (!path_fd.valid()) return OpenError(path, write, errno, /*for_io=*/false);
  struct stat path_st;
  if (::fstat(path_fd.get(), &path_st) != 0) {
    return ErrnoToStatus(errno, absl::StrCat("fstat of ", file));
  }
  if (!S_ISREG(path_st.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat(file, " is a ", FileTypeName(path_st.st_mode),
                                                      ", not a regular file; only regular files "
                                                      "can be pinned"));
  }
  ResolvedFile resolved;
  resolved.path_fd = std::move(path_fd);
  resolved.id = FileId{.dev = static_cast<uint64_t>(path_st.st_dev),
                       .ino = static_cast<uint64_t>(path_st.st_ino)};
  resolved.path = path;
  resolved.access = access;
  return resolved;
}

absl::Status Export::CheckAccess(const ResolvedFile& resolved) const {
  const bool write = resolved.access == Access::kReadWrite;
  // What open(2) with O_RDONLY / O_RDWR would ask of the inode: inode_permission() with
  // MAY_READ (| MAY_WRITE), which also refuses writes to an immutable file or a read-only
  // mount; and may_open()'s rule that an append-only file opens for writing only with O_APPEND.
  const int mode = write ? R_OK | W_OK : R_OK;
  if (::syscall(SYS_faccessat2, resolved.path_fd.get(), "", mode, AT_EMPTY_PATH | AT_EACCESS) !=
      0) {
    if (errno == ENOSYS) {
      return absl::UnimplementedError("faccessat2(2) is not available (Linux < 5.8)");
    }
    return OpenError(resolved.path, write, errno, /*for_io=*/true);
  }
  if (write) {
    struct statx stx;
    if (::statx(resolved.path_fd.get(), "", AT_EMPTY_PATH, STATX_BASIC_STATS, &stx) != 0) {
      return ErrnoToStatus(errno, absl::StrCat("statx of ", Quote(resolved.path)));
    }
    if ((stx.stx_attributes & STATX_ATTR_APPEND) != 0) {
      return OpenError(resolved.path, write, EPERM, /*for_io=*/true);
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<OpenedFile> Export::OpenFile(absl::string_view relative_path, Access access) const {
  ASSIGN_OR_RETURN(ResolvedFile resolved, Resolve(relative_path, access));
  return Open(resolved);
}

absl::StatusOr<OpenedFile> Export::Open(const ResolvedFile& resolved) const {
  const std::string& path = resolved.path;
  const bool write = resolved.access == Access::kReadWrite;
  const std::string file = absl::StrCat("file ", Quote(path), " in export ", Quote(name()));
  // Open for I/O by the same path and resolution rules. Since Resolve() the path could have been
  // renamed to another file, even a FIFO or a device: O_NONBLOCK keeps a FIFO from blocking and
  // O_NOCTTY keeps a terminal from becoming ours, and the identity check below refuses (and
  // closes) anything that is not the inode resolved. A device node swapped in within that
  // window is still opened once before being refused; that takes someone able to create or
  // hard-link device nodes inside the export.
  ScopedFd fd(OpenBeneath(root_.get(), path,
                          (write ? O_RDWR : O_RDONLY) | O_CLOEXEC | O_NOCTTY | O_NONBLOCK,
                          options_.cross_mounts));
  if (!fd.valid()) return OpenError(path, write, errno, /*for_io=*/true);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) {
    return ErrnoToStatus(errno, absl::StrCat("fstat of ", file));
  }
  if (static_cast<uint64_t>(st.st_dev) != resolved.id.dev ||
      static_cast<uint64_t>(st.st_ino) != resolved.id.ino) {
    return absl::AbortedError(absl::StrCat(file, " was replaced while opening; retry"));
  }
  const int fl = ::fcntl(fd.get(), F_GETFL);
  if (fl < 0) return ErrnoToStatus(errno, absl::StrCat("fcntl(F_GETFL) on ", file));
  if (::fcntl(fd.get(), F_SETFL, fl & ~O_NONBLOCK) != 0) {
    return ErrnoToStatus(errno, absl::StrCat("fcntl(F_SETFL) clearing O_NONBLOCK on ", file));
  }

  ASSIGN_OR_RETURN(FileInfo info, InspectFile(fd.get()));
  OpenedFile opened;
  opened.fd = std::move(fd);
  opened.info = std::move(info);
  opened.path = path;
  opened.access = resolved.access;
  return opened;
}

}  // namespace pinbroker
