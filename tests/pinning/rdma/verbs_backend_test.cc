// The verbs backend on a real RDMA device, through the engine: a PinService over a
// RoutingBackend (host + verbs), with a real rdma_cm client attaching from the second device.
// Needs two soft-RoCE devices as the VM suite sets them up (tests/vm: rxe0 on $PB_IP0, rxe1 on
// $PB_IP1, tmpfs at $PB_TMPFS, fs-dax at $PB_EXT4DAX / $PB_XFSDAX); skips with the reason
// anywhere else. Prints "[measure]" lines with the times it saw.
#include "pinning/rdma/verbs_backend.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pinning/host_backend.h"
#include "pinning/page_range.h"
#include "pinning/pin_service.h"
#include "common/real_clock.h"
#include "pinning/routing_backend.h"
#include "tests/pinning/rdma/rdma_test_client.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace pinbroker::rdma {
namespace {

using ::pinbroker::testing::IsOk;
using ::pinbroker::testing::RdmaTestClient;
using ::pinbroker::testing::StatusIs;
using ::pinbroker::testing::TempDir;
using ::testing::HasSubstr;

const uint64_t kPage = SystemPageSize();

std::string Env(const char* name, const std::string& fallback = "") {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::string(v) : fallback;
}

// Bytes that differ from page to page and within a page, so misplaced data shows.
std::string Pattern(size_t length, int seed) {
  std::string out(length, '\0');
  for (size_t i = 0; i < length; ++i) {
    out[i] = static_cast<char>((i * 7 + i / kPage * 13 + seed) % 251);
  }
  return out;
}

std::string ReadAt(const std::string& path, uint64_t offset, size_t length) {
  std::string out(length, '\0');
  const int fd = ::open(path.c_str(), O_RDONLY);
  const ssize_t n = ::pread(fd, out.data(), length, static_cast<off_t>(offset));
  ::close(fd);
  out.resize(n < 0 ? 0 : static_cast<size_t>(n));
  return out;
}

void Measure(const std::string& what, absl::Duration d) {
  std::cout << "[measure] " << what << " " << absl::StrFormat("%.2f", absl::ToDoubleMilliseconds(d))
            << " ms" << std::endl;
}

// Session "sN" authenticates with the token of 16 bytes 'N'.
std::string TokenFor(const std::string& session) { return std::string(16, session.back()); }

class VerbsBackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    broker_ip_ = Env("PB_IP0", "10.77.0.1");
    client_ip_ = Env("PB_IP1", "10.77.0.2");
    VerbsOptions options;
    options.address = broker_ip_;
    options.port = port_;
    options.verbs_timeout = absl::Seconds(5);
    Configure(options);
    auto opened = VerbsBackend::Open(options);
    if (!opened.ok()) GTEST_SKIP() << opened.status().message();
    verbs_ = opened->get();
    routing_ =
        std::make_unique<RoutingBackend>(std::make_unique<HostBackend>(), *std::move(opened), "");
    tmpfs_ = std::make_unique<TempDir>(Env("PB_TMPFS", "/dev/shm"));
    std::vector<ExportOptions> exports;
    exports.push_back(
        ExportOptions{.name = "tmp", .root = tmpfs_->path(), .grace = absl::ZeroDuration()});
    for (const auto& [name, var] : {std::pair{"ext4dax", "PB_EXT4DAX"}, {"xfsdax", "PB_XFSDAX"}}) {
      if (Env(var).empty()) continue;
      auto dir = std::make_unique<TempDir>(Env(var));
      exports.push_back(ExportOptions{.name = name, .root = dir->path()});
      dax_dirs_[name] = std::move(dir);
    }
    auto service = PinService::Create(&clock_, routing_.get(), std::move(exports));
    ASSERT_THAT(service.status(), IsOk());
    service_ = *std::move(service);
    ASSERT_THAT(verbs_->Start(
                    [](const std::string& session,
                       const std::string& token) -> absl::StatusOr<std::string> {
                      if (session.size() != 2 || session[0] != 's' ||
                          token != absl::BytesToHexString(TokenFor(session))) {
                        return absl::UnauthenticatedError(
                            absl::StrCat("unknown session or wrong token for ", session));
                      }
                      return session;
                    },
                    [this](std::vector<LeaseId> ids, std::string reason) {
                      service_->RevokeLeases(ids, reason);
                    }),
                IsOk());
  }

  virtual void Configure(VerbsOptions& options) { (void)options; }

  DeviceCaps Caps() const { return verbs_->Status().devices.at(0); }

  void TearDown() override {
    if (verbs_ != nullptr) verbs_->Shutdown();
    service_.reset();
    routing_.reset();
  }

  absl::StatusOr<std::unique_ptr<RdmaTestClient>> Attach(const std::string& session) {
    return RdmaTestClient::Connect(client_ip_, broker_ip_, port_, session, TokenFor(session),
                                   absl::Seconds(20));
  }

  // A file of `pages` pages of Pattern(seed 0) under export `exp`'s root `dir`.
  std::string MakeFile(const std::string& dir, const std::string& name, uint64_t pages) {
    const std::string path = absl::StrCat(dir, "/", name);
    const std::string data = Pattern(pages * kPage, 0);
    const int fd = ::open(path.c_str(), O_CREAT | O_TRUNC | O_RDWR, 0644);
    EXPECT_EQ(::pwrite(fd, data.data(), data.size(), 0), static_cast<ssize_t>(data.size()));
    ::fsync(fd);
    ::close(fd);
    return path;
  }

  absl::StatusOr<LeaseInfo> Pin(const std::string& owner, const std::string& exp,
                                const std::string& path, uint64_t offset, uint64_t length,
                                Access access) {
    PinRequest r;
    r.owner = owner;
    r.export_name = exp;
    r.path = path;
    r.offset = offset;
    r.length = length;
    r.access = access;
    r.rdma = true;
    return service_->Pin(r);
  }

  // The next event of `type` on `events`, skipping others, within 20 s.
  absl::StatusOr<LeaseEvent> AwaitEvent(EventQueue& events, LeaseEvent::Type type) {
    const absl::Time deadline = absl::Now() + absl::Seconds(20);
    for (;;) {
      auto event = events.Next(deadline);
      if (!event.ok() || event->type == type) return event;
    }
  }

  const uint16_t port_ = static_cast<uint16_t>(17000 + ::getpid() % 1000);
  std::string broker_ip_;
  std::string client_ip_;
  RealClock clock_;
  VerbsBackend* verbs_ = nullptr;
  std::unique_ptr<RoutingBackend> routing_;
  std::unique_ptr<TempDir> tmpfs_;
  std::map<std::string, std::unique_ptr<TempDir>> dax_dirs_;
  std::unique_ptr<PinService> service_;
};

TEST_F(VerbsBackendTest, RdmaPinWithoutConnectionFailsNamingTheEndpoint) {
  MakeFile(tmpfs_->path(), "f", 4);
  EXPECT_THAT(Pin("s1", "tmp", "f", 0, kPage, Access::kRead),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("session s1 has no RDMA connection; attach one to rxe")));
}

TEST_F(VerbsBackendTest, AttachWithAWrongTokenIsRejectedWithTheReason) {
  auto client = RdmaTestClient::Connect(client_ip_, broker_ip_, port_, "s1", std::string(16, 'x'),
                                        absl::Seconds(20));
  EXPECT_THAT(client.status(), StatusIs(absl::StatusCode::kPermissionDenied,
                                        HasSubstr("unauthenticated: unknown session or wrong")));
}

TEST_F(VerbsBackendTest, SecondAttachOfOneSessionIsRejected) {
  auto first = Attach("s1");
  ASSERT_THAT(first.status(), IsOk());
  EXPECT_THAT(Attach("s1").status(),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("already has an RDMA")));
}

TEST_F(VerbsBackendTest, TmpfsLeaseIsPinnedAndItsWindowCarriesWritesAndReadsOfExactlyItsBytes) {
  const std::string path = MakeFile(tmpfs_->path(), "f", 8);
  auto client = Attach("s1");
  ASSERT_THAT(client.status(), IsOk());
  absl::Time start = absl::Now();
  auto lease = Pin("s1", "tmp", "f", 2 * kPage, 3 * kPage, Access::kReadWrite);
  ASSERT_THAT(lease.status(), IsOk());
  Measure("first tmpfs pin (register region + bind window)", absl::Now() - start);
  EXPECT_EQ(lease->mode, RegistrationMode::kPinned);
  EXPECT_EQ(lease->rdma.device, "rxe0");
  EXPECT_EQ(lease->rdma.length, 3 * kPage);
  EXPECT_EQ(lease->rdma.required_alignment, 1u);
  EXPECT_NE(lease->rdma.rkey, 0u);

  const std::string data = Pattern(3 * kPage, 42);
  ASSERT_THAT((*client)->Write(lease->rdma.remote_address, lease->rdma.rkey, data), IsOk());
  EXPECT_EQ(ReadAt(path, 2 * kPage, 3 * kPage), data);
  EXPECT_EQ(ReadAt(path, 0, 2 * kPage), Pattern(8 * kPage, 0).substr(0, 2 * kPage));
  auto read = (*client)->Read(lease->rdma.remote_address + kPage, lease->rdma.rkey, kPage);
  ASSERT_THAT(read.status(), IsOk());
  EXPECT_EQ(*read, data.substr(kPage, kPage));

  start = absl::Now();
  ASSERT_THAT(service_->Release("s1", lease->id), IsOk());
  Measure("release (invalidate + dealloc window, deregister region if last)", absl::Now() - start);
  EXPECT_EQ(verbs_->pinned_bytes(), 0u);
}

TEST_F(VerbsBackendTest, WhereWindowsAreUnboundedEachLeaseGetsARegionOfExactlyItsBytes) {
  MakeFile(tmpfs_->path(), "f", 8);
  auto client = Attach("s1");
  ASSERT_THAT(client.status(), IsOk());
  auto first = Pin("s1", "tmp", "f", 0, kPage, Access::kReadWrite);
  ASSERT_THAT(first.status(), IsOk());
  const absl::Time start = absl::Now();
  auto second = Pin("s1", "tmp", "f", 4 * kPage, 2 * kPage, Access::kReadWrite);
  ASSERT_THAT(second.status(), IsOk());
  Measure("second tmpfs pin", absl::Now() - start);
  auto described = service_->DescribeFile("tmp", "f");
  ASSERT_THAT(described.status(), IsOk());
  if (Caps().window_bounds_enforced) {
    ASSERT_EQ(described->registrations.size(), 1u);
    EXPECT_EQ(described->registrations[0].windows, 2u);
  } else {
    ASSERT_EQ(described->registrations.size(), 2u);
    EXPECT_EQ(described->registrations[0].range, (ByteRange{0, kPage}));
    EXPECT_EQ(described->registrations[1].range, (ByteRange{4 * kPage, 2 * kPage}));
    EXPECT_EQ(described->registrations[1].windows, 1u);
  }
}

TEST_F(VerbsBackendTest, ReleasingOneLeaseLeavesTheOtherWorkingAndItsOldKeyDead) {
  const std::string path = MakeFile(tmpfs_->path(), "f", 4);
  auto client = Attach("s1");
  ASSERT_THAT(client.status(), IsOk());
  auto a = Pin("s1", "tmp", "f", 0, kPage, Access::kReadWrite);
  auto b = Pin("s1", "tmp", "f", kPage, kPage, Access::kReadWrite);
  ASSERT_THAT(a.status(), IsOk());
  ASSERT_THAT(b.status(), IsOk());
  LeaseTable::Subscription watch = service_->Watch("s1");
  ASSERT_THAT(service_->Release("s1", a->id), IsOk());

  const std::string data = Pattern(kPage, 9);
  ASSERT_THAT((*client)->Write(b->rdma.remote_address, b->rdma.rkey, data), IsOk());
  EXPECT_EQ(ReadAt(path, kPage, kPage), data);
  // The released lease's key: refused, nothing written (and the connection breaks).
  EXPECT_THAT((*client)->Write(a->rdma.remote_address, a->rdma.rkey, Pattern(kPage, 77)),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("remote")));
  EXPECT_EQ(ReadAt(path, 0, kPage), Pattern(4 * kPage, 0).substr(0, kPage));
}

TEST_F(VerbsBackendTest, ReadLeaseRefusesWrites) {
  const std::string path = MakeFile(tmpfs_->path(), "f", 2);
  auto client = Attach("s1");
  ASSERT_THAT(client.status(), IsOk());
  auto lease = Pin("s1", "tmp", "f", 0, kPage, Access::kRead);
  ASSERT_THAT(lease.status(), IsOk());
  auto read = (*client)->Read(lease->rdma.remote_address, lease->rdma.rkey, kPage);
  ASSERT_THAT(read.status(), IsOk());
  EXPECT_EQ(*read, Pattern(2 * kPage, 0).substr(0, kPage));
  EXPECT_THAT((*client)->Write(lease->rdma.remote_address, lease->rdma.rkey, Pattern(kPage, 5)),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("remote")));
  EXPECT_EQ(ReadAt(path, 0, kPage), Pattern(2 * kPage, 0).substr(0, kPage));
}

TEST_F(VerbsBackendTest, WindowEndsExactlyAtTheLeaseEnd) {
  const std::string path = MakeFile(tmpfs_->path(), "f", 4);
  auto client = Attach("s1");
  ASSERT_THAT(client.status(), IsOk());
  auto lease = Pin("s1", "tmp", "f", kPage, kPage, Access::kReadWrite);
  ASSERT_THAT(lease.status(), IsOk());
  EXPECT_THAT((*client)->Write(lease->rdma.remote_address + kPage - 8, lease->rdma.rkey,
                               std::string(16, 'z')),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("remote")));
  EXPECT_EQ(ReadAt(path, 2 * kPage - 8, 16), Pattern(4 * kPage, 0).substr(2 * kPage - 8, 16));
}

TEST_F(VerbsBackendTest, KeyIsUselessOnAnotherSessionsConnection) {
  const std::string path = MakeFile(tmpfs_->path(), "f", 2);
  auto owner = Attach("s1");
  auto other = Attach("s2");
  ASSERT_THAT(owner.status(), IsOk());
  ASSERT_THAT(other.status(), IsOk());
  auto lease = Pin("s1", "tmp", "f", 0, kPage, Access::kReadWrite);
  ASSERT_THAT(lease.status(), IsOk());
  EXPECT_THAT((*other)->Write(lease->rdma.remote_address, lease->rdma.rkey, Pattern(kPage, 3)),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("remote")));
  EXPECT_EQ(ReadAt(path, 0, kPage), Pattern(2 * kPage, 0).substr(0, kPage));
  // The owner's connection is unaffected.
  ASSERT_THAT((*owner)->Write(lease->rdma.remote_address, lease->rdma.rkey, Pattern(kPage, 4)),
              IsOk());
  EXPECT_EQ(ReadAt(path, 0, kPage), Pattern(kPage, 4));
}

TEST_F(VerbsBackendTest, DisconnectRevokesTheSessionsLeasesAsConnectionLost) {
  MakeFile(tmpfs_->path(), "f", 4);
  auto client = Attach("s1");
  ASSERT_THAT(client.status(), IsOk());
  auto a = Pin("s1", "tmp", "f", 0, kPage, Access::kReadWrite);
  auto b = Pin("s1", "tmp", "f", 2 * kPage, kPage, Access::kRead);
  ASSERT_THAT(a.status(), IsOk());
  ASSERT_THAT(b.status(), IsOk());
  LeaseTable::Subscription watch = service_->Watch("s1");
  const absl::Time start = absl::Now();
  (*client)->Disconnect();
  for (int i = 0; i < 2; ++i) {
    auto revoked = AwaitEvent(*watch.events, LeaseEvent::Type::kRevoked);
    ASSERT_THAT(revoked.status(), IsOk());
    EXPECT_THAT(revoked->lease.reason, HasSubstr("RDMA connection lost"));
  }
  Measure("client disconnect -> both leases revoked", absl::Now() - start);
  EXPECT_EQ(service_->live_lease_count(), 0u);
  EXPECT_EQ(verbs_->Status().connections, 0u);
  auto described = service_->DescribeFile("tmp", "f");
  ASSERT_THAT(described.status(), IsOk());
  EXPECT_TRUE(described->registrations.empty());
}

TEST_F(VerbsBackendTest, AccessErrorBreaksTheConnectionAndItsLeasesEndRevoked) {
  MakeFile(tmpfs_->path(), "f", 2);
  auto client = Attach("s1");
  ASSERT_THAT(client.status(), IsOk());
  auto lease = Pin("s1", "tmp", "f", 0, kPage, Access::kRead);
  ASSERT_THAT(lease.status(), IsOk());
  LeaseTable::Subscription watch = service_->Watch("s1");
  EXPECT_THAT((*client)->Write(lease->rdma.remote_address, lease->rdma.rkey, "x"),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("remote")));
  // Either the broker's queue pair reports the error, or the next post finds it broken; a new
  // pin must not succeed on the dead connection, and the lease ends once the broker notices.
  (*client)->Disconnect();
  auto revoked = AwaitEvent(*watch.events, LeaseEvent::Type::kRevoked);
  ASSERT_THAT(revoked.status(), IsOk());
  EXPECT_THAT(revoked->lease.reason, HasSubstr("RDMA connection lost"));
}

TEST_F(VerbsBackendTest, ShutdownWithBoundWindowsTearsDownPromptly) {
  MakeFile(tmpfs_->path(), "f", 8);
  auto client = Attach("s1");
  ASSERT_THAT(client.status(), IsOk());
  for (uint64_t i = 0; i < 4; ++i) {
    ASSERT_THAT(Pin("s1", "tmp", "f", i * kPage, kPage, Access::kReadWrite).status(), IsOk());
  }
  const absl::Time start = absl::Now();
  verbs_->Shutdown();  // Windows before the queue pair: no ~50 s hang in rxe.
  const absl::Duration took = absl::Now() - start;
  Measure("shutdown with 4 bound windows", took);
  EXPECT_LT(took, absl::Seconds(10));
  EXPECT_EQ(service_->live_lease_count(), 0u);  // Revoked as connection lost.
}

TEST_F(VerbsBackendTest, TruncateEndsOnlyTheLeasesItTouchesAndTheirRegions) {
  const std::string path = MakeFile(tmpfs_->path(), "f", 8);
  auto client = Attach("s1");
  ASSERT_THAT(client.status(), IsOk());
  auto keep = Pin("s1", "tmp", "f", 0, kPage, Access::kReadWrite);
  auto doomed = Pin("s1", "tmp", "f", 6 * kPage, kPage, Access::kReadWrite);
  ASSERT_THAT(keep.status(), IsOk());
  ASSERT_THAT(doomed.status(), IsOk());
  LayoutRequest truncate;
  truncate.export_name = "tmp";
  truncate.path = "f";
  truncate.policy = LayoutPolicy::kRevoke;
  truncate.grace = absl::ZeroDuration();
  auto result = service_->Truncate(truncate, 4 * kPage);
  ASSERT_THAT(result.status(), IsOk());
  EXPECT_THAT(result->revoked, ::testing::ElementsAre(doomed->id));
  // The surviving lease keeps working.
  const std::string data = Pattern(kPage, 21);
  ASSERT_THAT((*client)->Write(keep->rdma.remote_address, keep->rdma.rkey, data), IsOk());
  EXPECT_EQ(ReadAt(path, 0, kPage), data);
  if (!Caps().window_bounds_enforced) {
    auto described = service_->DescribeFile("tmp", "f");
    ASSERT_THAT(described.status(), IsOk());
    ASSERT_EQ(described->registrations.size(), 1u);  // Only the surviving lease's own region.
    EXPECT_EQ(described->registrations[0].range, (ByteRange{0, kPage}));
    EXPECT_FALSE(described->registrations[0].stale);
  }
}

// Windows on shared file regions even on rxe, to exercise the region cache with real
// registrations (on hardware that bounds windows this is the normal configuration).
class VerbsFileRegionTest : public VerbsBackendTest {
 protected:
  void Configure(VerbsOptions& options) override {
    options.file_regions_despite_unbounded_windows = true;
  }
};

TEST_F(VerbsFileRegionTest, SecondLeaseReusesTheRegionAndBindsOnlyAWindow) {
  MakeFile(tmpfs_->path(), "f", 8);
  auto client = Attach("s1");
  ASSERT_THAT(client.status(), IsOk());
  auto first = Pin("s1", "tmp", "f", 0, kPage, Access::kReadWrite);
  ASSERT_THAT(first.status(), IsOk());
  const absl::Time start = absl::Now();
  auto second = Pin("s1", "tmp", "f", 4 * kPage, kPage, Access::kReadWrite);
  ASSERT_THAT(second.status(), IsOk());
  Measure("second tmpfs pin on a cached file region (window bind only)", absl::Now() - start);
  auto described = service_->DescribeFile("tmp", "f");
  ASSERT_THAT(described.status(), IsOk());
  ASSERT_EQ(described->registrations.size(), 1u);
  EXPECT_EQ(described->registrations[0].windows, 2u);
  EXPECT_EQ(described->registrations[0].range.length, 8 * kPage);
  EXPECT_NE(first->rdma.rkey, second->rdma.rkey);
}

// The device fact behind lease regions: rxe checks a window access only against the window's
// region. If this starts failing, the kernel now bounds windows: revisit window_bounds_enforced.
TEST_F(VerbsFileRegionTest, RxeLetsAWindowKeyReachPastTheWindowWithinItsRegion) {
  if (!Caps().soft_roce) GTEST_SKIP() << "not rxe: " << Caps().name;
  const std::string path = MakeFile(tmpfs_->path(), "f", 4);
  auto client = Attach("s1");
  ASSERT_THAT(client.status(), IsOk());
  auto lease = Pin("s1", "tmp", "f", kPage, kPage, Access::kReadWrite);
  ASSERT_THAT(lease.status(), IsOk());
  const std::string data = Pattern(kPage, 33);
  EXPECT_THAT((*client)->Write(lease->rdma.remote_address + 2 * kPage, lease->rdma.rkey, data),
              IsOk());
  EXPECT_EQ(ReadAt(path, 3 * kPage, kPage), data);
}

TEST_F(VerbsFileRegionTest, TruncateLeavesAStaleRegionOnlyForLeasesOutsideTheChange) {
  MakeFile(tmpfs_->path(), "f", 8);
  auto client = Attach("s1");
  ASSERT_THAT(client.status(), IsOk());
  auto keep = Pin("s1", "tmp", "f", 0, kPage, Access::kReadWrite);
  auto doomed = Pin("s1", "tmp", "f", 6 * kPage, kPage, Access::kReadWrite);
  ASSERT_THAT(keep.status(), IsOk());
  ASSERT_THAT(doomed.status(), IsOk());
  LayoutRequest truncate;
  truncate.export_name = "tmp";
  truncate.path = "f";
  truncate.policy = LayoutPolicy::kRevoke;
  truncate.grace = absl::ZeroDuration();
  auto result = service_->Truncate(truncate, 4 * kPage);
  ASSERT_THAT(result.status(), IsOk());
  EXPECT_THAT(result->revoked, ::testing::ElementsAre(doomed->id));
  auto described = service_->DescribeFile("tmp", "f");
  ASSERT_THAT(described.status(), IsOk());
  ASSERT_EQ(described->registrations.size(), 1u);
  EXPECT_TRUE(described->registrations[0].stale);
  EXPECT_EQ(described->registrations[0].windows, 1u);

  // A new lease gets a fresh region of the new size; the stale one goes with the old lease.
  auto fresh = Pin("s1", "tmp", "f", kPage, kPage, Access::kReadWrite);
  ASSERT_THAT(fresh.status(), IsOk());
  described = service_->DescribeFile("tmp", "f");
  ASSERT_THAT(described.status(), IsOk());
  ASSERT_EQ(described->registrations.size(), 2u);
  EXPECT_EQ(described->registrations[1].range.length, 4 * kPage);
  EXPECT_FALSE(described->registrations[1].stale);
  ASSERT_THAT(service_->Release("s1", keep->id), IsOk());
  described = service_->DescribeFile("tmp", "f");
  ASSERT_THAT(described.status(), IsOk());
  ASSERT_EQ(described->registrations.size(), 1u);
  EXPECT_FALSE(described->registrations[0].stale);
}

// fs-dax: ODP where the device has it; otherwise a refusal that says what would work.
class VerbsDaxTest : public VerbsBackendTest, public ::testing::WithParamInterface<const char*> {};

TEST_P(VerbsDaxTest, DaxFileGetsAnOdpLeaseOrARefusalNamingOdp) {
  const std::string exp = GetParam();
  auto it = dax_dirs_.find(exp);
  if (it == dax_dirs_.end()) {
    GTEST_SKIP() << "no " << exp << " mount (the VM suite sets PB_EXT4DAX and PB_XFSDAX)";
  }
  const TempDir* dir = it->second.get();
  const std::string path = MakeFile(dir->path(), "d", 16);
  auto client = Attach("s1");
  ASSERT_THAT(client.status(), IsOk());
  const absl::Time start = absl::Now();
  auto lease = Pin("s1", exp, "d", 4 * kPage, 4 * kPage, Access::kReadWrite);
  if (!Caps().odp.supported) {
    EXPECT_THAT(lease.status(), StatusIs(absl::StatusCode::kFailedPrecondition,
                                         HasSubstr("on-demand paging (ODP)")));
    EXPECT_THAT(lease.status().message(), HasSubstr("fs-dax pages cannot be long-term pinned"));
    std::cout << "[refusal] " << lease.status().message() << std::endl;
    return;
  }
  ASSERT_THAT(lease.status(), IsOk());
  Measure(absl::StrCat(exp, " pin (register 16-page ODP region + bind window)"),
          absl::Now() - start);
  EXPECT_EQ(lease->mode, RegistrationMode::kOdp);
  EXPECT_EQ(lease->rdma.required_alignment, kPage);
  EXPECT_THAT(lease->rdma.constraint_reason, HasSubstr("whole page"));
  const std::string data = Pattern(4 * kPage, 11);
  ASSERT_THAT((*client)->Write(lease->rdma.remote_address, lease->rdma.rkey, data), IsOk());
  EXPECT_EQ(ReadAt(path, 4 * kPage, 4 * kPage), data);
  auto read = (*client)->Read(lease->rdma.remote_address + kPage, lease->rdma.rkey, 2 * kPage);
  ASSERT_THAT(read.status(), IsOk());
  EXPECT_EQ(*read, data.substr(kPage, 2 * kPage));
  auto read_lease = Pin("s1", exp, "d", 0, kPage, Access::kRead);
  ASSERT_THAT(read_lease.status(), IsOk());
  EXPECT_EQ(read_lease->mode, RegistrationMode::kOdp);
  read = (*client)->Read(read_lease->rdma.remote_address, read_lease->rdma.rkey, kPage);
  ASSERT_THAT(read.status(), IsOk());
  EXPECT_EQ(*read, Pattern(16 * kPage, 0).substr(0, kPage));
}

INSTANTIATE_TEST_SUITE_P(Filesystems, VerbsDaxTest, ::testing::Values("ext4dax", "xfsdax"));

}  // namespace
}  // namespace pinbroker::rdma
