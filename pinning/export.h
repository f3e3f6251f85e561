// Export: a directory root that the broker may pin files under, with the defaults that apply to
// leases and layout changes on its files.
//
// Paths name files strictly beneath the root: they are resolved with openat2(2)
// RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS against a descriptor of the root held since start-up,
// so no "..", absolute path, symlink or /proc magic link can reach outside it, and renaming the
// root's path later changes nothing. Unless `cross_mounts` is set, resolution also refuses to
// cross a mount point (RESOLVE_NO_XDEV): a filesystem mounted beneath the root (a bind mount of
// some other directory, say) is not part of the export. Only regular files are opened, and device nodes or FIFOs are
// never opened for I/O (they are inspected through O_PATH first).
//
// Thread-safety: immutable after Open(); all methods are safe to call concurrently.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "pinning/file_info.h"
#include "pinning/layout_policy.h"
#include "pinning/lease.h"
#include "common/scoped_fd.h"

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

class Export {
 public:
  // Validates `options` and opens the root. Errors: INVALID_ARGUMENT for a bad name or
  // durations, NOT_FOUND / FAILED_PRECONDITION when the root is missing or not a directory.
  static absl::StatusOr<std::unique_ptr<Export>> Open(ExportOptions options);

  const ExportOptions& options() const { return options_; }
  const std::string& name() const { return options_.name; }
  int root_fd() const { return root_.get(); }

  // Opens `relative_path` beneath the root, read-only or read-write.
  // Errors (nothing stays open on any of them):
  //   INVALID_ARGUMENT   empty, absolute, NUL byte, or too many symlinks
  //   PERMISSION_DENIED  resolves outside the root, write access on a read-only export, EACCES
  //   NOT_FOUND          no such file
  //   FAILED_PRECONDITION not a regular file
  absl::StatusOr<OpenedFile> OpenFile(absl::string_view relative_path, Access access) const;

 private:
  Export(ExportOptions options, ScopedFd root)
      : options_(std::move(options)), root_(std::move(root)) {}

  const ExportOptions options_;
  const ScopedFd root_;
};

}  // namespace pinbroker
