// Identity and authorization through a real in-process Broker: every call's caller is the
// kernel's SO_PEERCRED of its connection, sessions belong to their opener, and files are
// opened with the caller's credentials.
//
// Callers with other uids are real kernel identities: each connects to the broker's socket
// from a thread that took a uid, gid and groups for itself alone (ConnectAs, broker_fixture.h),
// and calls over that connection. That needs root (CAP_SETUID/CAP_SETGID); the tests skip with
// the reason otherwise.
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "broker/broker.h"
#include "common/simulated_clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pinbroker/v1/pinbroker.grpc.pb.h"
#include "tests/broker/broker_fixture.h"
#include "tests/testing/fake_backend.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace pinbroker::broker {
namespace {

namespace v1 = ::pinbroker::v1;
using ::pinbroker::testing::StatusIs;
using ::testing::_;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

// Unprivileged ids no account on a test host uses; the kernel needs no passwd entry for them.
constexpr uid_t kUserA = 61001;
constexpr uid_t kUserB = 61002;
constexpr gid_t kGroupA = 61001;
constexpr gid_t kGroupB = 61002;
constexpr gid_t kShared = 61100;  // A supplementary group of user A only.

// A connection of one caller, with the calls these tests make.
class Client : public testing::PeerClient {
 public:
  using PeerClient::PeerClient;

  absl::StatusOr<v1::Lease> Pin(const v1::SessionCredentials& creds, const std::string& path,
                                v1::Access access) {
    v1::PinRequest request;
    *request.mutable_credentials() = creds;
    request.set_export_name("exp");
    request.set_path(path);
    request.set_length(1);
    request.set_access(access);
    auto response = Call(&v1::PinBroker::Stub::Pin, request);
    if (!response.ok()) return response.status();
    return response->lease();
  }

  absl::Status Truncate(const std::string& path, uint64_t size) {
    v1::TruncateRequest request;
    request.set_export_name("exp");
    request.set_path(path);
    request.set_new_size(size);
    request.mutable_options()->set_policy(v1::LAYOUT_POLICY_REVOKE);
    return Call(&v1::PinBroker::Stub::Truncate, request).status();
  }

  // With `policy`, no grace and no wait: nothing here needs the clock to move.
  absl::StatusOr<v1::LayoutChangeResponse> TruncateAnswer(const std::string& path, uint64_t size,
                                                          v1::LayoutPolicy policy) {
    v1::TruncateRequest request;
    request.set_export_name("exp");
    request.set_path(path);
    request.set_new_size(size);
    request.mutable_options()->set_policy(policy);
    request.mutable_options()->mutable_grace()->set_seconds(0);
    request.mutable_options()->mutable_timeout()->set_seconds(0);
    return Call(&v1::PinBroker::Stub::Truncate, request);
  }
  absl::Status TruncateWith(const std::string& path, uint64_t size, v1::LayoutPolicy policy) {
    return TruncateAnswer(path, size, policy).status();
  }

  absl::Status PunchHoleWith(const std::string& path, uint64_t offset, uint64_t length,
                             v1::LayoutPolicy policy) {
    v1::PunchHoleRequest request;
    request.set_export_name("exp");
    request.set_path(path);
    request.set_offset(offset);
    request.set_length(length);
    request.mutable_options()->set_policy(policy);
    request.mutable_options()->mutable_grace()->set_seconds(0);
    request.mutable_options()->mutable_timeout()->set_seconds(0);
    return Call(&v1::PinBroker::Stub::PunchHole, request).status();
  }

  absl::Status PunchHole(const std::string& path, uint64_t offset, uint64_t length) {
    v1::PunchHoleRequest request;
    request.set_export_name("exp");
    request.set_path(path);
    request.set_offset(offset);
    request.set_length(length);
    request.mutable_options()->set_policy(v1::LAYOUT_POLICY_REVOKE);
    return Call(&v1::PinBroker::Stub::PunchHole, request).status();
  }
};

class IdentityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root: callers take other uids (CAP_SETUID)";
    // Searchable by everyone, like a shared export root; what is inside decides the rest.
    ASSERT_EQ(chmod(dir_.path().c_str(), 0755), 0);
    ASSERT_EQ(mkdir(dir_.Join("exp").c_str(), 0755), 0);
    v1::BrokerConfig config;
    socket_ = dir_.Join("s.sock");
    config.add_listen("unix:" + socket_);
    config.set_listen_mode("0666");
    v1::ExportConfig* e = config.add_exports();
    e->set_name("exp");
    e->set_root(dir_.Join("exp"));
    Configure(config);
    auto backend = std::make_unique<pinbroker::testing::FakeBackend>();
    backend_ = backend.get();
    auto broker = Broker::Start(config, &clock_, std::move(backend));
    ASSERT_TRUE(broker.ok()) << broker.status();
    broker_ = *std::move(broker);
  }

  virtual void Configure(v1::BrokerConfig&) {}

  // A file in the export with `contents`, owner and mode.
  std::string MakeFile(const std::string& relative, uid_t uid, gid_t gid, mode_t mode,
                       const std::string& contents = std::string(8192, 'r')) {
    const std::string path = dir_.Join("exp/" + relative);
    const int fd = open(path.c_str(), O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0600);
    EXPECT_GE(fd, 0) << path;
    EXPECT_EQ(write(fd, contents.data(), contents.size()), static_cast<ssize_t>(contents.size()));
    EXPECT_EQ(fchown(fd, uid, gid), 0);
    EXPECT_EQ(fchmod(fd, mode), 0);
    close(fd);
    return path;
  }

  Client As(uid_t uid, gid_t gid, std::vector<gid_t> groups = {}) {
    if (groups.empty()) groups = {gid};
    const int fd = testing::ConnectAs(socket_, {uid, gid, groups});
    EXPECT_GE(fd, 0) << "connect as uid " << uid;
    return Client(fd);
  }
  Client Root() { return As(0, 0, {0}); }
  Client UserA() { return As(kUserA, kGroupA, {kGroupA, kShared}); }
  Client UserB() { return As(kUserB, kGroupB); }

  // Users A and B, each connected with a session of its own.
  struct TwoUsers {
    Client a;
    Client b;
    v1::SessionCredentials a_session;
    v1::SessionCredentials b_session;
  };
  absl::StatusOr<TwoUsers> UsersAAndBWithSessions() {
    TwoUsers users{UserA(), UserB(), {}, {}};
    auto a_session = users.a.OpenSession();
    if (!a_session.ok()) return a_session.status();
    auto b_session = users.b.OpenSession();
    if (!b_session.ok()) return b_session.status();
    users.a_session = *std::move(a_session);
    users.b_session = *std::move(b_session);
    return users;
  }

  static std::string Read(const std::string& path) {
    std::string out;
    const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    char buffer[4096];
    for (ssize_t n; (n = read(fd, buffer, sizeof(buffer))) > 0;) out.append(buffer, n);
    close(fd);
    return out;
  }

  size_t LiveLeases() { return broker_->engine().live_lease_count(); }

  SimulatedClock clock_;
  pinbroker::testing::TempDir dir_{"/tmp"};
  std::string socket_;
  pinbroker::testing::FakeBackend* backend_ = nullptr;
  std::unique_ptr<Broker> broker_;
};

TEST_F(IdentityTest, SessionIsOwnedByTheKernelIdentityOfItsConnection) {
  auto session = UserA().OpenSession();
  ASSERT_OK(session.status());
  bool found = false;
  for (const SessionTable::Info& info : broker_->sessions().List()) {
    if (info.id != session->session_id()) continue;
    found = true;
    EXPECT_EQ(info.owner.key, absl::StrCat("uid:", kUserA));
    EXPECT_THAT(info.owner.description, HasSubstr(absl::StrCat("uid ", kUserA, " (pid ")));
  }
  EXPECT_TRUE(found);
}

TEST_F(IdentityTest, ForeignTokenIsRefusedEvenWithTheRightSecret) {
  MakeFile("open", 0, 0, 0644);
  auto session = UserA().OpenSession();
  ASSERT_OK(session.status());
  Client b = UserB();
  EXPECT_THAT(b.Pin(*session, "open", v1::ACCESS_READ),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr(absl::StrCat("belongs to uid ", kUserA))));
  v1::RenewSessionRequest renew;
  *renew.mutable_credentials() = *session;
  EXPECT_THAT(b.Call(&v1::PinBroker::Stub::RenewSession, renew).status(),
              StatusIs(absl::StatusCode::kPermissionDenied, _));
  v1::CloseSessionRequest close_request;
  *close_request.mutable_credentials() = *session;
  EXPECT_THAT(b.Call(&v1::PinBroker::Stub::CloseSession, close_request).status(),
              StatusIs(absl::StatusCode::kPermissionDenied, _));
  EXPECT_EQ(LiveLeases(), 0u);
  // The owner still can.
  Client a = UserA();
  EXPECT_OK(a.Pin(*session, "open", v1::ACCESS_READ).status());
}

TEST_F(IdentityTest, RootOnlyFileCannotBeReadPinnedTruncatedOrPunched) {
  const std::string contents(8192, 's');
  const std::string path = MakeFile("secret", 0, 0, 0600, contents);
  // Root holds a lease the attacker would like to see revoked.
  Client root = Root();
  auto root_session = root.OpenSession();
  ASSERT_OK(root_session.status());
  ASSERT_OK(root.Pin(*root_session, "secret", v1::ACCESS_READ).status());

  Client a = UserA();
  auto session = a.OpenSession();
  ASSERT_OK(session.status());
  EXPECT_THAT(a.Pin(*session, "secret", v1::ACCESS_READ),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("permission denied")));
  EXPECT_THAT(a.Pin(*session, "secret", v1::ACCESS_READ_WRITE),
              StatusIs(absl::StatusCode::kPermissionDenied, _));
  EXPECT_THAT(a.Truncate("secret", 0), StatusIs(absl::StatusCode::kPermissionDenied, _));
  EXPECT_THAT(a.PunchHole("secret", 0, 4096), StatusIs(absl::StatusCode::kPermissionDenied, _));
  EXPECT_EQ(Read(path), contents);
  EXPECT_EQ(LiveLeases(), 1u);  // Root's, untouched.
}

TEST_F(IdentityTest, ReadableFileIsPinnableForReadOnly) {
  const std::string contents(8192, 'p');
  const std::string path = MakeFile("public", 0, 0, 0644, contents);
  Client a = UserA();
  auto session = a.OpenSession();
  ASSERT_OK(session.status());
  EXPECT_OK(a.Pin(*session, "public", v1::ACCESS_READ).status());
  EXPECT_THAT(a.Pin(*session, "public", v1::ACCESS_READ_WRITE),
              StatusIs(absl::StatusCode::kPermissionDenied, _));
  EXPECT_THAT(a.Truncate("public", 0), StatusIs(absl::StatusCode::kPermissionDenied, _));
  EXPECT_EQ(Read(path), contents);
  EXPECT_EQ(LiveLeases(), 1u);
}

TEST_F(IdentityTest, OwnFileIsWritableTruncatableAndForeignToOthers) {
  const std::string path = MakeFile("mine", kUserA, kGroupA, 0600);
  Client a = UserA();
  auto session = a.OpenSession();
  ASSERT_OK(session.status());
  EXPECT_OK(a.Pin(*session, "mine", v1::ACCESS_READ_WRITE).status());
  Client b = UserB();
  auto b_session = b.OpenSession();
  ASSERT_OK(b_session.status());
  EXPECT_THAT(b.Pin(*b_session, "mine", v1::ACCESS_READ),
              StatusIs(absl::StatusCode::kPermissionDenied, _));
  EXPECT_THAT(b.Truncate("mine", 0), StatusIs(absl::StatusCode::kPermissionDenied, _));
  EXPECT_EQ(Read(path).size(), 8192u);
  EXPECT_OK(a.Truncate("mine", 4096));
  EXPECT_EQ(Read(path).size(), 4096u);
}

// A file with leases is opened once, by its first pin, and the later pins share that
// descriptor; each is still judged by its own caller's rights on the file as they are now.
TEST_F(IdentityTest, AWriterHoldingTheFileLendsNoRightToAnotherCaller) {
  const std::string contents(8192, 'w');
  const std::string path = MakeFile("shared", 0, 0, 0644, contents);
  Client root = Root();
  auto root_session = root.OpenSession();
  ASSERT_OK(root_session.status());
  ASSERT_OK(root.Pin(*root_session, "shared", v1::ACCESS_READ_WRITE).status());
  Client a = UserA();
  auto session = a.OpenSession();
  ASSERT_OK(session.status());
  EXPECT_THAT(a.Pin(*session, "shared", v1::ACCESS_READ_WRITE),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("permission denied opening file 'shared'")));
  EXPECT_THAT(a.Truncate("shared", 0), StatusIs(absl::StatusCode::kPermissionDenied, _));
  EXPECT_OK(a.Pin(*session, "shared", v1::ACCESS_READ).status());  // Reading it A may.
  ASSERT_EQ(chmod(path.c_str(), 0600), 0);
  EXPECT_THAT(a.Pin(*session, "shared", v1::ACCESS_READ),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("read-only")));
  EXPECT_EQ(Read(path), contents);
  EXPECT_EQ(LiveLeases(), 2u);
}

TEST_F(IdentityTest, ARightTakenAwayAfterAPinRefusesTheNextPin) {
  MakeFile("mine", kUserA, kGroupA, 0600);
  Client a = UserA();
  auto session = a.OpenSession();
  ASSERT_OK(session.status());
  ASSERT_OK(a.Pin(*session, "mine", v1::ACCESS_READ_WRITE).status());
  ASSERT_EQ(chmod(dir_.Join("exp/mine").c_str(), 0400), 0);
  EXPECT_THAT(a.Pin(*session, "mine", v1::ACCESS_READ_WRITE),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       AllOf(HasSubstr(absl::StrCat("uid ", kUserA)), HasSubstr("read-write"))));
  EXPECT_OK(a.Pin(*session, "mine", v1::ACCESS_READ).status());
  EXPECT_EQ(LiveLeases(), 2u);
}

// open(2) refuses to open an append-only file for writing without O_APPEND, root included; a
// pin of a file whose descriptor the broker holds already is refused the same.
TEST_F(IdentityTest, AnAppendOnlyFileIsNotPinnedWritable) {
  const std::string path = MakeFile("log", 0, 0, 0644);
  Client root = Root();
  auto session = root.OpenSession();
  ASSERT_OK(session.status());
  ASSERT_OK(root.Pin(*session, "log", v1::ACCESS_READ_WRITE).status());
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  int flags = 0;
  if (ioctl(fd, FS_IOC_GETFLAGS, &flags) != 0) {
    close(fd);
    GTEST_SKIP() << "the filesystem of " << path << " has no file flags: " << strerror(errno);
  }
  const int plain = flags;
  flags |= FS_APPEND_FL;
  if (ioctl(fd, FS_IOC_SETFLAGS, &flags) != 0) {
    close(fd);
    GTEST_SKIP() << "cannot make " << path << " append-only: " << strerror(errno);
  }
  EXPECT_THAT(root.Pin(*session, "log", v1::ACCESS_READ_WRITE),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("read-write")));
  EXPECT_OK(root.Pin(*session, "log", v1::ACCESS_READ).status());
  EXPECT_EQ(ioctl(fd, FS_IOC_SETFLAGS, &plain), 0);
  close(fd);
  EXPECT_OK(root.Pin(*session, "log", v1::ACCESS_READ_WRITE).status());
}

TEST_F(IdentityTest, SupplementaryGroupsComeFromTheKernel) {
  MakeFile("group", 0, kShared, 0640);
  Client a = UserA();  // Member of kShared.
  auto session = a.OpenSession();
  ASSERT_OK(session.status());
  EXPECT_OK(a.Pin(*session, "group", v1::ACCESS_READ).status());
  Client b = UserB();
  auto b_session = b.OpenSession();
  ASSERT_OK(b_session.status());
  EXPECT_THAT(b.Pin(*b_session, "group", v1::ACCESS_READ),
              StatusIs(absl::StatusCode::kPermissionDenied, _));
}

TEST_F(IdentityTest, PrivateDirectoryOnTheWayIsTheKernelsDecision) {
  ASSERT_EQ(mkdir(dir_.Join("exp/private").c_str(), 0700), 0);
  const std::string path = MakeFile("private/open", 0, 0, 0666);
  Client a = UserA();
  auto session = a.OpenSession();
  ASSERT_OK(session.status());
  EXPECT_THAT(a.Pin(*session, "private/open", v1::ACCESS_READ),
              StatusIs(absl::StatusCode::kPermissionDenied, _));
  EXPECT_THAT(a.Truncate("private/open", 0), StatusIs(absl::StatusCode::kPermissionDenied, _));
  EXPECT_EQ(Read(path).size(), 8192u);
  EXPECT_EQ(LiveLeases(), 0u);
}

TEST_F(IdentityTest, HardLinkToAnOutsideFileIsJudgedByTheFilesOwnPermissions) {
  const std::string outside = dir_.Join("outside");
  {
    const int fd = open(outside.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(write(fd, "outside!", 8), 8);
    close(fd);
  }
  ASSERT_EQ(link(outside.c_str(), dir_.Join("exp/link").c_str()), 0);
  Client a = UserA();
  EXPECT_THAT(a.Truncate("link", 0), StatusIs(absl::StatusCode::kPermissionDenied, _));
  EXPECT_EQ(Read(outside), "outside!");
}

TEST_F(IdentityTest, RootKeepsItsOwnRights) {
  const std::string path = MakeFile("secret", 0, 0, 0600);
  Client root = Root();
  auto session = root.OpenSession();
  ASSERT_OK(session.status());
  EXPECT_OK(root.Pin(*session, "secret", v1::ACCESS_READ_WRITE).status());
  EXPECT_OK(root.Truncate("secret", 4096));
  EXPECT_EQ(Read(path).size(), 4096u);
}

// Connections come and go and descriptor numbers are reused at once; each call must still be
// judged as the user whose connection carried it.
TEST_F(IdentityTest, ReusedDescriptorNumbersNeverCarryAnotherConnectionsIdentity) {
  MakeFile("a-only", kUserA, kGroupA, 0600);
  for (int round = 0; round < 40; ++round) {
    const bool a_turn = round % 2 == 0;
    Client client = a_turn ? UserA() : UserB();
    auto session = client.OpenSession();
    ASSERT_OK(session.status());
    auto owner = broker_->sessions().OwnerOf(session->session_id());
    ASSERT_OK(owner.status());
    EXPECT_EQ(owner->key, absl::StrCat("uid:", a_turn ? kUserA : kUserB)) << "round " << round;
    auto pin = client.Pin(*session, "a-only", v1::ACCESS_READ);
    EXPECT_EQ(pin.ok(), a_turn) << "round " << round << ": " << pin.status();
    v1::CloseSessionRequest close_request;
    *close_request.mutable_credentials() = *session;
    EXPECT_OK(client.Call(&v1::PinBroker::Stub::CloseSession, close_request).status());
  }
  EXPECT_EQ(LiveLeases(), 0u);
}

TEST_F(IdentityTest, NonAdminsSeeOnlyTheirOwnLeasesAndNoExportRoots) {
  MakeFile("public", 0, 0, 0644);
  Client root = Root();
  auto root_session = root.OpenSession();
  ASSERT_OK(root_session.status());
  auto root_lease = root.Pin(*root_session, "public", v1::ACCESS_READ);
  ASSERT_OK(root_lease.status());
  Client a = UserA();
  auto session = a.OpenSession();
  ASSERT_OK(session.status());
  auto own = a.Pin(*session, "public", v1::ACCESS_READ);
  ASSERT_OK(own.status());

  auto a_list = a.Call(&v1::PinBroker::Stub::ListLeases, v1::ListLeasesRequest());
  ASSERT_OK(a_list.status());
  ASSERT_EQ(a_list->leases_size(), 1);
  EXPECT_EQ(a_list->leases(0).lease_id(), own->lease_id());
  // Asking for root's session by id shows nothing either.
  v1::ListLeasesRequest by_session;
  by_session.set_session_id(root_session->session_id());
  auto probed = a.Call(&v1::PinBroker::Stub::ListLeases, by_session);
  ASSERT_OK(probed.status());
  EXPECT_EQ(probed->leases_size(), 0);
  auto root_list = root.Call(&v1::PinBroker::Stub::ListLeases, v1::ListLeasesRequest());
  ASSERT_OK(root_list.status());
  EXPECT_EQ(root_list->leases_size(), 2);

  v1::DescribeFileRequest describe;
  describe.set_export_name("exp");
  describe.set_path("public");
  auto a_file = a.Call(&v1::PinBroker::Stub::DescribeFile, describe);
  ASSERT_OK(a_file.status());
  ASSERT_EQ(a_file->leases_size(), 1);
  EXPECT_EQ(a_file->leases(0).session_id(), session->session_id());
  int anonymous_busy = 0;
  for (const v1::BusyRange& busy : a_file->busy()) {
    EXPECT_NE(busy.lease_id(), root_lease->lease_id());
    if (busy.lease_id().empty()) ++anonymous_busy;
  }
  EXPECT_EQ(anonymous_busy, 1);  // Root's range shows, unnamed.
  EXPECT_EQ(a_file->DebugString().find(root_session->session_id()), std::string::npos);

  auto a_info = a.Call(&v1::PinBroker::Stub::GetInfo, v1::GetInfoRequest());
  ASSERT_OK(a_info.status());
  ASSERT_EQ(a_info->exports_size(), 1);
  EXPECT_EQ(a_info->exports(0).root(), "");
  auto root_info = root.Call(&v1::PinBroker::Stub::GetInfo, v1::GetInfoRequest());
  ASSERT_OK(root_info.status());
  EXPECT_EQ(root_info->exports(0).root(), dir_.Join("exp"));
}

TEST_F(IdentityTest, BindMountBeneathTheRootIsNotPartOfTheExport) {
  ASSERT_EQ(mkdir(dir_.Join("elsewhere").c_str(), 0755), 0);
  ASSERT_EQ(mkdir(dir_.Join("exp/mnt").c_str(), 0755), 0);
  {
    const int fd = open(dir_.Join("elsewhere/f").c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0666);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(write(fd, "12345678", 8), 8);
    close(fd);
  }
  if (mount(dir_.Join("elsewhere").c_str(), dir_.Join("exp/mnt").c_str(), nullptr, MS_BIND,
            nullptr) != 0) {
    GTEST_SKIP() << "bind mount not permitted here: " << std::strerror(errno);
  }
  Client root = Root();
  auto session = root.OpenSession();
  ASSERT_OK(session.status());
  EXPECT_THAT(root.Pin(*session, "mnt/f", v1::ACCESS_READ),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("mount point")));
  EXPECT_THAT(root.Truncate("mnt/f", 0), StatusIs(absl::StatusCode::kPermissionDenied, _));
  EXPECT_EQ(umount2(dir_.Join("exp/mnt").c_str(), MNT_DETACH), 0);
  EXPECT_EQ(Read(dir_.Join("elsewhere/f")), "12345678");
  EXPECT_EQ(LiveLeases(), 0u);
}

TEST_F(IdentityTest, OnlyAdminsRevokeOthersLeasesAndListEverySession) {
  MakeFile("public", 0, 0, 0644);
  Client a = UserA();
  auto session = a.OpenSession();
  ASSERT_OK(session.status());
  auto lease = a.Pin(*session, "public", v1::ACCESS_READ);
  ASSERT_OK(lease.status());
  Client b = UserB();
  auto b_session = b.OpenSession();
  ASSERT_OK(b_session.status());

  v1::RevokeLeaseRequest revoke;
  revoke.set_lease_id(lease->lease_id());
  revoke.set_reason("maintenance\nFAKE");
  // Not an admin: someone else's lease is not even there for B.
  EXPECT_THAT(b.Call(&v1::PinBroker::Stub::RevokeLease, revoke).status(),
              StatusIs(absl::StatusCode::kNotFound, _));
  EXPECT_THAT(a.Call(&v1::PinBroker::Stub::RevokeLease, revoke).status(),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("is not an admin")));
  EXPECT_EQ(LiveLeases(), 1u);

  auto b_sessions = b.Call(&v1::PinBroker::Stub::ListSessions, v1::ListSessionsRequest());
  ASSERT_OK(b_sessions.status());
  ASSERT_EQ(b_sessions->sessions_size(), 1);
  EXPECT_EQ(b_sessions->sessions(0).session_id(), b_session->session_id());

  Client root = Root();
  auto all = root.Call(&v1::PinBroker::Stub::ListSessions, v1::ListSessionsRequest());
  ASSERT_OK(all.status());
  ASSERT_EQ(all->sessions_size(), 2);
  for (const v1::SessionInfo& info : all->sessions()) {
    const bool is_a = info.session_id() == session->session_id();
    EXPECT_EQ(info.uid(), is_a ? kUserA : kUserB);
    EXPECT_EQ(info.pid(), getpid());
    EXPECT_EQ(info.lease_count(), is_a ? 1u : 0u);
    EXPECT_EQ(info.pinned_bytes(), is_a ? static_cast<uint64_t>(getpagesize()) : 0u);
  }
  auto listed = root.Call(&v1::PinBroker::Stub::ListLeases, v1::ListLeasesRequest());
  ASSERT_OK(listed.status());
  ASSERT_EQ(listed->leases_size(), 1);
  EXPECT_THAT(listed->leases(0).holder(), HasSubstr(absl::StrCat("uid ", kUserA)));

  auto revoked = root.Call(&v1::PinBroker::Stub::RevokeLease, revoke);
  ASSERT_OK(revoked.status());
  EXPECT_TRUE(revoked->revoked());
  EXPECT_EQ(LiveLeases(), 0u);
  EXPECT_EQ(backend_->pinned_bytes(), 0u);
}

// A lease holds off a refuse or defer change only if its holder could change the layout
// itself; a reader's lease is recalled and revoked instead, as under revoke.
TEST_F(IdentityTest, AReadersLeaseCannotHoldOffARefuseOrDeferChange) {
  MakeFile("shared", kUserA, kGroupA, 0644);  // A writes, B only reads.
  ASSERT_OK_AND_ASSIGN(TwoUsers users, UsersAAndBWithSessions());
  auto& [a, b, a_session, b_session] = users;

  ASSERT_OK(b.Pin(b_session, "shared", v1::ACCESS_READ).status());
  EXPECT_OK(a.TruncateWith("shared", 100, v1::LAYOUT_POLICY_REFUSE));  // Affects page 0.
  EXPECT_EQ(Read(dir_.Join("exp/shared")).size(), 100u);
  EXPECT_EQ(LiveLeases(), 0u);
  EXPECT_EQ(backend_->held(), 0u);

  ASSERT_OK(b.Pin(b_session, "shared", v1::ACCESS_READ).status());
  EXPECT_OK(a.PunchHoleWith("shared", 0, 100, v1::LAYOUT_POLICY_DEFER));
  EXPECT_EQ(LiveLeases(), 0u);

  // A's own read lease does hold off others: A could change the layout itself.
  ASSERT_OK(a.Pin(a_session, "shared", v1::ACCESS_READ).status());
  Client root = Root();
  EXPECT_THAT(root.TruncateWith("shared", 0, v1::LAYOUT_POLICY_REFUSE),
              StatusIs(absl::StatusCode::kFailedPrecondition, _));
  EXPECT_THAT(root.TruncateWith("shared", 0, v1::LAYOUT_POLICY_DEFER),
              StatusIs(absl::StatusCode::kDeadlineExceeded, _));
  EXPECT_EQ(Read(dir_.Join("exp/shared")).size(), 100u);
  EXPECT_EQ(LiveLeases(), 1u);
}

TEST_F(IdentityTest, ALayoutChangeNamesOnlyTheCallersOwnLeasesToANonAdmin) {
  MakeFile("shared", kUserA, kGroupA, 0666, std::string(16384, 's'));  // Both may write.
  ASSERT_OK_AND_ASSIGN(TwoUsers users, UsersAAndBWithSessions());
  auto& [a, b, a_session, b_session] = users;
  auto b_lease = b.Pin(b_session, "shared", v1::ACCESS_READ_WRITE);
  ASSERT_OK(b_lease.status());

  // Refused for A: the message shows B's lease as someone's, without its id or session.
  const absl::Status refused = a.TruncateWith("shared", 0, v1::LAYOUT_POLICY_REFUSE);
  EXPECT_THAT(refused, StatusIs(absl::StatusCode::kFailedPrecondition,
                                HasSubstr("a lease of another session (bytes [0, 4096)")));
  EXPECT_THAT(std::string(refused.message()), Not(HasSubstr(b_session.session_id())));
  EXPECT_THAT(std::string(refused.message()), Not(HasSubstr(b_lease->lease_id())));
  // Root administers the export and is told whose lease it is.
  Client root = Root();
  const absl::Status for_root = root.TruncateWith("shared", 0, v1::LAYOUT_POLICY_REFUSE);
  EXPECT_THAT(for_root,
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr(b_session.session_id())));
  EXPECT_EQ(Read(dir_.Join("exp/shared")).size(), 16384u);

  // Applied under revoke: A's own lease is listed, B's only counted.
  auto a_lease = a.Pin(a_session, "shared", v1::ACCESS_READ);
  ASSERT_OK(a_lease.status());
  auto answer = a.TruncateAnswer("shared", 0, v1::LAYOUT_POLICY_REVOKE);
  ASSERT_OK(answer.status());
  EXPECT_THAT(answer->revoked_lease_ids(), ElementsAre(a_lease->lease_id()));
  EXPECT_THAT(answer->recalled_lease_ids(), ElementsAre(a_lease->lease_id()));
  EXPECT_EQ(answer->others_recalled(), 1u);
  EXPECT_EQ(answer->others_revoked(), 1u);
  EXPECT_EQ(Read(dir_.Join("exp/shared")).size(), 0u);
  EXPECT_EQ(LiveLeases(), 0u);
}

class ExportRulesTest : public IdentityTest {
 protected:
  void Configure(v1::BrokerConfig& config) override {
    v1::ExportConfig* e = config.mutable_exports(0);
    e->mutable_pin_writable()->add_uids(kUserB);
    e->mutable_layout()->add_gids(kShared);
    // A second export whose root user A owns: A is its admin.
    ASSERT_EQ(mkdir(dir_.Join("a-root").c_str(), 0755), 0);
    ASSERT_EQ(chown(dir_.Join("a-root").c_str(), kUserA, kGroupA), 0);
    v1::ExportConfig* owned = config.add_exports();
    owned->set_name("owned");
    owned->set_root(dir_.Join("a-root"));
  }
};

TEST_F(ExportRulesTest, RuleRefusalNamesTheCallerTheRightAndTheRule) {
  MakeFile("a-file", kUserA, kGroupA, 0666);
  Client a = UserA();
  auto session = a.OpenSession();
  ASSERT_OK(session.status());
  // The file would let A write; the export's pin_writable rule does not.
  EXPECT_THAT(a.Pin(*session, "a-file", v1::ACCESS_READ_WRITE),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       ::testing::AllOf(HasSubstr(absl::StrCat("uid ", kUserA)),
                                        HasSubstr("may not pin_writable"),
                                        HasSubstr(absl::StrCat("uids [", kUserB, "]")))));
  EXPECT_OK(a.Pin(*session, "a-file", v1::ACCESS_READ).status());
  // Layout: A is in kShared, B is not (even though the file is writable by everyone).
  Client b = UserB();
  EXPECT_THAT(b.Truncate("a-file", 0),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr(absl::StrCat("may not layout in export 'exp' (rule: export "
                                              "'exp' layout admits gids [",
                                              kShared, "])"))));
  EXPECT_EQ(Read(dir_.Join("exp/a-file")).size(), 8192u);
  EXPECT_OK(a.Truncate("a-file", 4096));
  EXPECT_EQ(Read(dir_.Join("exp/a-file")).size(), 4096u);
}

// Write permission is not enough: a holder the export's `layout` rule refuses cannot hold
// off a change either.
TEST_F(ExportRulesTest, ALeaseOfAHolderTheLayoutRuleRefusesCannotHoldOffAChange) {
  MakeFile("open", kUserA, kGroupA, 0666);
  ASSERT_OK_AND_ASSIGN(TwoUsers users, UsersAAndBWithSessions());
  auto& [a, b, a_session, b_session] = users;
  ASSERT_OK(b.Pin(b_session, "open", v1::ACCESS_READ_WRITE).status());
  EXPECT_OK(a.TruncateWith("open", 100, v1::LAYOUT_POLICY_REFUSE));  // Affects page 0.
  EXPECT_EQ(Read(dir_.Join("exp/open")).size(), 100u);
  EXPECT_EQ(LiveLeases(), 0u);
  // A is in the layout rule's group and may write: its lease holds off another permitted writer's
  // change.
  ASSERT_OK(a.Pin(a_session, "open", v1::ACCESS_READ).status());
  Client c = As(61003, 61003, {61003, kShared});
  EXPECT_THAT(c.TruncateWith("open", 0, v1::LAYOUT_POLICY_REFUSE),
              StatusIs(absl::StatusCode::kFailedPrecondition, _));
  EXPECT_EQ(LiveLeases(), 1u);
}

TEST_F(ExportRulesTest, TheExportRootsOwnerIsItsAdmin) {
  {
    const std::string path = dir_.Join("a-root/shared");
    const int fd = open(path.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(write(fd, std::string(4096, 'x').data(), 4096), 4096);
    close(fd);
  }
  Client root = Root();
  auto root_session = root.OpenSession();
  ASSERT_OK(root_session.status());
  v1::PinRequest pin;
  *pin.mutable_credentials() = *root_session;
  pin.set_export_name("owned");
  pin.set_path("shared");
  pin.set_length(1);
  pin.set_access(v1::ACCESS_READ);
  ASSERT_OK(root.Call(&v1::PinBroker::Stub::Pin, pin).status());
  MakeFile("public", 0, 0, 0644);
  ASSERT_OK(root.Pin(*root_session, "public", v1::ACCESS_READ).status());

  Client a = UserA();
  auto leases = a.Call(&v1::PinBroker::Stub::ListLeases, v1::ListLeasesRequest());
  ASSERT_OK(leases.status());
  ASSERT_EQ(leases->leases_size(), 1);  // Root's lease in "owned", not the one in "exp".
  EXPECT_EQ(leases->leases(0).export_name(), "owned");
  auto info = a.Call(&v1::PinBroker::Stub::GetInfo, v1::GetInfoRequest());
  ASSERT_OK(info.status());
  for (const v1::ExportInfo& e : info->exports()) {
    EXPECT_EQ(e.root(), e.name() == "owned" ? dir_.Join("a-root") : "") << e.name();
  }
}

}  // namespace
}  // namespace pinbroker::broker
