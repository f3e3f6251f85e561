#include "pinning/quota.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace pinbroker {
namespace {

absl::Status Exhausted(absl::string_view who, uint64_t used, absl::string_view unit, uint64_t need,
                       absl::string_view quota, uint64_t limit, absl::string_view where = "") {
  const std::string on = where.empty() ? "" : absl::StrCat(" on export ", where);
  const std::string more = need == 1 ? "" : absl::StrCat(" and this pin needs ", need, " more");
  const std::string of = where.empty() ? "" : absl::StrCat(" of export ", where);
  return absl::ResourceExhaustedError(absl::StrCat(who, " holds ", used, " ", unit, on, more,
                                                   "; quota ", quota, of, " is ", limit));
}

}  // namespace

absl::string_view QuotaName(QuotaKind kind) {
  switch (kind) {
    case QuotaKind::kSessions:
      return "max_sessions";
    case QuotaKind::kLeases:
      return "max_leases";
    case QuotaKind::kPinnedBytes:
      return "max_pinned_bytes";
    case QuotaKind::kWatches:
      return "max_watches";
    case QuotaKind::kBlockedCalls:
      return "max_blocked_calls";
  }
  return "?";
}

absl::string_view QuotaUnit(QuotaKind kind) {
  switch (kind) {
    case QuotaKind::kSessions:
      return "sessions";
    case QuotaKind::kLeases:
      return "leases";
    case QuotaKind::kPinnedBytes:
      return "pinned bytes";
    case QuotaKind::kWatches:
      return "Watch streams";
    case QuotaKind::kBlockedCalls:
      return "blocked calls";
  }
  return "?";
}

uint64_t QuotaLimits::Of(QuotaKind kind) const {
  switch (kind) {
    case QuotaKind::kSessions:
      return max_sessions;
    case QuotaKind::kLeases:
      return max_leases;
    case QuotaKind::kPinnedBytes:
      return max_pinned_bytes;
    case QuotaKind::kWatches:
      return max_watches;
    case QuotaKind::kBlockedCalls:
      return max_blocked_calls;
  }
  return kUnlimited;
}

bool QuotaCounter::TryAdd(uint64_t n, uint64_t* before) {
  uint64_t current = used_.load(std::memory_order_relaxed);
  do {
    if (current > limit_ || n > limit_ - current) {
      if (before != nullptr) *before = current;
      return false;
    }
  } while (!used_.compare_exchange_weak(current, current + n, std::memory_order_relaxed));
  if (before != nullptr) *before = current;
  return true;
}

QuotaHold& QuotaHold::operator=(QuotaHold&& other) noexcept {
  if (this == &other) return *this;
  Reset();
  keep_ = std::move(other.keep_);
  counters_ = other.counters_;
  amount_ = other.amount_;
  units_ = other.units_;
  size_ = other.size_;
  extra_ = std::move(other.extra_);
  other.size_ = 0;
  other.units_ = 0;
  other.amount_ = 0;
  other.keep_.reset();
  return *this;
}

void QuotaHold::Add(QuotaCounter* counter, uint64_t n) {
  if (n == 0) return;
  if (size_ < kInline && (n == 1 || amount_ == 0 || amount_ == n)) {
    if (n == 1) {
      units_ |= static_cast<uint8_t>(1u << size_);
    } else {
      amount_ = n;
    }
    counters_[size_++] = counter;
    return;
  }
  if (extra_ == nullptr) extra_ = std::make_unique<Extra>();
  extra_->entries.emplace_back(counter, n);
}

void QuotaHold::Absorb(QuotaHold other) {
  for (size_t i = 0; i < other.size_; ++i) {
    Add(other.counters_[i], (other.units_ >> i) & 1u ? 1 : other.amount_);
  }
  other.size_ = 0;
  std::vector<std::shared_ptr<const void>> keeps;
  if (other.extra_ != nullptr) {
    for (const auto& [counter, n] : other.extra_->entries) Add(counter, n);
    keeps = std::move(other.extra_->keeps);
    other.extra_.reset();
  }
  keeps.push_back(std::move(other.keep_));
  for (std::shared_ptr<const void>& keep : keeps) {
    if (keep == nullptr || keep == keep_) continue;
    if (keep_ == nullptr) {
      keep_ = std::move(keep);
      continue;
    }
    if (extra_ == nullptr) extra_ = std::make_unique<Extra>();
    extra_->keeps.push_back(std::move(keep));
  }
}

void QuotaHold::Reset() {
  for (size_t i = 0; i < size_; ++i) counters_[i]->Sub((units_ >> i) & 1u ? 1 : amount_);
  size_ = 0;
  units_ = 0;
  amount_ = 0;
  if (extra_ != nullptr) {
    for (const auto& [counter, n] : extra_->entries) counter->Sub(n);
    extra_.reset();
  }
  keep_.reset();
}

QuotaAccount::QuotaAccount(std::string label, const QuotaLimits& limits,
                           const absl::flat_hash_map<std::string, ExportQuotaLimits>& per_export)
    : label_(std::move(label)),
      counters_{QuotaCounter(limits.max_sessions), QuotaCounter(limits.max_leases),
                QuotaCounter(limits.max_pinned_bytes), QuotaCounter(limits.max_watches),
                QuotaCounter(limits.max_blocked_calls)} {
  for (const auto& [name, export_limits] : per_export) {
    exports_.emplace(name, std::make_unique<ExportCounters>(export_limits));
  }
}

absl::StatusOr<QuotaHold> QuotaAccount::Reserve(QuotaKind kind) {
  QuotaCounter& counter = CounterOf(kind);
  uint64_t before = 0;
  if (!counter.TryAdd(1, &before)) {
    return Exhausted(label_, before, QuotaUnit(kind), 1, QuotaName(kind), counter.limit());
  }
  QuotaHold hold;
  hold.keep_ = shared_from_this();
  hold.Add(&counter, 1);
  return hold;
}

absl::StatusOr<QuotaHold> QuotaAccount::ReserveLease(absl::string_view export_name,
                                                     uint64_t bytes) {
  QuotaHold hold;
  hold.keep_ = shared_from_this();
  uint64_t before = 0;
  QuotaCounter& leases = CounterOf(QuotaKind::kLeases);
  if (!leases.TryAdd(1, &before)) {
    return Exhausted(label_, before, "leases", 1, "max_leases", leases.limit());
  }
  hold.Add(&leases, 1);
  QuotaCounter& pinned = CounterOf(QuotaKind::kPinnedBytes);
  if (!pinned.TryAdd(bytes, &before)) {
    return Exhausted(label_, before, "pinned bytes", bytes, "max_pinned_bytes", pinned.limit());
  }
  hold.Add(&pinned, bytes);
  auto it = exports_.find(export_name);
  if (it == exports_.end()) return hold;
  ExportCounters& on_export = *it->second;
  if (!on_export.leases.TryAdd(1, &before)) {
    return Exhausted(label_, before, "leases", 1, "max_leases", on_export.leases.limit(),
                     export_name);
  }
  hold.Add(&on_export.leases, 1);
  if (!on_export.bytes.TryAdd(bytes, &before)) {
    return Exhausted(label_, before, "pinned bytes", bytes, "max_pinned_bytes",
                     on_export.bytes.limit(), export_name);
  }
  hold.Add(&on_export.bytes, bytes);
  return hold;
}

std::shared_ptr<QuotaAccount> QuotaLedger::AccountFor(absl::string_view key,
                                                      absl::string_view label) {
  {
    absl::ReaderMutexLock lock(&mu_);
    auto it = accounts_.find(key);
    if (it != accounts_.end()) {
      if (std::shared_ptr<QuotaAccount> account = it->second.lock()) return account;
    }
  }
  absl::MutexLock lock(&mu_);
  std::weak_ptr<QuotaAccount>& slot = accounts_[key];
  if (std::shared_ptr<QuotaAccount> account = slot.lock()) return account;
  auto account = std::make_shared<QuotaAccount>(std::string(label), options_.per_identity,
                                                options_.per_export);
  slot = account;
  if (accounts_.size() >= sweep_at_) {
    // Accounts nothing holds any more; their identities start from zero when they come back.
    for (auto it = accounts_.begin(); it != accounts_.end();) {
      if (it->second.expired()) {
        accounts_.erase(it++);
      } else {
        ++it;
      }
    }
    sweep_at_ = std::max<size_t>(64, 2 * accounts_.size());
  }
  return account;
}

size_t QuotaLedger::account_count() const {
  absl::MutexLock lock(&mu_);
  size_t alive = 0;
  for (const auto& [key, account] : accounts_) alive += account.expired() ? 0 : 1;
  return alive;
}

}  // namespace pinbroker
