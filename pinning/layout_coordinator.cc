#include "pinning/layout_coordinator.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <limits>
#include <optional>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/errno_status.h"
#include "common/log.h"
#include "common/status_macros.h"

namespace pinbroker {
namespace {

constexpr uint64_t kMaxOffset = static_cast<uint64_t>(std::numeric_limits<off_t>::max());

absl::StatusOr<uint64_t> FileSize(int fd) {
  struct stat st;
  if (fstat(fd, &st) != 0) return ErrnoToStatus(errno, "fstat");
  return static_cast<uint64_t>(st.st_size);
}

bool Contains(const std::vector<LeaseId>& ids, LeaseId id) {
  return std::find(ids.begin(), ids.end(), id) != ids.end();
}

}  // namespace

std::string LayoutCoordinator::DescribeLeases(const std::vector<BusyRangeMap::Entry>& entries,
                                              const absl::flat_hash_set<LeaseId>* disclosed) const {
  std::vector<std::string> parts;
  size_t hidden_ending = 0;
  for (const BusyRangeMap::Entry& entry : entries) {
    const LeaseId id = entry.lease;
    const bool hidden = disclosed != nullptr && !disclosed->contains(id);
    auto lease = table_->Get(id);
    if (lease.ok()) {
      parts.push_back(absl::StrCat(hidden ? "a lease of another session" : table_->Name(id),
                                   hidden ? " (" : absl::StrCat(" (owner ", lease->owner, ", "),
                                   "bytes [", lease->offset, ", ", lease->offset + lease->length,
                                   "), ", AccessName(lease->access), ", ",
                                   LeaseStateName(lease->state), ")"));
    } else if (hidden) {
      ++hidden_ending;
    } else {
      parts.push_back(absl::StrCat(table_->Name(id), " (", entry.held ? "ending" : "being set up",
                                   ", ", BytesText(entry.range, page_size_), ")"));
    }
  }
  if (hidden_ending > 0) {
    parts.push_back(absl::StrCat(hidden_ending, " lease", hidden_ending == 1 ? "" : "s",
                                 " of other sessions being set up or ending"));
  }
  return absl::StrJoin(parts, ", ");
}

absl::Status LayoutCoordinator::EnterLayout(FileState& file, absl::Time deadline,
                                            const std::string& what) {
  absl::MutexLock lock(&file.layout_mu);
  auto idle = [&file]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(file.layout_mu) {
    return !file.layout_in_progress;
  };
  if (!clock_->AwaitWithDeadline(&file.layout_mu, absl::Condition(&idle), deadline)) {
    return absl::DeadlineExceededError(
        absl::StrCat(what, " of file ", file.id.ToString(),
                     " gave up: another layout change on the file was still running at the "
                     "deadline; retry later or with a longer deadline"));
  }
  file.layout_in_progress = true;
  return absl::OkStatus();
}

void LayoutCoordinator::ExitLayout(FileState& file) {
  absl::MutexLock lock(&file.layout_mu);
  file.layout_in_progress = false;
}

absl::StatusOr<LayoutResult> LayoutCoordinator::Truncate(FileState& file, int fd, uint64_t new_size,
                                                         const LayoutOptions& options) {
  if (new_size > kMaxOffset) {
    return absl::InvalidArgumentError(
        absl::StrCat("new size ", new_size, " exceeds the largest file offset ", kMaxOffset));
  }
  RETURN_IF_ERROR(EnterLayout(file, options.deadline, "truncate"));
  absl::Cleanup exit = [&] { ExitLayout(file); };
  ASSIGN_OR_RETURN(const uint64_t size_before, FileSize(fd));
  // Shrinking frees every page from the one holding the new EOF (its tail is zeroed). Growing
  // frees nothing, but the kernel may zero the old last page's tail, so that page counts too.
  // No change in size touches nothing.
  const uint64_t first = std::min(size_before, new_size) / page_size_;
  const Change change{
      size_before == new_size ? PageRange{first, first} : PageRange{first, kPageRangeToInfinity},
      absl::StrCat("truncate from ", size_before, " to ", new_size, " bytes")};
  ASSIGN_OR_RETURN(LayoutResult result, Run(file, change, options, [&]() -> absl::Status {
                     if (ftruncate(fd, static_cast<off_t>(new_size)) != 0) {
                       return ErrnoToStatus(errno, "ftruncate");
                     }
                     return absl::OkStatus();
                   }));
  result.size_before = size_before;
  result.size_after = new_size;
  return result;
}

absl::StatusOr<LayoutResult> LayoutCoordinator::PunchHole(FileState& file, int fd, uint64_t offset,
                                                          uint64_t length,
                                                          const LayoutOptions& options) {
  if (length == 0) return absl::InvalidArgumentError("punch hole length must be positive");
  if (offset > kMaxOffset || length > kMaxOffset - offset) {
    return absl::InvalidArgumentError(absl::StrCat(
        "punch hole [", offset, " +", length, ") runs past the largest file offset ", kMaxOffset));
  }
  RETURN_IF_ERROR(EnterLayout(file, options.deadline, "punch hole"));
  absl::Cleanup exit = [&] { ExitLayout(file); };
  ASSIGN_OR_RETURN(const uint64_t size, FileSize(fd));
  if (offset >= size) {
    return absl::OutOfRangeError(absl::StrCat("punch hole offset ", offset,
                                              " is at or past end of file (size ", size,
                                              "); nothing to punch"));
  }
  const Change change{*PagesCovering(offset, length, page_size_),
                      absl::StrCat("punch hole [", offset, ", ", offset + length, ")")};
  ASSIGN_OR_RETURN(LayoutResult result, Run(file, change, options, [&]() -> absl::Status {
                     if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                   static_cast<off_t>(offset), static_cast<off_t>(length)) != 0) {
                       const int err = errno;
                       if (err == EOPNOTSUPP) {
                         return absl::FailedPreconditionError(
                             "this filesystem does not support punching holes "
                             "(fallocate PUNCH_HOLE: EOPNOTSUPP)");
                       }
                       return ErrnoToStatus(err, "fallocate(PUNCH_HOLE)");
                     }
                     return absl::OkStatus();
                   }));
  result.size_before = result.size_after = size;
  return result;
}

absl::StatusOr<LayoutResult> LayoutCoordinator::CoordinateExternal(
    FileState& file, const ExternalChange& change, const LayoutOptions& options,
    absl::FunctionRef<absl::Status()> proceed) {
  RETURN_IF_ERROR(EnterLayout(file, options.deadline, change.description));
  absl::Cleanup exit = [&] { ExitLayout(file); };
  Change run{PageRange{}, change.description};
  switch (change.kind) {
    case ExternalChange::Kind::kTruncate: {
      // As Truncate(): from the page holding the smaller of the two sizes.
      const uint64_t first = std::min(change.size_before, change.new_size) / page_size_;
      const uint64_t end = change.size_before == change.new_size ? first : kPageRangeToInfinity;
      run.affected = PageRange{first, end};
      break;
    }
    case ExternalChange::Kind::kPunchHole: {
      const uint64_t first = change.offset / page_size_;
      const std::optional<PageRange> pages =
          PagesCovering(change.offset, change.length, page_size_);
      if (pages.has_value()) {
        run.affected = *pages;
      } else {  // Empty (length 0), or running past 2^64.
        run.affected = PageRange{first, change.length == 0 ? first : kPageRangeToInfinity};
      }
      break;
    }
    case ExternalChange::Kind::kFromOffset:
      run.affected = PageRange{change.offset / page_size_, kPageRangeToInfinity};
      break;
  }
  ASSIGN_OR_RETURN(LayoutResult result, Run(file, run, options, proceed));
  result.size_before = change.size_before;
  result.size_after =
      change.kind == ExternalChange::Kind::kTruncate ? change.new_size : change.size_before;
  return result;
}

absl::StatusOr<LayoutResult> LayoutCoordinator::Run(FileState& file, const Change& change,
                                                    const LayoutOptions& options,
                                                    absl::FunctionRef<absl::Status()> apply) {
  const absl::Time start = clock_->Now();
  const std::string policy(LayoutPolicyName(options.policy));
  const std::string reason =
      absl::StrCat(change.description, ", policy ", policy,
                   options.initiator.empty() ? "" : absl::StrCat(", by ", options.initiator));
  LayoutResult result;
  result.policy = options.policy;
  result.affected = change.affected;

  BusyRangeMap::BlockResult block = file.busy.Block(change.affected, reason);
  absl::Cleanup unblock = [&] { file.busy.Unblock(block.id); };
  const std::vector<LeaseId>& held = block.held;

  // Only a lease whose holder could change the layout itself (LeaseInfo::guards_layout) may
  // make a refuse change fail or a defer change wait; every other one is recalled and, after
  // the grace period, revoked, as under policy revoke. Otherwise any reader could hold off
  // the writers of a file it can only read.
  std::vector<LeaseId> guarding;
  std::vector<LeaseId> recall;
  // The leases the caller may learn of (all of them without LayoutOptions::discloses; a lease
  // that is already ending has no owner to ask about and stays undisclosed).
  const bool hide_others = static_cast<bool>(options.discloses);
  absl::flat_hash_set<LeaseId> disclosed;
  for (LeaseId id : held) {
    auto lease = table_->Get(id);
    const bool guards = lease.ok() && lease->guards_layout;  // Not found: ending anyway.
    (options.policy != LayoutPolicy::kRevoke && guards ? guarding : recall).push_back(id);
    if (hide_others && lease.ok() && options.discloses(lease->owner)) disclosed.insert(id);
  }
  auto describe = [&](const std::vector<BusyRangeMap::Entry>& entries) {
    return DescribeLeases(entries, hide_others ? &disclosed : nullptr);
  };
  if (options.policy == LayoutPolicy::kRefuse && !guarding.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat(change.description, " refused: ", BytesText(change.affected, page_size_),
                     " are pinned by ", describe(file.busy.Overlapping(change.affected)),
                     "; release those leases first, or use policy defer or revoke"));
  }
  if (!recall.empty()) {
    const std::string recall_reason =
        options.policy == LayoutPolicy::kRevoke
            ? reason
            : absl::StrCat(reason,
                           "; the holder may not change the file's layout, so its lease "
                           "cannot hold the change off");
    const absl::Time grace_deadline = clock_->Now() + options.grace;
    for (LeaseId id : recall) {
      auto recalled = table_->Recall(id, recall_reason, grace_deadline);
      if (!recalled.ok()) continue;  // Ended meanwhile.
      result.recalled.push_back(id);
      PB_LOG(INFO) << table_->Name(id) << " recalled: owner=" << recalled->owner
                   << " export=" << recalled->export_name << " path=" << recalled->path
                   << " deadline=" << absl::FormatTime(grace_deadline) << " reason=\""
                   << recall_reason << "\"";
    }
    if (!file.busy.AwaitDrained(block.id, grace_deadline)) {
      for (const auto& entry : file.busy.Overlapping(change.affected)) {
        if (!entry.held) continue;                     // A pin being set up aborts by itself.
        if (!Contains(recall, entry.lease)) continue;  // Guarding: defer waits for it below.
        const absl::Status revoked =
            lifecycle_->Revoke(entry.lease, absl::StrCat("not released within the ",
                                                         absl::FormatDuration(options.grace),
                                                         " grace period: ", recall_reason));
        if (revoked.ok()) {
          result.revoked.push_back(entry.lease);
        } else if (!absl::IsNotFound(revoked)) {  // NOT_FOUND: it ended meanwhile.
          return absl::InternalError(absl::StrCat(
              change.description, " not applied, file unchanged: ", revoked.message()));
        }
      }
    }
  }
  if (options.policy == LayoutPolicy::kDefer && !guarding.empty() &&
      !file.busy.AwaitDrained(block.id, options.deadline)) {
    return absl::DeadlineExceededError(
        absl::StrCat(change.description, " deferred until the deadline but ",
                     BytesText(change.affected, page_size_), " are still pinned by ",
                     describe(file.busy.Overlapping(change.affected)),
                     "; the file is unchanged. Ask the holders to release, or use policy revoke"));
  }
  // Every policy: wait for what is left (reservations aborting, ends in progress).
  if (!file.busy.AwaitDrained(block.id, std::max(options.deadline, clock_->Now()))) {
    return absl::DeadlineExceededError(absl::StrCat(
        change.description,
        " not applied by the deadline: ", BytesText(change.affected, page_size_), " still held by ",
        describe(file.busy.Overlapping(change.affected)), "; the file is unchanged"));
  }
  for (LeaseId id : held) {
    if (Contains(result.revoked, id)) continue;
    if (table_->EndState(id) == LeaseState::kExpired) {
      result.expired.push_back(id);
    } else {
      result.released.push_back(id);
    }
  }
  result.waited = clock_->Now() - start;
  if (observer_) observer_(file.id, result);
  // The backend may hold registrations wider than its leases (RDMA regions over whole files):
  // it must not keep pages the change removes (no engine lock is held here).
  const ByteRange changed = ToBytes(change.affected, page_size_);
  lifecycle_->backend()->OnLayoutChange(file.id, changed, LayoutPhase::kBefore);
  const absl::Status applied = apply();
  lifecycle_->backend()->OnLayoutChange(file.id, changed, LayoutPhase::kAfter);
  if (!applied.ok()) {
    const bool ended = !result.revoked.empty() || !result.released.empty();
    return absl::Status(applied.code(),
                        absl::StrCat(change.description, " failed: ", applied.message(),
                                     ended ? "; leases already ended stay ended" : ""));
  }
  PB_LOG(INFO) << "layout " << reason << ": affected " << BytesText(change.affected, page_size_)
               << ", recalled [" << absl::StrJoin(result.recalled, ",") << "], released ["
               << absl::StrJoin(result.released, ",") << "], expired ["
               << absl::StrJoin(result.expired, ",") << "], revoked ["
               << absl::StrJoin(result.revoked, ",") << "], waited "
               << absl::FormatDuration(result.waited);
  if (hide_others) {
    auto keep_disclosed = [&disclosed](std::vector<LeaseId>& ids, uint32_t& count) {
      const size_t before = ids.size();
      std::erase_if(ids, [&disclosed](LeaseId id) { return !disclosed.contains(id); });
      count = static_cast<uint32_t>(before - ids.size());
    };
    keep_disclosed(result.recalled, result.undisclosed.recalled);
    keep_disclosed(result.released, result.undisclosed.released);
    keep_disclosed(result.expired, result.undisclosed.expired);
    keep_disclosed(result.revoked, result.undisclosed.revoked);
  }
  return result;
}

}  // namespace pinbroker
