#include "clients/cpp/lease_state.h"

#include <algorithm>
#include <utility>

#include "api/time_convert.h"
#include "clients/cpp/lease_timing.h"

namespace pinbroker::client::internal {

void OnGranted(LeaseSlot& slot, const v1::Lease& granted, absl::Time now, double renew_fraction) {
  slot.info = granted;
  slot.ttl = FromProto(granted.expires_at()) - FromProto(granted.granted_at());
  if (slot.ttl > absl::ZeroDuration()) {
    const LeaseTimes times = AfterRenewal(now, slot.ttl, renew_fraction);
    slot.next_renew = times.next_renew;
    slot.local_expiry = times.local_expiry;
  }
}

bool OnRenewAnswer(LeaseSlot& slot, const absl::Status& status, const v1::Lease& renewed,
                   bool background, absl::Time now, double renew_fraction) {
  if (background) slot.renewing = false;
  if (!IsLive(slot.state)) return false;
  if (status.ok()) {
    *slot.info.mutable_expires_at() = renewed.expires_at();
    if (slot.state == LeaseState::kGranted) {
      const LeaseTimes times = AfterRenewal(now, slot.ttl, renew_fraction);
      slot.next_renew = times.next_renew;
      slot.local_expiry = times.local_expiry;
    }
    return false;
  }
  switch (status.code()) {
    case absl::StatusCode::kFailedPrecondition:
      slot.next_renew = absl::InfiniteFuture();
      return true;
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kUnauthenticated:
    case absl::StatusCode::kInvalidArgument:
      slot.next_renew = absl::InfiniteFuture();
      return false;
    default:
      if (background) slot.next_renew = NextRetryAfterFailure(now, slot.local_expiry);
      return false;
  }
}

bool Recall(LeaseSlot& slot, std::string reason, absl::Time deadline) {
  if (slot.state != LeaseState::kGranted) return false;
  slot.state = LeaseState::kRecalling;
  slot.reason = std::move(reason);
  slot.recall_deadline = deadline;
  slot.next_renew = absl::InfiniteFuture();
  return slot.handle != nullptr && (slot.on_recall || slot.release_on_recall);
}

bool End(LeaseSlot& slot, LeaseState state, std::string reason, absl::Time now, bool notify) {
  if (!IsLive(slot.state)) return false;
  slot.state = state;
  slot.reason = std::move(reason);
  slot.ended_at = now;
  slot.next_renew = absl::InfiniteFuture();
  return notify && slot.handle != nullptr && slot.on_revoked;
}

std::vector<RenewJob> TakeDueRenewals(LeaseSlots& slots, absl::Time now) {
  std::vector<RenewJob> jobs;
  for (auto& [id, slot] : slots) {
    if (slot.state == LeaseState::kGranted && !slot.renewing && slot.next_renew <= now) {
      slot.renewing = true;
      jobs.push_back(RenewJob{id, slot.ttl});
    }
  }
  return jobs;
}

absl::Time NextRenewal(const LeaseSlots& slots) {
  absl::Time next = absl::InfiniteFuture();
  for (const auto& [id, slot] : slots) {
    if (slot.state == LeaseState::kGranted && !slot.renewing)
      next = std::min(next, slot.next_renew);
  }
  return next;
}

}  // namespace pinbroker::client::internal
