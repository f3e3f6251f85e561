// DetectAfter: the file guard's check that a guarded file was not changed behind its back in
// a way no armed mechanism intercepted. A check of a file sweeps it once (size and every hole,
// GuardedFile::Sweep) and compares every live lease of the file against that one sweep
// (RemovedLeases): a size or hole change under a lease revokes it at once with reason
// "out-of-band change". A link count of 0 recalls the file's leases with reason "unlinked"
// (under policy revoke, they are revoked after the export's grace period).
//
// Cost: one sweep per file per check; leases granted under the same snapshot share one
// comparison, so a check of an unchanged file does no per-lease layout work. Leases granted on
// the file's grant view (GuardedFile::DenseView) are compared one by one once, then move onto
// the check's sweep if it settled (Rebase).
//
// Thread-safety: every method is safe to call concurrently; Check() holds the file's check_mu
// for the whole check, so one check of a file runs at a time. The GuardEngine is called with
// no lock held but the file's check_mu.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/synchronization/mutex.h"
#include "pinbroker/clock.h"
#include "pinning/guard/guarded_file.h"
#include "pinning/layout_guard.h"

namespace pinbroker::guard {

class DetectAfter {
 public:
  explicit DetectAfter(GuardEngine* engine) : engine_(engine), clock_(engine->clock()) {}
  // Stop()s.
  ~DetectAfter() { Stop(); }
  DetectAfter(const DetectAfter&) = delete;
  DetectAfter& operator=(const DetectAfter&) = delete;

  // The leases of `leases` whose bytes lost pages between the sweep each was granted under and
  // `now`, with what happened, ascending id. Leases without a sweep, or granted under a sweep
  // taken after `now` began (a hole filled in between would look like data turned into a
  // hole), are skipped. Leases sharing a sweep share one SameLayout() comparison.
  static std::vector<std::pair<LeaseId, std::string>> RemovedLeases(
      const GuardedFile::LeaseViews& leases, const FileLayout& now);

  // Points every lease standing on a grant view that `now` applies to (numbered no later than
  // `now`) at `now`, except those in `removed` (RemovedLeases against `now`): `now` shows their
  // bytes all data within its size, as their grant view said, so nothing changes for them but
  // that they share `now`'s comparison from then on. Only a settled `now` (nothing changed while
  // it ran) is a layout of one moment; otherwise nothing moves.
  static void Rebase(GuardedFile& file, const std::shared_ptr<const FileLayout>& now,
                     const std::vector<std::pair<LeaseId, std::string>>& removed)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(file.mu);

  // Checks `file` now (see the header comment). A file without live leases (lingering) is
  // only checked for an unlink. `then` runs at the end of a check that swept the file, still
  // under its check_mu (FileGuard re-arms a broken file lease there).
  void Check(GuardedFile& file, absl::FunctionRef<void()> then) ABSL_LOCKS_EXCLUDED(mu_);
  void Check(GuardedFile& file) {
    Check(file, [] {});
  }

  // Cancels the pending revoke-after-grace timers of unlinked files; later unlinks recall but
  // schedule nothing. Idempotent.
  void Stop() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void HandleUnlinked(const GuardedFile& file) ABSL_LOCKS_EXCLUDED(mu_);

  GuardEngine* const engine_;
  Clock* const clock_;
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<Clock::TimerId> timers_ ABSL_GUARDED_BY(mu_);  // Unlinked-revoke timers.
};

}  // namespace pinbroker::guard
