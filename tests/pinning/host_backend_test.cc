#include "pinning/host_backend.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/errno_status.h"
#include "common/scoped_fd.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pinning/file_info.h"
#include "pinning/page_range.h"
#include "tests/testing/process_maps.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace pinbroker {
namespace {

using ::pinbroker::testing::IsOk;
using ::pinbroker::testing::MapCountOf;
using ::pinbroker::testing::StatusIs;
using ::pinbroker::testing::TempDir;
using ::testing::_;
using ::testing::HasSubstr;

const uint64_t kPage = SystemPageSize();

// Bytes that differ from page to page and within a page, so a wrong offset shows.
std::string Pattern(size_t length) {
  std::string out(length, '\0');
  for (size_t i = 0; i < length; ++i) out[i] = static_cast<char>((i * 7 + i / kPage) % 251);
  return out;
}

// The VMA of /proc/self/smaps that contains `addr`: its permissions ("rw-s") and VmFlags.
struct Vma {
  std::string perms;
  std::string vm_flags;
};
Vma FindVma(const void* addr) {
  const auto a = reinterpret_cast<uintptr_t>(addr);
  std::ifstream smaps("/proc/self/smaps");
  std::string line;
  bool inside = false;
  Vma vma;
  while (std::getline(smaps, line)) {
    uintptr_t start = 0;
    uintptr_t end = 0;
    char perms[8] = {};
    if (std::sscanf(line.c_str(), "%" SCNxPTR "-%" SCNxPTR " %7s", &start, &end, perms) == 3) {
      if (inside) break;
      inside = start <= a && a < end;
      if (inside) vma.perms = perms;
    } else if (inside && absl::StartsWith(line, "VmFlags:")) {
      vma.vm_flags = line.substr(8) + " ";
    }
  }
  return vma;
}

// True when every page of [addr, addr + length) is resident.
bool AllResident(const void* addr, size_t length) {
  std::vector<unsigned char> vec((length + kPage - 1) / kPage);
  if (::mincore(const_cast<void*>(addr), length, vec.data()) != 0) return false;
  for (unsigned char v : vec) {
    if ((v & 1) == 0) return false;
  }
  return true;
}

// True when no page of [addr, addr + length) is mapped any more.
bool Unmapped(const void* addr, size_t length) {
  std::vector<unsigned char> vec((length + kPage - 1) / kPage);
  return ::mincore(const_cast<void*>(addr), length, vec.data()) != 0 && errno == ENOMEM;
}

// A file of `pages` pages in a TempDir, opened for reading or for reading and writing.
class HostBackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    contents_ = Pattern(3 * kPage);
    dir_.WriteFile("file", contents_);
  }

  // Opens dir_/name and fills `info`.
  ScopedFd Open(const std::string& name, int flags, FileInfo* info) {
    ScopedFd fd(::open(dir_.Join(name).c_str(), flags | O_CLOEXEC));
    EXPECT_TRUE(fd.valid()) << ErrnoDescription(errno);
    if (!fd.valid()) return fd;
    absl::StatusOr<FileInfo> inspected = InspectFile(fd.get());
    EXPECT_THAT(inspected, IsOk());
    if (inspected.ok()) *info = *inspected;
    return fd;
  }

  static PinSpec Spec(int fd, const FileInfo& info, uint64_t offset, uint64_t length,
                      Access access) {
    return PinSpec{.lease = 42,
                   .owner = "test-owner",
                   .fd = fd,
                   .file = &info,
                   .bytes = ByteRange{.offset = offset, .length = length},
                   .access = access};
  }

  TempDir dir_;
  std::string contents_;
  HostBackend backend_;
};

TEST_F(HostBackendTest, NameIsHost) { EXPECT_EQ(backend_.name(), "host"); }

TEST_F(HostBackendTest, ReadPinMapsLocksAndHoldsTheFileBytes) {
  FileInfo info;
  ScopedFd fd = Open("file", O_RDONLY, &info);
  ASSERT_OK_AND_ASSIGN(BackendPin pin,
                       backend_.Pin(Spec(fd.get(), info, 0, 3 * kPage, Access::kRead)));
  EXPECT_EQ(pin.mode, RegistrationMode::kHost);
  EXPECT_EQ(backend_.mapping_count(), 1u);
  EXPECT_EQ(backend_.pinned_bytes(), 3 * kPage);

  ASSERT_OK_AND_ASSIGN(const void* addr, backend_.AddressForTesting(pin.handle));
  EXPECT_TRUE(AllResident(addr, 3 * kPage));
  EXPECT_EQ(std::memcmp(addr, contents_.data(), 3 * kPage), 0);
  const Vma vma = FindVma(addr);
  EXPECT_EQ(vma.perms, "r--s");
  EXPECT_THAT(vma.vm_flags, HasSubstr(" lo "));  // VM_LOCKED.
}

TEST_F(HostBackendTest, ReadWritePinMapsWritableAndLocked) {
  FileInfo info;
  ScopedFd fd = Open("file", O_RDWR, &info);
  ASSERT_OK_AND_ASSIGN(BackendPin pin,
                       backend_.Pin(Spec(fd.get(), info, 0, 3 * kPage, Access::kReadWrite)));
  EXPECT_EQ(pin.mode, RegistrationMode::kHost);
  EXPECT_EQ(backend_.mapping_count(), 1u);
  EXPECT_EQ(backend_.pinned_bytes(), 3 * kPage);

  ASSERT_OK_AND_ASSIGN(const void* addr, backend_.AddressForTesting(pin.handle));
  EXPECT_TRUE(AllResident(addr, 3 * kPage));
  EXPECT_EQ(std::memcmp(addr, contents_.data(), 3 * kPage), 0);
  const Vma vma = FindVma(addr);
  EXPECT_EQ(vma.perms, "rw-s");
  EXPECT_THAT(vma.vm_flags, HasSubstr(" lo "));
}

TEST_F(HostBackendTest, PinOfSubrangeHoldsThoseBytes) {
  FileInfo info;
  ScopedFd fd = Open("file", O_RDONLY, &info);
  ASSERT_OK_AND_ASSIGN(BackendPin pin,
                       backend_.Pin(Spec(fd.get(), info, kPage, kPage, Access::kRead)));
  EXPECT_EQ(backend_.pinned_bytes(), kPage);
  ASSERT_OK_AND_ASSIGN(const void* addr, backend_.AddressForTesting(pin.handle));
  EXPECT_EQ(std::memcmp(addr, contents_.data() + kPage, kPage), 0);
}

TEST_F(HostBackendTest, OverlappingPinsShareOneMappingAndCountPagesOnce) {
  FileInfo info;
  ScopedFd fd = Open("file", O_RDONLY, &info);
  ASSERT_OK_AND_ASSIGN(BackendPin a, backend_.Pin(Spec(fd.get(), info, 0, kPage, Access::kRead)));
  ASSERT_OK_AND_ASSIGN(BackendPin b,
                       backend_.Pin(Spec(fd.get(), info, 0, 2 * kPage, Access::kRead)));
  EXPECT_NE(a.handle, b.handle);
  EXPECT_EQ(backend_.mapping_count(), 1u);
  EXPECT_EQ(backend_.lease_count(), 2u);
  EXPECT_EQ(backend_.pinned_bytes(), 2 * kPage);
  ASSERT_OK_AND_ASSIGN(const void* addr_a, backend_.AddressForTesting(a.handle));
  ASSERT_OK_AND_ASSIGN(const void* addr_b, backend_.AddressForTesting(b.handle));
  EXPECT_EQ(addr_a, addr_b);
  ASSERT_OK(backend_.Release(a.handle));
  EXPECT_EQ(backend_.mapping_count(), 1u);
  EXPECT_EQ(backend_.pinned_bytes(), 2 * kPage);
  // b still holds page 0.
  EXPECT_THAT(FindVma(addr_b).vm_flags, HasSubstr(" lo "));
  EXPECT_TRUE(AllResident(addr_b, 2 * kPage));
  ASSERT_OK(backend_.Release(b.handle));
  EXPECT_EQ(backend_.mapping_count(), 0u);
  EXPECT_EQ(backend_.pinned_bytes(), 0u);
  EXPECT_TRUE(Unmapped(addr_b, 2 * kPage));
}

TEST_F(HostBackendTest, LastLeaseOnAPageUnlocksItAndKeepsTheOthersLocked) {
  FileInfo info;
  ScopedFd fd = Open("file", O_RDONLY, &info);
  ASSERT_OK_AND_ASSIGN(BackendPin a,
                       backend_.Pin(Spec(fd.get(), info, 0, 2 * kPage, Access::kRead)));
  ASSERT_OK_AND_ASSIGN(BackendPin b,
                       backend_.Pin(Spec(fd.get(), info, kPage, 2 * kPage, Access::kRead)));
  EXPECT_EQ(backend_.pinned_bytes(), 3 * kPage);
  ASSERT_OK_AND_ASSIGN(const void* base, backend_.AddressForTesting(a.handle));
  const auto* page = static_cast<const uint8_t*>(base);
  ASSERT_OK(backend_.Revoke(a.handle));
  EXPECT_EQ(backend_.pinned_bytes(), 2 * kPage);
  EXPECT_EQ(backend_.mapping_count(), 1u);
  // Page 0 is unlocked but still mapped; pages 1 and 2 stay locked for b.
  EXPECT_THAT(FindVma(page).vm_flags, ::testing::Not(HasSubstr(" lo ")));
  EXPECT_FALSE(Unmapped(page, kPage));
  EXPECT_THAT(FindVma(page + kPage).vm_flags, HasSubstr(" lo "));
  EXPECT_THAT(FindVma(page + 2 * kPage).vm_flags, HasSubstr(" lo "));
  EXPECT_EQ(std::memcmp(page + kPage, contents_.data() + kPage, 2 * kPage), 0);
}

TEST_F(HostBackendTest, ReadPinUsesAReadWriteMappingButNotTheOtherWayRound) {
  FileInfo info;
  ScopedFd rw = Open("file", O_RDWR, &info);
  ScopedFd ro = Open("file", O_RDONLY, &info);
  ASSERT_OK_AND_ASSIGN(BackendPin w,
                       backend_.Pin(Spec(rw.get(), info, 0, kPage, Access::kReadWrite)));
  ASSERT_OK_AND_ASSIGN(BackendPin r, backend_.Pin(Spec(ro.get(), info, 0, kPage, Access::kRead)));
  EXPECT_EQ(backend_.mapping_count(), 1u);
  // A read-only descriptor never gets write access, even where a writable mapping exists.
  EXPECT_THAT(backend_.Pin(Spec(ro.get(), info, 0, kPage, Access::kReadWrite)),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("O_RDWR")));
  ASSERT_OK(backend_.Release(w.handle));
  ASSERT_OK(backend_.Release(r.handle));
  // A read mapping first: a write pin then needs a writable one of its own.
  ASSERT_OK_AND_ASSIGN(r, backend_.Pin(Spec(ro.get(), info, 0, kPage, Access::kRead)));
  ASSERT_OK_AND_ASSIGN(w, backend_.Pin(Spec(rw.get(), info, 0, kPage, Access::kReadWrite)));
  EXPECT_EQ(backend_.mapping_count(), 2u);
  EXPECT_EQ(backend_.pinned_bytes(), kPage);  // One page, held through two mappings.
  ASSERT_OK_AND_ASSIGN(const void* waddr, backend_.AddressForTesting(w.handle));
  EXPECT_EQ(FindVma(waddr).perms, "rw-s");
}

TEST_F(HostBackendTest, PinPastAMappingOfTheGrownFileMapsItAgain) {
  FileInfo info;
  ScopedFd fd = Open("file", O_RDWR, &info);
  ASSERT_OK_AND_ASSIGN(BackendPin a, backend_.Pin(Spec(fd.get(), info, 0, kPage, Access::kRead)));
  const std::string more = Pattern(6 * kPage);
  ASSERT_EQ(::pwrite(fd.get(), more.data() + 3 * kPage, 3 * kPage, 3 * kPage),
            static_cast<ssize_t>(3 * kPage))
      << ErrnoDescription(errno);
  ASSERT_OK_AND_ASSIGN(BackendPin b,
                       backend_.Pin(Spec(fd.get(), info, 4 * kPage, kPage, Access::kRead)));
  EXPECT_EQ(backend_.mapping_count(), 2u);
  ASSERT_OK_AND_ASSIGN(const void* addr, backend_.AddressForTesting(b.handle));
  EXPECT_EQ(std::memcmp(addr, more.data() + 4 * kPage, kPage), 0);
  // The newer, larger mapping takes later pins anywhere in the file.
  ASSERT_OK_AND_ASSIGN(BackendPin c, backend_.Pin(Spec(fd.get(), info, 0, kPage, Access::kRead)));
  EXPECT_EQ(backend_.mapping_count(), 2u);
  EXPECT_EQ(backend_.pinned_bytes(), 2 * kPage);
  ASSERT_OK(backend_.Release(a.handle));
  EXPECT_EQ(backend_.mapping_count(), 1u);
  EXPECT_EQ(backend_.pinned_bytes(), 2 * kPage);  // c still holds page 0.
  ASSERT_OK(backend_.Release(b.handle));
  ASSERT_OK(backend_.Release(c.handle));
  EXPECT_EQ(backend_.mapping_count(), 0u);
}

TEST_F(HostBackendTest, FileThatShrankAndGrewAgainPinsItsNewPagesInTheOldMapping) {
  FileInfo info;
  ScopedFd fd = Open("file", O_RDWR, &info);
  ASSERT_OK_AND_ASSIGN(BackendPin a, backend_.Pin(Spec(fd.get(), info, 0, kPage, Access::kRead)));
  // No lease covers pages 1-2 when they go (the layout coordinator's rule).
  ASSERT_EQ(::ftruncate(fd.get(), kPage), 0) << ErrnoDescription(errno);
  EXPECT_THAT(backend_.Pin(Spec(fd.get(), info, 2 * kPage, kPage, Access::kRead)),
              StatusIs(absl::StatusCode::kOutOfRange, HasSubstr("past the end")));
  const std::string fresh(2 * kPage, 'z');
  ASSERT_EQ(::pwrite(fd.get(), fresh.data(), fresh.size(), kPage),
            static_cast<ssize_t>(fresh.size()))
      << ErrnoDescription(errno);
  ASSERT_OK_AND_ASSIGN(BackendPin b,
                       backend_.Pin(Spec(fd.get(), info, 2 * kPage, kPage, Access::kRead)));
  EXPECT_EQ(backend_.mapping_count(), 1u);
  ASSERT_OK_AND_ASSIGN(const void* addr, backend_.AddressForTesting(b.handle));
  EXPECT_EQ(std::memcmp(addr, fresh.data() + kPage, kPage), 0);
  ASSERT_OK_AND_ASSIGN(const void* addr_a, backend_.AddressForTesting(a.handle));
  EXPECT_EQ(std::memcmp(addr_a, contents_.data(), kPage), 0);
  EXPECT_EQ(backend_.pinned_bytes(), 2 * kPage);
}

TEST_F(HostBackendTest, PinOutlivesTheDescriptor) {
  FileInfo info;
  ScopedFd fd = Open("file", O_RDONLY, &info);
  ASSERT_OK_AND_ASSIGN(BackendPin pin,
                       backend_.Pin(Spec(fd.get(), info, 0, 3 * kPage, Access::kRead)));
  fd.reset();  // PinSpec::fd is valid only during Pin().
  ASSERT_OK_AND_ASSIGN(const void* addr, backend_.AddressForTesting(pin.handle));
  EXPECT_EQ(std::memcmp(addr, contents_.data(), 3 * kPage), 0);
}

TEST_F(HostBackendTest, ReleaseUnmapsThePin) {
  FileInfo info;
  ScopedFd fd = Open("file", O_RDONLY, &info);
  ASSERT_OK_AND_ASSIGN(BackendPin pin,
                       backend_.Pin(Spec(fd.get(), info, 0, 3 * kPage, Access::kRead)));
  ASSERT_OK_AND_ASSIGN(const void* addr, backend_.AddressForTesting(pin.handle));
  ASSERT_OK(backend_.Release(pin.handle));
  EXPECT_EQ(backend_.mapping_count(), 0u);
  EXPECT_EQ(backend_.pinned_bytes(), 0u);
  EXPECT_TRUE(Unmapped(addr, 3 * kPage));
  EXPECT_THAT(backend_.AddressForTesting(pin.handle), StatusIs(absl::StatusCode::kNotFound, _));
}

TEST_F(HostBackendTest, RevokeUnmapsThePin) {
  FileInfo info;
  ScopedFd fd = Open("file", O_RDWR, &info);
  ASSERT_OK_AND_ASSIGN(BackendPin pin,
                       backend_.Pin(Spec(fd.get(), info, 0, 3 * kPage, Access::kReadWrite)));
  ASSERT_OK_AND_ASSIGN(const void* addr, backend_.AddressForTesting(pin.handle));
  ASSERT_OK(backend_.Revoke(pin.handle));
  EXPECT_EQ(backend_.mapping_count(), 0u);
  EXPECT_EQ(backend_.pinned_bytes(), 0u);
  EXPECT_TRUE(Unmapped(addr, 3 * kPage));
}

TEST_F(HostBackendTest, ReleaseOfUnknownHandleIsNotFound) {
  EXPECT_THAT(backend_.Release(12345),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("handle 12345")));
}

TEST_F(HostBackendTest, RevokeOfUnknownHandleIsNotFound) {
  EXPECT_THAT(backend_.Revoke(12345),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("handle 12345")));
}

TEST_F(HostBackendTest, DoubleReleaseIsNotFound) {
  FileInfo info;
  ScopedFd fd = Open("file", O_RDONLY, &info);
  ASSERT_OK_AND_ASSIGN(BackendPin pin, backend_.Pin(Spec(fd.get(), info, 0, kPage, Access::kRead)));
  ASSERT_OK(backend_.Release(pin.handle));
  EXPECT_THAT(backend_.Release(pin.handle),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("already released or revoked")));
}

TEST_F(HostBackendTest, RevokeAfterReleaseIsNotFound) {
  FileInfo info;
  ScopedFd fd = Open("file", O_RDONLY, &info);
  ASSERT_OK_AND_ASSIGN(BackendPin pin, backend_.Pin(Spec(fd.get(), info, 0, kPage, Access::kRead)));
  ASSERT_OK(backend_.Release(pin.handle));
  EXPECT_THAT(backend_.Revoke(pin.handle), StatusIs(absl::StatusCode::kNotFound, _));
}

TEST_F(HostBackendTest, UnalignedOffsetIsInvalidArgument) {
  FileInfo info;
  ScopedFd fd = Open("file", O_RDONLY, &info);
  EXPECT_THAT(backend_.Pin(Spec(fd.get(), info, 100, kPage, Access::kRead)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("aligned")));
  EXPECT_EQ(backend_.mapping_count(), 0u);
}

TEST_F(HostBackendTest, EmptyRangeIsInvalidArgument) {
  FileInfo info;
  ScopedFd fd = Open("file", O_RDONLY, &info);
  EXPECT_THAT(backend_.Pin(Spec(fd.get(), info, 0, 0, Access::kRead)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("non-empty")));
}

TEST_F(HostBackendTest, RangePastEndOfFileIsOutOfRange) {
  FileInfo info;
  ScopedFd fd = Open("file", O_RDONLY, &info);
  EXPECT_THAT(backend_.Pin(Spec(fd.get(), info, kPage, 3 * kPage, Access::kRead)),
              StatusIs(absl::StatusCode::kOutOfRange, HasSubstr("past the end of the file")));
  EXPECT_EQ(backend_.mapping_count(), 0u);
  EXPECT_EQ(backend_.pinned_bytes(), 0u);
}

TEST_F(HostBackendTest, LastPartialPageOfFileIsPinnable) {
  dir_.WriteFile("short", Pattern(2 * kPage + 10));
  FileInfo info;
  ScopedFd fd = Open("short", O_RDONLY, &info);
  EXPECT_THAT(backend_.Pin(Spec(fd.get(), info, 0, 3 * kPage, Access::kRead)), IsOk());
}

TEST_F(HostBackendTest, ReadWritePinOfReadOnlyDescriptorIsPermissionDenied) {
  FileInfo info;
  ScopedFd fd = Open("file", O_RDONLY, &info);
  EXPECT_THAT(backend_.Pin(Spec(fd.get(), info, 0, kPage, Access::kReadWrite)),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("O_RDWR")));
  EXPECT_EQ(backend_.mapping_count(), 0u);
}

TEST_F(HostBackendTest, DescriptorOfAnotherFileIsInvalidArgument) {
  dir_.WriteFile("other", contents_);
  FileInfo info;
  ScopedFd fd = Open("file", O_RDONLY, &info);
  FileInfo other_info;
  ScopedFd other = Open("other", O_RDONLY, &other_info);
  EXPECT_THAT(backend_.Pin(Spec(other.get(), info, 0, kPage, Access::kRead)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not the file")));
}

TEST_F(HostBackendTest, DestructorUnmapsEverything) {
  FileInfo info;
  ScopedFd fd = Open("file", O_RDONLY, &info);
  auto backend = std::make_unique<HostBackend>();
  ASSERT_OK_AND_ASSIGN(BackendPin a, backend->Pin(Spec(fd.get(), info, 0, kPage, Access::kRead)));
  ASSERT_OK_AND_ASSIGN(BackendPin b,
                       backend->Pin(Spec(fd.get(), info, kPage, 2 * kPage, Access::kRead)));
  ASSERT_OK_AND_ASSIGN(const void* addr_a, backend->AddressForTesting(a.handle));
  ASSERT_OK_AND_ASSIGN(const void* addr_b, backend->AddressForTesting(b.handle));
  backend.reset();
  EXPECT_TRUE(Unmapped(addr_a, kPage));
  EXPECT_TRUE(Unmapped(addr_b, 2 * kPage));
}

TEST_F(HostBackendTest, ConcurrentPinsAndReleasesKeepAccountsExact) {
  FileInfo info;
  ScopedFd fd = Open("file", O_RDONLY, &info);
  constexpr int kThreads = 8;
  constexpr int kRounds = 100;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kRounds; ++i) {
        const uint64_t pages = 1 + (t + i) % 3;
        absl::StatusOr<BackendPin> pin =
            backend_.Pin(Spec(fd.get(), info, 0, pages * kPage, Access::kRead));
        EXPECT_THAT(pin, IsOk());
        if (!pin.ok()) return;
        EXPECT_OK(i % 2 == 0 ? backend_.Release(pin->handle) : backend_.Revoke(pin->handle));
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(backend_.mapping_count(), 0u);
  EXPECT_EQ(backend_.pinned_bytes(), 0u);
}

// --- Floods and the VMA limit -----------------------------------------------------------------

// More one-page pins of one page than vm.max_map_count allows mappings: they share one mapping
// and one locked page, so the process's VMA count stays where it was.
TEST_F(HostBackendTest, FloodOfOnePagePinsPastTheMapCountSharesOneMapping) {
  FileInfo info;
  ScopedFd fd = Open("file", O_RDONLY, &info);
  std::ifstream max_map_count_file("/proc/sys/vm/max_map_count");
  uint64_t max_map_count = 65530;
  max_map_count_file >> max_map_count;
  const uint64_t pins = max_map_count + 5000;
  std::vector<uint64_t> handles;
  handles.reserve(pins);
  const std::string path = dir_.Join("file");
  ASSERT_EQ(MapCountOf(path), 0u);
  for (uint64_t i = 0; i < pins; ++i) {
    absl::StatusOr<BackendPin> pin =
        backend_.Pin(Spec(fd.get(), info, kPage, kPage, Access::kRead));
    ASSERT_THAT(pin, IsOk()) << "pin " << i;
    handles.push_back(pin->handle);
  }
  EXPECT_EQ(backend_.lease_count(), pins);
  EXPECT_EQ(backend_.mapping_count(), 1u);
  EXPECT_EQ(backend_.pinned_bytes(), kPage);
  // One mapping, split around its locked page; a VMA per pin would be 70k.
  EXPECT_GE(MapCountOf(path), 1u);
  EXPECT_LE(MapCountOf(path), 3u);
  for (uint64_t handle : handles) ASSERT_OK(backend_.Release(handle));
  EXPECT_EQ(backend_.lease_count(), 0u);
  EXPECT_EQ(backend_.pinned_bytes(), 0u);
  EXPECT_EQ(backend_.vma_estimate(), 0u);
  EXPECT_EQ(MapCountOf(path), 0u);
}

// Pins of separate pages each split the mapping; past max_vmas they are refused with
// RESOURCE_EXHAUSTED naming the limit, nothing else breaks, and releasing frees everything.
TEST_F(HostBackendTest, PinsPastMaxVmasAreRefusedCleanlyAndEverythingIsReleased) {
  constexpr uint64_t kPages = 512;
  dir_.WriteFile("big", Pattern(kPages * kPage));
  FileInfo info;
  ScopedFd fd = Open("big", O_RDONLY, &info);
  FileInfo small_info;
  ScopedFd small = Open("file", O_RDONLY, &small_info);
  // The holder's share is no bound here (EachHolderHasItsShareOfMaxVmas... tests it): the pins
  // run into the limit itself.
  HostBackend backend(HostBackend::Options{.max_vmas = 64, .max_vmas_per_holder = 1000});
  EXPECT_EQ(backend.max_vmas(), 64u);
  const std::string path = dir_.Join("big");
  ASSERT_EQ(MapCountOf(path), 0u);
  std::vector<uint64_t> handles;
  absl::Status refused;
  for (uint64_t page = 0; page < kPages; page += 2) {  // Every other page: one run each.
    absl::StatusOr<BackendPin> pin =
        backend.Pin(Spec(fd.get(), info, page * kPage, kPage, Access::kRead));
    if (!pin.ok()) {
      refused = pin.status();
      break;
    }
    handles.push_back(pin->handle);
  }
  EXPECT_THAT(refused,
              StatusIs(absl::StatusCode::kResourceExhausted,
                       ::testing::AllOf(HasSubstr("limit of 64"), HasSubstr("vm.max_map_count"))));
  EXPECT_LE(backend.vma_estimate(), 64u);
  EXPECT_LE(MapCountOf(path), 64u);
  EXPECT_LE(MapCountOf(path), backend.vma_estimate());
  EXPECT_EQ(backend.pinned_bytes(), handles.size() * kPage);
  // Pages already locked can still be pinned: they add no VMA.
  ASSERT_OK_AND_ASSIGN(BackendPin again,
                       backend.Pin(Spec(fd.get(), info, 0, kPage, Access::kRead)));
  // So can the page next to a locked one (it extends a run).
  ASSERT_OK_AND_ASSIGN(BackendPin next,
                       backend.Pin(Spec(fd.get(), info, kPage, kPage, Access::kRead)));
  EXPECT_EQ(backend.pinned_bytes(), (handles.size() + 1) * kPage);
  ASSERT_OK(backend.Release(again.handle));
  ASSERT_OK(backend.Release(next.handle));
  for (uint64_t handle : handles) ASSERT_OK(backend.Revoke(handle));
  EXPECT_EQ(backend.lease_count(), 0u);
  EXPECT_EQ(backend.mapping_count(), 0u);
  EXPECT_EQ(backend.pinned_bytes(), 0u);
  EXPECT_EQ(backend.vma_estimate(), 0u);
  EXPECT_EQ(MapCountOf(path), 0u);
  // And after all that, pins work again, of this file and of others.
  ASSERT_OK_AND_ASSIGN(BackendPin other,
                       backend.Pin(Spec(small.get(), small_info, 0, kPage, Access::kRead)));
  ASSERT_OK(backend.Release(other.handle));
}

// Pins of separate pages as `holder`, every other page from `first`, until one is refused
// (returned) or the file ends (OK). The pins' handles go to `handles`.
absl::Status PinEveryOtherPage(HostBackend& backend, int fd, const FileInfo& info,
                               absl::string_view holder, uint64_t first, uint64_t pages,
                               std::vector<uint64_t>* handles) {
  for (uint64_t page = first; page < pages; page += 2) {
    PinSpec spec{.lease = 7,
                 .owner = "flood",
                 .fd = fd,
                 .file = &info,
                 .bytes = ByteRange{.offset = page * kPage, .length = kPage},
                 .access = Access::kRead,
                 .holder = holder};
    absl::StatusOr<BackendPin> pin = backend.Pin(spec);
    if (!pin.ok()) return pin.status();
    handles->push_back(pin->handle);
  }
  return absl::OkStatus();
}

// One holder pinning separate pages uses up its share (half of max_vmas by default), not the
// whole limit: another holder still pins as many, and ending the leases, by release or revoke,
// gives each share back whole.
TEST_F(HostBackendTest, EachHolderHasItsShareOfMaxVmasAndGetsItBackExactly) {
  constexpr uint64_t kPages = 512;
  dir_.WriteFile("big", Pattern(kPages * kPage));
  FileInfo info;
  ScopedFd fd = Open("big", O_RDONLY, &info);
  const std::string path = dir_.Join("big");
  HostBackend backend(HostBackend::Options{.max_vmas = 64});
  EXPECT_EQ(backend.max_vmas_per_holder(), 32u);  // Half of max_vmas by default.

  std::vector<uint64_t> a;
  const absl::Status refused = PinEveryOtherPage(backend, fd.get(), info, "uid 1", 0, kPages, &a);
  const uint64_t a_use = backend.holder_vmas("uid 1");
  EXPECT_THAT(refused,
              StatusIs(absl::StatusCode::kResourceExhausted,
                       ::testing::AllOf(HasSubstr(absl::StrCat("uid 1 holds ", a_use, " VMAs")),
                                        HasSubstr("share max_vmas is 32"),
                                        HasSubstr("limit of 64 (max_vmas_total"))));
  ASSERT_FALSE(a.empty());
  EXPECT_LE(a_use, 32u);
  EXPECT_GT(a_use + 2, 32u);  // A further separate range would not fit.
  // The refused pin left nothing behind, and the holder's pins are within its share.
  EXPECT_EQ(backend.lease_count(), a.size());
  EXPECT_EQ(backend.pinned_bytes(), a.size() * kPage);
  EXPECT_LE(backend.vma_estimate(), a_use);
  EXPECT_LE(MapCountOf(path), backend.vma_estimate());
  // A range the holder holds already costs it nothing.
  ASSERT_OK_AND_ASSIGN(BackendPin same, backend.Pin(PinSpec{.lease = 8,
                                                            .owner = "flood",
                                                            .fd = fd.get(),
                                                            .file = &info,
                                                            .bytes = {.offset = 0, .length = kPage},
                                                            .access = Access::kRead,
                                                            .holder = "uid 1"}));
  EXPECT_EQ(backend.holder_vmas("uid 1"), a_use);

  // Another holder pins as many separate pages as the first could.
  std::vector<uint64_t> b;
  EXPECT_EQ(PinEveryOtherPage(backend, fd.get(), info, "uid 2", 1, kPages, &b).code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(b.size(), a.size());
  EXPECT_EQ(backend.holder_vmas("uid 2"), a_use);
  EXPECT_EQ(backend.holder_vmas("uid 1"), a_use);

  // Releasing one of A's separate pages gives back what one more takes, no more: A pins one
  // page elsewhere, and the next is refused again.
  ASSERT_OK(backend.Release(a.back()));
  a.pop_back();
  std::vector<uint64_t> again;
  EXPECT_EQ(PinEveryOtherPage(backend, fd.get(), info, "uid 1", kPages / 2, kPages, &again).code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(again.size(), 1u);
  EXPECT_EQ(backend.holder_vmas("uid 1"), a_use);

  // Ending everything, by release and by revoke, gives both shares back whole.
  ASSERT_OK(backend.Release(same.handle));
  for (uint64_t handle : again) ASSERT_OK(backend.Revoke(handle));
  for (uint64_t handle : a) ASSERT_OK(backend.Revoke(handle));
  for (uint64_t handle : b) ASSERT_OK(backend.Release(handle));
  EXPECT_EQ(backend.holder_vmas("uid 1"), 0u);
  EXPECT_EQ(backend.holder_vmas("uid 2"), 0u);
  EXPECT_EQ(backend.vma_estimate(), 0u);
  EXPECT_EQ(backend.lease_count(), 0u);
  EXPECT_EQ(MapCountOf(path), 0u);
  std::vector<uint64_t> fresh;
  EXPECT_EQ(PinEveryOtherPage(backend, fd.get(), info, "uid 1", 0, kPages, &fresh).code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(fresh.size(), a.size() + 1);
  for (uint64_t handle : fresh) ASSERT_OK(backend.Release(handle));
  EXPECT_EQ(backend.holder_vmas("uid 1"), 0u);
}

// Pages pinned inside a run the holder already holds add no VMA now, but they are charged as
// separate ranges: when the covering lease ends they are separate runs, and the holder's use
// still bounds what its leases take.
TEST_F(HostBackendTest, PinsInsideTheHoldersOwnRunAreChargedSoEndingTheRunStaysWithinTheShare) {
  constexpr uint64_t kPages = 128;
  dir_.WriteFile("big", Pattern(kPages * kPage));
  FileInfo info;
  ScopedFd fd = Open("big", O_RDONLY, &info);
  const std::string path = dir_.Join("big");
  HostBackend backend(HostBackend::Options{.max_vmas = 64});
  ASSERT_OK_AND_ASSIGN(BackendPin whole,
                       backend.Pin(PinSpec{.lease = 1,
                                           .owner = "nest",
                                           .fd = fd.get(),
                                           .file = &info,
                                           .bytes = {.offset = 0, .length = kPages * kPage},
                                           .access = Access::kRead,
                                           .holder = "uid 1"}));
  std::vector<uint64_t> inner;
  EXPECT_EQ(PinEveryOtherPage(backend, fd.get(), info, "uid 1", 1, kPages, &inner).code(),
            absl::StatusCode::kResourceExhausted);
  ASSERT_FALSE(inner.empty());
  EXPECT_LE(backend.holder_vmas("uid 1"), backend.max_vmas_per_holder());
  ASSERT_OK(backend.Release(whole.handle));
  // The inner pages are separate runs now: the VMAs they take grew, the holder's use did not.
  EXPECT_EQ(backend.vma_estimate(), 1 + 2 * inner.size());
  EXPECT_LE(backend.vma_estimate(), backend.holder_vmas("uid 1"));
  EXPECT_LE(MapCountOf(path), backend.vma_estimate());
  for (uint64_t handle : inner) ASSERT_OK(backend.Release(handle));
  EXPECT_EQ(backend.holder_vmas("uid 1"), 0u);
  EXPECT_EQ(MapCountOf(path), 0u);
}

TEST(CountedRangesTest, CountsRunsAndFreesOnlyUncoveredPieces) {
  CountedRanges r;
  EXPECT_EQ(r.RunDeltaOfAdd(10, 20), 1);
  r.Add(10, 20);
  EXPECT_EQ(r.RunDeltaOfAdd(30, 40), 1);
  r.Add(30, 40);
  EXPECT_EQ(r.RunDeltaOfAdd(20, 30), -1);  // Joins the two runs.
  EXPECT_EQ(r.RunDeltaOfAdd(15, 35), -1);
  EXPECT_EQ(r.RunDeltaOfAdd(0, 10), 0);  // Extends a run.
  std::vector<ByteRange> gaps = r.Uncovered(0, 50);
  ASSERT_EQ(gaps.size(), 3u);
  EXPECT_EQ(gaps[1].offset, 20u);
  EXPECT_EQ(gaps[1].length, 10u);
  r.Add(15, 35);
  int64_t delta = 0;
  // [15, 20) and [30, 35) are still covered twice; [20, 30) once.
  std::vector<ByteRange> freed = r.Remove(10, 20, &delta);
  ASSERT_EQ(freed.size(), 1u);
  EXPECT_EQ(freed[0].offset, 10u);
  EXPECT_EQ(freed[0].length, 5u);
  EXPECT_EQ(delta, 0);
  freed = r.Remove(22, 24, &delta);  // Covered once (by [15, 35)): freed, splitting the run.
  ASSERT_EQ(freed.size(), 1u);
  EXPECT_EQ(freed[0].offset, 22u);
  EXPECT_EQ(delta, 1);
  EXPECT_EQ(r.RunDeltaOfAdd(22, 24), -1);
  r.Add(22, 24);
  freed = r.Remove(15, 35, &delta);  // Frees [15, 30) as one piece; [30, 35) stays once.
  ASSERT_EQ(freed.size(), 1u);
  EXPECT_EQ(freed[0].offset, 15u);
  EXPECT_EQ(freed[0].length, 15u);
  EXPECT_EQ(delta, 0);
  freed = r.Remove(30, 40, &delta);
  ASSERT_EQ(freed.size(), 1u);
  EXPECT_EQ(freed[0].length, 10u);
  EXPECT_EQ(delta, -1);
  EXPECT_TRUE(r.empty());
}

// --- RLIMIT_MEMLOCK ---------------------------------------------------------------------------

constexpr int kChildOk = 0;
constexpr int kChildSkip = 77;
constexpr int kChildFail = 1;

// Drops CAP_IPC_LOCK (which bypasses RLIMIT_MEMLOCK) from this process's effective, permitted
// and inheritable sets. Returns an empty string, or why it could not.
std::string DropIpcLock() {
  struct __user_cap_header_struct header = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
  struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
  if (::syscall(SYS_capget, &header, data) != 0) return "capget: " + ErrnoDescription(errno);
  const unsigned index = CAP_TO_INDEX(CAP_IPC_LOCK);
  const uint32_t mask = CAP_TO_MASK(CAP_IPC_LOCK);
  data[index].effective &= ~mask;
  data[index].permitted &= ~mask;
  data[index].inheritable &= ~mask;
  if (::syscall(SYS_capset, &header, data) != 0) return "capset: " + ErrnoDescription(errno);
  if (::syscall(SYS_capget, &header, data) != 0) return "capget: " + ErrnoDescription(errno);
  if ((data[index].effective & mask) != 0) return "CAP_IPC_LOCK is still effective after capset";
  return "";
}

// Runs in the forked child: pins 1 MiB under a 64 KiB RLIMIT_MEMLOCK without CAP_IPC_LOCK.
// Writes what went wrong (or why the test cannot run) to `report` and returns the exit code.
int MemlockChild(int fd, const FileInfo& info, int report) {
  const auto say = [report](const std::string& text) {
    (void)!::write(report, text.data(), text.size());
  };
  if (const std::string why = DropIpcLock(); !why.empty()) {
    say("cannot drop CAP_IPC_LOCK: " + why);
    return kChildSkip;
  }
  const struct rlimit limit = {.rlim_cur = 64 * 1024, .rlim_max = 64 * 1024};
  if (::setrlimit(RLIMIT_MEMLOCK, &limit) != 0) {
    say("setrlimit(RLIMIT_MEMLOCK): " + ErrnoDescription(errno));
    return kChildSkip;
  }

  HostBackend backend;
  const PinSpec spec{.lease = 7,
                     .owner = "memlock",
                     .fd = fd,
                     .file = &info,
                     .bytes = ByteRange{.offset = 0, .length = 1 << 20},
                     .access = Access::kRead};
  const absl::StatusOr<BackendPin> pin = backend.Pin(spec);
  if (pin.ok()) {
    say("pinning 1 MiB under a 64 KiB RLIMIT_MEMLOCK succeeded");
    return kChildFail;
  }
  const std::string message(pin.status().message());
  if (pin.status().code() != absl::StatusCode::kResourceExhausted ||
      !absl::StrContains(message, "RLIMIT_MEMLOCK") || !absl::StrContains(message, "65536 bytes") ||
      !absl::StrContains(message, "1048576") || !absl::StrContains(message, "CAP_IPC_LOCK")) {
    say("unexpected status: " + pin.status().ToString());
    return kChildFail;
  }
  if (backend.mapping_count() != 0 || backend.pinned_bytes() != 0) {
    say("the backend still accounts for a mapping after the failed pin");
    return kChildFail;
  }
  // Nothing of the file may stay mapped in the process.
  std::ifstream maps("/proc/self/maps");
  const std::string inode = absl::StrCat(" ", info.id.ino, " ");
  for (std::string line; std::getline(maps, line);) {
    if (absl::StrContains(line, inode)) {
      say("the file is still mapped: " + line);
      return kChildFail;
    }
  }
  // A pin within the limit still works: the failure was the limit, nothing else.
  PinSpec small = spec;
  small.bytes.length = 4 * kPage;
  if (const absl::StatusOr<BackendPin> ok = backend.Pin(small); !ok.ok()) {
    say("a pin within the limit failed: " + ok.status().ToString());
    return kChildFail;
  }
  return kChildOk;
}

TEST_F(HostBackendTest, PinBeyondMemlockLimitIsResourceExhaustedAndMapsNothing) {
  dir_.WriteFile("big", Pattern(1 << 20));
  FileInfo info;
  ScopedFd fd = Open("big", O_RDONLY, &info);
  int pipe_fds[2];
  ASSERT_EQ(::pipe2(pipe_fds, O_CLOEXEC), 0) << ErrnoDescription(errno);
  ScopedFd read_end(pipe_fds[0]);
  ScopedFd write_end(pipe_fds[1]);

  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0) << ErrnoDescription(errno);
  if (pid == 0) {
    read_end.reset();
    const int code = MemlockChild(fd.get(), info, write_end.get());
    ::_exit(code);  // No gtest teardown or atexit handlers in the child.
  }
  write_end.reset();
  std::string report;
  char buffer[512];
  for (ssize_t n; (n = ::read(read_end.get(), buffer, sizeof(buffer))) != 0;) {
    if (n < 0 && errno == EINTR) continue;
    ASSERT_GT(n, 0) << ErrnoDescription(errno);
    report.append(buffer, static_cast<size_t>(n));
  }
  int status = 0;
  pid_t waited;
  do {
    waited = ::waitpid(pid, &status, 0);
  } while (waited < 0 && errno == EINTR);
  ASSERT_EQ(waited, pid) << ErrnoDescription(errno);
  ASSERT_TRUE(WIFEXITED(status)) << "child died: status " << status << "; " << report;
  if (WEXITSTATUS(status) == kChildSkip) GTEST_SKIP() << report;
  EXPECT_EQ(WEXITSTATUS(status), kChildOk) << report;
}

// --- DAX --------------------------------------------------------------------------------------

TEST_F(HostBackendTest, DaxFileIsPinnedReadWrite) {
  const char* dax_dir = std::getenv("PINBROKER_DAX_DIR");
  if (dax_dir == nullptr || *dax_dir == '\0') {
    GTEST_SKIP() << "PINBROKER_DAX_DIR is not set; point it at a directory on a filesystem "
                    "mounted with -o dax (fs-dax on pmem) to test DAX pins";
  }
  TempDir dax(dax_dir);
  const std::string contents = Pattern(3 * kPage);
  dax.WriteFile("file", contents);
  ScopedFd fd(::open(dax.Join("file").c_str(), O_RDWR | O_CLOEXEC));
  ASSERT_TRUE(fd.valid()) << ErrnoDescription(errno);
  ASSERT_OK_AND_ASSIGN(FileInfo info, InspectFile(fd.get()));
  if (!info.dax) {
    GTEST_SKIP() << "statx does not report STATX_ATTR_DAX for a file in " << dax_dir << " ("
                 << info.fs_type << "); mount it with -o dax on a DAX-capable device";
  }
  ASSERT_OK_AND_ASSIGN(BackendPin pin,
                       backend_.Pin(Spec(fd.get(), info, 0, 3 * kPage, Access::kReadWrite)));
  ASSERT_OK_AND_ASSIGN(const void* addr, backend_.AddressForTesting(pin.handle));
  EXPECT_EQ(std::memcmp(addr, contents.data(), 3 * kPage), 0);
  EXPECT_EQ(backend_.pinned_bytes(), 3 * kPage);
  EXPECT_OK(backend_.Release(pin.handle));
  EXPECT_EQ(backend_.mapping_count(), 0u);
}

}  // namespace
}  // namespace pinbroker
