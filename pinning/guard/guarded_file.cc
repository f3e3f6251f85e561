#include "pinning/guard/guarded_file.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "pinning/guard/file_lease.h"

namespace pinbroker::guard {

std::string GuardedFile::Name() const { return absl::StrCat(export_name, "/", path); }

ArmedMechanisms GuardedFile::Armed() {
  absl::MutexLock lock(&mu);
  return ArmedMechanisms{fanotify, open_perm, lease, writers_predate_mark};
}

absl::StatusOr<std::shared_ptr<const FileLayout>> GuardedFile::Sweep() {
  uint64_t sequence;
  {
    absl::MutexLock lock(&mu);
    sequence = ++sweeps;
  }
  absl::StatusOr<FileLayout> swept = SweepLayout(fd.get());
  if (!swept.ok()) return swept.status();
  swept->sequence = sequence;
  auto layout = std::make_shared<const FileLayout>(*std::move(swept));
  absl::MutexLock lock(&mu);
  if (latest == nullptr || latest->sequence < sequence) latest = layout;
  return layout;
}

void GuardedFile::SetBeforeLocked(LeaseView& view, std::shared_ptr<const FileLayout> sweep) {
  if (view.before == sweep.get()) return;
  if (view.before != nullptr) {
    auto held = held_sweeps.find(view.before);
    if (held != held_sweeps.end() && --held->second.views == 0) held_sweeps.erase(held);
  }
  view.before = sweep.get();
  if (sweep != nullptr) {
    HeldSweep& held = held_sweeps[sweep.get()];
    if (held.layout == nullptr) held.layout = std::move(sweep);
    ++held.views;
  }
}

bool GuardedFile::EraseViewLocked(LeaseId lease) {
  auto it = leases.find(lease);
  if (it == leases.end()) return false;
  SetBeforeLocked(it->second, nullptr);
  leases.erase(it);
  return true;
}

std::shared_ptr<const FileLayout> GuardedFile::ReusableSweep(const LayoutStamp& stamp) {
  absl::MutexLock lock(&mu);
  if (latest != nullptr && latest->settled && latest->stamp == stamp) return latest;
  return nullptr;
}

uint64_t GuardedFile::SweepsBegun() {
  absl::MutexLock lock(&mu);
  return sweeps;
}

std::shared_ptr<const FileLayout> GuardedFile::DenseView(uint64_t begun, uint64_t size) {
  absl::MutexLock lock(&mu);
  if (dense == nullptr || dense->sequence != begun + 1 || dense->size != size) {
    auto view = std::make_shared<FileLayout>();
    view->size = size;
    view->sequence = begun + 1;
    view->grant_view = true;
    dense = std::move(view);
  }
  return dense;
}

void GuardedFile::DropLease() {
  absl::MutexLock lock(&mu);
  if (!lease) return;
  ReleaseLease(fd.get());
  lease = false;
}

void HeldEvent::Allow() {
  if (answered_) return;
  answered_ = true;
  if (const absl::Status sent = group_->Allow(fd_.get()); !sent.ok()) {
    PB_LOG(WARNING) << "guard: " << sent;
  }
  fd_.reset();
}

int HeldEvent::Deny(int err) {
  if (answered_) return 0;
  answered_ = true;
  const absl::StatusOr<int> sent = group_->Deny(fd_.get(), err);
  if (!sent.ok()) {
    PB_LOG(WARNING) << "guard: " << sent.status();
  }
  fd_.reset();
  return sent.ok() ? *sent : 0;
}

}  // namespace pinbroker::guard
