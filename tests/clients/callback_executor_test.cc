// The C++ client's callback thread (clients/cpp/callback_executor.h): order, keys, Forget()'s
// wait, and Stop() from outside and from inside a task. Waits are on events, with a bound.
#include "clients/cpp/callback_executor.h"

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pinbroker::client::internal {
namespace {

using ::testing::ElementsAre;

constexpr absl::Duration kBound = absl::Seconds(30);

class Recorder {
 public:
  void Add(const std::string& what) {
    absl::MutexLock lock(&mu_);
    seen_.push_back(what);
  }
  std::vector<std::string> seen() {
    absl::MutexLock lock(&mu_);
    return seen_;
  }

 private:
  absl::Mutex mu_;
  std::vector<std::string> seen_ ABSL_GUARDED_BY(mu_);
};

TEST(CallbackExecutorTest, RunsTasksOneAtATimeInPostOrderOnItsOwnThread) {
  CallbackExecutor executor;
  Recorder recorder;
  std::atomic<bool> on_thread{true};
  absl::Notification done;
  // Posted before Start(): they wait for it.
  for (int i = 0; i < 5; ++i) {
    executor.Post(i % 2 == 0 ? "a" : "", [&, i] {
      if (!executor.OnExecutorThread()) on_thread = false;
      recorder.Add(std::to_string(i));
    });
  }
  executor.Post("", [&] { done.Notify(); });
  EXPECT_FALSE(executor.OnExecutorThread());
  executor.Start();
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(kBound));
  EXPECT_THAT(recorder.seen(), ElementsAre("0", "1", "2", "3", "4"));
  EXPECT_TRUE(on_thread.load());
}

TEST(CallbackExecutorTest, ForgetDropsQueuedTasksOfThatKeyOnly) {
  CallbackExecutor executor;
  Recorder recorder;
  absl::Notification done;
  executor.Post("a", [&] { recorder.Add("a1"); });
  executor.Post("b", [&] { recorder.Add("b1"); });
  executor.Post("a", [&] { recorder.Add("a2"); });
  executor.Post("", [&] { recorder.Add("session"); });
  executor.Forget("a");
  executor.Post("", [&] { done.Notify(); });
  executor.Start();
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(kBound));
  EXPECT_THAT(recorder.seen(), ElementsAre("b1", "session"));
}

TEST(CallbackExecutorTest, ForgetWaitsForTheRunningTaskOfThatKey) {
  CallbackExecutor executor;
  executor.Start();
  absl::Notification started;
  absl::Notification go_on;
  std::atomic<bool> finished{false};
  executor.Post("a", [&] {
    started.Notify();
    go_on.WaitForNotificationWithTimeout(kBound);
    finished = true;
  });
  ASSERT_TRUE(started.WaitForNotificationWithTimeout(kBound));
  // A task of another key does not hold Forget() up.
  executor.Forget("b");
  EXPECT_FALSE(finished.load());
  std::thread releaser([&] { go_on.Notify(); });
  executor.Forget("a");
  EXPECT_TRUE(finished.load());
  releaser.join();
}

TEST(CallbackExecutorTest, ForgetFromTheRunningTaskItselfDoesNotWait) {
  CallbackExecutor executor;
  executor.Start();
  absl::Notification done;
  executor.Post("a", [&] {
    executor.Forget("a");  // Would deadlock if it waited for itself.
    done.Notify();
  });
  EXPECT_TRUE(done.WaitForNotificationWithTimeout(kBound));
}

// Notifies when destroyed (with the task that owns it).
class NotifyOnDestroy {
 public:
  explicit NotifyOnDestroy(absl::Notification* n) : n_(n) {}
  NotifyOnDestroy(NotifyOnDestroy&& other) : n_(std::exchange(other.n_, nullptr)) {}
  ~NotifyOnDestroy() {
    if (n_ != nullptr) n_->Notify();
  }

 private:
  absl::Notification* n_;
};

TEST(CallbackExecutorTest, StopDropsQueuedTasksThenWaitsForTheRunningOne) {
  CallbackExecutor executor;
  executor.Start();
  absl::Notification started;
  absl::Notification dropped;
  std::atomic<bool> finished{false};
  std::atomic<bool> later_ran{false};
  executor.Post("", [&] {
    started.Notify();
    // Returns only once Stop() has destroyed the queued task.
    dropped.WaitForNotificationWithTimeout(kBound);
    finished = true;
  });
  executor.Post("a", [&, guard = NotifyOnDestroy(&dropped)] { later_ran = true; });
  ASSERT_TRUE(started.WaitForNotificationWithTimeout(kBound));
  executor.Stop();
  EXPECT_TRUE(dropped.HasBeenNotified());
  EXPECT_TRUE(finished.load());
  EXPECT_FALSE(later_ran.load());
  // After Stop(), posted tasks never run.
  executor.Post("", [&] { later_ran = true; });
  executor.Stop();
  EXPECT_FALSE(later_ran.load());
}

TEST(CallbackExecutorTest, StopFromATaskLetsTheThreadFinishAfterIt) {
  auto executor = std::make_unique<CallbackExecutor>();
  executor->Start();
  absl::Notification stopped;
  absl::Notification destroyed;
  absl::Notification done;
  std::atomic<bool> later_ran{false};
  executor->Post("", [&] {
    executor->Stop();  // Cannot join itself: detaches.
    stopped.Notify();
    // The executor may be destroyed while its last task still runs.
    destroyed.WaitForNotificationWithTimeout(kBound);
    done.Notify();
  });
  executor->Post("", [&] { later_ran = true; });
  ASSERT_TRUE(stopped.WaitForNotificationWithTimeout(kBound));
  executor.reset();
  destroyed.Notify();
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(kBound));
  EXPECT_FALSE(later_ran.load());
}

}  // namespace
}  // namespace pinbroker::client::internal
