// GuardedFile and ArmedFiles: sweeps are numbered and the latest one kept, a sweep is reused
// only while fstat says nothing changed, and the registry finds records by id, descriptor and
// file handle.
#include "pinning/guard/guarded_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <memory>

#include "gtest/gtest.h"
#include "pinning/guard/armed_files.h"
#include "tests/testing/temp_dir.h"

namespace pinbroker::guard {
namespace {

std::shared_ptr<GuardedFile> Open(const std::string& path) {
  auto file = std::make_shared<GuardedFile>();
  file->fd.reset(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  struct stat st;
  if (file->fd.valid() && ::fstat(file->fd.get(), &st) == 0) {
    file->id = FileId{static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino)};
  }
  return file;
}

LayoutStamp StampNow(const GuardedFile& file) {
  struct stat st;
  EXPECT_EQ(::fstat(file.fd.get(), &st), 0);
  return StampOf(st);
}

TEST(GuardedFileTest, SweepsAreNumberedAndTheLatestIsKept) {
  pinbroker::testing::TempDir dir;
  dir.WriteFile("f", std::string(8192, 'x'));
  auto file = Open(dir.Join("f"));
  ASSERT_TRUE(file->fd.valid());
  absl::StatusOr<std::shared_ptr<const FileLayout>> first = file->Sweep();
  ASSERT_TRUE(first.ok()) << first.status();
  absl::StatusOr<std::shared_ptr<const FileLayout>> second = file->Sweep();
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ((*first)->sequence, 1u);
  EXPECT_EQ((*second)->sequence, 2u);
  EXPECT_EQ((*second)->size, 8192u);
  absl::MutexLock lock(&file->mu);
  EXPECT_EQ(file->latest, *second);
}

TEST(GuardedFileTest, ReusesTheLatestSweepOnlyWhileTheStampHolds) {
  pinbroker::testing::TempDir dir;
  dir.WriteFile("f", std::string(8192, 'x'));
  auto file = Open(dir.Join("f"));
  EXPECT_EQ(file->ReusableSweep(StampNow(*file)), nullptr);  // No sweep yet.
  absl::StatusOr<std::shared_ptr<const FileLayout>> swept = file->Sweep();
  ASSERT_TRUE(swept.ok());
  EXPECT_EQ(file->ReusableSweep(StampNow(*file)), *swept);
  ASSERT_EQ(::truncate(dir.Join("f").c_str(), 4096), 0);
  EXPECT_EQ(file->ReusableSweep(StampNow(*file)), nullptr);
}

TEST(GuardedFileTest, DropLeaseWithoutALeaseChangesNothing) {
  GuardedFile file;
  file.DropLease();
  absl::MutexLock lock(&file.mu);
  EXPECT_FALSE(file.lease);
}

TEST(ArmedFilesTest, FindsByIdDescriptorAndKey) {
  pinbroker::testing::TempDir dir;
  dir.WriteFile("a", "a");
  dir.WriteFile("b", "b");
  auto a = Open(dir.Join("a"));
  auto b = Open(dir.Join("b"));
  a->key = "key-a";
  b->key = "key-b";
  ArmedFiles files;
  files.Add(a, /*by_key=*/true);
  files.Add(b, /*by_key=*/false);
  EXPECT_EQ(files.size(), 2u);
  EXPECT_EQ(files.Find(a->id), a);
  bool stopping = true;
  EXPECT_EQ(files.FindByFd(b->fd.get(), &stopping), b);
  EXPECT_FALSE(stopping);
  bool unmatched = false;
  EXPECT_EQ(files.FindByKeys({"key-a"}, &unmatched), std::vector<std::shared_ptr<GuardedFile>>{a});
  EXPECT_FALSE(unmatched);
  EXPECT_EQ(files.FindByKeys({"key-b", ""}, &unmatched).size(), 0u);  // b has no key entry.
  EXPECT_TRUE(unmatched);

  EXPECT_EQ(files.live(), 0u);
  a->live.store(1);
  EXPECT_EQ(files.live(), 1u);

  auto other = Open(dir.Join("a"));  // Same id, another record: not removed.
  EXPECT_FALSE(files.Remove(other));
  EXPECT_TRUE(files.Remove(a));
  EXPECT_EQ(files.Find(a->id), nullptr);
  EXPECT_EQ(files.FindByFd(a->fd.get(), &stopping), nullptr);
  unmatched = false;
  EXPECT_TRUE(files.FindByKeys({"key-a"}, &unmatched).empty());
  EXPECT_TRUE(unmatched);
}

TEST(ArmedFilesTest, StoppingIsReportedAndNotificationsAreDropped) {
  pinbroker::testing::TempDir dir;
  dir.WriteFile("a", "a");
  auto a = Open(dir.Join("a"));
  a->key = "key-a";
  ArmedFiles files;
  files.Add(a, true);
  files.BeginStop();
  EXPECT_TRUE(files.stopping());
  bool stopping = false;
  EXPECT_EQ(files.FindByFd(a->fd.get(), &stopping), a);
  EXPECT_TRUE(stopping);
  bool unmatched = false;
  EXPECT_TRUE(files.FindByKeys({"key-a", "nothing"}, &unmatched).empty());
  EXPECT_FALSE(unmatched);
  EXPECT_EQ(files.All().size(), 1u);
}

}  // namespace
}  // namespace pinbroker::guard
