// ArmedFiles: the file guard's armed files, found by file id, by the guard's descriptor (a
// lease-break signal's si_fd) and by fanotify file handle (a notification event's key), and
// whether the guard is stopping. Arming adds a record, disarming removes it; the listener and
// the workers look records up.
//
// Thread-safety: every method is safe to call concurrently; one mutex guards the maps and the
// flag, and is never held while calling out. Lookups by descriptor and key return the
// stopping flag read under the same lock.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "pinning/file_info.h"
#include "pinning/guard/guarded_file.h"

namespace pinbroker::guard {

class ArmedFiles {
 public:
  // Adds (or replaces) `file` under its id, its descriptor and, if `by_key`, its key.
  void Add(const std::shared_ptr<GuardedFile>& file, bool by_key) ABSL_LOCKS_EXCLUDED(mu_);
  // Removes `file` if it is the record registered under its id. False if it was not.
  bool Remove(const std::shared_ptr<GuardedFile>& file) ABSL_LOCKS_EXCLUDED(mu_);

  std::shared_ptr<GuardedFile> Find(const FileId& id) const ABSL_LOCKS_EXCLUDED(mu_);
  // The record whose guard descriptor is `fd`, or nullptr; `*stopping` as below.
  std::shared_ptr<GuardedFile> FindByFd(int fd, bool* stopping) const ABSL_LOCKS_EXCLUDED(mu_);
  // The records of `keys` (NotifyGroup keys). Sets `*unmatched` if a key is empty or matches no
  // record (an overflow, or a handle the guard cannot match). Returns nothing once stopping.
  std::vector<std::shared_ptr<GuardedFile>> FindByKeys(const std::vector<std::string>& keys,
                                                       bool* unmatched) const
      ABSL_LOCKS_EXCLUDED(mu_);
  std::vector<std::shared_ptr<GuardedFile>> All() const ABSL_LOCKS_EXCLUDED(mu_);

  size_t size() const ABSL_LOCKS_EXCLUDED(mu_);
  // Records with at least one live lease.
  size_t live() const ABSL_LOCKS_EXCLUDED(mu_);

  void BeginStop() ABSL_LOCKS_EXCLUDED(mu_);
  bool stopping() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  absl::flat_hash_map<FileId, std::shared_ptr<GuardedFile>> files_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<int, FileId> by_fd_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, FileId> by_key_ ABSL_GUARDED_BY(mu_);
};

}  // namespace pinbroker::guard
