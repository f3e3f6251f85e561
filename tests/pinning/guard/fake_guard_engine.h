// FakeGuardEngine: a GuardEngine for the guard's unit tests, without a PinService. The test
// sets each file's live leases and each export's options; the fake records what the guard asks
// of it (revokes, recalls, coordinated changes) and answers from the leases it was given (a
// revoked lease stops being live; a recalled one becomes kRecalling). Time is a SimulatedClock.
//
// Thread-safety: every method is safe to call concurrently (one mutex).
#pragma once

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "common/simulated_clock.h"
#include "pinning/layout_guard.h"

namespace pinbroker::guard::testing {

class FakeGuardEngine : public GuardEngine {
 public:
  struct Revoke {
    std::vector<LeaseId> ids;
    std::string reason;
  };
  struct Recall {
    LeaseId id = 0;
    std::string reason;
    absl::Time deadline;
  };

  SimulatedClock& sim() { return clock_; }

  void AddLease(const LeaseInfo& lease) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    leases_.push_back(lease);
  }
  void SetExport(const ExportOptions& exp) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    exports_[exp.name] = exp;
  }
  std::vector<Revoke> revokes() const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return revokes_;
  }
  std::vector<Recall> recalls() const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return recalls_;
  }
  FileGuardHooks* attached() const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return attached_;
  }

  // GuardEngine.
  Clock* clock() const override { return &clock_; }
  void AttachGuard(FileGuardHooks* guard) override ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    attached_ = guard;
  }
  std::vector<LeaseInfo> ListFileLeases(const FileId& file) const override
      ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    std::vector<LeaseInfo> out;
    for (const LeaseInfo& l : leases_) {
      if (l.file == file) out.push_back(l);
    }
    std::sort(out.begin(), out.end(),
              [](const LeaseInfo& a, const LeaseInfo& b) { return a.id < b.id; });
    return out;
  }
  bool IsLive(LeaseId id) const override ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return Index(id) >= 0;
  }
  std::optional<ExportOptions> ExportOptionsFor(absl::string_view name) const override
      ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    auto it = exports_.find(std::string(name));
    if (it == exports_.end()) return std::nullopt;
    return it->second;
  }
  size_t RevokeLeases(const std::vector<LeaseId>& ids, const std::string& reason) override
      ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    revokes_.push_back(Revoke{ids, reason});
    size_t n = 0;
    for (LeaseId id : ids) {
      const int i = Index(id);
      if (i < 0) continue;
      leases_.erase(leases_.begin() + i);
      ++n;
    }
    return n;
  }
  std::vector<LeaseId> RecallLeases(const std::vector<LeaseId>& ids, const std::string& reason,
                                    absl::Time deadline) override ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    std::vector<LeaseId> out;
    for (LeaseId id : ids) {
      const int i = Index(id);
      if (i < 0 || leases_[i].state == LeaseState::kRecalling) continue;
      leases_[i].state = LeaseState::kRecalling;
      recalls_.push_back(Recall{id, reason, deadline});
      out.push_back(id);
    }
    return out;
  }
  absl::StatusOr<LayoutResult> CoordinateExternal(
      const FileId&, const ExternalChange&, const LayoutOptions& options,
      absl::FunctionRef<absl::Status()> proceed) override {
    if (absl::Status s = proceed(); !s.ok()) return s;
    LayoutResult result;
    result.policy = options.policy;
    return result;
  }

 private:
  int Index(LeaseId id) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (size_t i = 0; i < leases_.size(); ++i) {
      if (leases_[i].id == id) return static_cast<int>(i);
    }
    return -1;
  }

  mutable SimulatedClock clock_;
  mutable absl::Mutex mu_;
  std::vector<LeaseInfo> leases_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, ExportOptions> exports_ ABSL_GUARDED_BY(mu_);
  std::vector<Revoke> revokes_ ABSL_GUARDED_BY(mu_);
  std::vector<Recall> recalls_ ABSL_GUARDED_BY(mu_);
  FileGuardHooks* attached_ ABSL_GUARDED_BY(mu_) = nullptr;
};

}  // namespace pinbroker::guard::testing
