// EngineTest: a PinService over a FakeBackend and a SimulatedClock, exporting a fresh temporary
// directory that holds one 8-page file "data". For engine tests that need real files but no
// real pins.
//
// Thread-compatible: tests drive it from the test thread and from threads they join.
#pragma once

#include <sys/stat.h>

#include <memory>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "pinning/pin_service.h"
#include "common/simulated_clock.h"
#include "tests/testing/fake_backend.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace pinbroker::testing {

class EngineTest : public ::testing::Test {
 protected:
  static constexpr uint64_t kPages = 8;

  void SetUp() override {
    dir_.WriteFile("data", Pattern(kPages * page_));
    ExportOptions exp;
    exp.name = "exp";
    exp.root = dir_.path();
    exp.default_policy = LayoutPolicy::kRevoke;
    exp.grace = absl::Seconds(5);
    exp.layout_timeout = absl::Seconds(30);
    exp.default_ttl = absl::Seconds(60);
    exp.max_ttl = absl::Seconds(600);
    ExportOptions ro = exp;
    ro.name = "ro";
    ro.read_only = true;
    auto service = PinService::Create(&clock_, &backend_, {exp, ro});
    ASSERT_TRUE(service.ok()) << service.status();
    service_ = *std::move(service);
  }

  // Distinct bytes per offset, so misplaced data is visible.
  static std::string Pattern(uint64_t size) {
    std::string s(size, '\0');
    for (uint64_t i = 0; i < size; ++i) s[i] = static_cast<char>('a' + (i * 7 + i / 4096) % 26);
    return s;
  }

  PinRequest Request(uint64_t offset, uint64_t length, absl::string_view owner = "s1",
                     Access access = Access::kReadWrite) const {
    PinRequest r;
    r.owner = std::string(owner);
    r.export_name = "exp";
    r.path = "data";
    r.offset = offset;
    r.length = length;
    r.access = access;
    return r;
  }

  // A lease on pages [first, first + count) of "data".
  LeaseInfo PinPages(uint64_t first, uint64_t count, absl::string_view owner = "s1") {
    auto lease = service_->Pin(Request(first * page_, count * page_, owner));
    EXPECT_TRUE(lease.ok()) << lease.status();
    return lease.ok() ? *lease : LeaseInfo{};
  }

  LayoutRequest Layout(std::optional<LayoutPolicy> policy) const {
    LayoutRequest r;
    r.export_name = "exp";
    r.path = "data";
    r.policy = policy;
    r.initiator = "test";
    return r;
  }

  uint64_t FileSize() const {
    struct stat st;
    EXPECT_EQ(stat(dir_.Join("data").c_str(), &st), 0);
    return static_cast<uint64_t>(st.st_size);
  }

  const uint64_t page_ = SystemPageSize();
  SimulatedClock clock_;
  FakeBackend backend_;
  TempDir dir_;
  std::unique_ptr<PinService> service_;  // Last: destroyed before the backend and clock.
};

// Runs `fn` on a thread and keeps its result; join() before reading it.
template <typename T>
class Async {
 public:
  template <typename Fn>
  explicit Async(Fn fn) : thread_([this, fn = std::move(fn)]() mutable { result_ = fn(); }) {}
  ~Async() {
    if (thread_.joinable()) thread_.join();
  }
  T& get() {
    if (thread_.joinable()) thread_.join();
    return result_;
  }

 private:
  T result_{};  // Default StatusOr: UNKNOWN until the thread sets it.
  std::thread thread_;
};

}  // namespace pinbroker::testing
