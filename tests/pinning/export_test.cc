#include "pinning/export.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "common/errno_status.h"
#include "common/scoped_fd.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace pinbroker {
namespace {

using ::pinbroker::testing::IsOk;
using ::pinbroker::testing::StatusIs;
using ::pinbroker::testing::TempDir;
using ::testing::AllOf;
using ::testing::HasSubstr;

ExportOptions OptionsFor(std::string root) {
  ExportOptions options;
  options.name = "scratch";
  options.root = std::move(root);
  return options;
}

// Entries in /proc/self/fd: open descriptors (plus the one listing them, the same every time).
int CountOpenFds() {
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) return -1;
  int n = 0;
  while (::readdir(dir) != nullptr) ++n;
  ::closedir(dir);
  return n;
}

std::string ReadAll(int fd) {
  std::string out(4096, '\0');
  const ssize_t n = ::pread(fd, out.data(), out.size(), 0);
  out.resize(n < 0 ? 0 : static_cast<size_t>(n));
  return out;
}

// A TempDir with root/ (the export) and outside (a file next to it, not in the export).
class ExportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = dir_.Join("root");
    ASSERT_EQ(::mkdir(root_.c_str(), 0755), 0) << ErrnoDescription(errno);
    dir_.WriteFile("root/data", "hello");
    dir_.WriteFile("outside", "secret");
    ASSERT_OK_AND_ASSIGN(export_, Export::Open(OptionsFor(root_)));
  }

  void Symlink(const std::string& target, const std::string& relative_link) {
    ASSERT_EQ(::symlink(target.c_str(), dir_.Join(relative_link).c_str()), 0)
        << relative_link << ": " << ErrnoDescription(errno);
  }
  void MakeDir(const std::string& relative) {
    ASSERT_EQ(::mkdir(dir_.Join(relative).c_str(), 0755), 0)
        << relative << ": " << ErrnoDescription(errno);
  }
  FileId IdOf(const std::string& relative) {
    struct stat st;
    EXPECT_EQ(::stat(dir_.Join(relative).c_str(), &st), 0) << ErrnoDescription(errno);
    return FileId{.dev = static_cast<uint64_t>(st.st_dev), .ino = static_cast<uint64_t>(st.st_ino)};
  }

  TempDir dir_;
  std::string root_;
  std::unique_ptr<Export> export_;
};

// --- Export::Open ---------------------------------------------------------------------------

TEST(ExportOpenTest, OpensExistingDirectory) {
  TempDir dir;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Export> e, Export::Open(OptionsFor(dir.path())));
  EXPECT_EQ(e->name(), "scratch");
  EXPECT_EQ(e->options().root, dir.path());
  EXPECT_GE(e->root_fd(), 0);
}

TEST(ExportOpenTest, AcceptsNamesFromTheAllowedAlphabetUpTo64Characters) {
  TempDir dir;
  for (const std::string& name :
       std::vector<std::string>{"a", "Data_01.v2-x", std::string(64, 'n')}) {
    SCOPED_TRACE(name);
    ExportOptions options = OptionsFor(dir.path());
    options.name = name;
    EXPECT_THAT(Export::Open(options), IsOk());
  }
}

TEST(ExportOpenTest, RejectsBadNames) {
  TempDir dir;
  for (const std::string& name : std::vector<std::string>{
           std::string(""), std::string(65, 'n'), std::string("has space"), std::string("a/b"),
           std::string("tab\t"), std::string("nul\0x", 5), std::string("caf\xc3\xa9")}) {
    SCOPED_TRACE(name);
    ExportOptions options = OptionsFor(dir.path());
    options.name = name;
    EXPECT_THAT(Export::Open(options),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         AllOf(HasSubstr("export name"), HasSubstr("[A-Za-z0-9._-]"))));
  }
}

TEST(ExportOpenTest, RejectsNegativeGrace) {
  TempDir dir;
  ExportOptions options = OptionsFor(dir.path());
  options.grace = absl::Seconds(-1);
  EXPECT_THAT(Export::Open(options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("grace is -1s")));
}

TEST(ExportOpenTest, AcceptsZeroGrace) {
  TempDir dir;
  ExportOptions options = OptionsFor(dir.path());
  options.grace = absl::ZeroDuration();
  EXPECT_THAT(Export::Open(options), IsOk());
}

TEST(ExportOpenTest, RejectsZeroLayoutTimeout) {
  TempDir dir;
  ExportOptions options = OptionsFor(dir.path());
  options.layout_timeout = absl::ZeroDuration();
  EXPECT_THAT(Export::Open(options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("layout_timeout")));
}

TEST(ExportOpenTest, RejectsZeroDefaultTtl) {
  TempDir dir;
  ExportOptions options = OptionsFor(dir.path());
  options.default_ttl = absl::ZeroDuration();
  EXPECT_THAT(Export::Open(options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("default_ttl")));
}

TEST(ExportOpenTest, RejectsMaxTtlBelowDefaultTtl) {
  TempDir dir;
  ExportOptions options = OptionsFor(dir.path());
  options.default_ttl = absl::Minutes(2);
  options.max_ttl = absl::Minutes(1);
  EXPECT_THAT(Export::Open(options),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("max_ttl"), HasSubstr(">= default_ttl (2m)"))));
}

TEST(ExportOpenTest, AcceptsMaxTtlEqualToDefaultTtl) {
  TempDir dir;
  ExportOptions options = OptionsFor(dir.path());
  options.default_ttl = absl::Minutes(1);
  options.max_ttl = absl::Minutes(1);
  EXPECT_THAT(Export::Open(options), IsOk());
}

TEST(ExportOpenTest, RejectsInfiniteDuration) {
  TempDir dir;
  ExportOptions options = OptionsFor(dir.path());
  options.max_ttl = absl::InfiniteDuration();
  EXPECT_THAT(Export::Open(options), StatusIs(absl::StatusCode::kInvalidArgument,
                                              AllOf(HasSubstr("max_ttl"), HasSubstr("finite"))));
}

TEST(ExportOpenTest, MissingRootIsNotFound) {
  TempDir dir;
  EXPECT_THAT(Export::Open(OptionsFor(dir.Join("missing"))),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("does not exist")));
}

TEST(ExportOpenTest, RootThatIsAFileIsFailedPrecondition) {
  TempDir dir;
  dir.WriteFile("file", "x");
  EXPECT_THAT(Export::Open(OptionsFor(dir.Join("file"))),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("is not a directory")));
}

TEST(ExportOpenTest, EmptyRootIsInvalidArgument) {
  EXPECT_THAT(Export::Open(OptionsFor("")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("root is empty")));
}

// --- Export::OpenFile: files that open --------------------------------------------------------

TEST_F(ExportTest, OpensRelativeFileForReading) {
  ASSERT_OK_AND_ASSIGN(OpenedFile f, export_->OpenFile("data", Access::kRead));
  EXPECT_EQ(f.path, "data");
  EXPECT_EQ(f.access, Access::kRead);
  EXPECT_EQ(f.info.size, 5u);
  EXPECT_EQ(f.info.id, IdOf("root/data"));
  EXPECT_EQ(::fcntl(f.fd.get(), F_GETFL) & O_ACCMODE, O_RDONLY);
  EXPECT_EQ(ReadAll(f.fd.get()), "hello");
}

TEST_F(ExportTest, OpensRelativeFileForReadWrite) {
  ASSERT_OK_AND_ASSIGN(OpenedFile f, export_->OpenFile("data", Access::kReadWrite));
  EXPECT_EQ(f.access, Access::kReadWrite);
  EXPECT_EQ(::fcntl(f.fd.get(), F_GETFL) & O_ACCMODE, O_RDWR);
  ASSERT_EQ(::pwrite(f.fd.get(), "J", 1, 0), 1);
  EXPECT_EQ(dir_.ReadFile("root/data"), "Jello");
}

TEST_F(ExportTest, OpenedDescriptorIsBlockingAndCloseOnExec) {
  ASSERT_OK_AND_ASSIGN(OpenedFile f, export_->OpenFile("data", Access::kRead));
  EXPECT_EQ(::fcntl(f.fd.get(), F_GETFL) & O_NONBLOCK, 0);
  EXPECT_NE(::fcntl(f.fd.get(), F_GETFD) & FD_CLOEXEC, 0);
}

TEST_F(ExportTest, OpensFileInNestedDirectories) {
  MakeDir("root/a");
  MakeDir("root/a/b");
  dir_.WriteFile("root/a/b/deep", "deep");
  ASSERT_OK_AND_ASSIGN(OpenedFile f, export_->OpenFile("a/b/deep", Access::kRead));
  EXPECT_EQ(f.info.id, IdOf("root/a/b/deep"));
  EXPECT_EQ(ReadAll(f.fd.get()), "deep");
}

TEST_F(ExportTest, DotDotThatStaysBeneathRootIsAllowed) {
  MakeDir("root/a");
  ASSERT_OK_AND_ASSIGN(OpenedFile f, export_->OpenFile("a/../data", Access::kRead));
  EXPECT_EQ(f.info.id, IdOf("root/data"));
}

TEST_F(ExportTest, RelativeSymlinkToFileInsideRootIsFollowed) {
  MakeDir("root/a");
  Symlink("../data", "root/a/link");
  ASSERT_OK_AND_ASSIGN(OpenedFile f, export_->OpenFile("a/link", Access::kRead));
  EXPECT_EQ(f.info.id, IdOf("root/data"));
}

TEST_F(ExportTest, HardLinksToOneFileGiveTheSameFileId) {
  ASSERT_EQ(::link(dir_.Join("root/data").c_str(), dir_.Join("root/alias").c_str()), 0)
      << ErrnoDescription(errno);
  ASSERT_OK_AND_ASSIGN(OpenedFile a, export_->OpenFile("data", Access::kRead));
  ASSERT_OK_AND_ASSIGN(OpenedFile b, export_->OpenFile("alias", Access::kRead));
  EXPECT_EQ(a.info.id, b.info.id);
  EXPECT_EQ(a.path, "data");
  EXPECT_EQ(b.path, "alias");
}

TEST_F(ExportTest, RenamingTheRootAfterOpenChangesNothing) {
  ASSERT_EQ(::rename(root_.c_str(), dir_.Join("moved").c_str()), 0) << ErrnoDescription(errno);
  ASSERT_OK_AND_ASSIGN(OpenedFile f, export_->OpenFile("data", Access::kRead));
  EXPECT_EQ(ReadAll(f.fd.get()), "hello");
}

TEST_F(ExportTest, ReadOnlyExportOpensForReading) {
  ExportOptions options = OptionsFor(root_);
  options.read_only = true;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Export> ro, Export::Open(options));
  ASSERT_OK_AND_ASSIGN(OpenedFile f, ro->OpenFile("data", Access::kRead));
  EXPECT_EQ(::fcntl(f.fd.get(), F_GETFL) & O_ACCMODE, O_RDONLY);
}

// --- Export::OpenFile: paths that are refused -------------------------------------------------

TEST_F(ExportTest, WriteOnReadOnlyExportIsPermissionDenied) {
  ExportOptions options = OptionsFor(root_);
  options.read_only = true;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Export> ro, Export::Open(options));
  EXPECT_THAT(ro->OpenFile("data", Access::kReadWrite),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       AllOf(HasSubstr("'scratch'"), HasSubstr("read-only"))));
}

TEST_F(ExportTest, DotDotEscapeIsPermissionDenied) {
  EXPECT_THAT(export_->OpenFile("../outside", Access::kRead),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("path '../outside' resolves outside export 'scratch'")));
}

TEST_F(ExportTest, AbsolutePathIsInvalidArgument) {
  EXPECT_THAT(export_->OpenFile(dir_.Join("root/data"), Access::kRead),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("path must be relative to the export root")));
}

TEST_F(ExportTest, EmptyPathIsInvalidArgument) {
  EXPECT_THAT(export_->OpenFile("", Access::kRead),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("path must be relative to the export root")));
}

TEST_F(ExportTest, PathWithNulByteIsInvalidArgument) {
  EXPECT_THAT(export_->OpenFile(std::string("data\0/../x", 10), Access::kRead),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("NUL byte"), HasSubstr("'data\\x00/../x'"))));
}

TEST_F(ExportTest, AbsoluteSymlinkOutsideRootIsPermissionDenied) {
  Symlink(dir_.Join("outside"), "root/abs");
  EXPECT_THAT(export_->OpenFile("abs", Access::kRead),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("resolves outside")));
}

TEST_F(ExportTest, AbsoluteSymlinkIntoRootIsPermissionDenied) {
  // RESOLVE_BENEATH refuses every absolute symlink, even one naming a file under the root.
  Symlink(dir_.Join("root/data"), "root/abs");
  EXPECT_THAT(export_->OpenFile("abs", Access::kRead),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("resolves outside")));
}

TEST_F(ExportTest, RelativeSymlinkLeavingRootIsPermissionDenied) {
  Symlink("../outside", "root/rel");
  EXPECT_THAT(export_->OpenFile("rel", Access::kRead),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("resolves outside")));
}

TEST_F(ExportTest, SymlinkToDirectoryLeavingRootIsPermissionDenied) {
  Symlink("..", "root/up");
  EXPECT_THAT(export_->OpenFile("up/outside", Access::kRead),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("resolves outside")));
}

TEST_F(ExportTest, SymlinkToProcSelfFdIsRefused) {
  ScopedFd outside(::open(dir_.Join("outside").c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(outside.valid()) << ErrnoDescription(errno);
  Symlink(absl::StrCat("/proc/self/fd/", outside.get()), "root/magic");
  EXPECT_THAT(export_->OpenFile("magic", Access::kRead),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("resolves outside")));
}

TEST_F(ExportTest, MagicLinkBeneathRootIsInvalidArgument) {
  // An export rooted in /proc/self reaches /proc/self/fd/N without leaving the root: only
  // RESOLVE_NO_MAGICLINKS stops it from opening whatever descriptor N names.
  ScopedFd outside(::open(dir_.Join("outside").c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(outside.valid()) << ErrnoDescription(errno);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Export> proc, Export::Open(OptionsFor("/proc/self")));
  EXPECT_THAT(proc->OpenFile(absl::StrCat("fd/", outside.get()), Access::kRead),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("magic link")));
}

TEST_F(ExportTest, SymlinkLoopIsInvalidArgument) {
  Symlink("loop_b", "root/loop_a");
  Symlink("loop_a", "root/loop_b");
  EXPECT_THAT(export_->OpenFile("loop_a", Access::kRead),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("too many levels")));
}

TEST_F(ExportTest, DirectoryIsFailedPrecondition) {
  MakeDir("root/sub");
  EXPECT_THAT(export_->OpenFile("sub", Access::kRead),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("'sub'"), HasSubstr("is a directory"),
                             HasSubstr("not a regular file"))));
}

TEST_F(ExportTest, FifoIsFailedPreconditionWithoutBlocking) {
  // Opening a FIFO for reading blocks until a writer appears; the O_PATH inspection must refuse
  // it before any such open. If this test hangs, that is the bug.
  ASSERT_EQ(::mkfifo(dir_.Join("root/fifo").c_str(), 0644), 0) << ErrnoDescription(errno);
  EXPECT_THAT(export_->OpenFile("fifo", Access::kRead),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("is a FIFO")));
  EXPECT_THAT(export_->OpenFile("fifo", Access::kReadWrite),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("is a FIFO")));
}

TEST_F(ExportTest, SocketIsFailedPrecondition) {
  ScopedFd sock(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(sock.valid()) << ErrnoDescription(errno);
  struct sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  const std::string path = dir_.Join("root/sock");
  ASSERT_LT(path.size(), sizeof(addr.sun_path));
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  ASSERT_EQ(::bind(sock.get(), reinterpret_cast<const struct sockaddr*>(&addr), sizeof(addr)), 0)
      << ErrnoDescription(errno);
  EXPECT_THAT(export_->OpenFile("sock", Access::kRead),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("is a socket")));
}

TEST_F(ExportTest, CharacterDeviceIsFailedPrecondition) {
  if (::mknod(dir_.Join("root/null").c_str(), S_IFCHR | 0666, makedev(1, 3)) != 0) {
    GTEST_SKIP() << "cannot create a device node here (" << ErrnoDescription(errno)
                 << "); needs CAP_MKNOD on a filesystem mounted without nodev";
  }
  EXPECT_THAT(export_->OpenFile("null", Access::kReadWrite),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("is a character device")));
}

TEST_F(ExportTest, MissingFileIsNotFound) {
  EXPECT_THAT(export_->OpenFile("missing", Access::kRead),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("no file 'missing' in export "
                                                              "'scratch'")));
}

TEST_F(ExportTest, DanglingSymlinkIsNotFound) {
  Symlink("nowhere", "root/dangling");
  EXPECT_THAT(export_->OpenFile("dangling", Access::kRead),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("no file 'dangling'")));
}

TEST_F(ExportTest, PathThroughRegularFileIsNotFound) {
  EXPECT_THAT(export_->OpenFile("data/more", Access::kRead),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("is not a directory")));
}

TEST_F(ExportTest, ErrorsLeaveNoDescriptorsOpen) {
  MakeDir("root/sub");
  ASSERT_EQ(::mkfifo(dir_.Join("root/fifo").c_str(), 0644), 0) << ErrnoDescription(errno);
  Symlink("../outside", "root/rel");
  const int before = CountOpenFds();
  ASSERT_GT(before, 0);
  for (const char* path : {"sub", "fifo", "rel", "missing", "../outside", "data/more"}) {
    EXPECT_FALSE(export_->OpenFile(path, Access::kRead).ok()) << path;
  }
  { ASSERT_OK_AND_ASSIGN(OpenedFile f, export_->OpenFile("data", Access::kRead)); }
  EXPECT_EQ(CountOpenFds(), before);
}

}  // namespace
}  // namespace pinbroker
