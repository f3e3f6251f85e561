// PinService: pin, renew, release, expiry, listing, describe, watch, and bad input leaving no
// state behind. Layout policies are in layout_coordinator_test.cc.
#include "pinning/pin_service.h"

#include <dirent.h>
#include <limits.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/engine_fixture.h"

namespace pinbroker {
namespace {

using ::pinbroker::testing::Async;
using ::pinbroker::testing::FakeBackend;
using ::pinbroker::testing::IsOk;
using ::pinbroker::testing::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using Kind = FakeBackend::Call::Kind;

class PinServiceTest : public ::pinbroker::testing::EngineTest {
 protected:
  // Nothing of a failed request may remain: no lease, no backend pin, no tracked file.
  void ExpectNoState() {
    EXPECT_THAT(service_->ListLeases({}), IsEmpty());
    EXPECT_EQ(backend_.held(), 0u);
    EXPECT_EQ(service_->tracked_files(), 0u);
  }
};

TEST_F(PinServiceTest, PinHoldsTheWholePagesCoveringTheRange) {
  ASSERT_OK_AND_ASSIGN(LeaseInfo lease, service_->Pin(Request(100, page_ + 10)));
  EXPECT_EQ(lease.pages, (PageRange{0, 2}));
  EXPECT_EQ(lease.offset, 0u);
  EXPECT_EQ(lease.length, 2 * page_);
  EXPECT_EQ(lease.state, LeaseState::kGranted);
  EXPECT_EQ(lease.mode, RegistrationMode::kHost);
  EXPECT_EQ(lease.owner, "s1");
  EXPECT_EQ(lease.export_name, "exp");
  EXPECT_EQ(lease.path, "data");
  const auto calls = backend_.calls();
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0].kind, Kind::kPin);
  EXPECT_EQ(calls[0].bytes, (ByteRange{0, 2 * page_}));
}

TEST_F(PinServiceTest, PinIdentifiesTheFileByDeviceAndInode) {
  struct stat st;
  ASSERT_EQ(stat(dir_.Join("data").c_str(), &st), 0);
  ASSERT_EQ(link(dir_.Join("data").c_str(), dir_.Join("alias").c_str()), 0);
  LeaseInfo a = PinPages(0, 1);
  PinRequest r = Request(page_, page_);
  r.path = "alias";
  ASSERT_OK_AND_ASSIGN(LeaseInfo b, service_->Pin(r));
  EXPECT_EQ(a.file, (FileId{st.st_dev, st.st_ino}));
  EXPECT_EQ(a.file, b.file);
  EXPECT_EQ(service_->tracked_files(), 1u);
}

TEST_F(PinServiceTest, TtlDefaultsToTheExportsAndIsCappedByItsMaximum) {
  ASSERT_OK_AND_ASSIGN(LeaseInfo by_default, service_->Pin(Request(0, 1)));
  EXPECT_EQ(by_default.expires_at, clock_.Now() + absl::Seconds(60));
  PinRequest r = Request(0, 1);
  r.ttl = absl::Hours(5);
  ASSERT_OK_AND_ASSIGN(LeaseInfo capped, service_->Pin(r));
  EXPECT_EQ(capped.expires_at, clock_.Now() + absl::Seconds(600));
}

TEST_F(PinServiceTest, OverlappingLeasesOnOnePageCoexist) {
  LeaseInfo a = PinPages(0, 2);
  LeaseInfo b = PinPages(1, 2, "s2");
  EXPECT_NE(a.id, b.id);
  EXPECT_EQ(service_->ListLeases({}).size(), 2u);
}

// How many of this process's descriptors are open on `path` (/proc/self/fd).
size_t DescriptorsOn(const std::string& path) {
  size_t n = 0;
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return 0;
  while (const dirent* entry = readdir(dir)) {
    char target[PATH_MAX];
    const std::string link = absl::StrCat("/proc/self/fd/", entry->d_name);
    const ssize_t len = readlink(link.c_str(), target, sizeof(target) - 1);
    if (len > 0 && std::string(target, len) == path) ++n;
  }
  closedir(dir);
  return n;
}

// A file's first pin of each access opens it; the pins after it share that descriptor, which
// is closed with the file's last lease.
TEST_F(PinServiceTest, PinsOfAFileWithLeasesShareOneDescriptorPerAccess) {
  const std::string path = dir_.Join("data");
  ASSERT_EQ(DescriptorsOn(path), 0u);
  LeaseInfo a = PinPages(0, 1);
  EXPECT_EQ(DescriptorsOn(path), 1u);
  LeaseInfo b = PinPages(1, 1, "s2");
  LeaseInfo c = PinPages(2, 1);
  EXPECT_EQ(DescriptorsOn(path), 1u);
  PinRequest read = Request(3 * page_, page_);
  read.access = Access::kRead;
  ASSERT_OK_AND_ASSIGN(LeaseInfo d, service_->Pin(read));  // Served by the read-write one.
  EXPECT_EQ(DescriptorsOn(path), 1u);
  for (const LeaseInfo* lease : {&a, &b, &c, &d}) {
    EXPECT_OK(service_->Release(lease->owner, lease->id));
  }
  EXPECT_EQ(DescriptorsOn(path), 0u);
  ExpectNoState();
}

TEST_F(PinServiceTest, ZeroLengthIsInvalidArgument) {
  EXPECT_THAT(service_->Pin(Request(0, 0)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("length")));
  ExpectNoState();
}

TEST_F(PinServiceTest, OverflowingRangeIsInvalidArgument) {
  EXPECT_THAT(service_->Pin(Request(~uint64_t{0} - 10, 100)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("overflows")));
  ExpectNoState();
}

TEST_F(PinServiceTest, MissingOwnerAndNegativeDurationsAreInvalidArgument) {
  EXPECT_THAT(service_->Pin(Request(0, 1, "")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("owner")));
  PinRequest r = Request(0, 1);
  r.ttl = absl::Seconds(-1);
  EXPECT_THAT(service_->Pin(r), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("ttl")));
  ExpectNoState();
}

TEST_F(PinServiceTest, OffsetAtEndOfFileIsOutOfRange) {
  EXPECT_THAT(service_->Pin(Request(kPages * page_, 1)),
              StatusIs(absl::StatusCode::kOutOfRange, HasSubstr("past end of file")));
  ExpectNoState();
}

TEST_F(PinServiceTest, RangeRunningPastEndOfFileIsOutOfRangeAndSaysWhatFits) {
  EXPECT_THAT(service_->Pin(Request(page_, kPages * page_)),
              StatusIs(absl::StatusCode::kOutOfRange,
                       HasSubstr(absl::StrCat("at most ", (kPages - 1) * page_, " bytes"))));
  ExpectNoState();
}

TEST_F(PinServiceTest, UnknownExportIsNotFoundAndListsTheExports) {
  PinRequest r = Request(0, 1);
  r.export_name = "nope";
  EXPECT_THAT(service_->Pin(r), StatusIs(absl::StatusCode::kNotFound,
                                         AllOf(HasSubstr("'nope'"), HasSubstr("exp, ro"))));
  ExpectNoState();
}

TEST_F(PinServiceTest, MissingFileIsNotFound) {
  PinRequest r = Request(0, 1);
  r.path = "absent";
  EXPECT_THAT(service_->Pin(r), StatusIs(absl::StatusCode::kNotFound, HasSubstr("absent")));
  ExpectNoState();
}

TEST_F(PinServiceTest, PathsEscapingTheExportAreRefused) {
  ASSERT_EQ(symlink("/etc/hostname", dir_.Join("escape").c_str()), 0);
  for (const char* path : {"../data", "escape", "/etc/hostname"}) {
    PinRequest r = Request(0, 1);
    r.path = path;
    const auto status = service_->Pin(r).status();
    EXPECT_THAT(status.code(), ::testing::AnyOf(absl::StatusCode::kPermissionDenied,
                                                absl::StatusCode::kInvalidArgument))
        << path << ": " << status;
  }
  ExpectNoState();
}

TEST_F(PinServiceTest, DirectoriesAndSocketsAreNotPinnable) {
  ASSERT_EQ(mkdir(dir_.Join("sub").c_str(), 0755), 0);
  PinRequest r = Request(0, 1);
  r.path = "sub";
  EXPECT_THAT(service_->Pin(r),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("directory")));
  ExpectNoState();
}

TEST_F(PinServiceTest, WriteAccessOnReadOnlyExportIsPermissionDenied) {
  PinRequest r = Request(0, 1);
  r.export_name = "ro";
  EXPECT_THAT(service_->Pin(r),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("read-only")));
  r.access = Access::kRead;
  EXPECT_OK(service_->Pin(r));
}

TEST_F(PinServiceTest, BackendFailureLeavesNothingPinned) {
  backend_.FailNextPin(absl::ResourceExhaustedError("RLIMIT_MEMLOCK is 64 KiB"));
  EXPECT_THAT(service_->Pin(Request(0, page_)),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("RLIMIT_MEMLOCK")));
  ExpectNoState();
  // And the range is free for the next pin.
  EXPECT_OK(service_->Pin(Request(0, page_)));
}

TEST_F(PinServiceTest, RenewExtendsFromNowWithinTheExportMaximum) {
  LeaseInfo lease = PinPages(0, 1);
  clock_.Advance(absl::Seconds(30));
  ASSERT_OK_AND_ASSIGN(LeaseInfo renewed, service_->Renew("s1", lease.id, absl::Seconds(100)));
  EXPECT_EQ(renewed.expires_at, clock_.Now() + absl::Seconds(100));
  ASSERT_OK_AND_ASSIGN(renewed, service_->Renew("s1", lease.id, absl::Hours(1)));
  EXPECT_EQ(renewed.expires_at, clock_.Now() + absl::Seconds(600));
  ASSERT_OK_AND_ASSIGN(renewed, service_->Renew("s1", lease.id, absl::ZeroDuration()));
  EXPECT_EQ(renewed.expires_at, clock_.Now() + absl::Seconds(60));
}

TEST_F(PinServiceTest, RenewOfForeignLeaseIsNotFoundAndChangesNothing) {
  LeaseInfo lease = PinPages(0, 1);
  EXPECT_THAT(service_->Renew("intruder", lease.id, absl::Seconds(100)),
              StatusIs(absl::StatusCode::kNotFound, Not(HasSubstr("s1"))));
  EXPECT_EQ(service_->ListLeases({})[0].expires_at, lease.expires_at);
}

TEST_F(PinServiceTest, ReleaseUndoesThePinAndForgetsTheFile) {
  LeaseInfo lease = PinPages(2, 2);
  ASSERT_OK(service_->Release("s1", lease.id));
  EXPECT_EQ(backend_.count(Kind::kRelease), 1u);
  ExpectNoState();
}

TEST_F(PinServiceTest, ReleaseByAnotherOwnerIsNotFound) {
  LeaseInfo lease = PinPages(0, 1);
  EXPECT_THAT(service_->Release("s2", lease.id),
              StatusIs(absl::StatusCode::kNotFound, ::testing::_));
  EXPECT_EQ(backend_.held(), 1u);
}

TEST_F(PinServiceTest, SecondReleaseIsNotFoundAndSaysTheLeaseWasReleased) {
  LeaseInfo lease = PinPages(0, 1);
  ASSERT_OK(service_->Release("s1", lease.id));
  EXPECT_THAT(service_->Release("s1", lease.id),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("released")));
}

TEST_F(PinServiceTest, UnknownLeaseIdIsNotFound) {
  EXPECT_THAT(service_->Release("s1", 12345),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("no lease 12345")));
  EXPECT_THAT(service_->Renew("s1", 12345, absl::Seconds(1)),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("no lease 12345")));
}

TEST_F(PinServiceTest, LeaseExpiresAtItsTtlAndIsRevokedThroughTheBackend) {
  auto watch = service_->Watch("s1");
  LeaseInfo lease = PinPages(0, 1);
  clock_.Advance(absl::Seconds(59));
  EXPECT_EQ(backend_.held(), 1u);
  clock_.Advance(absl::Seconds(1));
  EXPECT_EQ(backend_.count(Kind::kRevoke), 1u);
  ExpectNoState();
  ASSERT_OK_AND_ASSIGN(LeaseEvent granted, watch.events->Next(absl::InfinitePast()));
  EXPECT_EQ(granted.type, LeaseEvent::Type::kGranted);
  ASSERT_OK_AND_ASSIGN(LeaseEvent expired, watch.events->Next(absl::InfinitePast()));
  EXPECT_EQ(expired.type, LeaseEvent::Type::kExpired);
  EXPECT_EQ(expired.lease.id, lease.id);
  EXPECT_THAT(service_->Renew("s1", lease.id, absl::Seconds(1)),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("expired")));
}

TEST_F(PinServiceTest, RenewedLeaseOutlivesItsFirstExpiry) {
  LeaseInfo lease = PinPages(0, 1);
  clock_.Advance(absl::Seconds(50));
  ASSERT_OK(service_->Renew("s1", lease.id, absl::Seconds(60)).status());
  clock_.Advance(absl::Seconds(50));
  EXPECT_EQ(backend_.held(), 1u);
  clock_.Advance(absl::Seconds(10));
  EXPECT_EQ(backend_.held(), 0u);
}

TEST_F(PinServiceTest, ListLeasesFiltersByOwnerExportAndFile) {
  PinPages(0, 1, "s1");
  PinPages(1, 1, "s2");
  LeaseFilter by_owner;
  by_owner.owner = "s2";
  ASSERT_EQ(service_->ListLeases(by_owner).size(), 1u);
  EXPECT_EQ(service_->ListLeases(by_owner)[0].owner, "s2");
  LeaseFilter by_export;
  by_export.export_name = "ro";
  EXPECT_THAT(service_->ListLeases(by_export), IsEmpty());
}

TEST_F(PinServiceTest, DescribeFileReportsSizeLeasesAndBusyRanges) {
  LeaseInfo a = PinPages(0, 2);
  LeaseInfo b = PinPages(4, 1);
  ASSERT_OK_AND_ASSIGN(FileDescription d, service_->DescribeFile("exp", "data"));
  EXPECT_EQ(d.info.size, kPages * page_);
  EXPECT_FALSE(d.info.dax);
  ASSERT_EQ(d.leases.size(), 2u);
  ASSERT_EQ(d.busy.size(), 2u);
  EXPECT_EQ(d.busy[0].lease, a.id);
  EXPECT_EQ(d.busy[0].range, (PageRange{0, 2}));
  EXPECT_EQ(d.busy[1].lease, b.id);
  EXPECT_THAT(d.blocked, IsEmpty());
}

TEST_F(PinServiceTest, DescribeUntrackedFileHasNoBusyRanges) {
  ASSERT_OK_AND_ASSIGN(FileDescription d, service_->DescribeFile("exp", "data"));
  EXPECT_THAT(d.busy, IsEmpty());
  EXPECT_EQ(service_->tracked_files(), 0u);
}

TEST_F(PinServiceTest, WatchStartsWithASnapshotThenEventsInOrder) {
  LeaseInfo first = PinPages(0, 1);
  PinPages(1, 1, "other");
  auto watch = service_->Watch("s1");
  ASSERT_EQ(watch.snapshot.size(), 1u);
  EXPECT_EQ(watch.snapshot[0].id, first.id);
  LeaseInfo second = PinPages(2, 1);
  ASSERT_OK(service_->Release("s1", first.id));
  std::vector<std::pair<LeaseEvent::Type, LeaseId>> seen;
  while (auto e = watch.events->TryNext()) {
    ASSERT_OK(e->status());
    seen.emplace_back((*e)->type, (*e)->lease.id);
  }
  EXPECT_THAT(seen, ElementsAre(std::pair(LeaseEvent::Type::kGranted, second.id),
                                std::pair(LeaseEvent::Type::kReleased, first.id)));
}

TEST_F(PinServiceTest, RecallAllWaitsForReleasesThenRevokesTheRest) {
  LeaseInfo cooperative = PinPages(0, 1, "a");
  LeaseInfo stubborn = PinPages(1, 1, "b");
  auto watch = service_->Watch("a");
  Async<size_t> recall([&] { return service_->RecallAll("shutdown", absl::Seconds(2)); });
  clock_.WaitForWaiters(1);
  ASSERT_OK_AND_ASSIGN(LeaseEvent e, watch.events->Next(absl::InfinitePast()));
  EXPECT_EQ(e.type, LeaseEvent::Type::kRecalled);
  EXPECT_EQ(e.lease.recall_deadline, clock_.Now() + absl::Seconds(2));
  ASSERT_OK(service_->Release("a", cooperative.id));
  clock_.Advance(absl::Seconds(2));
  EXPECT_EQ(recall.get(), 1u);
  EXPECT_EQ(backend_.count(Kind::kRelease), 1u);
  EXPECT_EQ(backend_.count(Kind::kRevoke), 1u);
  EXPECT_FALSE(backend_.IsHeld(stubborn.id));
  ExpectNoState();
}

TEST_F(PinServiceTest, DestroyingTheServiceRevokesLiveLeases) {
  PinPages(0, 1);
  PinPages(3, 2);
  service_.reset();
  EXPECT_EQ(backend_.held(), 0u);
  EXPECT_EQ(backend_.count(Kind::kRevoke), 2u);
}

TEST_F(PinServiceTest, DuplicateExportNamesAreRejected) {
  ExportOptions exp;
  exp.name = "x";
  exp.root = dir_.path();
  EXPECT_THAT(PinService::Create(&clock_, &backend_, {exp, exp}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("twice")));
}

}  // namespace
}  // namespace pinbroker
