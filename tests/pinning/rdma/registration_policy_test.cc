#include "pinning/rdma/registration_policy.h"

#include <infiniband/verbs.h>
#include <linux/magic.h>

#include <cerrno>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace pinbroker::rdma {
namespace {

using ::pinbroker::testing::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr uint32_t kMtu4096 = 4096;

// rxe on Linux 6.17+: ODP, type-2B windows (whose bounds it does not enforce).
DeviceCaps RxeWithOdp() {
  DeviceCaps caps;
  caps.name = "rxe0";
  caps.soft_roce = true;
  caps.odp = {.supported = true, .read = true, .write = true, .atomic = true};
  caps.mw_type1 = true;
  caps.mw_type2b = true;
  caps.max_mw = 524287;
  caps.active_mtu = 4096;
  caps.window_bounds_enforced = false;
  return caps;
}

// rxe on Linux 6.1/6.12: windows, no ODP.
DeviceCaps RxeWithoutOdp() {
  DeviceCaps caps = RxeWithOdp();
  caps.odp = {};
  return caps;
}

// The same device as if it enforced window bounds (as hardware does): file regions.
DeviceCaps Bounded(DeviceCaps caps) {
  caps.window_bounds_enforced = true;
  return caps;
}

FileInfo File(uint64_t magic, bool dax = false) {
  FileInfo f;
  f.fs_magic = magic;
  f.dax = dax;
  return f;
}

constexpr Candidate kPinnedShared{RegistrationMode::kPinned, RegionScope::kFile, true, true};
constexpr Candidate kOdpShared{RegistrationMode::kOdp, RegionScope::kFile, true, true};
constexpr Candidate kOdpSharedReadOnly{RegistrationMode::kOdp, RegionScope::kFile, true, false};
constexpr Candidate kPinnedOwnKeyReadOnly{RegistrationMode::kPinned, RegionScope::kLease, false,
                                          false};

TEST(ClassifyFileTest, ShmemDaxAndPageCache) {
  EXPECT_EQ(ClassifyFile(File(TMPFS_MAGIC)), FileKind::kShmem);
  EXPECT_EQ(ClassifyFile(File(HUGETLBFS_MAGIC)), FileKind::kShmem);
  EXPECT_EQ(ClassifyFile(File(EXT4_SUPER_MAGIC)), FileKind::kPageCache);
  EXPECT_EQ(ClassifyFile(File(XFS_SUPER_MAGIC, /*dax=*/true)), FileKind::kDax);
  EXPECT_EQ(ClassifyFile(File(EXT4_SUPER_MAGIC, /*dax=*/true)), FileKind::kDax);
}

TEST(PlanRegistrationTest, ReadWriteShmemTriesPinnedThenOdp) {
  const Plan plan =
      PlanRegistration(FileKind::kShmem, Access::kReadWrite, Bounded(RxeWithOdp()), kMtu4096);
  EXPECT_THAT(plan.candidates, ElementsAre(kPinnedShared, kOdpShared));
  EXPECT_THAT(plan.ruled_out, IsEmpty());
}

TEST(PlanRegistrationTest, DaxSkipsPinnedAndNeedsOdp) {
  const Plan with =
      PlanRegistration(FileKind::kDax, Access::kReadWrite, Bounded(RxeWithOdp()), kMtu4096);
  EXPECT_THAT(with.candidates, ElementsAre(kOdpShared));
  EXPECT_THAT(with.ruled_out, ElementsAre(HasSubstr("fs-dax pages cannot be long-term pinned")));

  const Plan without =
      PlanRegistration(FileKind::kDax, Access::kReadWrite, RxeWithoutOdp(), kMtu4096);
  EXPECT_THAT(without.candidates, IsEmpty());
  EXPECT_THAT(without.ruled_out, ElementsAre(HasSubstr("fs-dax pages cannot be long-term pinned"),
                                             HasSubstr("has no on-demand paging (ODP)")));
}

TEST(PlanRegistrationTest, ReadLeasesUseReadOnlyOdpWindowsWherePinnedWindowsWouldNeedWrite) {
  const DeviceCaps caps = Bounded(RxeWithOdp());
  // Page cache: a pinned region with windows would be a writable long-term pin.
  EXPECT_THAT(PlanRegistration(FileKind::kPageCache, Access::kRead, caps, kMtu4096).candidates,
              ElementsAre(kOdpSharedReadOnly, kPinnedOwnKeyReadOnly));
  EXPECT_THAT(
      PlanRegistration(FileKind::kPageCache, Access::kRead, Bounded(RxeWithoutOdp()), kMtu4096)
          .candidates,
      ElementsAre(kPinnedOwnKeyReadOnly));
  // Shmem can be pinned writable harmlessly: windows on a writable region first.
  EXPECT_THAT(PlanRegistration(FileKind::kShmem, Access::kRead, caps, kMtu4096).candidates,
              ElementsAre(kPinnedShared, kOdpSharedReadOnly, kPinnedOwnKeyReadOnly));
  EXPECT_THAT(PlanRegistration(FileKind::kDax, Access::kRead, caps, kMtu4096).candidates,
              ElementsAre(kOdpSharedReadOnly));
}

TEST(PlanRegistrationTest, UnboundedWindowsGoOnRegionsOfExactlyTheLease) {
  // rxe checks a window access only against the window's region: the region is the lease.
  EXPECT_THAT(
      PlanRegistration(FileKind::kShmem, Access::kReadWrite, RxeWithOdp(), kMtu4096).candidates,
      ElementsAre(Candidate{RegistrationMode::kPinned, RegionScope::kLease, true, true},
                  Candidate{RegistrationMode::kOdp, RegionScope::kLease, true, true}));
  EXPECT_THAT(PlanRegistration(FileKind::kDax, Access::kRead, RxeWithOdp(), kMtu4096).candidates,
              ElementsAre(Candidate{RegistrationMode::kOdp, RegionScope::kLease, true, false}));
}

TEST(PlanRegistrationTest, RxeOdpIsRuledOutBelowPathMtu4096WithTheFix) {
  const Plan plan = PlanRegistration(FileKind::kDax, Access::kReadWrite, RxeWithOdp(), 1024);
  EXPECT_THAT(plan.candidates, IsEmpty());
  EXPECT_THAT(
      plan.ruled_out,
      ElementsAre(HasSubstr("pinned"), AllOf(HasSubstr("path MTU is 1024 bytes"), HasSubstr("4200"),
                                             HasSubstr("active_mtu is 4096"))));
  // Pinned memory has no such constraint.
  EXPECT_THAT(PlanRegistration(FileKind::kShmem, Access::kReadWrite, Bounded(RxeWithOdp()), 1024)
                  .candidates,
              ElementsAre(kPinnedShared));
}

TEST(PlanRegistrationTest, OdpWithoutRemoteWriteServesOnlyReads) {
  DeviceCaps caps = Bounded(RxeWithOdp());
  caps.odp.write = false;
  const Plan rw = PlanRegistration(FileKind::kDax, Access::kReadWrite, caps, kMtu4096);
  EXPECT_THAT(rw.candidates, IsEmpty());
  EXPECT_THAT(rw.ruled_out, ElementsAre(HasSubstr("pinned"), HasSubstr("lacks remote write")));
  EXPECT_THAT(PlanRegistration(FileKind::kDax, Access::kRead, caps, kMtu4096).candidates,
              ElementsAre(kOdpSharedReadOnly));
}

TEST(PlanRegistrationTest, NoType2WindowsFallsBackToLeaseRegionsWithTheirOwnKeys) {
  DeviceCaps caps = RxeWithOdp();
  caps.mw_type2b = false;
  const Plan plan = PlanRegistration(FileKind::kShmem, Access::kReadWrite, caps, kMtu4096);
  EXPECT_THAT(plan.candidates,
              ElementsAre(Candidate{RegistrationMode::kPinned, RegionScope::kLease, false, true},
                          Candidate{RegistrationMode::kOdp, RegionScope::kLease, false, true}));
  EXPECT_THAT(plan.ruled_out, ElementsAre(HasSubstr("no type-2 memory windows")));
}

TEST(RefusalTest, KernelRefusalsTryTheNextModeOtherErrorsDoNot) {
  EXPECT_TRUE(RefusalTriesNext(RegistrationMode::kPinned, EOPNOTSUPP));
  EXPECT_TRUE(RefusalTriesNext(RegistrationMode::kPinned, EFAULT));
  EXPECT_FALSE(RefusalTriesNext(RegistrationMode::kPinned, ENOMEM));  // memlock limit
  EXPECT_TRUE(RefusalTriesNext(RegistrationMode::kOdp, EINVAL));      // 6.1 rxe
  EXPECT_TRUE(RefusalTriesNext(RegistrationMode::kOdp, EOPNOTSUPP));  // 6.12 rxe
  EXPECT_FALSE(RefusalTriesNext(RegistrationMode::kOdp, ENOMEM));
}

TEST(RefusalTest, ExplainsWhatTheKernelRefusedAndWhy) {
  EXPECT_THAT(ExplainRefusal(kPinnedShared, FileKind::kPageCache, EFAULT),
              AllOf(HasSubstr("pinned file region + window"), HasSubstr("EFAULT"),
                    HasSubstr("Linux 6.5 and later refuse writable long-term pins")));
  EXPECT_THAT(ExplainRefusal(kOdpShared, FileKind::kDax, EOPNOTSUPP),
              AllOf(HasSubstr("EOPNOTSUPP"), HasSubstr("does not register ODP regions")));
}

TEST(NoModeErrorTest, SaysWhatWasTriedAndThatOdpWouldWork) {
  const absl::Status s = NoModeError("lease 3: bytes [0, 4096) of file 8:1:12", RxeWithoutOdp(),
                                     FileKind::kPageCache, Access::kReadWrite,
                                     {ExplainRefusal(kPinnedShared, FileKind::kPageCache, EFAULT),
                                      "ruled out odp: device rxe0 has no on-demand paging (ODP)"});
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kFailedPrecondition,
                          AllOf(HasSubstr("lease 3"), HasSubstr("page cache, read-write"),
                                HasSubstr("on rxe0"), HasSubstr("EFAULT"),
                                HasSubstr("What would work: an RDMA device with RC on-demand "
                                          "paging (ODP) for remote read and write"),
                                HasSubstr("a read-only lease"), HasSubstr("tmpfs"))));
  EXPECT_THAT(NoModeError("lease 4", RxeWithoutOdp(), FileKind::kDax, Access::kRead, {}),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("fs-dax files cannot be served without ODP")));
}

TEST(AccessFlagsTest, SharedRegionsGrantNothingRemoteTheirWindowsExactlyTheLeasesAccess) {
  const DeviceCaps caps = RxeWithOdp();
  EXPECT_EQ(RegionAccessFlags(kPinnedShared, Access::kRead, caps),
            IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_MW_BIND);
  EXPECT_EQ(RegionAccessFlags(kOdpSharedReadOnly, Access::kRead, caps),
            IBV_ACCESS_MW_BIND | IBV_ACCESS_ON_DEMAND);
  EXPECT_EQ(RegionAccessFlags(kOdpShared, Access::kReadWrite, caps),
            IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_MW_BIND | IBV_ACCESS_ON_DEMAND);
  EXPECT_EQ(WindowAccessFlags(Access::kRead, RegistrationMode::kPinned, caps),
            IBV_ACCESS_REMOTE_READ);
  EXPECT_EQ(WindowAccessFlags(Access::kReadWrite, RegistrationMode::kPinned, caps),
            IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_ATOMIC);
  DeviceCaps no_odp_atomics = caps;
  no_odp_atomics.odp.atomic = false;
  EXPECT_EQ(WindowAccessFlags(Access::kReadWrite, RegistrationMode::kOdp, no_odp_atomics),
            IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_WRITE);
  // Per-lease regions carry the lease's own remote rights.
  EXPECT_EQ(RegionAccessFlags(kPinnedOwnKeyReadOnly, Access::kRead, caps), IBV_ACCESS_REMOTE_READ);
}

TEST(ConstraintsTest, RxeOdpLeasesMustMoveWholePages) {
  const TransferConstraints odp = ConstraintsFor(RxeWithOdp(), RegistrationMode::kOdp, 4096);
  EXPECT_EQ(odp.required_alignment, 4096u);
  EXPECT_EQ(odp.max_transfer_size, 0u);
  EXPECT_THAT(odp.reason, AllOf(HasSubstr("one whole page"), HasSubstr("path MTU 4096")));
  const TransferConstraints pinned = ConstraintsFor(RxeWithOdp(), RegistrationMode::kPinned, 4096);
  EXPECT_EQ(pinned.required_alignment, 1u);
  EXPECT_THAT(pinned.reason, IsEmpty());
}

TEST(DeviceQuirksTest, ReportsRxeOdpPlacementUnboundedWindowsAndMissingWindows) {
  EXPECT_THAT(DeviceQuirks(RxeWithOdp()),
              ElementsAre(HasSubstr("lands in the wrong place"),
                          HasSubstr("rxe0: memory-window bounds are not enforced")));
  EXPECT_THAT(DeviceQuirks(Bounded(RxeWithoutOdp())), IsEmpty());
  DeviceCaps no_windows = RxeWithoutOdp();
  no_windows.mw_type2b = false;
  EXPECT_THAT(DeviceQuirks(no_windows), ElementsAre(HasSubstr("no type-2 memory windows")));
  EXPECT_THAT(MemoryWindowTypeNames(RxeWithOdp()), ElementsAre("1", "2B"));
}

}  // namespace
}  // namespace pinbroker::rdma
