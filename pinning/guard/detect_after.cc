#include "pinning/guard/detect_after.h"

#include <sys/stat.h>

#include <algorithm>
#include <optional>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/log.h"
#include "pinning/guard/guard_report.h"

namespace pinbroker::guard {

std::vector<std::pair<LeaseId, std::string>> DetectAfter::RemovedLeases(
    const GuardedFile::LeaseViews& leases, const FileLayout& now) {
  std::vector<std::pair<LeaseId, std::string>> removed;
  absl::flat_hash_map<const FileLayout*, bool> unchanged;
  for (const auto& [id, view] : leases) {
    if (view.before == nullptr || view.before->sequence > now.sequence) continue;
    auto [same, fresh] = unchanged.try_emplace(view.before, false);
    if (fresh) same->second = view.before->SameLayout(now);
    if (same->second) continue;
    std::optional<std::string> what =
        RemovedUnder(Within(*view.before, view.bytes), Within(now, view.bytes));
    if (what.has_value()) removed.emplace_back(id, *std::move(what));
  }
  std::sort(removed.begin(), removed.end());
  return removed;
}

void DetectAfter::Rebase(GuardedFile& file, const std::shared_ptr<const FileLayout>& now,
                         const std::vector<std::pair<LeaseId, std::string>>& removed) {
  if (!now->settled) return;
  bool any = false;
  for (const auto& [layout, held] : file.held_sweeps) {
    any |= layout->grant_view && layout->sequence <= now->sequence;
  }
  if (!any) return;
  absl::flat_hash_set<LeaseId> gone;
  for (const auto& [id, what] : removed) gone.insert(id);
  for (auto& [id, view] : file.leases) {
    if (view.before == nullptr || !view.before->grant_view) continue;
    if (view.before->sequence > now->sequence || gone.contains(id)) continue;
    file.SetBeforeLocked(view, now);
  }
}

void DetectAfter::Check(GuardedFile& file, absl::FunctionRef<void()> then) {
  absl::MutexLock check(&file.check_mu);
  struct stat st;
  if (::fstat(file.fd.get(), &st) != 0) return;
  if (st.st_nlink == 0) {
    bool first;
    {
      absl::MutexLock lock(&file.mu);
      first = !file.unlinked;
      file.unlinked = true;
    }
    if (first) HandleUnlinked(file);
  }
  if (file.live.load() == 0) return;  // Lingering: nothing to compare.
  absl::StatusOr<std::shared_ptr<const FileLayout>> swept = file.Sweep();
  if (!swept.ok()) return;
  std::vector<std::pair<LeaseId, std::string>> removed;
  {
    absl::MutexLock lock(&file.mu);
    removed = RemovedLeases(file.leases, **swept);
    Rebase(file, *swept, removed);
  }
  const std::string note =
      removed.empty() ? std::string() : absl::StrCat("guard ", ReportFor(file.Armed()).guard);
  for (const auto& [id, what] : removed) {
    const std::string reason = absl::StrCat("out-of-band change: ", what,
                                            " behind the broker's back (detected afterwards; ",
                                            note, " on ", file.fs_type, " could not intercept it)");
    if (engine_->RevokeLeases({id}, reason) > 0) {
      PB_LOG(WARNING) << "guard: lease " << id << " on " << file.Name() << " revoked: " << reason;
    }
  }
  then();
}

void DetectAfter::HandleUnlinked(const GuardedFile& file) {
  const std::vector<LeaseInfo> leases = engine_->ListFileLeases(file.id);
  if (leases.empty()) return;
  ExportOptions exp;
  if (std::optional<ExportOptions> e = engine_->ExportOptionsFor(file.export_name)) {
    exp = *std::move(e);
  }
  const absl::Time now = clock_->Now();
  const bool revoke = exp.default_policy == LayoutPolicy::kRevoke;
  const std::string reason =
      absl::StrCat("unlinked: ", file.Name(),
                   " was deleted; release the lease so that its space can be reclaimed");
  std::vector<LeaseId> ids;
  for (const LeaseInfo& lease : leases) {
    // revoke: recall with the grace period, then revoke. defer/refuse: recall only; a
    // recalling lease cannot be renewed, so it ends at its TTL at the latest.
    const absl::Time deadline = revoke ? now + exp.grace : lease.expires_at;
    if (!engine_->RecallLeases({lease.id}, reason, deadline).empty()) ids.push_back(lease.id);
  }
  PB_LOG(WARNING) << "guard: " << file.Name() << " was unlinked; recalled leases ["
                  << absl::StrJoin(ids, ",") << "] under policy "
                  << LayoutPolicyName(exp.default_policy);
  if (!revoke || ids.empty()) return;
  absl::MutexLock lock(&mu_);
  if (stopping_) return;
  timers_.push_back(clock_->Schedule(now + exp.grace, [engine = engine_, ids, reason] {
    engine->RevokeLeases(ids, absl::StrCat("not released within the grace period: ", reason));
  }));
}

void DetectAfter::Stop() {
  std::vector<Clock::TimerId> timers;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    timers = std::move(timers_);
    timers_.clear();
  }
  for (Clock::TimerId t : timers) clock_->Cancel(t);
}

}  // namespace pinbroker::guard
