// HostBackend: the "host" PinBackend. It holds a lease's bytes by locking them in memory (mlock)
// inside a shared mapping (mmap MAP_SHARED) of the lease's file in the broker, so the pages stay
// resident and at a stable physical address for local DMA users (devices and drivers that reach
// host memory directly) for as long as the lease lasts.
//
// Mappings and locks:
//   * One mapping per file and access (read-only, or read-write) covers the whole file as it was
//     when the mapping was made, from offset 0. Every lease of the file that fits in it is locked
//     inside it; a lease reaching past it (the file grew) gets a new mapping of the file's new
//     size, and the old one stays for the leases in it. A mapping goes with its last lease. Read
//     leases may use a read-write mapping.
//   * Locks are counted per page: overlapping leases lock a page once, and the last lease on a
//     page unlocks it (munlock, no unmap and so no TLB shootdown). pinned_bytes() counts each
//     page held once, however many leases and mappings hold it.
//   * A mapping's pages past the end of the file are never touched: only leases' pages, which lie
//     within the file when pinned, are locked, and the layout coordinator ends every lease on
//     pages a truncate or punch removes before it runs. When the file shrinks the kernel drops
//     the mapping's pages past the new end; when it grows again those offsets map the new pages.
//   * Each lock run splits the mapping's VMA (a locked range is a VMA of its own), so the backend
//     counts an upper bound of the VMAs it holds (1 per mapping + 2 per maximal locked run) and
//     refuses a pin that would exceed Options::max_vmas with RESOURCE_EXHAUSTED, long before the
//     kernel's vm.max_map_count, which the rest of the broker (allocators, thread stacks) needs.
//   * Each holder (PinSpec::holder, an identity) has a share of max_vmas:
//     Options::max_vmas_per_holder, half of max_vmas by default (8191 of the default 16382), so
//     one holder pinning many separate ranges cannot take the whole limit from the others. A
//     holder's use counts what its leases could split the mappings into, whatever the other
//     leases: 1 for each mapping it has a lease in, plus 2 for each distinct byte range it holds
//     in that mapping (a new lease is charged 3, 2 or 0: a range it holds already is free).
//     Unlike the run count, that never grows when a lease ends: a lease ending in the middle of
//     a run can leave the leases inside it as separate runs, each of which was already charged
//     as one, so the share bounds what a holder's leases can ever take, and the sum of the
//     holders' uses bounds vma_estimate(). A pin past its holder's share is refused with
//     RESOURCE_EXHAUSTED naming the holder, its use and the share, before anything is mapped or
//     locked; the charge comes back when the holder's last lease on that range (and mapping)
//     ends. The price: ranges that touch or overlap are charged apiece even while they form one
//     run (one-page pins of adjacent pages cost 2 each, though one run of them costs 2 in all).
//
// What it protects, and what it does not:
//   * It keeps the pages resident: no reclaim, swap-out or page-cache eviction while pinned.
//   * It does not stop anyone else's access. Other processes with their own mappings or
//     descriptors of the file keep reading and writing it; revoking a host pin only means the
//     broker stops keeping the pages resident. Nobody else holds the broker's mapping, so there
//     is nothing to take away from a holder.
//   * It does not stop a truncate or hole punch: the layout coordinator must release or revoke
//     the pin first (see PinBackend).
//   * Locked pages count against the broker's RLIMIT_MEMLOCK unless it has CAP_IPC_LOCK; Pin()
//     fails with RESOURCE_EXHAUSTED, saying so, when the limit is reached.
//
// Thread-safety: all methods are safe to call concurrently. The lease and mapping tables are
// guarded by mu_, never held across a system call; each mapping's lock counts are guarded by the
// mapping's own mutex, held across its mlock/munlock calls so that counts and locks agree. Lock
// order: a mapping's mutex, then mu_.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/btree_map.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/container/node_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "pinning/pin_backend.h"

namespace pinbroker {

// Byte ranges with a count per byte (ranges added minus ranges removed), as non-overlapping
// segments. Not thread-safe; HostBackend guards each instance.
class CountedRanges {
 public:
  // Pieces of [begin, end) that no range covers, in order.
  std::vector<ByteRange> Uncovered(uint64_t begin, uint64_t end) const;
  // How many more maximal covered runs there would be after Add(begin, end) (negative when it
  // joins runs).
  int64_t RunDeltaOfAdd(uint64_t begin, uint64_t end) const;
  void Add(uint64_t begin, uint64_t end);
  // Removes one count from every byte of [begin, end), which Add() must have covered. Returns the
  // maximal pieces no range covers any more; *run_delta is the change in covered runs.
  std::vector<ByteRange> Remove(uint64_t begin, uint64_t end, int64_t* run_delta);
  bool empty() const { return segments_.empty(); }
  size_t segment_count() const { return segments_.size(); }

 private:
  struct Segment {
    uint64_t end = 0;
    uint64_t count = 0;
  };
  void SplitAt(uint64_t at);
  bool RunEndsAt(uint64_t at) const;
  bool RunStartsAt(uint64_t at) const;

  std::map<uint64_t, Segment> segments_;  // Keyed by start.
};

class HostBackend final : public PinBackend {
 public:
  struct Options {
    // Most VMAs (upper bound, see above) the backend holds; 0 means DefaultMaxVmas().
    uint64_t max_vmas = 0;
    // Most VMAs one holder's leases may take (counted as above); 0 means half of max_vmas.
    uint64_t max_vmas_per_holder = 0;
  };
  // A quarter of /proc/sys/vm/max_map_count (65530 by default, so 16382), leaving the rest to the
  // broker's allocators, thread stacks and libraries; a quarter of 65530 if it cannot be read.
  static uint64_t DefaultMaxVmas();

  HostBackend() : HostBackend(Options{}) {}
  explicit HostBackend(const Options& options);
  HostBackend(const HostBackend&) = delete;
  HostBackend& operator=(const HostBackend&) = delete;
  // Unmaps (and so unlocks) every mapping still held.
  ~HostBackend() override;

  absl::string_view name() const override { return "host"; }

  // Locks spec.bytes of spec.fd in the file's shared mapping (writable for kReadWrite), mapping
  // the file first if no mapping of it covers the range. DAX files are mapped MAP_SYNC where the
  // filesystem supports it. Errors (nothing new stays mapped or locked on any):
  //   INVALID_ARGUMENT    bad spec (no fd or file, empty or unaligned range)
  //   OUT_OF_RANGE        the range reaches past the last page of the file
  //   PERMISSION_DENIED   spec.fd was not opened for spec.access
  //   FAILED_PRECONDITION the file's filesystem cannot be mmapped
  //   RESOURCE_EXHAUSTED  RLIMIT_MEMLOCK, memory, or max_vmas ran out (the message says which)
  absl::StatusOr<BackendPin> Pin(const PinSpec& spec) ABSL_LOCKS_EXCLUDED(mu_) override;

  // Both end the lease: its pages no other lease holds are unlocked, and its mapping is unmapped
  // if no other lease uses it. For host pins they are the same thing. NOT_FOUND for an unknown
  // (or already released or revoked) handle.
  absl::Status Release(uint64_t handle) ABSL_LOCKS_EXCLUDED(mu_) override;
  absl::Status Revoke(uint64_t handle) ABSL_LOCKS_EXCLUDED(mu_) override;

  // Bytes locked, each page counted once.
  uint64_t pinned_bytes() const ABSL_LOCKS_EXCLUDED(mu_) override;

  // Number of mappings (of files) held.
  uint64_t mapping_count() const ABSL_LOCKS_EXCLUDED(mu_);
  // Number of pins held.
  uint64_t lease_count() const ABSL_LOCKS_EXCLUDED(mu_);
  // The VMA bound counted against max_vmas, and max_vmas itself.
  uint64_t vma_estimate() const ABSL_LOCKS_EXCLUDED(mu_);
  uint64_t max_vmas() const { return max_vmas_; }
  // What `holder`'s leases count against its share (see above), and the share.
  uint64_t holder_vmas(absl::string_view holder) const ABSL_LOCKS_EXCLUDED(mu_);
  uint64_t max_vmas_per_holder() const { return max_vmas_per_holder_; }

  // Where the pin `handle`'s first byte is mapped in the broker, for tests that inspect
  // residency and contents. NOT_FOUND for an unknown handle. Valid only while the pin is held.
  absl::StatusOr<const void*> AddressForTesting(uint64_t handle) const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Mapping {
    Mapping(const FileId& f, void* a, uint64_t l, bool w)
        : file(f), addr(a), length(l), writable(w) {}
    const FileId file;
    void* const addr;
    const uint64_t length;
    const bool writable;

    absl::Mutex mu;
    // Unmapped (its last lease ended, or the pin that made it failed): use another.
    bool dead ABSL_GUARDED_BY(mu) = false;
    uint64_t leases ABSL_GUARDED_BY(mu) = 0;
    CountedRanges locked ABSL_GUARDED_BY(mu);  // File offsets.
    uint64_t vmas ABSL_GUARDED_BY(mu) = 1;     // Its share of vma_total_.
    // Per holder: its leases here and the distinct byte ranges ([begin, end)) they hold, with
    // how many of its leases hold each; what holder_vmas_ charges them for.
    struct HolderLeases {
      uint64_t leases = 0;
      absl::flat_hash_map<std::pair<uint64_t, uint64_t>, uint64_t> ranges;
    };
    // Nodes: a lease points at its holder's name here, which stays while the holder has a
    // lease in this mapping.
    absl::node_hash_map<std::string, HolderLeases> holders ABSL_GUARDED_BY(mu);
  };
  struct Lease {
    std::shared_ptr<Mapping> mapping;
    ByteRange bytes;
    const std::string* holder = nullptr;  // Its key in mapping->holders (guarded by its mu).
  };
  struct FileState {
    std::vector<std::shared_ptr<Mapping>> mappings;
    CountedRanges held;  // Every lease's bytes, for pinned_bytes_.
  };

  bool MapSyncUnsupported(uint64_t dev) const ABSL_LOCKS_EXCLUDED(mu_);
  // A live mapping of `file` covering [0, end), writable if `write`; null if none.
  std::shared_ptr<Mapping> FindMapping(const FileId& file, uint64_t end, bool write) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Maps `length` bytes of spec.fd from offset 0 for spec.access.
  absl::StatusOr<std::shared_ptr<Mapping>> MapFile(const PinSpec& spec, uint64_t length)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Unmaps `m`, which has no lease, and forgets it.
  void DropMapping(Mapping& m) ABSL_EXCLUSIVE_LOCKS_REQUIRED(m.mu) ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status VmaLimitError(const PinSpec& spec, uint64_t total, uint64_t more) const;
  absl::Status HolderShareError(const PinSpec& spec, uint64_t used, uint64_t more) const;
  // Gives `n` of `holder`'s charge back.
  void RefundLocked(absl::string_view holder, uint64_t n) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Ends the pin `handle`; `verb` ("release", "revoke") for messages.
  absl::Status Unpin(uint64_t handle, absl::string_view verb) ABSL_LOCKS_EXCLUDED(mu_);

  const uint64_t max_vmas_;
  const uint64_t max_vmas_per_holder_;
  mutable absl::Mutex mu_;
  uint64_t next_handle_ ABSL_GUARDED_BY(mu_) = 1;
  // Ordered, not hashed: a B-tree grows by nodes where a hash table doubles.
  absl::btree_map<uint64_t, Lease> leases_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<FileId, FileState> files_ ABSL_GUARDED_BY(mu_);
  uint64_t mapping_count_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t vma_total_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t pinned_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  // Each holder's use of its share (no entry: 0).
  absl::flat_hash_map<std::string, uint64_t> holder_vmas_ ABSL_GUARDED_BY(mu_);

  // Devices (st_dev) whose filesystem refused MAP_SYNC for a DAX file: later DAX mappings of
  // files there go straight to MAP_SHARED.
  absl::flat_hash_set<uint64_t> no_map_sync_devs_ ABSL_GUARDED_BY(mu_);
};

}  // namespace pinbroker
