// Proves, in TSan builds, that tests/testing/tsan_absl_shim.cc neither hides races nor invents
// them. Built twice: with PB_RACY=0 two threads update a counter under an absl::Mutex (TSan must
// stay silent: ctest expects exit 0); with PB_RACY=1 one thread skips the lock (TSan must report:
// ctest expects failure).
#include <thread>

#include "absl/synchronization/mutex.h"

namespace {

absl::Mutex mu;
long counter = 0;  // Guarded by mu, except where PB_RACY says otherwise.

void Work(bool locked) {
  for (int i = 0; i < 10000; ++i) {
    if (locked) {
      absl::MutexLock lock(&mu);
      ++counter;
    } else {
      ++counter;
    }
  }
}

}  // namespace

int main() {
  std::thread a([] { Work(true); });
  std::thread b([] { Work(!PB_RACY); });
  a.join();
  b.join();
  absl::MutexLock lock(&mu);
  return counter > 0 ? 0 : 1;
}
