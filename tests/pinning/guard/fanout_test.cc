// The recall fan-out at scale: a revoke-truncate of a fully written file under 10,000 one-page
// leases whose holders release on RECALLED, with the file guard on (real guard, real file on
// tmpfs, or the test's temp dir where /dev/shm is not tmpfs). Every lease must be released by
// its holder and none revoked, in one session and in 100. Pass/fail is on counts only: the grace
// period is far longer than the run needs, and nothing here is timed.
#include <fcntl.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/log.h"
#include "common/real_clock.h"
#include "gtest/gtest.h"
#include "pinning/guard/file_guard.h"
#include "pinning/pin_service.h"
#include "tests/testing/fake_backend.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace pinbroker::guard {
namespace {

constexpr int kLeases = 10000;
constexpr absl::Duration kGrace = absl::Minutes(10);  // Never reached by a passing run.

bool ShmIsTmpfs() {
  struct statfs fs;
  return statfs("/dev/shm", &fs) == 0 && fs.f_type == 0x01021994;
}

// One cooperative holder: watches its session's events and releases each lease it is asked to.
class Holder {
 public:
  Holder(PinService* service, std::string owner)
      : service_(service), owner_(std::move(owner)), events_(service->Watch(owner_).events) {
    thread_ = std::thread([this] { Run(); });
  }
  ~Holder() {
    events_->Close();
    thread_.join();
  }
  const std::string& owner() const { return owner_; }
  int released() const { return released_.load(); }
  int revoked() const { return revoked_.load(); }
  int failed_releases() const { return failed_.load(); }
  bool overflowed() const { return overflowed_.load(); }
  // Waits (up to `bound`, a safety bound) until this holder has answered `recalls` recalls. A
  // Release the broker has counted may return to the holder only after the truncate has; the
  // holder counts it then.
  bool AwaitAnswered(int recalls, absl::Duration bound) {
    absl::MutexLock lock(&mu_);
    auto answered = [this, recalls]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return answered_ >= recalls || stopped_;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&answered), bound) && answered_ >= recalls;
  }

 private:
  void Answered() {
    absl::MutexLock lock(&mu_);
    ++answered_;
  }
  void Run() {
    for (;;) {
      absl::StatusOr<LeaseEvent> event = events_->Next(absl::InfiniteFuture());
      if (!event.ok()) {
        if (absl::IsResourceExhausted(event.status())) overflowed_ = true;
        absl::MutexLock lock(&mu_);
        stopped_ = true;
        return;  // Closed (end of test) or overflowed (counted, fails the test).
      }
      switch (event->type) {
        case LeaseEvent::Type::kRecalled:
          if (service_->Release(owner_, event->lease.id).ok()) {
            ++released_;
          } else {
            ++failed_;
          }
          Answered();
          break;
        case LeaseEvent::Type::kRevoked:
          ++revoked_;
          break;
        default:
          break;
      }
    }
  }

  PinService* const service_;
  const std::string owner_;
  std::shared_ptr<EventQueue> events_;
  std::atomic<int> released_{0};
  std::atomic<int> revoked_{0};
  std::atomic<int> failed_{0};
  std::atomic<bool> overflowed_{false};
  absl::Mutex mu_;
  int answered_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

class FanOutTest : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override {
    previous_ = LogEnabled(LogSeverity::kInfo) ? LogSeverity::kInfo : LogSeverity::kWarning;
    SetMinLogSeverity(LogSeverity::kWarning);  // 10,000 grants and releases.
    dir_ = ShmIsTmpfs() ? std::make_unique<testing::TempDir>("/dev/shm")
                        : std::make_unique<testing::TempDir>();
    dir_->WriteFile("data", std::string(kLeases * page_, 'f'));
    ExportOptions exp;
    exp.name = "exp";
    exp.root = dir_->path();
    exp.default_policy = LayoutPolicy::kRevoke;
    exp.grace = kGrace;
    exp.layout_timeout = absl::Minutes(10);
    exp.default_ttl = absl::Hours(1);
    exp.max_ttl = absl::Hours(1);
    ASSERT_OK_AND_ASSIGN(service_, PinService::Create(&clock_, &backend_, {exp}));
    ASSERT_OK_AND_ASSIGN(guard_, FileGuard::Start(service_.get()));  // Checks every second.
  }
  void TearDown() override {
    holders_.clear();
    guard_.reset();
    service_.reset();
    SetMinLogSeverity(previous_);
  }

  const uint64_t page_ = SystemPageSize();
  LogSeverity previous_ = LogSeverity::kInfo;
  RealClock clock_;
  pinbroker::testing::FakeBackend backend_;
  std::unique_ptr<testing::TempDir> dir_;
  std::unique_ptr<PinService> service_;
  std::unique_ptr<FileGuard> guard_;
  std::vector<std::unique_ptr<Holder>> holders_;
};

TEST_P(FanOutTest, RevokeTruncateUnderTenThousandCooperativeLeasesRevokesNone) {
  const int sessions = GetParam();
  // The holders watch once their leases are granted (the Watch snapshot has them), as a client
  // that reconnects does: watching while 10,000 pins are made, a holder must drain as many
  // GRANTED events as fast as they come or its stream overflows its bound (1024 queued grants),
  // which a slow (sanitizer) build need not manage. Recalls are what this test is about, and
  // they bypass that bound.
  for (int i = 0; i < kLeases; ++i) {
    PinRequest pin;
    pin.owner = absl::StrCat("holder-", i % sessions);
    pin.export_name = "exp";
    pin.path = "data";
    pin.offset = static_cast<uint64_t>(i) * page_;
    pin.length = page_;
    pin.access = Access::kReadWrite;
    ASSERT_OK(service_->Pin(pin).status()) << "pin " << i;
  }
  ASSERT_EQ(service_->live_lease_count(), static_cast<size_t>(kLeases));
  EXPECT_EQ(guard_->guarded_files(), 1u);
  for (int s = 0; s < sessions; ++s) {
    holders_.push_back(std::make_unique<Holder>(service_.get(), absl::StrCat("holder-", s)));
  }

  LayoutRequest truncate;
  truncate.export_name = "exp";
  truncate.path = "data";
  truncate.policy = LayoutPolicy::kRevoke;
  truncate.grace = kGrace;
  truncate.initiator = "fan-out test";
  ASSERT_OK_AND_ASSIGN(const LayoutResult result, service_->Truncate(truncate, 0));

  EXPECT_EQ(result.recalled.size(), static_cast<size_t>(kLeases));
  EXPECT_EQ(result.released.size(), static_cast<size_t>(kLeases));
  EXPECT_EQ(result.revoked.size(), 0u);
  EXPECT_EQ(result.expired.size(), 0u);
  int released = 0, revoked = 0, failed = 0, overflowed = 0;
  for (const auto& holder : holders_) {
    EXPECT_TRUE(holder->AwaitAnswered(kLeases / sessions, absl::Seconds(60)))
        << holder->owner() << " did not answer its recalls";
    released += holder->released();
    revoked += holder->revoked();
    failed += holder->failed_releases();
    overflowed += holder->overflowed() ? 1 : 0;
  }
  EXPECT_EQ(released, kLeases);
  EXPECT_EQ(revoked, 0);
  EXPECT_EQ(failed, 0);
  EXPECT_EQ(overflowed, 0) << "sessions whose Watch queue overflowed";
  EXPECT_EQ(service_->live_lease_count(), 0u);
  std::ifstream in(dir_->Join("data"), std::ios::binary);
  std::stringstream bytes;
  bytes << in.rdbuf();
  EXPECT_EQ(bytes.str(), "");  // Applied.
}

INSTANTIATE_TEST_SUITE_P(Sessions, FanOutTest, ::testing::Values(1, 100),
                         [](const auto& info) { return absl::StrCat(info.param, "Sessions"); });

}  // namespace
}  // namespace pinbroker::guard
