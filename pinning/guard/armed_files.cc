#include "pinning/guard/armed_files.h"

namespace pinbroker::guard {

void ArmedFiles::Add(const std::shared_ptr<GuardedFile>& file, bool by_key) {
  absl::MutexLock lock(&mu_);
  files_[file->id] = file;
  by_fd_[file->fd.get()] = file->id;
  if (by_key) by_key_[file->key] = file->id;
}

bool ArmedFiles::Remove(const std::shared_ptr<GuardedFile>& file) {
  absl::MutexLock lock(&mu_);
  auto it = files_.find(file->id);
  if (it == files_.end() || it->second != file) return false;
  files_.erase(it);
  by_fd_.erase(file->fd.get());
  if (!file->key.empty()) by_key_.erase(file->key);
  return true;
}

std::shared_ptr<GuardedFile> ArmedFiles::Find(const FileId& id) const {
  absl::MutexLock lock(&mu_);
  auto it = files_.find(id);
  return it == files_.end() ? nullptr : it->second;
}

std::shared_ptr<GuardedFile> ArmedFiles::FindByFd(int fd, bool* stopping) const {
  absl::MutexLock lock(&mu_);
  *stopping = stopping_;
  auto it = by_fd_.find(fd);
  if (it == by_fd_.end()) return nullptr;
  auto file = files_.find(it->second);
  return file == files_.end() ? nullptr : file->second;
}

std::vector<std::shared_ptr<GuardedFile>> ArmedFiles::FindByKeys(
    const std::vector<std::string>& keys, bool* unmatched) const {
  std::vector<std::shared_ptr<GuardedFile>> out;
  absl::MutexLock lock(&mu_);
  if (stopping_) return out;
  for (const std::string& key : keys) {
    auto it = key.empty() ? by_key_.end() : by_key_.find(key);
    if (it == by_key_.end()) {
      *unmatched = true;
      continue;
    }
    auto file = files_.find(it->second);
    if (file != files_.end()) out.push_back(file->second);
  }
  return out;
}

std::vector<std::shared_ptr<GuardedFile>> ArmedFiles::All() const {
  absl::MutexLock lock(&mu_);
  std::vector<std::shared_ptr<GuardedFile>> out;
  for (const auto& [id, file] : files_) out.push_back(file);
  return out;
}

size_t ArmedFiles::size() const {
  absl::MutexLock lock(&mu_);
  return files_.size();
}

size_t ArmedFiles::live() const {
  absl::MutexLock lock(&mu_);
  size_t n = 0;
  for (const auto& [id, file] : files_) n += file->live.load() > 0 ? 1 : 0;
  return n;
}

void ArmedFiles::BeginStop() {
  absl::MutexLock lock(&mu_);
  stopping_ = true;
}

bool ArmedFiles::stopping() const {
  absl::MutexLock lock(&mu_);
  return stopping_;
}

}  // namespace pinbroker::guard
