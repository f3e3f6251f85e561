#include "pinning/lease_table.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"

namespace pinbroker {

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
  if (ToBytes(lease.pages, options_.page_size) != ByteRange{lease.offset, lease.length}) {
    return absl::InvalidArgumentError(absl::StrCat(
        Name(lease.id), " inserted with bytes [", lease.offset, ", +", lease.length,
        ") that are not its pages ", lease.pages.ToString(), " of ", options_.page_size, " bytes"));
  }
  if (admit) RETURN_IF_ERROR(admit());
  issued_.erase(lease.id);
  const LeaseId id = lease.id;
  Record& record = leases_.try_emplace(id).first->second;
  record.owner = InternLocked(lease.owner);
  record.export_name = InternLocked(lease.export_name);
  record.path = InternLocked(lease.path);
  record.file = InternFileLocked(lease.file);
  record.pages = lease.pages;
  record.granted_at = PackedTime(lease.granted_at);
  record.expires_at = PackedTime(lease.expires_at);
  record.recall_deadline = PackedTime(lease.recall_deadline);
  record.set_reason(std::move(lease.reason));
  if (!lease.rdma.device.empty()) record.set_rdma(std::move(lease.rdma));
  record.backend_handle = lease.backend_handle;
  record.access = lease.access;
  record.mode = lease.mode;
  record.state = lease.state;
  record.guards_layout = lease.guards_layout;
  record.quota = std::move(quota);
  by_owner_.insert({record.owner, id});
  by_file_.insert({record.file, id});
  expiry_.insert({record.expires_at, id});
  ArmTimerLocked();
  EmitLocked(LeaseEvent::Type::kGranted, id, record);
  return absl::OkStatus();
}

LeaseInfo LeaseTable::InfoLocked(LeaseId id, const Record& record) const {
  LeaseInfo info;
  info.id = id;
  info.owner = *record.owner;
  info.export_name = *record.export_name;
  info.path = *record.path;
  info.file = *record.file;
  info.pages = record.pages;
  const ByteRange bytes = ToBytes(record.pages, options_.page_size);
  info.offset = bytes.offset;
  info.length = bytes.length;
  info.access = record.access;
  info.mode = record.mode;
  info.state = record.state;
  info.granted_at = record.granted_at.get();
  info.expires_at = record.expires_at.get();
  info.recall_deadline = record.recall_deadline.get();
  info.reason = std::string(record.reason_text());
  info.guards_layout = record.guards_layout;
  if (const RdmaGrant* rdma = record.rdma(); rdma != nullptr) info.rdma = *rdma;
  info.backend_handle = record.backend_handle;
  return info;
}

bool LeaseTable::MatchesLocked(const LeaseFilter& filter, const Record& record) const {
  return (!filter.owner || *filter.owner == *record.owner) &&
         (!filter.export_name || *filter.export_name == *record.export_name) &&
         (!filter.file || *filter.file == *record.file);
}

const std::string* LeaseTable::InternLocked(absl::string_view text) {
  auto [it, inserted] = names_.try_emplace(text, 0);
  ++it->second;
  return &it->first;
}

void LeaseTable::ReleaseNameLocked(const std::string* name) {
  auto it = names_.find(*name);
  if (it != names_.end() && --it->second == 0) names_.erase(it);
}

const std::string* LeaseTable::FindNameLocked(absl::string_view text) const {
  auto it = names_.find(text);
  return it == names_.end() ? nullptr : &it->first;
}

const FileId* LeaseTable::InternFileLocked(const FileId& file) {
  auto [it, inserted] = files_.try_emplace(file, 0);
  ++it->second;
  return &it->first;
}

void LeaseTable::ReleaseFileLocked(const FileId* file) {
  auto it = files_.find(*file);
  if (it != files_.end() && --it->second == 0) files_.erase(it);
}

const FileId* LeaseTable::FindFileLocked(const FileId& file) const {
  auto it = files_.find(file);
  return it == files_.end() ? nullptr : &it->first;
}

void LeaseTable::Record::set_reason(std::string text) {
  if (text.empty()) {
    if (extra != nullptr) {
      extra->reason.clear();
      if (extra->rdma == nullptr) extra.reset();
    }
    return;
  }
  if (extra == nullptr) extra = std::make_unique<Extra>();
  extra->reason = std::move(text);
}

void LeaseTable::Record::set_rdma(RdmaGrant grant) {
  if (extra == nullptr) extra = std::make_unique<Extra>();
  extra->rdma = std::make_unique<RdmaGrant>(std::move(grant));
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
      it != leases_.end() && it->second.ending && *it->second.owner == owner) {
    return absl::NotFoundError(absl::StrCat(Name(id), " is ending (",
                                            LeaseStateName(it->second.state), ": ",
                                            it->second.reason_text(), ")"));
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
  return InfoLocked(id, it->second);
}

absl::StatusOr<LeaseInfo> LeaseTable::Renew(absl::string_view owner, LeaseId id,
                                            absl::Duration ttl) {
  absl::MutexLock lock(&mu_);
  Record* record = LiveLocked(id);
  if (record == nullptr || *record->owner != owner) return NotFoundLocked(id, owner);
  if (record->state == LeaseState::kRecalling) {
    return absl::FailedPreconditionError(
        absl::StrCat(Name(id), " is being recalled (", record->reason_text(),
                     ") and cannot be renewed; stop I/O and release it before ",
                     absl::FormatTime(record->recall_deadline.get())));
  }
  SetExpiryLocked(id, *record, clock_->Now() + ttl);
  return InfoLocked(id, *record);
}

absl::StatusOr<LeaseInfo> LeaseTable::Recall(LeaseId id, std::string reason, absl::Time deadline) {
  std::vector<Recalled> recalled = RecallMany({id}, reason, deadline);
  if (recalled.empty()) return absl::NotFoundError(absl::StrCat("no live ", Name(id)));
  return std::move(recalled.front().lease);
}

std::vector<LeaseTable::Recalled> LeaseTable::RecallMany(const std::vector<LeaseId>& ids,
                                                         absl::string_view reason,
                                                         absl::Time deadline) {
  std::vector<Recalled> out;
  out.reserve(ids.size());
  for (size_t begin = 0; begin < ids.size(); begin += kRecallBatch) {
    const size_t end = std::min(ids.size(), begin + kRecallBatch);
    absl::MutexLock lock(&mu_);
    PendingEvents pending;
    for (size_t i = begin; i < end; ++i) {
      const LeaseId id = ids[i];
      Record* record = LiveLocked(id);
      if (record == nullptr) continue;
      const bool announce = record->state == LeaseState::kGranted;
      if (announce) {
        record->state = LeaseState::kRecalling;
        record->recall_deadline = PackedTime(deadline);
        record->set_reason(std::string(reason));
      }
      if (announce) PendLocked(pending, LeaseEvent::Type::kRecalled, id, *record);
      out.push_back(Recalled{InfoLocked(id, *record), announce});
    }
    DeliverLocked(pending);
  }
  return out;
}

LeaseInfo LeaseTable::EndLocked(LeaseId id, Record& record, LeaseState state, std::string reason) {
  expiry_.erase({record.expires_at, id});
  record.ending = true;
  ++ending_;
  record.state = state;
  if (!reason.empty()) record.set_reason(std::move(reason));
  return InfoLocked(id, record);
}

absl::StatusOr<LeaseInfo> LeaseTable::BeginRelease(absl::string_view owner, LeaseId id) {
  absl::MutexLock lock(&mu_);
  Record* record = LiveLocked(id);
  if (record == nullptr || *record->owner != owner) return NotFoundLocked(id, owner);
  return EndLocked(id, *record, LeaseState::kReleased,
                   record->state == LeaseState::kRecalling
                       ? absl::StrCat("released after recall: ", record->reason_text())
                       : "released by holder");
}

absl::StatusOr<LeaseInfo> LeaseTable::BeginRevoke(LeaseId id, std::string reason) {
  absl::MutexLock lock(&mu_);
  Record* record = LiveLocked(id);
  if (record == nullptr) return absl::NotFoundError(absl::StrCat("no live ", Name(id)));
  return EndLocked(id, *record, LeaseState::kRevoked, std::move(reason));
}

std::vector<absl::StatusOr<LeaseInfo>> LeaseTable::BeginRevokeMany(const std::vector<LeaseId>& ids,
                                                                   absl::string_view reason) {
  std::vector<absl::StatusOr<LeaseInfo>> out;
  out.reserve(ids.size());
  for (size_t begin = 0; begin < ids.size(); begin += kRecallBatch) {
    const size_t end = std::min(ids.size(), begin + kRecallBatch);
    absl::MutexLock lock(&mu_);
    for (size_t i = begin; i < end; ++i) {
      Record* record = LiveLocked(ids[i]);
      if (record == nullptr) {
        out.push_back(absl::NotFoundError(absl::StrCat("no live ", Name(ids[i]))));
      } else {
        out.push_back(EndLocked(ids[i], *record, LeaseState::kRevoked, std::string(reason)));
      }
    }
  }
  return out;
}

void LeaseTable::Finish(LeaseId id) {
  absl::MutexLock lock(&mu_);
  FinishLocked(id, nullptr);
}

void LeaseTable::FinishMany(const std::vector<LeaseId>& ids) {
  for (size_t begin = 0; begin < ids.size(); begin += kRecallBatch) {
    const size_t end = std::min(ids.size(), begin + kRecallBatch);
    absl::MutexLock lock(&mu_);
    PendingEvents pending;
    for (size_t i = begin; i < end; ++i) FinishLocked(ids[i], &pending);
    DeliverLocked(pending);
  }
}

void LeaseTable::FinishLocked(LeaseId id, PendingEvents* pending) {
  auto it = leases_.find(id);
  if (it == leases_.end() || !it->second.ending) return;
  Record& record = it->second;
  const LeaseEvent::Type type = record.state == LeaseState::kReleased  ? LeaseEvent::Type::kReleased
                                : record.state == LeaseState::kRevoked ? LeaseEvent::Type::kRevoked
                                                                       : LeaseEvent::Type::kExpired;
  if (pending != nullptr) {
    PendLocked(*pending, type, id, record);
  } else {
    EmitLocked(type, id, record);
  }
  Tombstone tomb{*record.owner, record.state, std::string(record.reason_text()), clock_->Now()};
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
  by_owner_.erase({record.owner, id});
  by_file_.erase({record.file, id});
  ReleaseNameLocked(record.owner);
  ReleaseNameLocked(record.export_name);
  ReleaseNameLocked(record.path);
  ReleaseFileLocked(record.file);
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
    if (it->second.ending) return it->second.state;
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
    if (!record.ending && MatchesLocked(filter, record)) out.push_back(InfoLocked(id, record));
  };
  if (filter.file.has_value()) {
    const FileId* file = FindFileLocked(*filter.file);
    if (file == nullptr) return out;
    for (auto it = by_file_.lower_bound({file, 0}); it != by_file_.end() && it->first == file;
         ++it) {
      add(it->second);
    }
  } else if (filter.owner.has_value()) {
    const std::string* owner = FindNameLocked(*filter.owner);
    if (owner == nullptr) return out;
    for (auto it = by_owner_.lower_bound({owner, 0}); it != by_owner_.end() && it->first == owner;
         ++it) {
      add(it->second);
    }
  } else {
    for (const auto& [id, record] : leases_) add(id);
  }
  return out;
}

bool LeaseTable::HasLiveLeases(const FileId& file) const {
  absl::MutexLock lock(&mu_);
  const FileId* kept = FindFileLocked(file);
  if (kept == nullptr) return false;
  for (auto it = by_file_.lower_bound({kept, 0}); it != by_file_.end() && it->first == kept; ++it) {
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
  if (const std::string* name = FindNameLocked(owner); name != nullptr) {
    for (auto it = by_owner_.lower_bound({name, 0}); it != by_owner_.end() && it->first == name;
         ++it) {
      const Record& record = leases_.at(it->second);
      if (!record.ending) sub.snapshot.push_back(InfoLocked(it->second, record));
    }
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

void LeaseTable::EmitLocked(LeaseEvent::Type type, LeaseId id, const Record& record) {
  auto it = subscribers_.find(*record.owner);
  if (it == subscribers_.end()) return;
  const LeaseEvent event{type, InfoLocked(id, record), clock_->Now()};
  bool dropped = false;
  for (auto& q : it->second) dropped |= !q->Push(event);
  if (dropped) DropClosedLocked(it);
}

void LeaseTable::PendLocked(PendingEvents& pending, LeaseEvent::Type type, LeaseId id,
                            const Record& record) {
  if (!subscribers_.contains(*record.owner)) return;
  pending[*record.owner].push_back(LeaseEvent{type, InfoLocked(id, record), clock_->Now()});
}

void LeaseTable::DeliverLocked(PendingEvents& pending) {
  for (auto& [owner, events] : pending) {
    auto it = subscribers_.find(owner);
    if (it == subscribers_.end()) continue;
    auto& queues = it->second;
    const size_t count = events.size();
    bool dropped = false;
    for (size_t q = 0; q < queues.size(); ++q) {
      // The last queue takes the events themselves, the others copies.
      const size_t queued = q + 1 == queues.size() ? queues[q]->PushAll(std::move(events))
                                                   : queues[q]->PushAll(events);
      dropped |= queued != count;
    }
    if (dropped) DropClosedLocked(it);
  }
}

void LeaseTable::DropClosedLocked(Subscribers::iterator it) {
  // A dropped event means the queue overflowed (its consumer will resubscribe) or closed.
  held_subscriptions_ -= DropClosed(it->second);
  if (it->second.empty()) subscribers_.erase(it);
}

void LeaseTable::SetExpiryLocked(LeaseId id, Record& record, absl::Time expires_at) {
  expiry_.erase({record.expires_at, id});
  record.expires_at = PackedTime(expires_at);
  expiry_.insert({record.expires_at, id});
  ArmTimerLocked();
}

void LeaseTable::ArmTimerLocked() {
  if (shutting_down_ || expiry_.empty()) return;
  const absl::Time earliest = expiry_.begin()->first.get();
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
    const PackedTime now(clock_->Now());
    while (!expiry_.empty() && expiry_.begin()->first <= now) {
      const LeaseId id = expiry_.begin()->second;
      Record& record = leases_.at(id);
      expired.push_back(EndLocked(
          id, record, LeaseState::kExpired,
          absl::StrCat("not renewed; expired at ", absl::FormatTime(record.expires_at.get()))));
    }
    ArmTimerLocked();
  }
  for (const LeaseInfo& lease : expired) on_expired_(lease);
}

}  // namespace pinbroker
