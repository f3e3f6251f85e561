// HostBackend: the "host" PinBackend. It holds a lease's bytes by mapping them into the broker
// (mmap MAP_SHARED of the lease's file range) and locking them in memory (mlock), so the pages
// stay resident and at a stable physical address for local DMA users (devices and drivers that
// reach host memory directly) for as long as the lease lasts.
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
// Thread-safety: all methods are safe to call concurrently. The mapping table is guarded by an
// internal mutex that is never held across mmap/mlock/munlock/munmap.
#pragma once

#include <cstddef>
#include <cstdint>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "pinning/pin_backend.h"

namespace pinbroker {

class HostBackend final : public PinBackend {
 public:
  HostBackend() = default;
  HostBackend(const HostBackend&) = delete;
  HostBackend& operator=(const HostBackend&) = delete;
  // Unlocks and unmaps every pin still held.
  ~HostBackend() override;

  absl::string_view name() const override { return "host"; }

  // Maps spec.bytes of spec.fd (shared; writable for kReadWrite) and locks it. DAX files are
  // mapped MAP_SYNC where the filesystem supports it. Errors (nothing stays mapped on any):
  //   INVALID_ARGUMENT    bad spec (no fd or file, empty or unaligned range)
  //   OUT_OF_RANGE        the range reaches past the last page of the file
  //   PERMISSION_DENIED   spec.fd was not opened for spec.access
  //   FAILED_PRECONDITION the file's filesystem cannot be mmapped
  //   RESOURCE_EXHAUSTED  RLIMIT_MEMLOCK or memory ran out (the message says which limit)
  absl::StatusOr<BackendPin> Pin(const PinSpec& spec) ABSL_LOCKS_EXCLUDED(mu_) override;

  // Both unmap the pin, which also unlocks it: for host pins they are the same thing. NOT_FOUND
  // for an unknown (or already released or revoked) handle.
  absl::Status Release(uint64_t handle) ABSL_LOCKS_EXCLUDED(mu_) override;
  absl::Status Revoke(uint64_t handle) ABSL_LOCKS_EXCLUDED(mu_) override;

  uint64_t pinned_bytes() const ABSL_LOCKS_EXCLUDED(mu_) override;

  // Number of pins held.
  uint64_t mapping_count() const ABSL_LOCKS_EXCLUDED(mu_);

  // Where the pin `handle` is mapped in the broker, for tests that inspect residency and
  // contents. NOT_FOUND for an unknown handle. The address is valid only while the pin is held.
  absl::StatusOr<const void*> AddressForTesting(uint64_t handle) const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Mapping {
    void* addr = nullptr;
    size_t length = 0;
  };

  bool MapSyncUnsupported(uint64_t dev) const ABSL_LOCKS_EXCLUDED(mu_);

  // Removes `handle` from the table and unmaps it; `verb` ("release", "revoke") for messages.
  absl::Status Unpin(uint64_t handle, absl::string_view verb) ABSL_LOCKS_EXCLUDED(mu_);

  mutable absl::Mutex mu_;
  uint64_t next_handle_ ABSL_GUARDED_BY(mu_) = 1;
  absl::flat_hash_map<uint64_t, Mapping> mappings_ ABSL_GUARDED_BY(mu_);
  uint64_t pinned_bytes_ ABSL_GUARDED_BY(mu_) = 0;

  // Devices (st_dev) whose filesystem refused MAP_SYNC for a DAX file: later DAX pins of files
  // there go straight to MAP_SHARED.
  absl::flat_hash_set<uint64_t> no_map_sync_devs_ ABSL_GUARDED_BY(mu_);
};

}  // namespace pinbroker
