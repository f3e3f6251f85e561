// FileRegistry: the per-file state of every file that has leases or a layout change under way,
// found by FileId so that every path to one inode shares it.
//
// A FileState lives while someone holds a FileRef to it or its BusyRangeMap is not idle; the
// last FileRef to let go of an idle file forgets it, so the registry holds only busy files.
//
// Thread-safety: safe to call concurrently. FileState members carry their own contracts.
// Lock order: FileRegistry -> FileState::layout_mu -> BusyRangeMap.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/synchronization/mutex.h"
#include "pinbroker/clock.h"
#include "pinning/busy_range_map.h"
#include "pinning/export.h"
#include "pinning/file_info.h"

namespace pinbroker {

struct FileState {
  FileState(FileId file_id, Clock* clock) : id(file_id), busy(clock) {}

  const FileId id;
  BusyRangeMap busy;
  // Layout changes on one file run one at a time, in arrival order, and none holds a thread
  // while it waits for its turn: the running one has set layout_in_progress (a flag, not a held
  // lock), the others wait in layout_queue, and the one that finishes hands the file to the
  // first of them (LayoutCoordinator). A queued change whose deadline passes leaves the queue.
  struct QueuedLayout {
    uint64_t id = 0;
    absl::AnyInvocable<void()> enter;   // Its turn came: called outside layout_mu.
    Clock::TimerId deadline_timer = 0;  // 0: none.
  };
  // The descriptors the file's pins share (PinService::Pin): one per access, opened (with its
  // caller's credentials) by the first pin that needed it and closed with this state, when the
  // file has no lease left, as the host backend's mappings of it are. A later pin does not
  // open the file again, and so costs no open(2) and no fanotify permission round trip to the
  // guard; the kernel judges its caller's right to open the file instead
  // (Export::CheckAccess). A leaf lock: nothing else is taken under it.
  absl::Mutex descriptors_mu;
  std::shared_ptr<const OpenedFile> read_only ABSL_GUARDED_BY(descriptors_mu);
  std::shared_ptr<const OpenedFile> read_write ABSL_GUARDED_BY(descriptors_mu);

  absl::Mutex layout_mu;
  bool layout_in_progress ABSL_GUARDED_BY(layout_mu) = false;
  std::deque<QueuedLayout> layout_queue ABSL_GUARDED_BY(layout_mu);
  uint64_t next_queued_layout ABSL_GUARDED_BY(layout_mu) = 1;
};

class FileRegistry {
 public:
  // Shared use of one file's state; forgets the file on destruction if nothing else needs it.
  class FileRef {
   public:
    FileRef(FileRef&&) = default;
    FileRef& operator=(FileRef&&) = delete;
    FileRef(const FileRef&) = delete;
    FileRef& operator=(const FileRef&) = delete;
    ~FileRef();
    FileState* operator->() const { return state_.get(); }
    FileState& operator*() const { return *state_; }

   private:
    friend class FileRegistry;
    FileRef(FileRegistry* registry, std::shared_ptr<FileState> state)
        : registry_(registry), state_(std::move(state)) {}
    FileRegistry* registry_;
    std::shared_ptr<FileState> state_;
  };

  explicit FileRegistry(Clock* clock) : clock_(clock) {}
  FileRegistry(const FileRegistry&) = delete;
  FileRegistry& operator=(const FileRegistry&) = delete;

  // The state of `id`, created if absent.
  FileRef Acquire(const FileId& id) ABSL_LOCKS_EXCLUDED(mu_);
  // The state of `id` if the registry has it.
  std::optional<FileRef> Find(const FileId& id) ABSL_LOCKS_EXCLUDED(mu_);
  // Files currently tracked.
  size_t size() const ABSL_LOCKS_EXCLUDED(mu_);
  std::vector<FileId> Files() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void MaybeForget(const FileId& id) ABSL_LOCKS_EXCLUDED(mu_);

  Clock* const clock_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<FileId, std::shared_ptr<FileState>> files_ ABSL_GUARDED_BY(mu_);
};

}  // namespace pinbroker
