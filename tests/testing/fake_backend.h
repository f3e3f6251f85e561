// FakeBackend: a PinBackend for unit tests that holds nothing, records every call, and fails
// on request.
//
// Thread-safety: safe to call concurrently.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "pinning/pin_backend.h"

namespace pinbroker::testing {

class FakeBackend final : public PinBackend {
 public:
  struct Call {
    enum class Kind { kPin, kRelease, kRevoke } kind;
    LeaseId lease = 0;
    uint64_t handle = 0;
    ByteRange bytes;
  };

  absl::string_view name() const override { return "fake"; }
  absl::StatusOr<BackendPin> Pin(const PinSpec& spec) override;
  absl::Status Release(uint64_t handle) override;
  absl::Status Revoke(uint64_t handle) override;
  uint64_t pinned_bytes() const override;

  // The next Pin() (or Revoke()) fails with `status` instead of pinning (revoking).
  void FailNextPin(absl::Status status);
  void FailNextRevoke(absl::Status status);
  // Runs `hook` inside every later Pin(), before it succeeds, without the fake's lock held:
  // lets a test act while a pin is being set up.
  void SetPinHook(std::function<void(const PinSpec&)> hook);
  // Mode reported by Pin().
  void set_mode(RegistrationMode mode);

  std::vector<Call> calls() const;
  size_t held() const;  // Pins neither released nor revoked.
  bool IsHeld(LeaseId lease) const;
  size_t count(Call::Kind kind) const;
  // Byte ranges of the pins currently held.
  std::vector<ByteRange> held_ranges() const;

 private:
  mutable absl::Mutex mu_;
  uint64_t next_handle_ ABSL_GUARDED_BY(mu_) = 100;
  absl::flat_hash_map<uint64_t, Call> held_ ABSL_GUARDED_BY(mu_);
  std::vector<Call> calls_ ABSL_GUARDED_BY(mu_);
  absl::Status fail_pin_ ABSL_GUARDED_BY(mu_);
  std::function<void(const PinSpec&)> pin_hook_ ABSL_GUARDED_BY(mu_);
  absl::Status fail_revoke_ ABSL_GUARDED_BY(mu_);
  RegistrationMode mode_ ABSL_GUARDED_BY(mu_) = RegistrationMode::kHost;
};

}  // namespace pinbroker::testing
