// Export: a directory root that the broker may pin files under, with the defaults that apply to
// leases and layout changes on its files.
//
// Paths name files strictly beneath the root: they are resolved with openat2(2)
// RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS against a descriptor of the root held since start-up,
// so no "..", absolute path, symlink or /proc magic link can reach outside it, and renaming the
// root's path later changes nothing. Unless `cross_mounts` is set, resolution also refuses to
// cross a mount point (RESOLVE_NO_XDEV): a filesystem mounted beneath the root (a bind mount of
// some other directory, say) is not part of the export. Only regular files are opened, and device
// nodes or FIFOs are never opened for I/O (they are inspected through O_PATH first).
//
// Thread-safety: immutable after Open(); all methods are safe to call concurrently.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/scoped_fd.h"
#include "pinning/file_info.h"
#include "pinning/layout_policy.h"
#include "pinning/lease.h"

namespace pinbroker {

struct ExportOptions {
  std::string name;  // [A-Za-z0-9._-]{1,64}
  std::string root;  // An existing directory.
  LayoutPolicy default_policy = LayoutPolicy::kRevoke;
  // Revoke: how long holders get between the recall and the invalidation.
  absl::Duration grace = absl::Seconds(5);
  // Defer: how long a layout change may wait for leases to drain.
  absl::Duration layout_timeout = absl::Seconds(30);
  absl::Duration default_ttl = absl::Seconds(60);
  absl::Duration max_ttl = absl::Minutes(10);
  bool read_only = false;
  bool cross_mounts = false;  // Paths may cross mount points beneath the root.
};

// A regular file opened beneath an export.
struct OpenedFile {
  ScopedFd fd;
  FileInfo info;
  std::string path;  // Relative path as given.
  Access access = Access::kRead;
};

// A path resolved beneath an export and not opened for I/O (Export::Resolve).
struct ResolvedFile {
  ScopedFd path_fd;  // O_PATH.
  FileId id;
  std::string path;  // Relative path as given.
  Access access = Access::kRead;
};

class Export {
 public:
  // Validates `options` and opens the root. Errors: INVALID_ARGUMENT for a bad name or
  // durations, NOT_FOUND / FAILED_PRECONDITION when the root is missing or not a directory.
  static absl::StatusOr<std::unique_ptr<Export>> Open(ExportOptions options);

  const ExportOptions& options() const { return options_; }
  const std::string& name() const { return options_.name; }
  int root_fd() const { return root_.get(); }

  // Opens `relative_path` beneath the root, read-only or read-write: Resolve(), then Open().
  // Errors (nothing stays open on any of them):
  //   INVALID_ARGUMENT   empty, absolute, NUL byte, or too many symlinks
  //   PERMISSION_DENIED  resolves outside the root, write access on a read-only export, EACCES
  //   NOT_FOUND          no such file
  //   FAILED_PRECONDITION not a regular file
  absl::StatusOr<OpenedFile> OpenFile(absl::string_view relative_path, Access access) const;

  // The two steps of OpenFile, for a caller that may already hold a descriptor of the file.
  // Resolve: the path resolved beneath the root (an O_PATH descriptor: nothing is opened for
  // I/O, so no open(2) permission check or fanotify permission event happens), with the same
  // errors as OpenFile save EACCES on the file itself (search permission on its directories is
  // checked). Open: opens the resolved file for I/O by the same path; ABORTED if the path names
  // another file by now.
  absl::StatusOr<ResolvedFile> Resolve(absl::string_view relative_path, Access access) const;
  absl::StatusOr<OpenedFile> Open(const ResolvedFile& resolved) const;
  // Whether this thread's filesystem credentials may open the resolved file with its access,
  // as the kernel judges it now (faccessat2(2) on the inode, and may_open()'s append-only
  // rule): OK, or OpenFile's PERMISSION_DENIED. UNIMPLEMENTED without faccessat2 (Linux < 5.8).
  absl::Status CheckAccess(const ResolvedFile& resolved) const;

 private:
  // The error of an openat2 (or access check) of `path` that failed with `err`; `for_io` is
  // the I/O open (or the access check), not the O_PATH resolution.
  absl::Status OpenError(const std::string& path, bool write, int err, bool for_io) const;

  Export(ExportOptions options, ScopedFd root)
      : options_(std::move(options)), root_(std::move(root)) {}

  const ExportOptions options_;
  const ScopedFd root_;
};

}  // namespace pinbroker
