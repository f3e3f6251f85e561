// Quotas: bounded counters of what one identity (or the whole broker) holds, and the holds that
// give what they counted back.
//
// A QuotaCounter is one bounded count (leases, pinned bytes, ...). TryAdd() reserves with one
// compare-and-swap, so two racing reservations can never both pass the limit (reserve, then
// commit: a caller reserves before it creates anything, and drops the reservation on failure).
// A QuotaHold owns reservations and gives them back when it is destroyed or reset, so whoever
// keeps the hold (a session, a lease record, a Watch stream, a running call) returns the count
// exactly once, on every path that ends it.
//
// A QuotaAccount is one identity's set of counters (sessions, leases, pinned bytes, Watch
// streams, blocked calls, and leases and pinned bytes per export), against QuotaLimits. A
// QuotaLedger hands out each identity's account, creating it on first use; an account lives as
// long as something holds a reservation of it or a pointer to it.
//
// Costs: a reservation is a handful of uncontended atomic operations; AccountFor() is a hash
// lookup under a reader lock.
//
// Thread-safety: QuotaCounter, QuotaAccount and QuotaLedger are safe to call concurrently.
// QuotaHold is a move-only value (thread-compatible); the counters it refers to must outlive it
// (an account's are kept alive by the hold itself).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace pinbroker {

inline constexpr uint64_t kUnlimited = std::numeric_limits<uint64_t>::max();

enum class QuotaKind { kSessions, kLeases, kPinnedBytes, kWatches, kBlockedCalls };
inline constexpr size_t kQuotaKinds = 5;
// The quota's configuration name: "max_sessions", "max_leases", "max_pinned_bytes",
// "max_watches", "max_blocked_calls".
absl::string_view QuotaName(QuotaKind kind);
// What it counts, for messages: "sessions", "leases", "pinned bytes", "Watch streams",
// "blocked calls".
absl::string_view QuotaUnit(QuotaKind kind);

// Per identity. kUnlimited: no bound.
struct QuotaLimits {
  uint64_t max_sessions = kUnlimited;
  uint64_t max_leases = kUnlimited;
  uint64_t max_pinned_bytes = kUnlimited;
  uint64_t max_watches = kUnlimited;
  uint64_t max_blocked_calls = kUnlimited;
  uint64_t Of(QuotaKind kind) const;
};

// Per identity and export (kUnlimited: only the identity's overall limits apply).
struct ExportQuotaLimits {
  uint64_t max_leases = kUnlimited;
  uint64_t max_pinned_bytes = kUnlimited;
};

class QuotaCounter {
 public:
  explicit QuotaCounter(uint64_t limit = kUnlimited) : limit_(limit) {}
  QuotaCounter(const QuotaCounter&) = delete;
  QuotaCounter& operator=(const QuotaCounter&) = delete;

  // Adds `n` unless that would take the count past the limit. Sets `*before` (if given) to the
  // count it saw: the use to report when refused.
  bool TryAdd(uint64_t n, uint64_t* before = nullptr);
  void Sub(uint64_t n) { used_.fetch_sub(n, std::memory_order_relaxed); }
  uint64_t used() const { return used_.load(std::memory_order_relaxed); }
  uint64_t limit() const { return limit_; }

 private:
  std::atomic<uint64_t> used_{0};
  const uint64_t limit_;
};

class QuotaHold {
 public:
  QuotaHold() = default;
  ~QuotaHold() { Reset(); }
  QuotaHold(QuotaHold&& other) noexcept { *this = std::move(other); }
  QuotaHold& operator=(QuotaHold&& other) noexcept;
  QuotaHold(const QuotaHold&) = delete;
  QuotaHold& operator=(const QuotaHold&) = delete;

  // Takes over `n` already added to `counter` (which must outlive the hold).
  void Add(QuotaCounter* counter, uint64_t n);
  // Takes over everything `other` holds.
  void Absorb(QuotaHold other);
  // Gives everything back now.
  void Reset();
  bool empty() const { return size_ == 0 && extra_ == nullptr; }

 private:
  friend class QuotaAccount;
  // Every lease keeps one hold, so the common shape is kept small (80 bytes): up to kInline
  // counters, each holding 1 or one shared `amount_` (a lease's leases and pinned bytes on its
  // identity, its export and the broker's budget). Anything else goes to `extra_`.
  static constexpr size_t kInline = 5;
  struct Extra {
    std::vector<std::shared_ptr<const void>> keeps;  // Accounts besides keep_'s.
    std::vector<std::pair<QuotaCounter*, uint64_t>> entries;
  };
  // The account whose counters these are, if any (a lease's hold: its identity's; the
  // broker-wide budget needs none).
  std::shared_ptr<const void> keep_;
  std::array<QuotaCounter*, kInline> counters_{};
  uint64_t amount_ = 0;  // What each counter whose bit in `units_` is clear holds.
  uint8_t units_ = 0;    // Bit i set: counters_[i] holds 1.
  uint8_t size_ = 0;
  std::unique_ptr<Extra> extra_;
};

class QuotaAccount : public std::enable_shared_from_this<QuotaAccount> {
 public:
  // `label` names the identity in messages ("uid 1001", "tls spiffe://...", "anonymous").
  QuotaAccount(std::string label, const QuotaLimits& limits,
               const absl::flat_hash_map<std::string, ExportQuotaLimits>& per_export);
  QuotaAccount(const QuotaAccount&) = delete;
  QuotaAccount& operator=(const QuotaAccount&) = delete;

  // One session, Watch stream or blocked call. RESOURCE_EXHAUSTED naming the quota, the
  // identity, its use and the limit ("uid 1001 holds 64 sessions; quota max_sessions is 64").
  // kLeases and kPinnedBytes are reserved only with ReserveLease().
  absl::StatusOr<QuotaHold> Reserve(QuotaKind kind);
  // One lease of `bytes` on `export_name`: the identity's leases and pinned bytes, and its
  // leases and bytes on that export when the export has limits of its own. All or nothing.
  absl::StatusOr<QuotaHold> ReserveLease(absl::string_view export_name, uint64_t bytes);

  const std::string& label() const { return label_; }
  uint64_t used(QuotaKind kind) const { return CounterOf(kind).used(); }
  uint64_t limit(QuotaKind kind) const { return CounterOf(kind).limit(); }

 private:
  struct ExportCounters {
    explicit ExportCounters(const ExportQuotaLimits& limits)
        : leases(limits.max_leases), bytes(limits.max_pinned_bytes) {}
    QuotaCounter leases;
    QuotaCounter bytes;
  };
  const QuotaCounter& CounterOf(QuotaKind kind) const {
    return counters_[static_cast<size_t>(kind)];
  }
  QuotaCounter& CounterOf(QuotaKind kind) { return counters_[static_cast<size_t>(kind)]; }

  const std::string label_;
  std::array<QuotaCounter, kQuotaKinds> counters_;
  // Fixed at construction; read without a lock.
  absl::flat_hash_map<std::string, std::unique_ptr<ExportCounters>> exports_;
};

class QuotaLedger {
 public:
  struct Options {
    QuotaLimits per_identity;
    absl::flat_hash_map<std::string, ExportQuotaLimits> per_export;
  };
  explicit QuotaLedger(Options options) : options_(std::move(options)) {}

  // The account of identity `key` ("uid:1001"), created with `label` on first use.
  std::shared_ptr<QuotaAccount> AccountFor(absl::string_view key, absl::string_view label)
      ABSL_LOCKS_EXCLUDED(mu_);
  const Options& options() const { return options_; }
  // Accounts alive now (for tests).
  size_t account_count() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  const Options options_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::weak_ptr<QuotaAccount>> accounts_ ABSL_GUARDED_BY(mu_);
  size_t sweep_at_ ABSL_GUARDED_BY(mu_) = 64;  // Entries at which dead ones are dropped.
};

}  // namespace pinbroker
