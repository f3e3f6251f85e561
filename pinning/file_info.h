// FileId and FileInfo: how pinbroker identifies a file and what it knows about it.
//
// A file is identified by (device, inode), never by path: two paths naming the same inode share
// one busy-range map. Value types; thread-compatible.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace pinbroker {

struct FileId {
  uint64_t dev = 0;
  uint64_t ino = 0;

  friend bool operator==(const FileId&, const FileId&) = default;
  friend auto operator<=>(const FileId&, const FileId&) = default;
  template <typename H>
  friend H AbslHashValue(H h, const FileId& id) {
    return H::combine(std::move(h), id.dev, id.ino);
  }
  // "major:minor:inode", as in /proc/locks.
  std::string ToString() const;
};

struct FileInfo {
  FileId id;
  uint64_t size = 0;
  // statx reports STATX_ATTR_DAX: loads and stores reach the medium without the page cache, so
  // a pinned page *is* a filesystem block.
  bool dax = false;
  // Filesystem magic from fstatfs (TMPFS_MAGIC, EXT4_SUPER_MAGIC, ...) and its common name.
  uint64_t fs_magic = 0;
  std::string fs_type;
};

// Describes the open regular file `fd`: identity and size (fstat), DAX (statx), filesystem
// (fstatfs). Errors: the errno of the failing call as an absl::Status with the call named.
absl::StatusOr<FileInfo> InspectFile(int fd);

// "regular file", "directory", "FIFO", "socket", ... for a st_mode, in error messages.
absl::string_view FileTypeName(mode_t mode);

// "tmpfs", "ext4", "xfs", ... for a statfs f_type; "0x<hex>" when unknown.
std::string FilesystemName(uint64_t fs_magic);

}  // namespace pinbroker
