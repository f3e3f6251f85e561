#include "pinning/lease_lifecycle.h"

#include <string>
#include <tuple>
#include <utility>

#include "absl/container/btree_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "common/log.h"

namespace pinbroker {

std::vector<LeaseTable::Recalled> LeaseLifecycle::Recall(const std::vector<LeaseId>& ids,
                                                         absl::string_view reason,
                                                         absl::Time deadline) {
  std::vector<LeaseTable::Recalled> recalled = table_->RecallMany(ids, reason, deadline);
  // One line per owner and file, not per lease: a fan-out over 10k leases would otherwise log
  // 10k lines before the first holder could act. Each lease's end is still logged on its own.
  struct Group {
    size_t count = 0;
    std::vector<LeaseId> named;  // The first kNamed.
  };
  constexpr size_t kNamed = 4;
  // Keyed by views into `recalled`, which outlives the map.
  absl::btree_map<std::tuple<absl::string_view, absl::string_view, absl::string_view>, Group>
      groups;
  for (const LeaseTable::Recalled& r : recalled) {
    if (!r.announced) continue;
    Group& group = groups[{r.lease.owner, r.lease.export_name, r.lease.path}];
    if (group.named.size() < kNamed) group.named.push_back(r.lease.id);
    ++group.count;
  }
  const std::string when = absl::FormatTime(deadline);
  for (const auto& [key, group] : groups) {
    const auto& [owner, export_name, path] = key;
    std::string names = absl::StrJoin(
        group.named, ", ", [this](std::string* out, LeaseId id) { out->append(table_->Name(id)); });
    if (group.count > group.named.size()) {
      absl::StrAppend(&names, " and ", group.count - group.named.size(), " more");
    }
    PB_LOG(INFO) << "recalled " << group.count << (group.count == 1 ? " lease" : " leases") << " ("
                 << names << "): owner=" << owner << " export=" << export_name << " path=" << path
                 << " deadline=" << when << " reason=\"" << reason << "\"";
  }
  return recalled;
}

absl::Status LeaseLifecycle::Release(absl::string_view owner, LeaseId id) {
  auto lease = table_->BeginRelease(owner, id);
  if (!lease.ok()) return lease.status();
  return Complete(*lease, /*revoke=*/false);
}

absl::Status LeaseLifecycle::Revoke(LeaseId id, std::string reason) {
  auto lease = table_->BeginRevoke(id, std::move(reason));
  if (!lease.ok()) return lease.status();
  return Complete(*lease, /*revoke=*/true);
}

void LeaseLifecycle::OnExpired(const LeaseInfo& lease) {
  Complete(lease, /*revoke=*/true).IgnoreError();  // Complete() logs failures.
}

std::vector<absl::Status> LeaseLifecycle::RevokeMany(const std::vector<LeaseId>& ids,
                                                     absl::string_view reason) {
  std::vector<absl::StatusOr<LeaseInfo>> claimed = table_->BeginRevokeMany(ids, reason);
  std::vector<absl::Status> out;
  out.reserve(ids.size());
  std::vector<LeaseId> ending;
  ending.reserve(ids.size());
  for (const absl::StatusOr<LeaseInfo>& lease : claimed) {
    if (!lease.ok()) {
      out.push_back(lease.status());
      continue;
    }
    out.push_back(Undo(*lease, /*revoke=*/true));
    ending.push_back(lease->id);
  }
  table_->FinishMany(ending);
  if (on_ended_) {
    for (const absl::StatusOr<LeaseInfo>& lease : claimed) {
      if (lease.ok()) on_ended_(*lease);
    }
  }
  return out;
}

absl::Status LeaseLifecycle::Complete(const LeaseInfo& lease, bool revoke) {
  absl::Status result = Undo(lease, revoke);
  table_->Finish(lease.id);
  if (on_ended_) on_ended_(lease);
  return result;
}

absl::Status LeaseLifecycle::Undo(const LeaseInfo& lease, bool revoke) {
  const absl::Status undone =
      revoke ? backend_->Revoke(lease.backend_handle) : backend_->Release(lease.backend_handle);
  absl::Status result = absl::OkStatus();
  if (undone.ok()) {
    if (auto file = files_->Find(lease.file)) {
      (*file)->busy.Remove(lease.id).IgnoreError();  // Absent only if never committed.
    }
  } else {
    result = absl::InternalError(
        absl::StrCat("backend '", backend_->name(), "' failed to ", revoke ? "revoke" : "release",
                     " lease ", lease.id, ": ", undone.message(), "; its bytes [", lease.offset,
                     ", ", lease.offset + lease.length, ") of file ", lease.file.ToString(),
                     " stay marked busy so no layout change can free them"));
    PB_LOG(ERROR) << result.message();
  }
  PB_LOG(INFO) << table_->Name(lease.id) << " " << LeaseStateName(lease.state)
               << ": owner=" << lease.owner << " export=" << lease.export_name
               << " path=" << lease.path << " bytes=[" << lease.offset << ", "
               << lease.offset + lease.length << ") reason=\"" << lease.reason << "\"";
  return result;
}

}  // namespace pinbroker
