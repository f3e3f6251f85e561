// GuardListener: the file guard's one listener thread. It reads every event source (the
// fanotify permission group, the notification group, the signalfd of lease-break signals and
// its own wake-up eventfd) and never blocks on anything else:
//   - it answers ordinary accesses and opens itself at once, after one procfs read of the
//     caller (reads, writes, mmap, the broker's own calls; an open for writing gives the file
//     lease up first), and hands layout changes (pre-content truncates and punches, O_TRUNC
//     opens) to the workers as GuardWork, the caller still held;
//   - it turns a lease-break signal into a kLeaseBreak work item, and notification events
//     into checks of the files they name (of every file after an overflow).
// It reaches the rest of the guard only through ArmedFiles (which file an event is about)
// and the three Dispatch callbacks.
//
// Thread-safety: Start()/Stop() from one thread; tid() from any. The event sources and the
// registry must outlive Stop(). The callbacks run on the listener thread and must not block.
#pragma once

#include <sys/types.h>

#include <functional>
#include <memory>
#include <optional>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "common/scoped_fd.h"
#include "pinbroker/clock.h"
#include "pinning/guard/armed_files.h"
#include "pinning/guard/caller.h"
#include "pinning/guard/fanotify_groups.h"
#include "pinning/guard/guarded_file.h"

namespace pinbroker::guard {

class GuardListener {
 public:
  struct Dispatch {
    // Hands a layout change (or, never from here, a check) to the workers.
    std::function<void(std::unique_ptr<GuardWork>)> enqueue;
    // Queues a check of a file (after the caller left its system call, if set).
    std::function<void(const std::shared_ptr<GuardedFile>&, std::optional<CallerSyscall>)>
        queue_check;
    // Queues the check a file's notification events ask for (FileGuard::Options::
    // event_check_gap apart).
    std::function<void(const std::shared_ptr<GuardedFile>&)> queue_event_check;
    std::function<void()> queue_check_all;
  };

  // `pre`, `notify` may be nullptr, `signal_fd` -1 (that source is off). `lease_signal` is
  // blocked on the listener thread (the signalfd reads it).
  GuardListener(ArmedFiles* files, PermissionGroup* pre, NotifyGroup* notify, int signal_fd,
                int lease_signal, Clock* clock, Dispatch dispatch);
  // Stop()s.
  ~GuardListener();
  GuardListener(const GuardListener&) = delete;
  GuardListener& operator=(const GuardListener&) = delete;

  // Starts the thread; returns once it runs (tid() is set). INTERNAL if no eventfd.
  absl::Status Start() ABSL_LOCKS_EXCLUDED(mu_);
  // Makes the thread exit and joins it. Idempotent.
  void Stop() ABSL_LOCKS_EXCLUDED(mu_);
  // The listener thread's id (lease-break signals go there); 0 before Start().
  pid_t tid() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void Loop() ABSL_LOCKS_EXCLUDED(mu_);
  void HandlePermissionEvents();
  // A FAN_OPEN_PERM event of `file` (`held` answered here or handed to a worker).
  void HandleOpen(const std::shared_ptr<GuardedFile>& file, std::unique_ptr<HeldEvent> held,
                  pid_t tid, uint64_t size);
  void HandleNotifyEvents();
  void HandleLeaseSignals();

  ArmedFiles* const files_;
  PermissionGroup* const pre_;
  NotifyGroup* const notify_;
  const int signal_fd_;
  const int lease_signal_;
  Clock* const clock_;
  const Dispatch dispatch_;
  ScopedFd wake_fd_;
  std::thread thread_;

  mutable absl::Mutex mu_;
  pid_t tid_ ABSL_GUARDED_BY(mu_) = 0;
  bool exit_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace pinbroker::guard
