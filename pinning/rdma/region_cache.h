// RegionCache: the verbs backend's shared memory regions and their bookkeeping.
//
// A region maps a file from offset 0 and is registered once per (device, file, mode, writable);
// the leases on it each hold one memory window, and the region lives exactly as long as it has
// windows (the last window's release hands it back for deregistration). Three rules keep it
// safe:
//   * Superseded: a lease reaching past every region of its key gets a larger region; the
//     smaller one takes no new windows and goes with its last window.
//   * Stale: a layout change marks every pinned region of the file covering changed bytes stale
//     (kBefore) - it takes no new windows and goes with its last window, so no registration
//     outlives the leases that still need the pages it pinned. ODP regions follow the file and
//     never go stale.
//   * Registered during a change: a pinned region whose registration overlapped a layout change
//     of its file (begun after its ticket was taken, or still in progress) may hold pages the
//     change removes, so it is inserted stale.
//
// The cache decides nothing about verbs; it owns each region's resources as an opaque
// RegionResources (deregistration and unmapping happen in its destructor) and returns the ones
// to destroy to its caller, who destroys them without holding its lock.
//
// Thread-safety: none; the caller serializes every call (the verbs backend's mutex).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/container/flat_hash_map.h"
#include "pinning/file_info.h"
#include "pinning/lease.h"
#include "pinning/page_range.h"
#include "pinning/pin_backend.h"

namespace pinbroker::rdma {

// What a cached region owns. Destroying it releases the registration and the mapping.
class RegionResources {
 public:
  virtual ~RegionResources() = default;
};

struct RegionKey {
  std::string device;
  FileId file;
  RegistrationMode mode = RegistrationMode::kPinned;
  bool writable = false;

  friend bool operator==(const RegionKey&, const RegionKey&) = default;
  template <typename H>
  friend H AbslHashValue(H h, const RegionKey& k) {
    return H::combine(std::move(h), k.device, k.file, static_cast<int>(k.mode), k.writable);
  }
};

class RegionCache {
 public:
  using Id = uint64_t;
  using Released = std::vector<std::unique_ptr<RegionResources>>;

  struct Region {
    RegionKey key;
    uint64_t length = 0;  // Bytes of the file from offset 0.
    uint32_t windows = 0;
    bool stale = false;
    bool superseded = false;
    std::unique_ptr<RegionResources> resources;
  };

  // Taken before registering a new region of `file`, passed to Insert() or Abandon().
  struct Ticket {
    FileId file;
    uint64_t seq = 0;
  };

  RegionCache() = default;
  RegionCache(const RegionCache&) = delete;
  RegionCache& operator=(const RegionCache&) = delete;

  // A region of `key` covering [0, end) that takes new windows; adds a window to it.
  std::optional<Id> AcquireExisting(const RegionKey& key, uint64_t end);

  Ticket BeginRegistration(const FileId& file);
  // The registration failed or was not needed.
  void Abandon(const Ticket& ticket);
  // Adds the region `resources` of `length` bytes just registered for `key` (under `ticket`),
  // with one window, and returns it. Unless it is stale from the start (see the header comment),
  // older regions of `key` become superseded; those without windows are handed back. If a
  // region of `key` at least as long was inserted meanwhile, the window goes to it instead and
  // `resources` are handed back.
  Id Insert(const Ticket& ticket, const RegionKey& key, uint64_t length,
            std::unique_ptr<RegionResources> resources, Released* released);

  // nullptr for an unknown id.
  const Region* Get(Id id) const;
  // Drops one window of region `id`; hands the region back with its last window.
  void ReleaseWindow(Id id, Released* released);

  // A layout change of `changed` bytes of `file` is about to be applied / has been applied.
  void BeginLayoutChange(const FileId& file, ByteRange changed);
  void EndLayoutChange(const FileId& file);

  // The regions of `file`, oldest first.
  std::vector<RegistrationInfo> List(const FileId& file) const;
  size_t size() const { return regions_.size(); }
  // Every region, for shutdown (after every window is gone).
  Released TakeAll();

 private:
  struct FileLayout {
    uint64_t last_change_seq = 0;
    int changes_in_progress = 0;
    int registrations_in_progress = 0;
    std::vector<Id> regions;  // Oldest first.
  };
  void Erase(absl::btree_map<Id, Region>::iterator it, Released* released);
  void PruneFile(const FileId& file);

  Id next_id_ = 1;
  uint64_t seq_ = 0;
  absl::btree_map<Id, Region> regions_;
  absl::flat_hash_map<FileId, FileLayout> files_;
};

}  // namespace pinbroker::rdma
