// Linked into every test binary of a ThreadSanitizer build: tells TSan the happens-before edges
// of absl::Mutex, absl::CondVar and absl::Notification.
//
// Debian's libabsl is not built with TSan, so TSan cannot see absl's locks and would report
// every mutex-guarded access as a race. This file defines the same member functions as
// libabsl_synchronization.so; the executable's definitions take precedence over the library's
// (for calls from our code and, through their PLT, from other libraries), run the real
// function found with dlsym(RTLD_NEXT), and add __tsan_acquire/__tsan_release around it, as
// abseil's own TSan build does. Conditions absl evaluates on behalf of another thread (during
// Unlock) are annotated as running under the mutex. abseil's internals stay uninstrumented, so
// no report can come from inside them; a deliberate race in our code is still reported.
//
// Thread-safety: every function is as thread-safe as the absl function it wraps.
#include <dlfcn.h>
#include <sanitizer/tsan_interface.h>

#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"

#define PB_SHIM_STR2(x) #x
#define PB_SHIM_STR(x) PB_SHIM_STR2(x)
// The mangled names below spell Debian 12's inline namespace.
static_assert(std::string_view(PB_SHIM_STR(ABSL_OPTION_INLINE_NAMESPACE_NAME)) == "debian3",
              "tsan_absl_shim.cc hard-codes abseil's inline namespace 'debian3'");

namespace {

template <typename F>
F Real(const char* mangled) {
  void* p = dlsym(RTLD_NEXT, mangled);
  if (p == nullptr) {
    std::fprintf(stderr, "tsan_absl_shim: %s not found in libabsl: %s\n", mangled, dlerror());
    std::abort();
  }
  return reinterpret_cast<F>(p);
}

// The mutex whose operation this thread is inside.
thread_local absl::Mutex* current_mutex = nullptr;

class Inside {
 public:
  explicit Inside(absl::Mutex* mu) : previous_(current_mutex) { current_mutex = mu; }
  ~Inside() { current_mutex = previous_; }

 private:
  absl::Mutex* previous_;
};

// absl's lock-order (deadlock) detector keeps its graph under an uninstrumented spin lock and
// copies it with memmove, which TSan does check: turn it off in TSan runs. The clang
// -Wthread-safety build checks lock discipline, and the other builds keep the detector.
const bool kDeadlockDetectionOff = [] {
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  return true;
}();

}  // namespace

#define PB_REAL(type, name) static const auto real = Real<type>(name)

namespace absl {
ABSL_NAMESPACE_BEGIN

void Mutex::Lock() {
  PB_REAL(void (*)(Mutex*), "_ZN4absl7debian35Mutex4LockEv");
  Inside in(this);
  real(this);
  __tsan_acquire(this);
}
void Mutex::ReaderLock() {
  PB_REAL(void (*)(Mutex*), "_ZN4absl7debian35Mutex10ReaderLockEv");
  Inside in(this);
  real(this);
  __tsan_acquire(this);
}
void Mutex::Unlock() {
  PB_REAL(void (*)(Mutex*), "_ZN4absl7debian35Mutex6UnlockEv");
  Inside in(this);
  __tsan_release(this);
  real(this);
}
void Mutex::ReaderUnlock() {
  PB_REAL(void (*)(Mutex*), "_ZN4absl7debian35Mutex12ReaderUnlockEv");
  Inside in(this);
  __tsan_release(this);
  real(this);
}
bool Mutex::TryLock() {
  PB_REAL(bool (*)(Mutex*), "_ZN4absl7debian35Mutex7TryLockEv");
  Inside in(this);
  const bool locked = real(this);
  if (locked) __tsan_acquire(this);
  return locked;
}
bool Mutex::ReaderTryLock() {
  PB_REAL(bool (*)(Mutex*), "_ZN4absl7debian35Mutex13ReaderTryLockEv");
  Inside in(this);
  const bool locked = real(this);
  if (locked) __tsan_acquire(this);
  return locked;
}
void Mutex::LockWhen(const Condition& c) {
  PB_REAL(void (*)(Mutex*, const Condition&), "_ZN4absl7debian35Mutex8LockWhenERKNS0_9ConditionE");
  Inside in(this);
  real(this, c);
  __tsan_acquire(this);
}
void Mutex::ReaderLockWhen(const Condition& c) {
  PB_REAL(void (*)(Mutex*, const Condition&),
          "_ZN4absl7debian35Mutex14ReaderLockWhenERKNS0_9ConditionE");
  Inside in(this);
  real(this, c);
  __tsan_acquire(this);
}
bool Mutex::LockWhenWithDeadline(const Condition& c, Time t) {
  PB_REAL(bool (*)(Mutex*, const Condition&, Time),
          "_ZN4absl7debian35Mutex20LockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  Inside in(this);
  const bool r = real(this, c, t);
  __tsan_acquire(this);
  return r;
}
bool Mutex::LockWhenWithTimeout(const Condition& c, Duration d) {
  PB_REAL(bool (*)(Mutex*, const Condition&, Duration),
          "_ZN4absl7debian35Mutex19LockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  Inside in(this);
  const bool r = real(this, c, d);
  __tsan_acquire(this);
  return r;
}
void Mutex::Await(const Condition& c) {
  PB_REAL(void (*)(Mutex*, const Condition&), "_ZN4absl7debian35Mutex5AwaitERKNS0_9ConditionE");
  Inside in(this);
  __tsan_release(this);
  real(this, c);
  __tsan_acquire(this);
}
bool Mutex::AwaitWithDeadline(const Condition& c, Time t) {
  PB_REAL(bool (*)(Mutex*, const Condition&, Time),
          "_ZN4absl7debian35Mutex17AwaitWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  Inside in(this);
  __tsan_release(this);
  const bool r = real(this, c, t);
  __tsan_acquire(this);
  return r;
}
bool Mutex::AwaitWithTimeout(const Condition& c, Duration d) {
  PB_REAL(bool (*)(Mutex*, const Condition&, Duration),
          "_ZN4absl7debian35Mutex16AwaitWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  Inside in(this);
  __tsan_release(this);
  const bool r = real(this, c, d);
  __tsan_acquire(this);
  return r;
}
void CondVar::Wait(Mutex* mu) {
  PB_REAL(void (*)(CondVar*, Mutex*), "_ZN4absl7debian37CondVar4WaitEPNS0_5MutexE");
  Inside in(mu);
  __tsan_release(mu);
  real(this, mu);
  __tsan_acquire(mu);
}
bool CondVar::WaitWithDeadline(Mutex* mu, Time t) {
  PB_REAL(bool (*)(CondVar*, Mutex*, Time),
          "_ZN4absl7debian37CondVar16WaitWithDeadlineEPNS0_5MutexENS0_4TimeE");
  Inside in(mu);
  __tsan_release(mu);
  const bool r = real(this, mu, t);
  __tsan_acquire(mu);
  return r;
}
bool CondVar::WaitWithTimeout(Mutex* mu, Duration d) {
  PB_REAL(bool (*)(CondVar*, Mutex*, Duration),
          "_ZN4absl7debian37CondVar15WaitWithTimeoutEPNS0_5MutexENS0_8DurationE");
  Inside in(mu);
  __tsan_release(mu);
  const bool r = real(this, mu, d);
  __tsan_acquire(mu);
  return r;
}
void Notification::Notify() {
  PB_REAL(void (*)(Notification*), "_ZN4absl7debian312Notification6NotifyEv");
  __tsan_release(this);
  real(this);
}
void Notification::WaitForNotification() const {
  PB_REAL(void (*)(const Notification*), "_ZNK4absl7debian312Notification19WaitForNotificationEv");
  real(this);
  __tsan_acquire(const_cast<Notification*>(this));
}
bool Notification::WaitForNotificationWithTimeout(Duration d) const {
  PB_REAL(bool (*)(const Notification*, Duration),
          "_ZNK4absl7debian312Notification30WaitForNotificationWithTimeoutENS0_8DurationE");
  const bool r = real(this, d);
  __tsan_acquire(const_cast<Notification*>(this));
  return r;
}
bool Notification::WaitForNotificationWithDeadline(Time t) const {
  PB_REAL(bool (*)(const Notification*, Time),
          "_ZNK4absl7debian312Notification31WaitForNotificationWithDeadlineENS0_4TimeE");
  const bool r = real(this, t);
  __tsan_acquire(const_cast<Notification*>(this));
  return r;
}
// absl evaluates a waiter's condition in whichever thread releases the mutex; inside a mutex
// operation that evaluation happens under the mutex.
bool Condition::Eval() const {
  PB_REAL(bool (*)(const Condition*), "_ZNK4absl7debian39Condition4EvalEv");
  Mutex* mu = current_mutex;
  if (mu == nullptr) return real(this);
  __tsan_acquire(mu);
  const bool r = real(this);
  __tsan_release(mu);
  return r;
}

ABSL_NAMESPACE_END
}  // namespace absl
