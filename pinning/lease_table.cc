#include "pinning/lease_table.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"

namespace pinbroker {

bool LeaseFilter::Matches(const LeaseInfo& lease) const {
  return (!owner || *owner == lease.owner) && (!export_name || *export_name == lease.export_name) &&
         (!file || *file == lease.file);
}

LeaseTable::LeaseTable(Clock* clock, ExpiryHandler on_expired, Options options)
    : clock_(clock), on_expired_(std::move(on_expired)), options_(options) {}

LeaseTable::~LeaseTable() {
  std::vector<Clock::TimerId> timers;
  std::vector<std::shared_ptr<EventQueue>> queues;
  {
    absl::MutexLock lock(&mu_);
    shutting_down_ = true;
    for (const auto& [when, id] : timers_) timers.push_back(id);
    timers_.clear();
    for (auto& [owner, list] : subscribers_) {
      for (auto& q : list) queues.push_back(q);
    }
    subscribers_.clear();
    held_subscriptions_ = 0;
  }
  for (Clock::TimerId id : timers) clock_->Cancel(id);
  for (auto& q : queues) q->Close();
}

std::string LeaseTable::Name(LeaseId id) const {
  return absl::StrCat("lease ", options_.id_prefix, id);
}

LeaseId LeaseTable::NewId() {
  absl::MutexLock lock(&mu_);
  const LeaseId id = next_id_++;
  issued_.insert(id);
  return id;
}

void LeaseTable::DiscardId(LeaseId id) {
  absl::MutexLock lock(&mu_);
  issued_.erase(id);
}

absl::Status LeaseTable::Insert(LeaseInfo lease, const std::function<absl::Status()>& admit,
                                QuotaHold quota) {
  absl::MutexLock lock(&mu_);
  if (lease.state != LeaseState::kGranted) {
    return absl::FailedPreconditionError(
        absl::StrCat(Name(lease.id), " inserted in state ", LeaseStateName(lease.state)));
  }
  if (!issued_.contains(lease.id)) {
    return absl::FailedPreconditionError(absl::StrCat("lease id ", lease.id,
                                                      " was not issued "
                                                      "by this table or is already used"));
  }
  if (admit) RETURN_IF_ERROR(admit());
  issued_.erase(lease.id);
  const LeaseId id = lease.id;
  const absl::Time expires_at = lease.expires_at;
  Record& record =
      leases_.emplace(id, Record{std::move(lease), false, std::move(quota)}).first->second;
  by_owner_.insert({record.info.owner, id});
  by_file_.insert({record.info.file, id});
  SetExpiryLocked(record, expires_at);
  EmitLocked(LeaseEvent::Type::kGranted, record.info);
  return absl::OkStatus();
}

absl::Status LeaseTable::NotFoundLocked(LeaseId id, absl::string_view owner) const {
  auto tomb = tombstones_.find(id);
  if (tomb != tombstones_.end() && tomb->second.owner == owner) {
    return absl::NotFoundError(absl::StrCat(
        Name(id), " is no longer held: ", LeaseStateName(tomb->second.state), " at ",
        absl::FormatTime(tomb->second.at),
        tomb->second.reason.empty() ? "" : absl::StrCat(" (", tomb->second.reason, ")"),
        "; pin the range again if you still need it"));
  }
  if (auto it = leases_.find(id);
      it != leases_.end() && it->second.ending && it->second.info.owner == owner) {
    return absl::NotFoundError(absl::StrCat(Name(id), " is ending (",
                                            LeaseStateName(it->second.info.state), ": ",
                                            it->second.info.reason, ")"));
  }
  return absl::NotFoundError(absl::StrCat("no ", Name(id),
                                          " for this owner (unknown, ended long ago, or held by "
                                          "another session)"));
}

LeaseTable::Record* LeaseTable::LiveLocked(LeaseId id) {
  auto it = leases_.find(id);
  if (it == leases_.end() || it->second.ending) return nullptr;
  return &it->second;
}

absl::StatusOr<LeaseInfo> LeaseTable::Get(LeaseId id) const {
  absl::MutexLock lock(&mu_);
  auto it = leases_.find(id);
  if (it == leases_.end() || it->second.ending) {
    return absl::NotFoundError(absl::StrCat("no live ", Name(id)));
  }
  return it->second.info;
}

absl::StatusOr<LeaseInfo> LeaseTable::Renew(absl::string_view owner, LeaseId id,
                                            absl::Duration ttl) {
  absl::MutexLock lock(&mu_);
  Record* record = LiveLocked(id);
  if (record == nullptr || record->info.owner != owner) return NotFoundLocked(id, owner);
  if (record->info.state == LeaseState::kRecalling) {
    return absl::FailedPreconditionError(
        absl::StrCat(Name(id), " is being recalled (", record->info.reason,
                     ") and cannot be renewed; stop I/O and release it before ",
                     absl::FormatTime(record->info.recall_deadline)));
  }
  SetExpiryLocked(*record, clock_->Now() + ttl);
  return record->info;
}

absl::StatusOr<LeaseInfo> LeaseTable::Recall(LeaseId id, std::string reason, absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  Record* record = LiveLocked(id);
  if (record == nullptr) return absl::NotFoundError(absl::StrCat("no live ", Name(id)));
  if (record->info.state == LeaseState::kGranted) {
    record->info.state = LeaseState::kRecalling;
    record->info.recall_deadline = deadline;
    record->info.reason = std::move(reason);
    EmitLocked(LeaseEvent::Type::kRecalled, record->info);
  }
  return record->info;
}

LeaseInfo LeaseTable::EndLocked(Record& record, LeaseState state, std::string reason) {
  expiry_.erase({record.info.expires_at, record.info.id});
  record.ending = true;
  ++ending_;
  record.info.state = state;
  if (!reason.empty()) record.info.reason = std::move(reason);
  return record.info;
}

absl::StatusOr<LeaseInfo> LeaseTable::BeginRelease(absl::string_view owner, LeaseId id) {
  absl::MutexLock lock(&mu_);
  Record* record = LiveLocked(id);
  if (record == nullptr || record->info.owner != owner) return NotFoundLocked(id, owner);
  return EndLocked(*record, LeaseState::kReleased,
                   record->info.state == LeaseState::kRecalling
                       ? absl::StrCat("released after recall: ", record->info.reason)
                       : "released by holder");
}

absl::StatusOr<LeaseInfo> LeaseTable::BeginRevoke(LeaseId id, std::string reason) {
  absl::MutexLock lock(&mu_);
  Record* record = LiveLocked(id);
  if (record == nullptr) return absl::NotFoundError(absl::StrCat("no live ", Name(id)));
  return EndLocked(*record, LeaseState::kRevoked, std::move(reason));
}

void LeaseTable::Finish(LeaseId id) {
  absl::MutexLock lock(&mu_);
  auto it = leases_.find(id);
  if (it == leases_.end() || !it->second.ending) return;
  const LeaseInfo& info = it->second.info;
  const LeaseEvent::Type type = info.state == LeaseState::kReleased  ? LeaseEvent::Type::kReleased
                                : info.state == LeaseState::kRevoked ? LeaseEvent::Type::kRevoked
                                                                     : LeaseEvent::Type::kExpired;
  EmitLocked(type, info);
  Tombstone tomb{info.owner, info.state, info.reason, clock_->Now()};
  if (tomb.reason.size() > options_.tombstone_reason_bytes) {
    tomb.reason.resize(options_.tombstone_reason_bytes);
    tomb.reason += "...";
  }
  const size_t bytes = tomb.owner.size() + tomb.reason.size();
  if (auto [old, inserted] = tombstones_.try_emplace(id, std::move(tomb)); inserted) {
    tombstone_order_.push_back(id);
    tombstone_bytes_ += bytes;
  }
  while (!tombstone_order_.empty() && (tombstone_order_.size() > options_.tombstones ||
                                       tombstone_bytes_ > options_.tombstone_bytes)) {
    auto oldest = tombstones_.find(tombstone_order_.front());
    tombstone_bytes_ -= oldest->second.owner.size() + oldest->second.reason.size();
    tombstones_.erase(oldest);
    tombstone_order_.pop_front();
  }
  by_owner_.erase({info.owner, id});
  by_file_.erase({info.file, id});
  --ending_;
  leases_.erase(it);
}

size_t LeaseTable::tombstone_count() const {
  absl::MutexLock lock(&mu_);
  return tombstones_.size();
}

size_t LeaseTable::tombstone_text_bytes() const {
  absl::MutexLock lock(&mu_);
  return tombstone_bytes_;
}

std::optional<LeaseState> LeaseTable::EndState(LeaseId id) const {
  absl::MutexLock lock(&mu_);
  if (auto it = leases_.find(id); it != leases_.end()) {
    if (it->second.ending) return it->second.info.state;
    return std::nullopt;
  }
  if (auto it = tombstones_.find(id); it != tombstones_.end()) return it->second.state;
  return std::nullopt;
}

std::vector<LeaseInfo> LeaseTable::List(const LeaseFilter& filter) const {
  absl::MutexLock lock(&mu_);
  std::vector<LeaseInfo> out;
  auto add = [&](LeaseId id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const Record& record = leases_.at(id);
    if (!record.ending && filter.Matches(record.info)) out.push_back(record.info);
  };
  if (filter.file.has_value()) {
    for (auto it = by_file_.lower_bound({*filter.file, 0});
         it != by_file_.end() && it->first == *filter.file; ++it) {
      add(it->second);
    }
  } else if (filter.owner.has_value()) {
    for (auto it = by_owner_.lower_bound({*filter.owner, 0});
         it != by_owner_.end() && it->first == *filter.owner; ++it) {
      add(it->second);
    }
  } else {
    for (const auto& [id, record] : leases_) add(id);
  }
  return out;
}

bool LeaseTable::HasLiveLeases(const FileId& file) const {
  absl::MutexLock lock(&mu_);
  for (auto it = by_file_.lower_bound({file, 0}); it != by_file_.end() && it->first == file; ++it) {
    if (!leases_.at(it->second).ending) return true;
  }
  return false;
}

LeaseTable::Subscription LeaseTable::Subscribe(std::string owner,
                                               absl::AnyInvocable<void()> on_ready) {
  absl::MutexLock lock(&mu_);
  Subscription sub;
  sub.events = std::make_shared<EventQueue>(clock_, options_.queue_capacity, std::move(on_ready),
                                            options_.queue_bytes);
  for (auto it = by_owner_.lower_bound({owner, 0}); it != by_owner_.end() && it->first == owner;
       ++it) {
    const Record& record = leases_.at(it->second);
    if (!record.ending) sub.snapshot.push_back(record.info);
  }
  // Subscriptions come and go with client connections. The owner's own closed ones go now; all
  // owners' closed ones go in a sweep once the table holds twice as many queues as after the last
  // sweep, so a Subscribe costs amortized O(1) however many streams are open, and owners that
  // never get another event do not accumulate.
  auto& mine = subscribers_[owner];
  held_subscriptions_ -= DropClosed(mine);
  if (held_subscriptions_ + 1 > sweep_at_) {
    for (auto it = subscribers_.begin(); it != subscribers_.end();) {
      held_subscriptions_ -= DropClosed(it->second);
      if (it->second.empty() && it->first != owner) {
        subscribers_.erase(it++);
      } else {
        ++it;
      }
    }
    sweep_at_ = std::max(kMinSweepAt, 2 * (held_subscriptions_ + 1));
  }
  subscribers_[owner].push_back(sub.events);
  ++held_subscriptions_;
  return sub;
}

size_t LeaseTable::live_count() const {
  absl::MutexLock lock(&mu_);
  return leases_.size() - ending_;
}

size_t LeaseTable::subscription_count() const {
  absl::MutexLock lock(&mu_);
  return held_subscriptions_;
}

size_t LeaseTable::DropClosed(std::vector<std::shared_ptr<EventQueue>>& queues) {
  const size_t before = queues.size();
  queues.erase(std::remove_if(queues.begin(), queues.end(),
                              [](const std::shared_ptr<EventQueue>& q) { return q->closed(); }),
               queues.end());
  return before - queues.size();
}

bool LeaseTable::AwaitEmpty(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  auto empty = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return leases_.empty(); };
  return clock_->AwaitWithDeadline(&mu_, absl::Condition(&empty), deadline);
}

void LeaseTable::EmitLocked(LeaseEvent::Type type, const LeaseInfo& lease) {
  auto it = subscribers_.find(lease.owner);
  if (it == subscribers_.end()) return;
  auto& list = it->second;
  const LeaseEvent event{type, lease, clock_->Now()};
  bool any_closed = false;
  for (auto& q : list) {
    // A dropped event means the queue overflowed (its consumer will resubscribe) or closed.
    if (!q->Push(event)) any_closed |= q->closed();
  }
  if (any_closed) {
    held_subscriptions_ -= DropClosed(list);
    if (list.empty()) subscribers_.erase(it);
  }
}

void LeaseTable::SetExpiryLocked(Record& record, absl::Time expires_at) {
  expiry_.erase({record.info.expires_at, record.info.id});
  record.info.expires_at = expires_at;
  expiry_.insert({expires_at, record.info.id});
  ArmTimerLocked();
}

void LeaseTable::ArmTimerLocked() {
  if (shutting_down_ || expiry_.empty()) return;
  const absl::Time earliest = expiry_.begin()->first;
  if (!timers_.empty() && timers_.begin()->first <= earliest) return;
  const Clock::TimerId id = clock_->Schedule(earliest, [this, earliest] { OnTimer(earliest); });
  timers_.emplace(earliest, id);
}

void LeaseTable::OnTimer(absl::Time due) {
  std::vector<LeaseInfo> expired;
  {
    absl::MutexLock lock(&mu_);
    timers_.erase(due);  // At most one timer is armed per instant.
    if (shutting_down_) return;
    const absl::Time now = clock_->Now();
    while (!expiry_.empty() && expiry_.begin()->first <= now) {
      const LeaseId id = expiry_.begin()->second;
      Record& record = leases_.at(id);
      expired.push_back(EndLocked(
          record, LeaseState::kExpired,
          absl::StrCat("not renewed; expired at ", absl::FormatTime(record.info.expires_at))));
    }
    ArmTimerLocked();
  }
  for (const LeaseInfo& lease : expired) on_expired_(lease);
}

}  // namespace pinbroker
