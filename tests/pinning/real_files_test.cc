// Layout changes on real filesystems with real host pins (mmap + mlock): the truncate or hole
// punch really happens, and every byte outside the affected range is unchanged.
//
// Filesystems: tmpfs (/dev/shm), ext4 on a loop device (needs root and loop devices; skipped
// with the reason otherwise), and a DAX filesystem named by $PINBROKER_DAX_DIR (the VM suite
// sets it; skipped elsewhere).
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pinning/host_backend.h"
#include "pinning/pin_service.h"
#include "common/simulated_clock.h"
#include "tests/testing/ext4_loop_mount.h"
#include "tests/testing/run_command.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace pinbroker {
namespace {

using ::pinbroker::testing::TempDir;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

constexpr uint64_t kPages = 16;

// Runs a shell command; returns its exit status and appends its output to `log`.
// A directory on the filesystem under test, set up and torn down per test.
class Filesystem {
 public:
  virtual ~Filesystem() = default;
  // Empty on success, else why the filesystem is unavailable here (the test skips).
  virtual std::string SetUp() = 0;
  virtual std::string dir() const = 0;
};

class TmpfsFilesystem : public Filesystem {
 public:
  std::string SetUp() override {
    struct statfs fs;
    if (statfs("/dev/shm", &fs) != 0 || fs.f_type != 0x01021994) {
      return "/dev/shm is not a tmpfs mount on this machine";
    }
    tmp_ = std::make_unique<TempDir>("/dev/shm");
    return "";
  }
  std::string dir() const override { return tmp_->path(); }

 private:
  std::unique_ptr<TempDir> tmp_;
};

class Ext4LoopFilesystem : public Filesystem {
 public:
  std::string SetUp() override { return mount_.Mount(); }
  std::string dir() const override { return mount_.dir(); }

 private:
  pinbroker::testing::Ext4LoopMount mount_;
};

class DaxFilesystem : public Filesystem {
 public:
  std::string SetUp() override {
    const char* dir = std::getenv("PINBROKER_DAX_DIR");
    if (dir == nullptr || *dir == '\0') {
      return "no fs-dax filesystem here: set PINBROKER_DAX_DIR to a directory on a -o dax "
             "mount (the VM suite does)";
    }
    tmp_ = std::make_unique<TempDir>(dir);
    return "";
  }
  std::string dir() const override { return tmp_->path(); }

 private:
  std::unique_ptr<TempDir> tmp_;
};

std::string Pattern(uint64_t size) {
  std::string s(size, '\0');
  for (uint64_t i = 0; i < size; ++i) s[i] = static_cast<char>('A' + (i * 13 + i / 4096) % 61);
  return s;
}

class RealFilesTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "tmpfs") fs_ = std::make_unique<TmpfsFilesystem>();
    if (GetParam() == "ext4-loop") fs_ = std::make_unique<Ext4LoopFilesystem>();
    if (GetParam() == "dax") fs_ = std::make_unique<DaxFilesystem>();
    if (const std::string why = fs_->SetUp(); !why.empty()) GTEST_SKIP() << why;
    path_ = fs_->dir() + "/data";
    original_ = Pattern(kPages * page_);
    std::ofstream(path_, std::ios::binary) << original_;
    ExportOptions exp;
    exp.name = "exp";
    exp.root = fs_->dir();
    exp.grace = absl::ZeroDuration();
    auto service = PinService::Create(&clock_, &backend_, {exp});
    ASSERT_TRUE(service.ok()) << service.status();
    service_ = *std::move(service);
    if (GetParam() == "dax") {
      ASSERT_OK_AND_ASSIGN(FileDescription d, service_->DescribeFile("exp", "data"));
      if (!d.info.dax) GTEST_SKIP() << "$PINBROKER_DAX_DIR is not on a DAX mount";
    }
  }
  void TearDown() override {
    service_.reset();
    if (fs_ != nullptr && !path_.empty()) unlink(path_.c_str());
  }

  std::string Contents() const {
    std::ifstream in(path_, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }
  struct stat Stat() const {
    struct stat st {};
    EXPECT_EQ(stat(path_.c_str(), &st), 0);
    return st;
  }
  LeaseInfo Pin(uint64_t first_page, uint64_t pages, Access access = Access::kReadWrite) {
    PinRequest r;
    r.owner = "s";
    r.export_name = "exp";
    r.path = "data";
    r.offset = first_page * page_;
    r.length = pages * page_;
    r.access = access;
    auto lease = service_->Pin(r);
    EXPECT_TRUE(lease.ok()) << lease.status();
    return lease.ok() ? *lease : LeaseInfo{};
  }
  LayoutRequest Layout(LayoutPolicy policy) const {
    LayoutRequest r;
    r.export_name = "exp";
    r.path = "data";
    r.policy = policy;
    return r;
  }

  const uint64_t page_ = SystemPageSize();
  SimulatedClock clock_;
  HostBackend backend_;
  std::unique_ptr<Filesystem> fs_;
  std::unique_ptr<PinService> service_;
  std::string path_;
  std::string original_;
};

TEST_P(RealFilesTest, HostPinMapsTheFileBytesAndKeepsThemResident) {
  LeaseInfo lease = Pin(3, 2, Access::kRead);
  ASSERT_OK_AND_ASSIGN(const void* addr, backend_.AddressForTesting(lease.backend_handle));
  EXPECT_EQ(std::string(static_cast<const char*>(addr), 2 * page_),
            original_.substr(3 * page_, 2 * page_));
  if (GetParam() != "dax") {  // DAX has no page cache for mincore to report.
    unsigned char resident[2] = {0, 0};
    ASSERT_EQ(mincore(const_cast<void*>(addr), 2 * page_, resident), 0);
    EXPECT_EQ(resident[0] & 1, 1);
    EXPECT_EQ(resident[1] & 1, 1);
  }
  EXPECT_EQ(backend_.pinned_bytes(), 2 * page_);
  ASSERT_OK(service_->Release("s", lease.id));
  EXPECT_EQ(backend_.mapping_count(), 0u);
}

TEST_P(RealFilesTest, TruncateRevokesPinsPastTheNewEndAndKeepsEveryOtherByte) {
  LeaseInfo kept = Pin(0, 2);
  LeaseInfo cut = Pin(6, 3);
  const uint64_t new_size = 5 * page_ + 123;
  ASSERT_OK_AND_ASSIGN(LayoutResult r, service_->Truncate(Layout(LayoutPolicy::kRevoke), new_size));
  EXPECT_THAT(r.revoked, ElementsAre(cut.id));
  EXPECT_EQ(Stat().st_size, static_cast<off_t>(new_size));
  EXPECT_EQ(Contents(), original_.substr(0, new_size));
  EXPECT_EQ(backend_.mapping_count(), 1u);
  EXPECT_EQ(backend_.pinned_bytes(), 2 * page_);
  ASSERT_OK(service_->Release("s", kept.id));
}

TEST_P(RealFilesTest, TruncateThatGrowsAddsZerosAndKeepsEveryOtherByte) {
  ASSERT_OK(service_->Truncate(Layout(LayoutPolicy::kRefuse), 5 * page_ + 7).status());
  ASSERT_OK(service_->Truncate(Layout(LayoutPolicy::kRefuse), 7 * page_).status());
  const std::string now = Contents();
  ASSERT_EQ(now.size(), 7 * page_);
  EXPECT_EQ(now.substr(0, 5 * page_ + 7), original_.substr(0, 5 * page_ + 7));
  EXPECT_EQ(now.substr(5 * page_ + 7), std::string(2 * page_ - 7, '\0'));
}

TEST_P(RealFilesTest, PunchHoleZeroesExactlyTheRangeAndFreesItsBlocks) {
  LeaseInfo outside = Pin(8, 2);
  const uint64_t offset = 2 * page_ + 10;
  const uint64_t length = 4 * page_;
  const struct stat before = Stat();
  auto punched = service_->PunchHole(Layout(LayoutPolicy::kRefuse), offset, length);
  if (absl::IsFailedPrecondition(punched.status()) && GetParam() == "dax") {
    GTEST_SKIP() << punched.status();
  }
  ASSERT_OK(punched.status());
  EXPECT_THAT(punched->revoked, IsEmpty());
  const std::string now = Contents();
  ASSERT_EQ(now.size(), original_.size());
  EXPECT_EQ(now.substr(0, offset), original_.substr(0, offset));
  EXPECT_EQ(now.substr(offset, length), std::string(length, '\0'));
  EXPECT_EQ(now.substr(offset + length), original_.substr(offset + length));
  const struct stat after = Stat();
  EXPECT_EQ(after.st_size, before.st_size);
  // Pages 3..5 lie wholly inside the hole: their blocks are gone.
  EXPECT_LE(after.st_blocks, before.st_blocks - static_cast<blkcnt_t>(3 * page_ / 512));
  EXPECT_EQ(backend_.mapping_count(), 1u);  // The pin outside the hole was untouched.
  ASSERT_OK(service_->Release("s", outside.id));
}

TEST_P(RealFilesTest, PunchOverAPinnedRangeRevokesItFirst) {
  LeaseInfo inside = Pin(4, 1);
  ASSERT_OK_AND_ASSIGN(LayoutResult r,
                       service_->PunchHole(Layout(LayoutPolicy::kRevoke), 4 * page_, page_));
  EXPECT_THAT(r.revoked, ElementsAre(inside.id));
  EXPECT_EQ(backend_.mapping_count(), 0u);
  EXPECT_EQ(Contents().substr(4 * page_, page_), std::string(page_, '\0'));
}

TEST_P(RealFilesTest, RefusedTruncateLeavesFileAndPinsAlone) {
  LeaseInfo lease = Pin(10, 1);
  EXPECT_FALSE(service_->Truncate(Layout(LayoutPolicy::kRefuse), page_).ok());
  EXPECT_EQ(Contents(), original_);
  EXPECT_EQ(backend_.mapping_count(), 1u);
  ASSERT_OK(service_->Release("s", lease.id));
}

INSTANTIATE_TEST_SUITE_P(Filesystems, RealFilesTest, ::testing::Values("tmpfs", "ext4-loop", "dax"),
                         [](const auto& info) {
                           std::string name = info.param;
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

}  // namespace
}  // namespace pinbroker
