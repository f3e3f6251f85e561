#include "pinning/file_registry.h"

#include <algorithm>

namespace pinbroker {

FileRegistry::FileRef::~FileRef() {
  if (state_ == nullptr) return;  // Moved from.
  const FileId id = state_->id;
  state_.reset();
  registry_->MaybeForget(id);
}

FileRegistry::FileRef FileRegistry::Acquire(const FileId& id) {
  absl::MutexLock lock(&mu_);
  auto& slot = files_[id];
  if (slot == nullptr) slot = std::make_shared<FileState>(id, clock_);
  return FileRef(this, slot);
}

std::optional<FileRegistry::FileRef> FileRegistry::Find(const FileId& id) {
  absl::MutexLock lock(&mu_);
  auto it = files_.find(id);
  if (it == files_.end()) return std::nullopt;
  return FileRef(this, it->second);
}

void FileRegistry::MaybeForget(const FileId& id) {
  absl::MutexLock lock(&mu_);
  auto it = files_.find(id);
  // use_count() == 1: no FileRef exists (they are made only under mu_, so none can appear now).
  if (it == files_.end() || it->second.use_count() != 1) return;
  FileState& state = *it->second;
  bool layout_in_progress;
  {
    absl::MutexLock layout(&state.layout_mu);
    layout_in_progress = state.layout_in_progress;
  }
  if (!layout_in_progress && state.busy.idle()) files_.erase(it);
}

size_t FileRegistry::size() const {
  absl::MutexLock lock(&mu_);
  return files_.size();
}

std::vector<FileId> FileRegistry::Files() const {
  absl::MutexLock lock(&mu_);
  std::vector<FileId> out;
  for (const auto& [id, state] : files_) out.push_back(id);
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace pinbroker
