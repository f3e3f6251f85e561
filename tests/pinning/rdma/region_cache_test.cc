#include "pinning/rdma/region_cache.h"

#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pinbroker::rdma {
namespace {

using ::testing::ElementsAre;
using ::testing::Field;
using ::testing::IsEmpty;
using ::testing::Optional;
using ::testing::SizeIs;

constexpr uint64_t kPage = 4096;
const FileId kFile{8, 100};
const FileId kOtherFile{8, 200};

// Records its own destruction (standing in for deregistration + unmap).
class FakeResources : public RegionResources {
 public:
  FakeResources(std::string name, std::vector<std::string>* destroyed)
      : name_(std::move(name)), destroyed_(destroyed) {}
  ~FakeResources() override { destroyed_->push_back(name_); }

 private:
  std::string name_;
  std::vector<std::string>* destroyed_;
};

RegionKey Key(RegistrationMode mode = RegistrationMode::kPinned, FileId file = kFile,
              bool writable = true) {
  return RegionKey{"rxe0", file, mode, writable};
}

class RegionCacheTest : public ::testing::Test {
 protected:
  // Registers a region named `name` for `key` as the backend does (ticket, then insert).
  RegionCache::Id Add(const std::string& name, const RegionKey& key, uint64_t length) {
    const RegionCache::Ticket ticket = cache_.BeginRegistration(key.file);
    return Insert(ticket, name, key, length);
  }
  RegionCache::Id Insert(const RegionCache::Ticket& ticket, const std::string& name,
                         const RegionKey& key, uint64_t length) {
    RegionCache::Released released;
    const RegionCache::Id id = cache_.Insert(
        ticket, key, length, std::make_unique<FakeResources>(name, &destroyed_), &released);
    released.clear();
    return id;
  }
  void Release(RegionCache::Id id) {
    RegionCache::Released released;
    cache_.ReleaseWindow(id, &released);
    released.clear();
  }

  std::vector<std::string> destroyed_;  // Outlives the cache, whose regions record into it.
  RegionCache cache_;
};

TEST_F(RegionCacheTest, LeasesShareARegionThatGoesWithTheLastWindow) {
  const RegionCache::Id id = Add("r1", Key(), 8 * kPage);
  EXPECT_THAT(cache_.AcquireExisting(Key(), 8 * kPage), Optional(id));
  EXPECT_EQ(cache_.Get(id)->windows, 2u);
  Release(id);
  EXPECT_THAT(destroyed_, IsEmpty());
  Release(id);
  EXPECT_THAT(destroyed_, ElementsAre("r1"));
  EXPECT_EQ(cache_.Get(id), nullptr);
  EXPECT_EQ(cache_.size(), 0u);
}

TEST_F(RegionCacheTest, KeyIncludesDeviceModeAndWritability) {
  Add("r1", Key(), 8 * kPage);
  EXPECT_EQ(cache_.AcquireExisting(Key(RegistrationMode::kOdp), kPage), std::nullopt);
  EXPECT_EQ(cache_.AcquireExisting(Key(RegistrationMode::kPinned, kFile, false), kPage),
            std::nullopt);
  EXPECT_EQ(cache_.AcquireExisting(Key(RegistrationMode::kPinned, kOtherFile), kPage),
            std::nullopt);
  RegionKey other_device = Key();
  other_device.device = "rxe1";
  EXPECT_EQ(cache_.AcquireExisting(other_device, kPage), std::nullopt);
}

TEST_F(RegionCacheTest, ALeasePastTheRegionGetsALargerOneAndTheOldIsSuperseded) {
  const RegionCache::Id small = Add("small", Key(), 4 * kPage);
  EXPECT_EQ(cache_.AcquireExisting(Key(), 6 * kPage), std::nullopt);  // Too short.
  const RegionCache::Id large = Add("large", Key(), 8 * kPage);
  EXPECT_TRUE(cache_.Get(small)->superseded);
  // New leases, even ones the small region covers, go to the large one.
  EXPECT_THAT(cache_.AcquireExisting(Key(), kPage), Optional(large));
  Release(small);  // Its only window: superseded regions go with it.
  EXPECT_THAT(destroyed_, ElementsAre("small"));
  EXPECT_EQ(cache_.Get(large)->windows, 2u);
}

TEST_F(RegionCacheTest, ConcurrentRegistrationsOfOneKeyShareTheFirst) {
  const RegionCache::Ticket a = cache_.BeginRegistration(kFile);
  const RegionCache::Ticket b = cache_.BeginRegistration(kFile);
  const RegionCache::Id first = Insert(a, "first", Key(), 8 * kPage);
  const RegionCache::Id second = Insert(b, "second", Key(), 8 * kPage);
  EXPECT_EQ(first, second);
  EXPECT_THAT(destroyed_, ElementsAre("second"));  // Handed back at once.
  EXPECT_EQ(cache_.Get(first)->windows, 2u);
}

TEST_F(RegionCacheTest, LayoutChangeMakesCoveringPinnedRegionsStaleButNotOdpOnes) {
  const RegionCache::Id pinned = Add("pinned", Key(), 8 * kPage);
  const RegionCache::Id odp = Add("odp", Key(RegistrationMode::kOdp), 8 * kPage);
  const RegionCache::Id other = Add("other", Key(RegistrationMode::kPinned, kOtherFile), kPage);
  cache_.BeginLayoutChange(kFile, ByteRange{4 * kPage, UINT64_MAX - 4 * kPage});
  EXPECT_TRUE(cache_.Get(pinned)->stale);
  EXPECT_FALSE(cache_.Get(odp)->stale);
  EXPECT_FALSE(cache_.Get(other)->stale);
  EXPECT_EQ(cache_.AcquireExisting(Key(), kPage), std::nullopt);  // No new windows on it.
  cache_.EndLayoutChange(kFile);
  EXPECT_THAT(cache_.List(kFile), ElementsAre(Field(&RegistrationInfo::stale, true),
                                              Field(&RegistrationInfo::stale, false)));
  // It stays for the window of the lease outside the change, and goes with it.
  Release(pinned);
  EXPECT_THAT(destroyed_, ElementsAre("pinned"));
}

TEST_F(RegionCacheTest, ChangeBeyondARegionLeavesItFresh) {
  const RegionCache::Id id = Add("r", Key(), 4 * kPage);
  cache_.BeginLayoutChange(kFile, ByteRange{4 * kPage, kPage});
  EXPECT_FALSE(cache_.Get(id)->stale);
  cache_.EndLayoutChange(kFile);
}

TEST_F(RegionCacheTest, PinnedRegionRegisteredDuringALayoutChangeIsStaleFromTheStart) {
  const RegionCache::Ticket before = cache_.BeginRegistration(kFile);
  cache_.BeginLayoutChange(kFile, ByteRange{0, kPage});
  cache_.EndLayoutChange(kFile);
  // The registration may have pinned pages the change then removed.
  const RegionCache::Id id = Insert(before, "raced", Key(), 8 * kPage);
  EXPECT_TRUE(cache_.Get(id)->stale);
  EXPECT_EQ(cache_.Get(id)->windows, 1u);  // It still serves the lease it was made for.

  cache_.BeginLayoutChange(kFile, ByteRange{0, kPage});
  const RegionCache::Id during = Add("during", Key(), 8 * kPage);
  EXPECT_TRUE(cache_.Get(during)->stale);
  cache_.EndLayoutChange(kFile);

  const RegionCache::Id after = Add("after", Key(), 8 * kPage);
  EXPECT_FALSE(cache_.Get(after)->stale);
  // ODP regions follow the file: never stale.
  const RegionCache::Ticket odp_ticket = cache_.BeginRegistration(kFile);
  cache_.BeginLayoutChange(kFile, ByteRange{0, kPage});
  EXPECT_FALSE(cache_.Get(Insert(odp_ticket, "odp", Key(RegistrationMode::kOdp), kPage))->stale);
  cache_.EndLayoutChange(kFile);
}

TEST_F(RegionCacheTest, StaleRegionDoesNotSupersedeTheFreshOne) {
  const RegionCache::Id fresh = Add("fresh", Key(), 8 * kPage);
  const RegionCache::Ticket ticket = cache_.BeginRegistration(kFile);
  cache_.BeginLayoutChange(kFile, ByteRange{16 * kPage, kPage});
  cache_.EndLayoutChange(kFile);
  Insert(ticket, "raced", Key(), 16 * kPage);
  EXPECT_FALSE(cache_.Get(fresh)->superseded);
  EXPECT_THAT(cache_.AcquireExisting(Key(), kPage), Optional(fresh));
}

TEST_F(RegionCacheTest, ListReportsEachRegionOfTheFile) {
  Add("a", Key(), 8 * kPage);
  Add("b", Key(RegistrationMode::kOdp, kFile, false), 2 * kPage);
  const std::vector<RegistrationInfo> list = cache_.List(kFile);
  ASSERT_THAT(list, SizeIs(2));
  EXPECT_EQ(list[0].device, "rxe0");
  EXPECT_EQ(list[0].mode, RegistrationMode::kPinned);
  EXPECT_EQ(list[0].range, (ByteRange{0, 8 * kPage}));
  EXPECT_EQ(list[0].windows, 1u);
  EXPECT_EQ(list[1].mode, RegistrationMode::kOdp);
  EXPECT_THAT(cache_.List(kOtherFile), IsEmpty());
}

TEST_F(RegionCacheTest, TakeAllHandsEveryRegionBack) {
  Add("a", Key(), kPage);
  Add("b", Key(RegistrationMode::kOdp), kPage);
  RegionCache::Released all = cache_.TakeAll();
  EXPECT_THAT(all, SizeIs(2));
  all.clear();
  EXPECT_THAT(destroyed_, SizeIs(2));
  EXPECT_EQ(cache_.size(), 0u);
}

TEST_F(RegionCacheTest, AbandonedRegistrationForgetsTheFile) {
  const RegionCache::Ticket t = cache_.BeginRegistration(kFile);
  cache_.Abandon(t);
  EXPECT_THAT(cache_.List(kFile), IsEmpty());
  EXPECT_EQ(cache_.size(), 0u);
}

}  // namespace
}  // namespace pinbroker::rdma
