// Calls that wait (Truncate and PunchHole deferred or queued, RevokeLease with a grace) hold no
// broker thread while they wait: a real gRPC server over a Unix socket (BrokerTest), 1000
// concurrent calls on the client's callback API, and the process's thread count
// (/proc/self/task, client and server together) before and while they all wait. Time is
// simulated; the waits end by releases and Advance(), and every wait for another thread is a
// condition with a generous safety bound.
#include <sys/stat.h>

#include <memory>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/broker/broker_fixture.h"
#include "tests/testing/waiting.h"

namespace pinbroker::broker {
namespace {

using ::pinbroker::testing::Eventually;
using ::pinbroker::testing::ThreadCount;
using ::pinbroker::broker::testing::BrokerTest;
using Stub = v1::PinBroker::Stub;

constexpr int kCalls = 1000;
// The threads the calls may add, all together (gRPC's pollers and callback executors, the
// engine's executor): far less than one per call.
constexpr size_t kThreadAllowance = 64;
constexpr absl::Duration kSafety = absl::Seconds(120);  // Never reached unless broken.

// Outcomes of asynchronous client calls, by index.
class Completions {
 public:
  explicit Completions(int n) : statuses_(n) {}
  std::function<void(grpc::Status)> For(int i) {
    return [this, i](grpc::Status status) {
      absl::MutexLock lock(&mu_);
      statuses_[i] = std::move(status);
      ++done_;
    };
  }
  int done() {
    absl::MutexLock lock(&mu_);
    return done_;
  }
  bool AwaitAll() {
    absl::MutexLock lock(&mu_);
    auto all = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return done_ == static_cast<int>(statuses_.size());
    };
    return mu_.AwaitWithTimeout(absl::Condition(&all), kSafety);
  }
  grpc::Status status(int i) {
    absl::MutexLock lock(&mu_);
    return statuses_[i];
  }

 private:
  absl::Mutex mu_;
  std::vector<grpc::Status> statuses_ ABSL_GUARDED_BY(mu_);
  int done_ ABSL_GUARDED_BY(mu_) = 0;
};

class WaitingCallsTest : public BrokerTest {
 protected:
  void Configure(v1::BrokerConfig& config) override {
    config.mutable_quotas()->set_max_blocked_calls(2 * kCalls);
  }

  uint64_t SizeOf(const std::string& name) const {
    struct stat st;
    EXPECT_EQ(stat(dir_.Join(name).c_str(), &st), 0);
    return static_cast<uint64_t>(st.st_size);
  }

  absl::StatusOr<v1::Lease> PinFile(const v1::SessionCredentials& creds, const std::string& path,
                                    uint64_t offset, uint64_t length) {
    v1::PinRequest request = PinRequestFor(creds, offset, length);
    request.set_path(path);
    auto response = Call(&Stub::Pin, request);
    if (!response.ok()) return response.status();
    return response->lease();
  }

  absl::Status Release(const v1::SessionCredentials& creds, const std::string& lease_id) {
    v1::ReleaseRequest request;
    *request.mutable_credentials() = creds;
    request.set_lease_id(lease_id);
    return Call(&Stub::Release, request).status();
  }
};

TEST_F(WaitingCallsTest, ThousandDeferredTruncatesHoldNoThreadEach) {
  constexpr int kFiles = 10;
  std::vector<std::string> files;
  for (int f = 0; f < kFiles; ++f) {
    files.push_back(absl::StrCat("file", f));
    dir_.WriteFile(files.back(), std::string(kPages * page_, 'w'));
  }
  const v1::SessionCredentials creds = OpenSession();
  std::vector<v1::Lease> leases;
  for (const std::string& file : files) {
    ASSERT_OK_AND_ASSIGN(v1::Lease lease, PinFile(creds, file, 4 * page_, page_));
    leases.push_back(lease);
  }
  // A truncate that does not wait, so that every code path of the call has run once.
  v1::TruncateRequest warm = TruncateRequestFor(kPages * page_, v1::LAYOUT_POLICY_DEFER);
  ASSERT_OK(Call(&Stub::Truncate, warm).status());

  const size_t threads_before = ThreadCount();
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  std::vector<v1::TruncateRequest> requests(kCalls);
  std::vector<v1::LayoutChangeResponse> responses(kCalls);
  Completions completions(kCalls);
  for (int i = 0; i < kCalls; ++i) {
    // Shrinking below the lease: each file's first call defers on it, the others queue.
    requests[i] = TruncateRequestFor(2 * page_, v1::LAYOUT_POLICY_DEFER);
    requests[i].set_path(files[i % kFiles]);
    requests[i].mutable_options()->mutable_timeout()->set_seconds(600);
    contexts.push_back(std::make_unique<grpc::ClientContext>());
    stub_->async()->Truncate(contexts.back().get(), &requests[i], &responses[i],
                             completions.For(i));
  }
  ASSERT_TRUE(Eventually([&] { return broker_->engine().pending_async() == kCalls; }))
      << broker_->engine().pending_async() << " of " << kCalls << " calls reached the engine";
  const size_t threads_waiting = ThreadCount();
  RecordProperty("threads_before", static_cast<int>(threads_before));
  RecordProperty("threads_waiting", static_cast<int>(threads_waiting));
  EXPECT_LT(threads_waiting, threads_before + kThreadAllowance)
      << threads_before << " threads before, " << threads_waiting << " while " << kCalls
      << " truncates wait";
  EXPECT_EQ(completions.done(), 0);
  for (const std::string& file : files) EXPECT_EQ(SizeOf(file), kPages * page_);

  for (const v1::Lease& lease : leases) ASSERT_OK(Release(creds, lease.lease_id()));
  ASSERT_TRUE(completions.AwaitAll()) << completions.done() << " of " << kCalls << " completed";
  for (int i = 0; i < kCalls; ++i) {
    const grpc::Status status = completions.status(i);
    EXPECT_TRUE(status.ok()) << "call " << i << ": " << status.error_message();
    EXPECT_EQ(responses[i].size_after(), 2 * page_) << "call " << i;
  }
  for (const std::string& file : files) EXPECT_EQ(SizeOf(file), 2 * page_);
  EXPECT_TRUE(Eventually([&] { return broker_->engine().pending_async() == 0; }));
}

TEST_F(WaitingCallsTest, ThousandRevokeLeaseGraceCallsHoldNoThreadEach) {
  const v1::SessionCredentials creds = OpenSession();
  std::vector<v1::Lease> leases;
  for (int i = 0; i < kCalls; ++i) {
    ASSERT_OK_AND_ASSIGN(v1::Lease lease, Pin(creds, (i % kPages) * page_, page_));
    leases.push_back(lease);
  }
  const size_t threads_before = ThreadCount();
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  std::vector<v1::RevokeLeaseRequest> requests(kCalls);
  std::vector<v1::RevokeLeaseResponse> responses(kCalls);
  Completions completions(kCalls);
  for (int i = 0; i < kCalls; ++i) {
    requests[i].set_lease_id(leases[i].lease_id());
    requests[i].set_reason("test");
    requests[i].mutable_grace()->set_seconds(20);  // Within the session's 30 s.
    contexts.push_back(std::make_unique<grpc::ClientContext>());
    stub_->async()->RevokeLease(contexts.back().get(), &requests[i], &responses[i],
                                completions.For(i));
  }
  ASSERT_TRUE(Eventually([&] { return broker_->engine().pending_async() == kCalls; }))
      << broker_->engine().pending_async() << " of " << kCalls << " calls reached the engine";
  const size_t threads_waiting = ThreadCount();
  EXPECT_LT(threads_waiting, threads_before + kThreadAllowance)
      << threads_before << " threads before, " << threads_waiting << " while " << kCalls
      << " revokes wait";
  EXPECT_EQ(completions.done(), 0);

  // The even leases are released by their holder: their calls complete without revoking.
  for (int i = 0; i < kCalls; i += 2) ASSERT_OK(Release(creds, leases[i].lease_id()));
  ASSERT_TRUE(Eventually([&] { return completions.done() == kCalls / 2; }));
  // The grace runs out for the others: revoked.
  clock_.Advance(absl::Seconds(20));
  ASSERT_TRUE(completions.AwaitAll()) << completions.done() << " of " << kCalls << " completed";
  for (int i = 0; i < kCalls; ++i) {
    const grpc::Status status = completions.status(i);
    EXPECT_TRUE(status.ok()) << "call " << i << ": " << status.error_message();
    EXPECT_EQ(responses[i].revoked(), i % 2 == 1) << "call " << i;
  }
  EXPECT_EQ(backend_->count(pinbroker::testing::FakeBackend::Call::Kind::kRevoke),
            static_cast<size_t>(kCalls / 2));
}

TEST_F(WaitingCallsTest, ShutdownFinishesWaitingCalls) {
  const v1::SessionCredentials creds = OpenSession();
  ASSERT_OK_AND_ASSIGN(v1::Lease lease, Pin(creds, 4 * page_, page_));
  v1::TruncateRequest request = TruncateRequestFor(page_, v1::LAYOUT_POLICY_DEFER);
  v1::LayoutChangeResponse response;
  grpc::ClientContext context;
  Completions completions(1);
  stub_->async()->Truncate(&context, &request, &response, completions.For(0));
  ASSERT_TRUE(Eventually([&] { return broker_->engine().pending_async() == 1; }));
  broker_->Shutdown(absl::ZeroDuration());
  ASSERT_TRUE(completions.AwaitAll());
  EXPECT_EQ(completions.status(0).error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(completions.status(0).error_message(), ::testing::HasSubstr("shutting down"));
  EXPECT_EQ(SizeOf("data"), kPages * page_);
}

}  // namespace
}  // namespace pinbroker::broker
