// The real file guard against other processes: truncate(2), ftruncate(2), fallocate punch,
// open(O_TRUNC), pwrite and unlink done by a separate process (pb_oob, /usr/bin/truncate,
// /usr/bin/fallocate) on a file the broker holds host pins on, under each layout policy. The
// test asserts what the process saw (held, failed with EBUSY, went ahead), the file's size and
// bytes afterwards, and each lease's end state and reason.
//
// Filesystems: an ext4 image on a loop device (needs root and loop devices), a DAX mount named
// by $PINBROKER_DAX_DIR (the VM suite), and tmpfs (/dev/shm). Which mechanism guards what
// depends on the kernel and filesystem (docs/GUARD.md): each test that demonstrates a mechanism
// skips, saying so, where the guard reports that mechanism is not armed, and the
// ReportMatchesTheMatrix test checks the report against the matrix itself.
//
// Environment (the VM suite runs this binary in its guests): PB_OOB_HELPER names the pb_oob
// program (default: the one built with this test), PB_TOOL_DIR the directory holding
// `truncate` (coreutils) and `fallocate` (util-linux) (default /usr/bin), PB_TMPFS a tmpfs
// directory (default /dev/shm).
//
// Time: policy time (grace, defer deadline) runs on a SimulatedClock that the test moves after
// seeing the guard's worker wait (WaitForWaiters); a held process is seen in /proc/<pid>/wchan.
// Nothing sleeps to wait for a timer.
#include "pinning/guard/file_guard.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "common/simulated_clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pinning/guard/guard_report.h"
#include "pinning/host_backend.h"
#include "pinning/pin_service.h"
#include "tests/testing/ext4_loop_mount.h"
#include "tests/testing/run_command.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

extern char** environ;

namespace pinbroker::guard {
namespace {

using ::pinbroker::testing::TempDir;
using ::testing::AllOf;
using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

constexpr uint64_t kPages = 16;
constexpr absl::Duration kSafety = absl::Seconds(60);  // Bound on waiting for real events.

// Runs `command` through the shell; returns its exit status and output.
std::string Env(const char* name, const std::string& fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? std::string(value) : fallback;
}
std::string Tool(const std::string& name) { return Env("PB_TOOL_DIR", "/usr/bin") + "/" + name; }

std::string ReadProc(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return std::string(absl::StripAsciiWhitespace(s.str()));
}

// Another process doing one operation. Its stdin and stdout are pipes.
class Child {
 public:
  explicit Child(std::vector<std::string> argv) : argv_(std::move(argv)) {
    int in[2], out[2];
    if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0) std::abort();
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, in[0], 0);
    posix_spawn_file_actions_adddup2(&actions, out[1], 1);
    posix_spawn_file_actions_adddup2(&actions, out[1], 2);
    std::vector<char*> args;
    for (std::string& a : argv_) args.push_back(a.data());
    args.push_back(nullptr);
    if (posix_spawn(&pid_, args[0], &actions, nullptr, args.data(), environ) != 0) std::abort();
    posix_spawn_file_actions_destroy(&actions);
    close(in[0]);
    close(out[1]);
    stdin_ = in[1];
    stdout_ = out[0];
  }
  ~Child() {
    if (!reaped_) {
      kill(pid_, SIGKILL);
      int status;
      waitpid(pid_, &status, 0);
    }
    close(stdin_);
    close(stdout_);
  }

  pid_t pid() const { return pid_; }
  std::string command() const { return absl::StrJoin(argv_, " "); }

  // Where the kernel holds it: "fanotify" (a permission event), "lease" (a lease break), "".
  std::string HeldBy() const {
    const std::string wchan = ReadProc(absl::StrCat("/proc/", pid_, "/wchan"));
    if (absl::StrContains(wchan, "fanotify")) return "fanotify";
    if (wchan == "__break_lease") return "lease";
    return "";
  }
  // Waits until the kernel holds the process for the guard; false if it finished instead.
  bool WaitHeld() {
    const absl::Time give_up = absl::Now() + kSafety;
    while (absl::Now() < give_up) {
      if (!HeldBy().empty()) return true;
      int status;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        reaped_ = true;
        status_ = status;
        return false;
      }
      std::this_thread::yield();
    }
    return false;
  }
  // Waits for the process to end; its exit status (-1 if killed or too slow).
  int Wait() {
    if (!reaped_) {
      const absl::Time give_up = absl::Now() + kSafety;
      while (waitpid(pid_, &status_, WNOHANG) != pid_) {
        if (absl::Now() > give_up) {
          ADD_FAILURE() << command() << " did not finish; held by '" << HeldBy() << "'";
          return -1;
        }
        std::this_thread::yield();
      }
      reaped_ = true;
    }
    return WIFEXITED(status_) ? WEXITSTATUS(status_) : -1;
  }
  std::string Output() {
    std::string out;
    char buf[256];
    ssize_t n;
    while ((n = read(stdout_, buf, sizeof(buf))) > 0) out.append(buf, static_cast<size_t>(n));
    return out;
  }
  std::string ReadLine() {
    std::string line;
    char c;
    while (read(stdout_, &c, 1) == 1 && c != '\n') line += c;
    return line;
  }
  void WriteLine() { (void)!write(stdin_, "\n", 1); }

 private:
  std::vector<std::string> argv_;
  pid_t pid_ = 0;
  int stdin_ = -1, stdout_ = -1;
  bool reaped_ = false;
  int status_ = 0;
};

// --- filesystems ---

class Filesystem {
 public:
  virtual ~Filesystem() = default;
  virtual std::string SetUp() = 0;  // Empty, or why it is unavailable (the test skips).
  virtual std::string dir() const = 0;
};

class Ext4Loop : public Filesystem {
 public:
  std::string SetUp() override { return mount_.Mount(); }
  std::string dir() const override { return mount_.dir(); }

 private:
  pinbroker::testing::Ext4LoopMount mount_;
};

class NamedDir : public Filesystem {
 public:
  NamedDir(std::string dir, uint64_t magic, std::string why)
      : parent_(std::move(dir)), magic_(magic), why_(std::move(why)) {}
  std::string SetUp() override {
    struct statfs fs;
    if (parent_.empty() || statfs(parent_.c_str(), &fs) != 0 ||
        (magic_ != 0 && static_cast<uint64_t>(fs.f_type) != magic_)) {
      return why_;
    }
    tmp_ = std::make_unique<TempDir>(parent_);
    return "";
  }
  std::string dir() const override { return tmp_->path(); }

 private:
  std::string parent_;
  uint64_t magic_;
  std::string why_;
  std::unique_ptr<TempDir> tmp_;
};

std::unique_ptr<Filesystem> MakeFilesystem(const std::string& name) {
  if (name == "ext4") return std::make_unique<Ext4Loop>();
  if (name == "tmpfs") {
    const std::string dir = Env("PB_TMPFS", "/dev/shm");
    return std::make_unique<NamedDir>(dir, 0x01021994,
                                      dir + " is not a tmpfs mount on this machine");
  }
  const char* dax = std::getenv("PINBROKER_DAX_DIR");
  return std::make_unique<NamedDir>(
      dax == nullptr ? "" : dax, 0,
      "no fs-dax filesystem here: set PINBROKER_DAX_DIR to a directory on a -o dax mount (the VM "
      "suite does, for ext4-dax and xfs-dax)");
}

std::string Pattern(uint64_t size) {
  std::string s(size, '\0');
  for (uint64_t i = 0; i < size; ++i) s[i] = static_cast<char>('A' + (i * 13 + i / 4096) % 61);
  return s;
}

// --- the fixture ---

// A caller failed by the guard: EBUSY, or EPERM on kernels that take no errno in answers.
bool FailedBusy(int status) { return status == EBUSY || status == EPERM; }

class FileGuardTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    fs_ = MakeFilesystem(GetParam());
    if (const std::string why = fs_->SetUp(); !why.empty()) GTEST_SKIP() << why;
    path_ = fs_->dir() + "/data";
    original_ = Pattern(kPages * page_);
    std::ofstream(path_, std::ios::binary) << original_;
    std::vector<ExportOptions> exports;
    for (auto [name, policy] :
         {std::pair{"defer", LayoutPolicy::kDefer}, std::pair{"revoke", LayoutPolicy::kRevoke},
          std::pair{"refuse", LayoutPolicy::kRefuse}}) {
      ExportOptions exp;
      exp.name = name;
      exp.root = fs_->dir();
      exp.default_policy = policy;
      exp.grace = absl::Seconds(5);
      exp.layout_timeout = absl::Seconds(30);
      exp.default_ttl = absl::Hours(1);
      exp.max_ttl = absl::Hours(1);
      exports.push_back(exp);
    }
    auto service = PinService::Create(&clock_, &backend_, exports);
    ASSERT_TRUE(service.ok()) << service.status();
    service_ = *std::move(service);
    if (GetParam() == "dax") {
      ASSERT_OK_AND_ASSIGN(FileDescription d, service_->DescribeFile("revoke", "data"));
      if (!d.info.dax) GTEST_SKIP() << "$PINBROKER_DAX_DIR is not on a DAX mount";
    }
    RestartGuard(/*fanotify=*/true, /*leases=*/true);
    events_ = service_->Watch("holder").events;
  }

  // A guard with the given mechanisms (what pinbrokerd's guard options select).
  void RestartGuard(bool fanotify, bool leases) {
    guard_.reset();
    FileGuard::Options options;
    options.use_fanotify = fanotify;
    options.use_leases = leases;
    options.check_interval = absl::Hours(1000);  // Tests run checks with CheckNow().
    auto guard = FileGuard::Start(service_.get(), options);
    ASSERT_TRUE(guard.ok()) << guard.status();
    guard_ = *std::move(guard);
  }
  void TearDown() override {
    guard_.reset();
    service_.reset();
  }

  LeaseInfo Pin(const std::string& exp, uint64_t first_page, uint64_t pages,
                Access access = Access::kReadWrite) {
    PinRequest r;
    r.owner = "holder";
    r.export_name = exp;
    r.path = "data";
    r.offset = first_page * page_;
    r.length = pages * page_;
    r.access = access;
    auto lease = service_->Pin(r);
    EXPECT_TRUE(lease.ok()) << lease.status();
    return lease.ok() ? *lease : LeaseInfo{};
  }

  GuardReport Report(const std::string& exp = "revoke") {
    auto d = service_->DescribeFile(exp, "data");
    EXPECT_TRUE(d.ok()) << d.status();
    GuardReport r;
    if (d.ok()) {
      r.guard = d->guard;
      r.unguarded_operations = d->unguarded_operations;
    }
    return r;
  }
  // Whether the file's guard has `mechanism` ("fanotify", "lease") armed.
  bool Armed(const std::string& mechanism, const std::string& exp = "revoke") {
    return absl::StrContains(Report(exp).guard, mechanism);
  }
  bool Unguarded(const std::string& op, const std::string& exp = "revoke") {
    const std::vector<std::string> ops = Report(exp).unguarded_operations;
    return std::find(ops.begin(), ops.end(), op) != ops.end();
  }
  // Pre-content events armed: ftruncate(2) is guarded only by them.
  bool PreContent(const std::string& exp = "revoke") { return !Unguarded("ftruncate(2)", exp); }
  // FAN_OPEN_PERM armed: read-only O_TRUNC opens are guarded only by it.
  bool OpenPermission(const std::string& exp = "revoke") {
    return !Unguarded("open(2) O_RDONLY|O_TRUNC", exp);
  }

  std::optional<LeaseInfo> Live(LeaseId id) {
    for (const auto& l : service_->ListLeases({})) {
      if (l.id == id) return l;
    }
    return std::nullopt;
  }
  // The terminal event of `id` seen on the holder's stream, if any.
  std::optional<LeaseEvent> Ended(LeaseId id) {
    while (auto next = events_->TryNext()) {
      if (next->ok()) seen_.push_back(**next);
    }
    for (const LeaseEvent& e : seen_) {
      if (e.lease.id == id && IsTerminal(e.lease.state)) return e;
    }
    return std::nullopt;
  }
  bool Recalled(LeaseId id) {
    Ended(id);
    for (const LeaseEvent& e : seen_) {
      if (e.lease.id == id && e.type == LeaseEvent::Type::kRecalled) return true;
    }
    return false;
  }
  // Runs the detect-after check now, and waits for any the guard's notification events started
  // (a worker may be ending the same lease).
  void Settle() {
    guard_->CheckNow();
    guard_->AwaitIdle();
  }
  // Waits for a lease state the guard's own threads bring about.
  bool WaitFor(const std::function<bool()>& done) {
    const absl::Time give_up = absl::Now() + kSafety;
    while (!done()) {
      if (absl::Now() > give_up) return false;
      std::this_thread::yield();
    }
    return true;
  }

  std::string Contents() const {
    std::ifstream in(path_, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }
  uint64_t Size() const {
    struct stat st {};
    EXPECT_EQ(stat(path_.c_str(), &st), 0);
    return static_cast<uint64_t>(st.st_size);
  }
  Child Oob(std::vector<std::string> args) {
    args.insert(args.begin(), Env("PB_OOB_HELPER", PB_OOB_HELPER));
    return Child(std::move(args));
  }
  // The guard reads openat2's flags from the caller's memory after the kernel has copied them: a
  // second thread that clears O_TRUNC in between (pb_oob makes it happen every time, with
  // userfaultfd) gets a truncating open past the guard. DescribeFile lists it; the open is
  // checked as soon as it returns and the lease in the way is revoked, whatever the policy.
  // Where the truncate itself raises a pre-content event, the guard catches it there instead.
  void ExpectRacedOpenat2DetectedAfterOrRefused(const LeaseInfo& lease, bool listed) {
    Child raced = Oob({"openat2-otrunc-raced", path_});
    const int status = raced.Wait();
    if (status == EOPNOTSUPP) GTEST_SKIP() << "no userfaultfd here: " << raced.Output();
    if (!listed) {
      EXPECT_TRUE(FailedBusy(status)) << raced.Output();
      EXPECT_EQ(Contents(), original_);
      EXPECT_EQ(Live(lease.id)->state, LeaseState::kGranted);
      return;
    }
    EXPECT_EQ(status, 0) << raced.Output();
    EXPECT_EQ(Size(), 0u);
    // No periodic check runs here (check_interval is 1000 h): the check after the call finds it.
    ASSERT_TRUE(WaitFor([&] { return Ended(lease.id).has_value(); }));
    EXPECT_EQ(Ended(lease.id)->lease.state, LeaseState::kRevoked);
    EXPECT_THAT(Ended(lease.id)->lease.reason,
                AllOf(StartsWith("out-of-band change: the file shrank from"),
                      HasSubstr("detected afterwards")));
  }

  const uint64_t page_ = SystemPageSize();
  SimulatedClock clock_;
  std::unique_ptr<Filesystem> fs_;
  HostBackend backend_;
  std::unique_ptr<PinService> service_;
  std::unique_ptr<FileGuard> guard_;
  std::shared_ptr<EventQueue> events_;
  std::vector<LeaseEvent> seen_;
  std::string path_;
  std::string original_;
};

// --- what is armed, per kernel and filesystem ---

TEST_P(FileGuardTest, ReportMatchesTheMatrix) {
  const bool perm = guard_->capabilities().permission_group;  // FAN_OPEN_PERM: any fs.
  const bool pre = guard_->capabilities().pre_content && GetParam() != "tmpfs";

  EXPECT_EQ(Report().guard, "none");  // No lease yet: not watched.
  const LeaseInfo rw = Pin("revoke", 2, 2);
  // The broker's own writable mapping keeps a read lease from being taken.
  const GuardReport with_writer = Report();
  EXPECT_EQ(with_writer.guard, perm ? "fanotify" : "none");
  std::vector<std::string> want;
  if (pre) {
    want = {kOpPunchPreopened, kOpPunchUnidentified};
  } else {
    want = {"truncate(2)", "ftruncate(2)", "fallocate(2) PUNCH_HOLE"};
    if (!perm) want.insert(want.end(), {"open(2) O_TRUNC", "open(2) O_RDONLY|O_TRUNC"});
  }
  if (perm) want.push_back(kOpOpenat2FlagsChanged);
  EXPECT_EQ(with_writer.unguarded_operations, want);
  ASSERT_OK(service_->Release("holder", rw.id));
  EXPECT_EQ(guard_->guarded_files(), 0u);
  EXPECT_EQ(Report().guard, "none");

  Pin("revoke", 2, 2, Access::kRead);
  const GuardReport read_only = Report();
  if (pre) {
    // Pre-content events catch truncate(path) and FAN_OPEN_PERM O_TRUNC: no lease is kept, but
    // taking one proved that no writable descriptor predates the mark.
    EXPECT_EQ(read_only.guard, "fanotify");
    EXPECT_EQ(read_only.unguarded_operations,
              (std::vector<std::string>{kOpPunchUnidentified, kOpOpenat2FlagsChanged}));
  } else {
    EXPECT_EQ(read_only.guard, perm ? "fanotify+lease" : "lease");
    want = {"ftruncate(2)", "fallocate(2) PUNCH_HOLE"};
    if (!perm) want.push_back("open(2) O_RDONLY|O_TRUNC");
    want.push_back(kOpOpenat2FlagsChanged);  // A lease or FAN_OPEN_PERM intercepts opens.
    EXPECT_EQ(read_only.unguarded_operations, want);
  }
}

// --- fanotify: truncate, ftruncate and punch held before they take effect ---

TEST_P(FileGuardTest, FanotifyRefuseFailsTruncateFtruncateAndPunchWithEbusy) {
  const LeaseInfo lease = Pin("refuse", 4, 2);
  if (!PreContent("refuse")) GTEST_SKIP() << "no fanotify pre-content events here";
  Child truncate = Oob({"truncate", path_, std::to_string(2 * page_)});
  EXPECT_EQ(truncate.Wait(), EBUSY) << truncate.Output();
  Child ftruncate({Tool("truncate"), "-s", std::to_string(3 * page_ + 100), path_});
  EXPECT_EQ(ftruncate.Wait(), 1);
  EXPECT_THAT(ftruncate.Output(), HasSubstr("Device or resource busy"));
  Child punch({Tool("fallocate"), "--punch-hole", "-o", std::to_string(5 * page_), "-l",
               std::to_string(page_), path_});
  EXPECT_EQ(punch.Wait(), 1);
  EXPECT_THAT(punch.Output(), HasSubstr("Device or resource busy"));
  EXPECT_EQ(Contents(), original_);
  ASSERT_TRUE(Live(lease.id).has_value());
  EXPECT_EQ(Live(lease.id)->state, LeaseState::kGranted);
  EXPECT_FALSE(Recalled(lease.id));
  // Changes that miss the lease go through.
  Child beside = Oob({"punch", path_, std::to_string(8 * page_), std::to_string(page_)});
  EXPECT_EQ(beside.Wait(), 0) << beside.Output();
  EXPECT_EQ(Contents().substr(8 * page_, page_), std::string(page_, '\0'));
}

TEST_P(FileGuardTest, FanotifyDeferHoldsTheTruncateUntilTheLeaseIsReleased) {
  const LeaseInfo lease = Pin("defer", 4, 2);
  if (!PreContent("defer")) GTEST_SKIP() << "no fanotify pre-content events here";
  Child truncate = Oob({"truncate", path_, std::to_string(page_)});
  ASSERT_TRUE(truncate.WaitHeld()) << truncate.Output();
  EXPECT_EQ(truncate.HeldBy(), "fanotify");
  clock_.WaitForWaiters(1);
  EXPECT_EQ(Size(), kPages * page_);  // Held: nothing happened yet.
  ASSERT_OK(service_->Release("holder", lease.id));
  EXPECT_EQ(truncate.Wait(), 0) << truncate.Output();
  EXPECT_EQ(Size(), page_);
  ASSERT_TRUE(Ended(lease.id).has_value());
  EXPECT_EQ(Ended(lease.id)->lease.state, LeaseState::kReleased);
}

TEST_P(FileGuardTest, FanotifyDeferFailsThePunchAtTheLayoutTimeout) {
  const LeaseInfo lease = Pin("defer", 4, 2);
  if (!PreContent("defer")) GTEST_SKIP() << "no fanotify pre-content events here";
  Child punch({Tool("fallocate"), "--punch-hole", "-o", std::to_string(4 * page_), "-l",
               std::to_string(page_), path_});
  ASSERT_TRUE(punch.WaitHeld()) << punch.Output();
  clock_.WaitForWaiters(1);
  clock_.Advance(absl::Seconds(30));
  EXPECT_EQ(punch.Wait(), 1);
  EXPECT_THAT(punch.Output(), HasSubstr("Device or resource busy"));
  EXPECT_EQ(Contents(), original_);
  EXPECT_EQ(Live(lease.id)->state, LeaseState::kGranted);
}

TEST_P(FileGuardTest, FanotifyRevokeRecallsRevokesAfterGraceThenLetsTheChangeThrough) {
  const LeaseInfo lease = Pin("revoke", 4, 2);
  const LeaseInfo elsewhere = Pin("revoke", 0, 1);
  if (!PreContent()) GTEST_SKIP() << "no fanotify pre-content events here";
  Child ftruncate({Tool("truncate"), "-s", std::to_string(3 * page_ + 100), path_});
  ASSERT_TRUE(ftruncate.WaitHeld()) << ftruncate.Output();
  clock_.WaitForWaiters(1);
  ASSERT_TRUE(Live(lease.id).has_value());
  EXPECT_EQ(Live(lease.id)->state, LeaseState::kRecalling);
  EXPECT_THAT(Live(lease.id)->reason,
              AllOf(HasSubstr(absl::StrCat("out-of-band ftruncate(2) from ", kPages * page_, " to ",
                                           3 * page_ + 100, " bytes")),
                    HasSubstr("policy revoke"), HasSubstr("(truncate), caught by fanotify")));
  EXPECT_EQ(Size(), kPages * page_);
  clock_.Advance(absl::Seconds(5));
  EXPECT_EQ(ftruncate.Wait(), 0) << ftruncate.Output();
  EXPECT_EQ(Size(), 3 * page_ + 100);
  ASSERT_TRUE(Ended(lease.id).has_value());
  EXPECT_EQ(Ended(lease.id)->lease.state, LeaseState::kRevoked);
  EXPECT_THAT(Ended(lease.id)->lease.reason, HasSubstr("not released within the 5s grace"));
  EXPECT_EQ(Live(elsewhere.id)->state, LeaseState::kGranted);  // Pages before the new EOF.
}

TEST_P(FileGuardTest, FanotifyRevokeLetsAPunchThroughOnceTheHolderReleases) {
  const LeaseInfo lease = Pin("revoke", 4, 2);
  if (!PreContent()) GTEST_SKIP() << "no fanotify pre-content events here";
  Child punch({Tool("fallocate"), "--punch-hole", "-o", std::to_string(5 * page_), "-l",
               std::to_string(2 * page_), path_});
  ASSERT_TRUE(punch.WaitHeld()) << punch.Output();
  clock_.WaitForWaiters(1);
  EXPECT_THAT(Live(lease.id)->reason,
              HasSubstr(absl::StrCat("out-of-band fallocate(2) PUNCH_HOLE of bytes [", 5 * page_,
                                     ", ", 7 * page_, ")")));
  ASSERT_OK(service_->Release("holder", lease.id));
  EXPECT_EQ(punch.Wait(), 0) << punch.Output();
  std::string want = original_;
  want.replace(5 * page_, 2 * page_, std::string(2 * page_, '\0'));
  EXPECT_EQ(Contents(), want);
  EXPECT_EQ(Ended(lease.id)->lease.state, LeaseState::kReleased);
}

// --- writes and reads: never held beyond the answer, never a recall ---

TEST_P(FileGuardTest, WritesAndReadsOfALeasedRangeProceedAndRecallNothing) {
  const LeaseInfo lease = Pin("revoke", 4, 2);
  Child write = Oob({"pwrite", path_, std::to_string(4 * page_ + 10), "100"});
  EXPECT_EQ(write.Wait(), 0) << write.Output();
  std::string out;
  EXPECT_EQ(pinbroker::testing::RunLogged(absl::StrCat("cat ", path_, " >/dev/null"), &out), 0)
      << out;
  std::string want = original_;
  want.replace(4 * page_ + 10, 100, std::string(100, 'W'));
  EXPECT_EQ(Contents(), want);
  guard_->AwaitIdle();
  Settle();
  EXPECT_EQ(Live(lease.id)->state, LeaseState::kGranted);
  EXPECT_FALSE(Recalled(lease.id));
}

TEST_P(FileGuardTest, StoresThroughAnotherProcesssMappingProceedAndRecallNothing) {
  const LeaseInfo lease = Pin("refuse", 4, 2);
  // mmap(2) raises an ordinary-access event (answered at once); page faults raise none.
  Child writer = Oob({"mmap-write", path_, std::to_string(4 * page_ + 100), "200"});
  EXPECT_EQ(writer.Wait(), 0) << writer.Output();
  std::string want = original_;
  want.replace(4 * page_ + 100, 200, std::string(200, 'M'));
  EXPECT_EQ(Contents(), want);
  Settle();
  EXPECT_EQ(Live(lease.id)->state, LeaseState::kGranted);
  EXPECT_FALSE(Recalled(lease.id));
}

// --- open(O_TRUNC): FAN_OPEN_PERM holds the open before it truncates ---

TEST_P(FileGuardTest, OTruncOpenIsHeldRecalledRevokedThenLetThrough) {
  const LeaseInfo lease = Pin("revoke", 4, 2);  // Read-write: no file lease, fanotify only.
  if (!OpenPermission()) GTEST_SKIP() << "no fanotify open permission events here";
  Child otrunc = Oob({"otrunc", path_});
  ASSERT_TRUE(otrunc.WaitHeld()) << otrunc.Output();
  EXPECT_EQ(otrunc.HeldBy(), "fanotify");
  clock_.WaitForWaiters(1);
  EXPECT_EQ(Live(lease.id)->state, LeaseState::kRecalling);
  EXPECT_THAT(Live(lease.id)->reason,
              AllOf(HasSubstr("out-of-band openat(2) O_TRUNC from"), HasSubstr("to 0 bytes"),
                    HasSubstr("caught by fanotify")));
  EXPECT_EQ(Size(), kPages * page_);
  clock_.Advance(absl::Seconds(5));
  EXPECT_EQ(otrunc.Wait(), 0) << otrunc.Output();
  EXPECT_EQ(Size(), 0u);
  EXPECT_EQ(Ended(lease.id)->lease.state, LeaseState::kRevoked);
}

TEST_P(FileGuardTest, OTruncOpensFailUnderRefuseReadOnlyOnesToo) {
  const LeaseInfo lease = Pin("refuse", 4, 2, Access::kRead);
  if (!OpenPermission("refuse")) GTEST_SKIP() << "no fanotify open permission events here";
  Child otrunc = Oob({"otrunc", path_});
  EXPECT_TRUE(FailedBusy(otrunc.Wait())) << otrunc.Output();
  Child rdonly = Oob({"rdonly-otrunc", path_});
  EXPECT_TRUE(FailedBusy(rdonly.Wait())) << rdonly.Output();
  EXPECT_EQ(Contents(), original_);
  EXPECT_EQ(Live(lease.id)->state, LeaseState::kGranted);
  EXPECT_FALSE(Recalled(lease.id));
}

TEST_P(FileGuardTest, NonBlockingWriterOpensNeverFailWithEagain) {
  // coreutils truncate opens O_WRONLY|O_NONBLOCK: a file lease alone would fail that open with
  // EAGAIN. The open permission event gives the lease up first.
  const LeaseInfo lease = Pin("refuse", 0, 2, Access::kRead);
  if (!OpenPermission("refuse")) GTEST_SKIP() << "no fanotify open permission events here";
  Child grow({Tool("truncate"), "-s", std::to_string(2 * kPages * page_), path_});
  EXPECT_EQ(grow.Wait(), 0) << grow.Output();
  EXPECT_EQ(Size(), 2 * kPages * page_);
  EXPECT_EQ(Live(lease.id)->state, LeaseState::kGranted);
}

// --- file lease: truncate(path), and open(O_TRUNC) where fanotify is off ---

TEST_P(FileGuardTest, LeaseDeferHoldsTruncateByPathUntilRelease) {
  const LeaseInfo lease = Pin("defer", 4, 2, Access::kRead);
  if (!Armed("lease", "defer")) GTEST_SKIP() << "no file lease here (pre-content events instead)";
  Child truncate = Oob({"truncate", path_, std::to_string(2 * page_)});
  ASSERT_TRUE(truncate.WaitHeld()) << truncate.Output();
  EXPECT_EQ(truncate.HeldBy(), "lease");
  clock_.WaitForWaiters(1);
  EXPECT_EQ(Size(), kPages * page_);
  ASSERT_OK(service_->Release("holder", lease.id));
  EXPECT_EQ(truncate.Wait(), 0) << truncate.Output();
  EXPECT_EQ(Size(), 2 * page_);
  EXPECT_EQ(Ended(lease.id)->lease.state, LeaseState::kReleased);
}

TEST_P(FileGuardTest, LeaseGivesWayToPlainWritersAndRecallsNothing) {
  const LeaseInfo lease = Pin("revoke", 4, 2, Access::kRead);
  if (!Armed("lease")) GTEST_SKIP() << "no file lease here (pre-content events instead)";
  Child write = Oob({"pwrite", path_, std::to_string(4 * page_), "10"});
  EXPECT_EQ(write.Wait(), 0) << write.Output();
  guard_->AwaitIdle();
  EXPECT_EQ(Live(lease.id)->state, LeaseState::kGranted);
  EXPECT_FALSE(Recalled(lease.id));
  // The lease was given up for the writer and comes back at the next check.
  Settle();
  EXPECT_THAT(Report().guard, HasSubstr("lease"));
}

TEST_P(FileGuardTest, WithoutFanotifyALeaseHoldsOTruncOpens) {
  RestartGuard(/*fanotify=*/false, /*leases=*/true);  // As a broker without CAP_SYS_ADMIN.
  const LeaseInfo lease = Pin("revoke", 4, 2, Access::kRead);
  ASSERT_EQ(Report().guard, "lease");
  Child otrunc = Oob({"otrunc", path_});
  ASSERT_TRUE(otrunc.WaitHeld()) << otrunc.Output();
  EXPECT_EQ(otrunc.HeldBy(), "lease");
  clock_.WaitForWaiters(1);
  EXPECT_EQ(Live(lease.id)->state, LeaseState::kRecalling);
  EXPECT_THAT(Live(lease.id)->reason,
              AllOf(HasSubstr("out-of-band openat(2) O_TRUNC from"), HasSubstr("to 0 bytes"),
                    HasSubstr("caught by file lease")));
  clock_.Advance(absl::Seconds(5));
  EXPECT_EQ(otrunc.Wait(), 0) << otrunc.Output();
  EXPECT_EQ(Size(), 0u);
  EXPECT_EQ(Ended(lease.id)->lease.state, LeaseState::kRevoked);
}

TEST_P(FileGuardTest, WithoutFanotifyALeaseCannotFailTheOpenSoRefuseRevokesAtOnce) {
  RestartGuard(/*fanotify=*/false, /*leases=*/true);
  const LeaseInfo lease = Pin("refuse", 4, 2, Access::kRead);
  ASSERT_EQ(Report("refuse").guard, "lease");
  Child otrunc = Oob({"otrunc", path_});
  EXPECT_EQ(otrunc.Wait(), 0) << otrunc.Output();
  EXPECT_EQ(Size(), 0u);
  ASSERT_TRUE(Ended(lease.id).has_value());
  EXPECT_EQ(Ended(lease.id)->lease.state, LeaseState::kRevoked);
  EXPECT_THAT(Ended(lease.id)->lease.reason, HasSubstr("caught by file lease"));
}

// --- detect-after: what nothing could intercept ---

TEST_P(FileGuardTest, WithNothingArmedOTruncIsDetectedAfterAndRevokesAtOnce) {
  RestartGuard(/*fanotify=*/false, /*leases=*/false);
  const LeaseInfo lease = Pin("refuse", 4, 2);
  EXPECT_EQ(Report("refuse").guard, "none");
  EXPECT_THAT(Report("refuse").unguarded_operations, Contains("open(2) O_TRUNC"));
  Child otrunc = Oob({"otrunc", path_});
  EXPECT_EQ(otrunc.Wait(), 0) << otrunc.Output();
  EXPECT_EQ(Size(), 0u);
  Settle();
  ASSERT_TRUE(Ended(lease.id).has_value());
  EXPECT_EQ(Ended(lease.id)->lease.state, LeaseState::kRevoked);
  EXPECT_THAT(Ended(lease.id)->lease.reason,
              AllOf(StartsWith("out-of-band change: the file shrank from"),
                    HasSubstr("detected afterwards")));
}

TEST_P(FileGuardTest, ReadOnlyOTruncEscapesAFileLeaseAndIsDetectedAfter) {
  RestartGuard(/*fanotify=*/false, /*leases=*/true);
  const LeaseInfo lease = Pin("revoke", 2, 2, Access::kRead);
  ASSERT_EQ(Report().guard, "lease");
  EXPECT_THAT(Report().unguarded_operations, Contains("open(2) O_RDONLY|O_TRUNC"));
  Child otrunc = Oob({"rdonly-otrunc", path_});
  EXPECT_EQ(otrunc.Wait(), 0) << otrunc.Output();
  EXPECT_EQ(Size(), 0u);
  Settle();
  ASSERT_TRUE(Ended(lease.id).has_value());
  EXPECT_THAT(Ended(lease.id)->lease.reason, StartsWith("out-of-band change:"));
}

// --- openat2(2): flags in the caller's memory ---

TEST_P(FileGuardTest, Openat2OTruncOpensFailUnderRefuse) {
  const LeaseInfo lease = Pin("refuse", 4, 2, Access::kRead);
  if (!OpenPermission("refuse")) GTEST_SKIP() << "no fanotify open permission events here";
  Child otrunc = Oob({"openat2-otrunc", path_});
  EXPECT_TRUE(FailedBusy(otrunc.Wait())) << otrunc.Output();
  EXPECT_EQ(Contents(), original_);
  EXPECT_EQ(Live(lease.id)->state, LeaseState::kGranted);
  EXPECT_FALSE(Recalled(lease.id));
}

TEST_P(FileGuardTest, Openat2WhoseFlagsAreClearedDuringTheCallIsListedAndDetectedAfter) {
  const LeaseInfo lease = Pin("refuse", 4, 2, Access::kRead);
  if (!OpenPermission("refuse") && !Armed("lease", "refuse")) {
    GTEST_SKIP() << "opens are not intercepted here";
  }
  ExpectRacedOpenat2DetectedAfterOrRefused(lease, Unguarded(kOpOpenat2FlagsChanged, "refuse"));
}

TEST_P(FileGuardTest, Openat2WhoseFlagsAreClearedDuringTheCallEscapesAFileLeaseToo) {
  RestartGuard(/*fanotify=*/false, /*leases=*/true);
  const LeaseInfo lease = Pin("refuse", 4, 2, Access::kRead);
  ASSERT_EQ(Report("refuse").guard, "lease");
  ASSERT_TRUE(Unguarded(kOpOpenat2FlagsChanged, "refuse"));
  ExpectRacedOpenat2DetectedAfterOrRefused(lease, /*listed=*/true);
}

TEST_P(FileGuardTest, PunchThroughADescriptorOpenedBeforeArmingIsDetectedAfter) {
  Child early = Oob({"open-then-punch", path_, std::to_string(4 * page_), std::to_string(page_)});
  ASSERT_EQ(early.ReadLine(), "opened");
  const LeaseInfo lease = Pin("refuse", 4, 2);
  const GuardReport report = Report("refuse");
  EXPECT_THAT(report.unguarded_operations,
              Contains(PreContent("refuse") ? kOpPunchPreopened : "fallocate(2) PUNCH_HOLE"));
  early.WriteLine();
  EXPECT_EQ(early.Wait(), 0) << early.Output();
  Settle();
  ASSERT_TRUE(Ended(lease.id).has_value());
  EXPECT_EQ(Ended(lease.id)->lease.state, LeaseState::kRevoked);
  EXPECT_THAT(Ended(lease.id)->lease.reason,
              AllOf(StartsWith("out-of-band change: bytes ["), HasSubstr("became a hole")));
}

TEST_P(FileGuardTest, TruncatesWithoutFanotifyAreDetectedAfter) {
  // Read-write leases: no file lease either.
  const LeaseInfo a = Pin("refuse", 8, 2);
  const LeaseInfo b = Pin("refuse", 4, 2);
  if (PreContent("refuse")) GTEST_SKIP() << "fanotify guards truncate(2) and ftruncate(2) here";
  EXPECT_THAT(Report("refuse").unguarded_operations, Contains("truncate(2)"));
  EXPECT_THAT(Report("refuse").unguarded_operations, Contains("ftruncate(2)"));
  Child truncate = Oob({"truncate", path_, std::to_string(7 * page_)});
  EXPECT_EQ(truncate.Wait(), 0) << truncate.Output();
  Settle();
  ASSERT_TRUE(Ended(a.id).has_value());
  EXPECT_THAT(Ended(a.id)->lease.reason, StartsWith("out-of-band change: the file shrank"));
  EXPECT_EQ(Live(b.id)->state, LeaseState::kGranted);  // Still within the file.
  Child ftruncate({Tool("truncate"), "-s", std::to_string(page_), path_});
  EXPECT_EQ(ftruncate.Wait(), 0) << ftruncate.Output();
  Settle();
  ASSERT_TRUE(Ended(b.id).has_value());
  EXPECT_THAT(Ended(b.id)->lease.reason, StartsWith("out-of-band change: the file shrank"));
}

// --- unlink ---

TEST_P(FileGuardTest, UnlinkRecallsWithReasonUnlinkedAndRevokesAfterGrace) {
  const LeaseInfo lease = Pin("revoke", 4, 2);
  Child unlink = Oob({"unlink", path_});
  EXPECT_EQ(unlink.Wait(), 0) << unlink.Output();
  // With a notification group the guard notices by itself; otherwise at its next check.
  if (!guard_->capabilities().notify_group) guard_->CheckNow();
  ASSERT_TRUE(
      WaitFor([&] { return Live(lease.id) && Live(lease.id)->state == LeaseState::kRecalling; }));
  EXPECT_THAT(Live(lease.id)->reason, StartsWith("unlinked: revoke/data was deleted"));
  guard_->AwaitIdle();  // The revoke timer is set right after the recall.
  EXPECT_EQ(Live(lease.id)->recall_deadline, clock_.Now() + absl::Seconds(5));
  clock_.Advance(absl::Seconds(5));
  ASSERT_TRUE(Ended(lease.id).has_value());
  EXPECT_EQ(Ended(lease.id)->lease.state, LeaseState::kRevoked);
  EXPECT_THAT(Ended(lease.id)->lease.reason, HasSubstr("unlinked"));
}

TEST_P(FileGuardTest, UnlinkUnderDeferRecallsButNeverRevokes) {
  const LeaseInfo lease = Pin("defer", 4, 2);
  Child unlink = Oob({"unlink", path_});
  EXPECT_EQ(unlink.Wait(), 0) << unlink.Output();
  Settle();
  ASSERT_TRUE(Live(lease.id).has_value());
  EXPECT_EQ(Live(lease.id)->state, LeaseState::kRecalling);
  EXPECT_THAT(Live(lease.id)->reason, StartsWith("unlinked:"));
  EXPECT_EQ(Live(lease.id)->recall_deadline, lease.expires_at);
  clock_.Advance(absl::Seconds(30));
  EXPECT_EQ(Live(lease.id)->state, LeaseState::kRecalling);
}

// --- the broker's own changes and shutdown ---

TEST_P(FileGuardTest, TheBrokersOwnLayoutChangesAndPinsNeverWaitForTheGuard) {
  const LeaseInfo ro = Pin("revoke", 0, 2, Access::kRead);
  const LeaseInfo rw = Pin("revoke", 8, 2);  // A second pin: its mmap raises an event of ours.
  LayoutRequest r;
  r.export_name = "revoke";
  r.path = "data";
  r.policy = LayoutPolicy::kRefuse;
  r.initiator = "test";
  // Truncate RPC: opens the file for writing (the guard yields its file lease) and truncates
  // (its own fanotify event is allowed at once).
  ASSERT_OK(service_->Truncate(r, 12 * page_).status());
  EXPECT_EQ(Size(), 12 * page_);
  ASSERT_OK(service_->PunchHole(r, 4 * page_, page_).status());
  Settle();
  EXPECT_EQ(Live(ro.id)->state, LeaseState::kGranted);
  EXPECT_EQ(Live(rw.id)->state, LeaseState::kGranted);
}

TEST_P(FileGuardTest, StopAnswersAHeldCallerAtOnce) {
  const LeaseInfo lease = Pin("defer", 4, 2);
  // A truncate held by pre-content events, or else an O_TRUNC open held by FAN_OPEN_PERM.
  const bool pre = PreContent("defer");
  if (!pre && !OpenPermission("defer")) GTEST_SKIP() << "no fanotify permission events here";
  Child held = pre ? Oob({"truncate", path_, std::to_string(page_)}) : Oob({"otrunc", path_});
  ASSERT_TRUE(held.WaitHeld()) << held.Output();
  clock_.WaitForWaiters(1);
  guard_->Stop();
  EXPECT_EQ(held.Wait(), 0) << held.Output();
  EXPECT_EQ(Size(), pre ? page_ : 0u);
  ASSERT_TRUE(Ended(lease.id).has_value());
  EXPECT_EQ(Ended(lease.id)->lease.state, LeaseState::kRevoked);
  EXPECT_THAT(Ended(lease.id)->lease.reason, HasSubstr("broker shutting down"));
  // After Stop nothing is watched: changes go straight through.
  Child after = Oob({"truncate", path_, "0"});
  EXPECT_EQ(after.Wait(), 0) << after.Output();
}

TEST_P(FileGuardTest, DisarmsWhenTheLastLeaseEnds) {
  const LeaseInfo a = Pin("refuse", 4, 1);
  const LeaseInfo b = Pin("refuse", 6, 1);
  EXPECT_EQ(guard_->guarded_files(), 1u);
  ASSERT_OK(service_->Release("holder", a.id));
  EXPECT_EQ(guard_->guarded_files(), 1u);
  ASSERT_OK(service_->Release("holder", b.id));
  EXPECT_EQ(guard_->guarded_files(), 0u);
  Child truncate = Oob({"truncate", path_, "0"});
  EXPECT_EQ(truncate.Wait(), 0) << truncate.Output();
}

// --- one sweep per file, shared by its leases ---

TEST_P(FileGuardTest, AChangeBeforeAGrantIsNeverReportedUnderTheNewLease) {
  Child early = Oob({"open-then-punch", path_, std::to_string(8 * page_), std::to_string(page_)});
  ASSERT_EQ(early.ReadLine(), "opened");
  const LeaseInfo first = Pin("refuse", 0, 1);  // Arms the guard and sweeps the file.
  early.WriteLine();
  EXPECT_EQ(early.Wait(), 0) << early.Output();  // Unleased bytes: nothing to revoke.
  // Granted after the punch: its snapshot must be taken after it, not reused from before.
  const LeaseInfo later = Pin("refuse", 8, 2);
  Settle();
  EXPECT_EQ(Live(first.id)->state, LeaseState::kGranted);
  ASSERT_TRUE(Live(later.id).has_value()) << Ended(later.id)->lease.reason;
  EXPECT_EQ(Live(later.id)->state, LeaseState::kGranted);
}

TEST_P(FileGuardTest, LeasesSharingASnapshotAreEachComparedWithTheNextSweep) {
  Child early = Oob({"open-then-punch", path_, std::to_string(5 * page_), std::to_string(page_)});
  ASSERT_EQ(early.ReadLine(), "opened");
  const LeaseInfo a = Pin("refuse", 0, 2);
  const LeaseInfo b = Pin("refuse", 4, 2);
  const LeaseInfo c = Pin("refuse", 6, 2);
  Settle();  // Nothing changed yet.
  EXPECT_FALSE(Ended(a.id).has_value() || Ended(b.id).has_value() || Ended(c.id).has_value());
  early.WriteLine();
  EXPECT_EQ(early.Wait(), 0) << early.Output();
  Settle();
  ASSERT_TRUE(Ended(b.id).has_value());
  EXPECT_THAT(Ended(b.id)->lease.reason,
              HasSubstr(absl::StrCat("bytes [", 5 * page_, ", ", 6 * page_, ") of bytes [",
                                     4 * page_, ", ", 6 * page_, ") became a hole")));
  EXPECT_EQ(Live(a.id)->state, LeaseState::kGranted);
  EXPECT_EQ(Live(c.id)->state, LeaseState::kGranted);
}

// Detect-after alone (no fanotify, no file lease), so that nothing but Settle() sweeps the file
// and the test's own writes and punches are not intercepted.
TEST_P(FileGuardTest, PinsOfDataOnAChangedFileDoNotSweepItAndAreStillWatched) {
  RestartGuard(/*fanotify=*/false, /*leases=*/false);
  const int fd = ::open(path_.c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  const auto punch = [&](uint64_t first, uint64_t pages) {
    ASSERT_EQ(
        ::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, first * page_, pages * page_),
        0)
        << std::strerror(errno);
  };
  punch(8, 8);  // Pages 8-15 are holes from here on, until written.
  const LeaseInfo first = Pin("refuse", 0, 1);
  const uint64_t swept = guard_->sweeps(first.file);
  // Each write fills a hole, so the file's stamp moves and no sweep can be reused.
  std::vector<LeaseInfo> filled;
  for (uint64_t page = 8; page < 12; ++page) {
    const std::string bytes(page_, 'W');
    ASSERT_EQ(::pwrite(fd, bytes.data(), bytes.size(), static_cast<off_t>(page * page_)),
              static_cast<ssize_t>(bytes.size()));
    filled.push_back(Pin("refuse", page, 1));
  }
  EXPECT_EQ(guard_->sweeps(first.file), swept);
  // A pin over a hole takes a sweep, where its pin leaves the hole (mlock fills tmpfs holes).
  const LeaseInfo holey = Pin("refuse", 12, 2);
  const off_t hole = ::lseek(fd, static_cast<off_t>(12 * page_), SEEK_HOLE);
  const bool still_holey = hole >= 0 && static_cast<uint64_t>(hole) < 14 * page_;
  EXPECT_EQ(guard_->sweeps(first.file), swept + (still_holey ? 1 : 0));

  // A hole punched under one of them before any check is found against its grant view.
  punch(10, 1);
  Settle();
  ASSERT_TRUE(Ended(filled[2].id).has_value());
  EXPECT_THAT(Ended(filled[2].id)->lease.reason,
              HasSubstr(absl::StrCat("bytes [", 10 * page_, ", ", 11 * page_, ") of bytes [",
                                     10 * page_, ", ", 11 * page_, ") became a hole")));
  // Since that check the others share its sweep, and a hole punched later is found too.
  punch(9, 1);
  Settle();
  ASSERT_TRUE(Ended(filled[1].id).has_value());
  EXPECT_THAT(Ended(filled[1].id)->lease.reason, HasSubstr("became a hole"));
  for (const LeaseInfo& lease : {first, filled[0], filled[3], holey}) {
    ASSERT_TRUE(Live(lease.id).has_value()) << lease.id << ": " << Ended(lease.id)->lease.reason;
    EXPECT_EQ(Live(lease.id)->state, LeaseState::kGranted);
  }
  ::close(fd);
}

TEST_P(FileGuardTest, WritesAreCheckedAtMostOncePerEventCheckGap) {
  if (!guard_->capabilities().notify_group) {
    GTEST_SKIP() << "no fanotify notification group here: " << guard_->capabilities().notify_why;
  }
  const LeaseInfo lease = Pin("refuse", 0, 1);
  guard_->AwaitIdle();
  const auto write_page = [&](uint64_t page) {
    Child w = Oob({"pwrite", path_, std::to_string(page * page_), std::to_string(page_)});
    EXPECT_EQ(w.Wait(), 0) << w.Output();
  };
  // The first write's events are checked at once.
  const uint64_t before = guard_->sweeps(lease.file);
  write_page(8);
  ASSERT_TRUE(WaitFor([&] { return guard_->sweeps(lease.file) > before; }));
  guard_->AwaitIdle();
  // The next, within the gap, are checked once at its end (on the test's clock, which stands
  // still until advanced).
  const uint64_t first = guard_->sweeps(lease.file);
  const size_t timers = clock_.pending_timers();
  write_page(9);
  write_page(10);
  ASSERT_TRUE(WaitFor([&] { return clock_.pending_timers() > timers; }));
  guard_->AwaitIdle();
  // Without pre-content events nothing else looks at a write (with them, the write's own
  // pre-access event may).
  if (!PreContent("refuse")) {
    EXPECT_EQ(guard_->sweeps(lease.file), first);
  }
  EXPECT_EQ(clock_.pending_timers(), timers + 1);  // One check for both writes.
  clock_.Advance(FileGuard::Options().event_check_gap);
  ASSERT_TRUE(WaitFor([&] { return guard_->sweeps(lease.file) > first; }));
  guard_->AwaitIdle();
  EXPECT_EQ(Live(lease.id)->state, LeaseState::kGranted);
}

TEST_P(FileGuardTest, AFileStaysArmedForTheLingerAfterItsLastLeaseThenDisarms) {
  const LeaseInfo a = Pin("refuse", 4, 1);
  ASSERT_OK(service_->Release("holder", a.id));
  EXPECT_EQ(guard_->guarded_files(), 0u);
  EXPECT_EQ(guard_->armed_files(), 1u);  // Lingering.
  EXPECT_EQ(Report("refuse").guard, "none");
  const LeaseInfo b = Pin("refuse", 4, 1);  // Pinned again: the same arming serves it.
  EXPECT_EQ(guard_->guarded_files(), 1u);
  clock_.Advance(absl::Seconds(1));
  EXPECT_EQ(guard_->armed_files(), 1u);  // Not idle: the earlier linger does not disarm it.
  ASSERT_OK(service_->Release("holder", b.id));
  clock_.Advance(absl::Milliseconds(999));
  EXPECT_EQ(guard_->armed_files(), 1u);
  clock_.Advance(absl::Milliseconds(1));
  EXPECT_EQ(guard_->armed_files(), 0u);
}

INSTANTIATE_TEST_SUITE_P(Filesystems, FileGuardTest, ::testing::Values("ext4", "dax", "tmpfs"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace pinbroker::guard
