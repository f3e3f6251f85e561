#include "pinning/file_info.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>

#include <cerrno>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "common/errno_status.h"

namespace pinbroker {
namespace {

// Magic numbers <linux/magic.h> does not carry (out-of-tree filesystems) or that older headers
// lack.
constexpr uint64_t kZfsSuperMagic = 0x2fc12fc1;
constexpr uint64_t kGpfsSuperMagic = 0x47504653;
constexpr uint64_t kLustreSuperMagic = 0x0bd00bd0;

}  // namespace

absl::string_view FileTypeName(mode_t mode) {
  switch (mode & S_IFMT) {
    case S_IFREG:
      return "regular file";
    case S_IFDIR:
      return "directory";
    case S_IFIFO:
      return "FIFO";
    case S_IFSOCK:
      return "socket";
    case S_IFCHR:
      return "character device";
    case S_IFBLK:
      return "block device";
    case S_IFLNK:
      return "symlink";
    default:
      return "file of unknown type";
  }
}

std::string FileId::ToString() const {
  return absl::StrCat(major(static_cast<dev_t>(dev)), ":", minor(static_cast<dev_t>(dev)), ":",
                      ino);
}

std::string FilesystemName(uint64_t fs_magic) {
  switch (fs_magic) {
    case TMPFS_MAGIC:
      return "tmpfs";
    case EXT4_SUPER_MAGIC:  // ext2 and ext3 share the magic; the ext4 driver mounts all three.
      return "ext4";
    case XFS_SUPER_MAGIC:
      return "xfs";
    case BTRFS_SUPER_MAGIC:
      return "btrfs";
    case OVERLAYFS_SUPER_MAGIC:
      return "overlayfs";
    case NFS_SUPER_MAGIC:
      return "nfs";
    case HUGETLBFS_MAGIC:
      return "hugetlbfs";
    case RAMFS_MAGIC:
      return "ramfs";
    case F2FS_SUPER_MAGIC:
      return "f2fs";
    case kZfsSuperMagic:
      return "zfs";
    case FUSE_SUPER_MAGIC:  // Also virtiofs.
      return "fuse";
    case CEPH_SUPER_MAGIC:
      return "ceph";
    case CIFS_SUPER_MAGIC:
    case SMB2_SUPER_MAGIC:
      return "cifs";
    case V9FS_MAGIC:
      return "9p";
    case EROFS_SUPER_MAGIC_V1:
      return "erofs";
    case SQUASHFS_MAGIC:
      return "squashfs";
    case EXFAT_SUPER_MAGIC:
      return "exfat";
    case MSDOS_SUPER_MAGIC:
      return "vfat";
    case OCFS2_SUPER_MAGIC:
      return "ocfs2";
    case kGpfsSuperMagic:
      return "gpfs";
    case kLustreSuperMagic:
      return "lustre";
    case PROC_SUPER_MAGIC:
      return "proc";
    case SYSFS_MAGIC:
      return "sysfs";
    default:
      return absl::StrFormat("0x%x", fs_magic);
  }
}

absl::StatusOr<FileInfo> InspectFile(int fd) {
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    return ErrnoToStatus(errno, absl::StrCat("fstat(fd ", fd, ")"));
  }
  if (!S_ISREG(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat("fd ", fd, " is a ", FileTypeName(st.st_mode),
                     ", not a regular file; only regular files can be pinned"));
  }

  FileInfo info;
  info.id =
      FileId{.dev = static_cast<uint64_t>(st.st_dev), .ino = static_cast<uint64_t>(st.st_ino)};
  info.size = static_cast<uint64_t>(st.st_size);

  // DAX is only visible through statx (Linux >= 5.8 reports STATX_ATTR_DAX). The attribute counts
  // only if the filesystem says it knows about it (attributes_mask) and sets it. A kernel without
  // statx (< 4.11) cannot report DAX at all, so the file is treated as not DAX.
  struct statx stx;
  if (::statx(fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS, &stx) == 0) {
    info.dax = (stx.stx_attributes_mask & STATX_ATTR_DAX) != 0 &&
               (stx.stx_attributes & STATX_ATTR_DAX) != 0;
  } else if (errno != ENOSYS) {
    return ErrnoToStatus(errno, absl::StrCat("statx(fd ", fd, ", AT_EMPTY_PATH)"));
  }

  struct statfs sfs;
  if (::fstatfs(fd, &sfs) != 0) {
    return ErrnoToStatus(errno, absl::StrCat("fstatfs(fd ", fd, ")"));
  }
  // f_type is a signed word and magics are 32-bit: where the word is 32 bits, magics with the top
  // bit set (CIFS's, SMB2's) must not sign-extend into the 64-bit fs_magic.
  info.fs_magic = static_cast<uint64_t>(static_cast<uint32_t>(sfs.f_type));
  info.fs_type = FilesystemName(info.fs_magic);
  return info;
}

}  // namespace pinbroker
