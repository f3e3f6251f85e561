#include "broker/session_table.h"

#include <sys/random.h>

#include <algorithm>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace pinbroker::broker {
namespace {

std::string RandomToken() {
  char bytes[16];
  size_t got = 0;
  while (got < sizeof(bytes)) {
    const ssize_t n = getrandom(bytes + got, sizeof(bytes) - got, 0);
    if (n > 0) got += static_cast<size_t>(n);
  }
  return absl::BytesToHexString(absl::string_view(bytes, sizeof(bytes)));
}

// Compares without an early exit, so timing does not reveal how much of a token matched.
bool ConstantTimeEquals(absl::string_view a, absl::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

}  // namespace

SessionTable::SessionTable(Clock* clock, std::string epoch, absl::Duration default_ttl,
                           absl::Duration max_ttl,
                           absl::AnyInvocable<void(const std::string&)> on_lapse)
    : clock_(clock),
      epoch_(std::move(epoch)),
      default_ttl_(default_ttl),
      max_ttl_(std::max(max_ttl, default_ttl)),
      on_lapse_(std::move(on_lapse)) {}

SessionTable::~SessionTable() {
  std::vector<Clock::TimerId> timers;
  {
    absl::MutexLock lock(&mu_);
    shutting_down_ = true;
    for (const auto& [when, id] : timers_) timers.push_back(id);
    timers_.clear();
  }
  for (Clock::TimerId id : timers) clock_->Cancel(id);
}

absl::StatusOr<SessionTable::Opened> SessionTable::Open(std::string client_name, absl::Duration ttl,
                                                        Owner owner, QuotaHold quota) {
  if (ttl < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("session ttl must not be negative");
  }
  if (ttl == absl::ZeroDuration()) ttl = default_ttl_;
  ttl = std::min(ttl, max_ttl_);
  absl::MutexLock lock(&mu_);
  Opened opened;
  opened.id = absl::StrCat(epoch_, "-s", next_++);
  opened.token = RandomToken();
  opened.expires_at = clock_->Now() + ttl;
  sessions_.emplace(opened.id, Session{opened.token, std::move(client_name), std::move(owner), ttl,
                                       opened.expires_at, 0, std::move(quota)});
  ArmLocked(opened.expires_at);
  return opened;
}

absl::StatusOr<SessionTable::Opened> SessionTable::Open(std::string client_name,
                                                        absl::Duration ttl) {
  return Open(std::move(client_name), ttl, Owner());
}

absl::StatusOr<absl::Time> SessionTable::Authenticate(absl::string_view id, absl::string_view token,
                                                      const Owner* caller) {
  if (id.empty() || token.empty()) {
    return absl::UnauthenticatedError(
        "this call needs session credentials: open a session with OpenSession and pass its "
        "session_id and token");
  }
  absl::MutexLock lock(&mu_);
  auto it = sessions_.find(id);
  if (it == sessions_.end()) {
    return absl::UnauthenticatedError(
        absl::StrCat("session ", id,
                     " is not open here (it lapsed, was closed, or belongs to an earlier run "
                     "of the broker); open a new session"));
  }
  Session& session = it->second;
  if (!ConstantTimeEquals(session.token, token)) {
    return absl::UnauthenticatedError(absl::StrCat("wrong token for session ", id));
  }
  if (caller != nullptr && caller->key != session.owner.key) {
    return absl::PermissionDeniedError(absl::StrCat(
        caller->description, " presented the token of session ", id, ", which belongs to ",
        session.owner.description,
        " (rule: a session is usable only by the identity that opened it); open a session of "
        "your own"));
  }
  if (session.watchers == 0) {
    session.expires_at = clock_->Now() + session.ttl;
    ArmLocked(session.expires_at);
  }
  return session.watchers > 0 ? absl::InfiniteFuture() : session.expires_at;
}

absl::StatusOr<SessionTable::Owner> SessionTable::OwnerOf(absl::string_view id) const {
  absl::MutexLock lock(&mu_);
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return absl::NotFoundError(absl::StrCat("no session ", id));
  return it->second.owner;
}

absl::Status SessionTable::Close(absl::string_view id) {
  absl::MutexLock lock(&mu_);
  if (sessions_.erase(id) == 0) {
    return absl::NotFoundError(absl::StrCat("session ", id, " is already closed"));
  }
  return absl::OkStatus();
}

absl::Status SessionTable::CheckOpen(absl::string_view id) const {
  absl::MutexLock lock(&mu_);
  if (sessions_.contains(id)) return absl::OkStatus();
  return absl::UnauthenticatedError(
      absl::StrCat("session ", id,
                   " was closed or lapsed while the request was in flight; nothing was pinned. "
                   "Open a new session"));
}

void SessionTable::AddWatcher(absl::string_view id) {
  absl::MutexLock lock(&mu_);
  if (auto it = sessions_.find(id); it != sessions_.end()) ++it->second.watchers;
}

void SessionTable::RemoveWatcher(absl::string_view id) {
  absl::MutexLock lock(&mu_);
  auto it = sessions_.find(id);
  if (it == sessions_.end() || it->second.watchers == 0) return;
  if (--it->second.watchers == 0) {
    it->second.expires_at = clock_->Now() + it->second.ttl;
    ArmLocked(it->second.expires_at);
  }
}

std::vector<SessionTable::Info> SessionTable::List() const {
  absl::MutexLock lock(&mu_);
  std::vector<Info> out;
  for (const auto& [id, s] : sessions_) {
    out.push_back(Info{id, s.client_name, s.owner,
                       s.watchers > 0 ? absl::InfiniteFuture() : s.expires_at, s.watchers});
  }
  std::sort(out.begin(), out.end(), [](const Info& a, const Info& b) { return a.id < b.id; });
  return out;
}

size_t SessionTable::size() const {
  absl::MutexLock lock(&mu_);
  return sessions_.size();
}

void SessionTable::ArmLocked(absl::Time when) {
  // One armed timer at or before the earliest expiry is enough: when it fires it lapses what is
  // due and re-arms for the next expiry. Renewals only move expiries later.
  for (const auto& [armed, id] : timers_) {
    if (armed <= when) return;
  }
  if (shutting_down_) return;
  timers_[when] = clock_->Schedule(when, [this, when] { OnTimer(when); });
}

void SessionTable::OnTimer(absl::Time due) {
  std::vector<std::string> lapsed;
  {
    absl::MutexLock lock(&mu_);
    timers_.erase(due);
    if (shutting_down_) return;
    const absl::Time now = clock_->Now();
    absl::Time next = absl::InfiniteFuture();
    for (auto it = sessions_.begin(); it != sessions_.end();) {
      if (it->second.watchers == 0 && it->second.expires_at <= now) {
        lapsed.push_back(it->first);
        sessions_.erase(it++);
      } else {
        if (it->second.watchers == 0) next = std::min(next, it->second.expires_at);
        ++it;
      }
    }
    if (next != absl::InfiniteFuture()) ArmLocked(next);
  }
  for (const std::string& id : lapsed) on_lapse_(id);
}

}  // namespace pinbroker::broker
