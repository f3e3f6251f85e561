#include "pinning/lease_lifecycle.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/log.h"

namespace pinbroker {

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

absl::Status LeaseLifecycle::Complete(const LeaseInfo& lease, bool revoke) {
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
  table_->Finish(lease.id);
  if (on_ended_) on_ended_(lease);
  return result;
}

}  // namespace pinbroker
