#include "pinning/file_info.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "common/errno_status.h"
#include "common/scoped_fd.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace pinbroker {
namespace {

using ::pinbroker::testing::StatusIs;
using ::pinbroker::testing::TempDir;
using ::testing::AllOf;
using ::testing::HasSubstr;

ScopedFd OpenOrDie(const std::string& path, int flags = O_RDONLY | O_CLOEXEC) {
  ScopedFd fd(::open(path.c_str(), flags));
  EXPECT_TRUE(fd.valid()) << "open " << path << ": " << ErrnoDescription(errno);
  return fd;
}

TEST(InspectFileTest, ReportsSize) {
  TempDir dir;
  dir.WriteFile("f", std::string(12345, 'x'));
  ScopedFd fd = OpenOrDie(dir.Join("f"));
  ASSERT_OK_AND_ASSIGN(FileInfo info, InspectFile(fd.get()));
  EXPECT_EQ(info.size, 12345u);
}

TEST(InspectFileTest, ReportsSizeZeroForEmptyFile) {
  TempDir dir;
  dir.WriteFile("empty", "");
  ScopedFd fd = OpenOrDie(dir.Join("empty"));
  ASSERT_OK_AND_ASSIGN(FileInfo info, InspectFile(fd.get()));
  EXPECT_EQ(info.size, 0u);
}

TEST(InspectFileTest, FileIdMatchesStat) {
  TempDir dir;
  dir.WriteFile("f", "abc");
  struct stat st;
  ASSERT_EQ(::stat(dir.Join("f").c_str(), &st), 0);
  ScopedFd fd = OpenOrDie(dir.Join("f"));
  ASSERT_OK_AND_ASSIGN(FileInfo info, InspectFile(fd.get()));
  EXPECT_EQ(info.id.dev, static_cast<uint64_t>(st.st_dev));
  EXPECT_EQ(info.id.ino, static_cast<uint64_t>(st.st_ino));
}

TEST(InspectFileTest, WorksOnOPathDescriptor) {
  TempDir dir;
  dir.WriteFile("f", "abc");
  ScopedFd fd = OpenOrDie(dir.Join("f"), O_PATH | O_CLOEXEC);
  ASSERT_OK_AND_ASSIGN(FileInfo info, InspectFile(fd.get()));
  EXPECT_EQ(info.size, 3u);
}

TEST(InspectFileTest, ReportsFilesystemOfTheFile) {
  TempDir dir;
  dir.WriteFile("f", "abc");
  struct statfs sfs;
  ASSERT_EQ(::statfs(dir.path().c_str(), &sfs), 0);
  ScopedFd fd = OpenOrDie(dir.Join("f"));
  ASSERT_OK_AND_ASSIGN(FileInfo info, InspectFile(fd.get()));
  EXPECT_EQ(info.fs_magic, static_cast<uint64_t>(static_cast<uint32_t>(sfs.f_type)));
  EXPECT_EQ(info.fs_type, FilesystemName(info.fs_magic));
}

TEST(InspectFileTest, DetectsTmpfsOnDevShm) {
  struct statfs sfs;
  if (::statfs("/dev/shm", &sfs) != 0 || static_cast<uint32_t>(sfs.f_type) != TMPFS_MAGIC) {
    GTEST_SKIP() << "/dev/shm is missing or not tmpfs on this host";
  }
  TempDir dir("/dev/shm");
  dir.WriteFile("f", "abc");
  ScopedFd fd = OpenOrDie(dir.Join("f"));
  ASSERT_OK_AND_ASSIGN(FileInfo info, InspectFile(fd.get()));
  EXPECT_EQ(info.fs_magic, static_cast<uint64_t>(TMPFS_MAGIC));
  EXPECT_EQ(info.fs_type, "tmpfs");
}

TEST(InspectFileTest, TmpfsFileIsNotDax) {
  struct statfs sfs;
  if (::statfs("/dev/shm", &sfs) != 0 || static_cast<uint32_t>(sfs.f_type) != TMPFS_MAGIC) {
    GTEST_SKIP() << "/dev/shm is missing or not tmpfs on this host";
  }
  TempDir dir("/dev/shm");
  dir.WriteFile("f", "abc");
  ScopedFd fd = OpenOrDie(dir.Join("f"));
  ASSERT_OK_AND_ASSIGN(FileInfo info, InspectFile(fd.get()));
  EXPECT_FALSE(info.dax);
}

TEST(InspectFileTest, DirectoryIsFailedPrecondition) {
  TempDir dir;
  ScopedFd fd = OpenOrDie(dir.path(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  EXPECT_THAT(InspectFile(fd.get()),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("directory"), HasSubstr("not a regular file"))));
}

TEST(InspectFileTest, InvalidDescriptorNamesTheFailingCall) {
  const absl::StatusOr<FileInfo> info = InspectFile(-1);
  ASSERT_FALSE(info.ok());
  EXPECT_THAT(std::string(info.status().message()),
              AllOf(HasSubstr("fstat(fd -1)"), HasSubstr("EBADF")));
}

TEST(FileIdTest, ToStringIsMajorMinorInode) {
  const FileId id{.dev = makedev(259, 3), .ino = 123456};
  EXPECT_EQ(id.ToString(), "259:3:123456");
}

TEST(FileIdTest, ToStringHandlesLargeMinorNumbers) {
  const FileId id{.dev = makedev(0, 1048575), .ino = 7};
  EXPECT_EQ(id.ToString(), "0:1048575:7");
}

TEST(FilesystemNameTest, NamesCommonFilesystems) {
  const std::pair<uint64_t, std::string> kKnown[] = {
      {TMPFS_MAGIC, "tmpfs"},
      {EXT4_SUPER_MAGIC, "ext4"},
      {XFS_SUPER_MAGIC, "xfs"},
      {BTRFS_SUPER_MAGIC, "btrfs"},
      {OVERLAYFS_SUPER_MAGIC, "overlayfs"},
      {NFS_SUPER_MAGIC, "nfs"},
      {HUGETLBFS_MAGIC, "hugetlbfs"},
      {RAMFS_MAGIC, "ramfs"},
      {F2FS_SUPER_MAGIC, "f2fs"},
      {0x2fc12fc1, "zfs"},
      {FUSE_SUPER_MAGIC, "fuse"},
  };
  for (const auto& [magic, name] : kKnown) {
    EXPECT_EQ(FilesystemName(magic), name) << absl::StrCat(absl::Hex(magic));
  }
}

TEST(FilesystemNameTest, UnknownMagicIsHex) {
  EXPECT_EQ(FilesystemName(0x12345678), "0x12345678");
  EXPECT_EQ(FilesystemName(0), "0x0");
}

TEST(ErrnoToStatusTest, MapsErrnoToCanonicalCodes) {
  const std::pair<int, absl::StatusCode> kCases[] = {
      {ENOENT, absl::StatusCode::kNotFound},
      {EACCES, absl::StatusCode::kPermissionDenied},
      {EPERM, absl::StatusCode::kPermissionDenied},
      {ENOMEM, absl::StatusCode::kResourceExhausted},
      {EAGAIN, absl::StatusCode::kResourceExhausted},
      {EINVAL, absl::StatusCode::kInvalidArgument},
      {EEXIST, absl::StatusCode::kAlreadyExists},
      {EMFILE, absl::StatusCode::kResourceExhausted},
      {0, absl::StatusCode::kInternal},
      {99999, absl::StatusCode::kUnknown},
  };
  for (const auto& [err, code] : kCases) {
    EXPECT_EQ(ErrnoToStatusCode(err), code) << "errno " << err;
  }
}

TEST(ErrnoToStatusTest, MessageNamesTheCallAndTheError) {
  EXPECT_THAT(
      ErrnoToStatus(ENOENT, "open(/x)"),
      StatusIs(absl::StatusCode::kNotFound, AllOf(HasSubstr("open(/x) failed"), HasSubstr("ENOENT"),
                                                  HasSubstr("No such file or directory"))));
}

TEST(ErrnoToStatusTest, UnknownErrnoIsNamedByNumber) {
  EXPECT_THAT(ErrnoToStatus(99999, "frob"),
              StatusIs(absl::StatusCode::kUnknown, HasSubstr("frob failed: errno 99999")));
}

}  // namespace
}  // namespace pinbroker
