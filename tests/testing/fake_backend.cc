#include "tests/testing/fake_backend.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace pinbroker::testing {

absl::StatusOr<BackendPin> FakeBackend::Pin(const PinSpec& spec) {
  std::function<void(const PinSpec&)> hook;
  {
    absl::MutexLock lock(&mu_);
    hook = pin_hook_;
  }
  if (hook) hook(spec);
  absl::MutexLock lock(&mu_);
  if (!fail_pin_.ok()) return std::exchange(fail_pin_, absl::OkStatus());
  const uint64_t handle = next_handle_++;
  Call call{Call::Kind::kPin, spec.lease, handle, spec.bytes};
  calls_.push_back(call);
  held_.emplace(handle, call);
  BackendPin pin;
  pin.handle = handle;
  pin.mode = mode_;
  return pin;
}

absl::Status FakeBackend::Release(uint64_t handle) {
  absl::MutexLock lock(&mu_);
  auto it = held_.find(handle);
  if (it == held_.end()) return absl::NotFoundError(absl::StrCat("no pin ", handle));
  calls_.push_back(Call{Call::Kind::kRelease, it->second.lease, handle, it->second.bytes});
  held_.erase(it);
  return absl::OkStatus();
}

absl::Status FakeBackend::Revoke(uint64_t handle) {
  absl::MutexLock lock(&mu_);
  if (!fail_revoke_.ok()) return std::exchange(fail_revoke_, absl::OkStatus());
  auto it = held_.find(handle);
  if (it == held_.end()) return absl::NotFoundError(absl::StrCat("no pin ", handle));
  calls_.push_back(Call{Call::Kind::kRevoke, it->second.lease, handle, it->second.bytes});
  held_.erase(it);
  return absl::OkStatus();
}

uint64_t FakeBackend::pinned_bytes() const {
  absl::MutexLock lock(&mu_);
  uint64_t total = 0;
  for (const auto& [handle, call] : held_) total += call.bytes.length;
  return total;
}

void FakeBackend::FailNextPin(absl::Status status) {
  absl::MutexLock lock(&mu_);
  fail_pin_ = std::move(status);
}

void FakeBackend::FailNextRevoke(absl::Status status) {
  absl::MutexLock lock(&mu_);
  fail_revoke_ = std::move(status);
}

void FakeBackend::SetPinHook(std::function<void(const PinSpec&)> hook) {
  absl::MutexLock lock(&mu_);
  pin_hook_ = std::move(hook);
}

std::vector<ByteRange> FakeBackend::held_ranges() const {
  absl::MutexLock lock(&mu_);
  std::vector<ByteRange> out;
  for (const auto& [handle, call] : held_) out.push_back(call.bytes);
  return out;
}

void FakeBackend::set_mode(RegistrationMode mode) {
  absl::MutexLock lock(&mu_);
  mode_ = mode;
}

std::vector<FakeBackend::Call> FakeBackend::calls() const {
  absl::MutexLock lock(&mu_);
  return calls_;
}

size_t FakeBackend::held() const {
  absl::MutexLock lock(&mu_);
  return held_.size();
}

bool FakeBackend::IsHeld(LeaseId lease) const {
  absl::MutexLock lock(&mu_);
  for (const auto& [handle, call] : held_) {
    if (call.lease == lease) return true;
  }
  return false;
}

size_t FakeBackend::count(Call::Kind kind) const {
  absl::MutexLock lock(&mu_);
  size_t n = 0;
  for (const Call& c : calls_) n += c.kind == kind ? 1 : 0;
  return n;
}

}  // namespace pinbroker::testing
