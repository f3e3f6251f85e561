// MappedRegion: a shared mapping of a file range in the broker plus its RDMA registration
// (ibv_reg_mr) in a protection domain. Used for the per-file regions that leases' memory windows
// are bound on, and for per-lease regions where windows are impossible or unbounded. A region
// either maps its range itself (Create) or is registered inside a FileMapping shared with the
// file's other lease regions (CreateWithin), which it keeps alive.
//
// Thread-safety: immutable after Create(); destroy it only when no window is bound on it.
#pragma once

#include <infiniband/verbs.h>

#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "pinning/rdma/file_mapping.h"
#include "pinning/rdma/region_cache.h"

namespace pinbroker::rdma {

class MappedRegion final : public RegionResources {
 public:
  struct Spec {
    ibv_pd* pd = nullptr;
    int fd = -1;          // Open for reading, and for writing if `writable`.
    uint64_t offset = 0;  // Page-aligned file offset of the first byte.
    uint64_t length = 0;  // Page-aligned.
    bool writable = false;
    bool dax = false;  // Try MAP_SYNC, as the host backend does.
    // MAP_POPULATE: fill the page tables before ibv_reg_mr pins the pages. For pinned
    // registrations: the kernel populates a shared mapping with read faults, which map up to
    // 16 pages each (fault-around), where ibv_reg_mr's page walk would fault page by page.
    bool populate = false;
    int access = 0;  // ibv_access_flags.
  };
  struct Result {
    std::unique_ptr<MappedRegion> region;
    int err = 0;          // On failure: errno of the failing call (mmap or ibv_reg_mr).
    absl::Status status;  // On failure: which call failed, how.
    absl::Duration registration_time;  // Of mmap and ibv_reg_mr, success or not.
  };

  static Result Create(const Spec& spec);
  // Registers the file's bytes [spec.offset, spec.offset + spec.length) inside `mapping`, which
  // must cover them (spec.fd, writable, dax and populate are not used: the mapping decides).
  // Fills the range's page tables first (FileMapping::Populate).
  static Result CreateWithin(std::shared_ptr<const FileMapping> mapping, const Spec& spec);
  // Deregisters, then unmaps (its own mapping) or lets go of the shared one. A failed
  // deregistration (a window still bound) is logged and the mapping is left in place rather than
  // unmapped under a live registration.
  ~MappedRegion() override;
  MappedRegion(const MappedRegion&) = delete;
  MappedRegion& operator=(const MappedRegion&) = delete;

  // The broker's address of file byte `offset()`.
  uint8_t* address() const { return static_cast<uint8_t*>(address_); }
  uint64_t offset() const { return offset_; }
  uint64_t length() const { return length_; }
  ibv_mr* mr() const { return mr_; }

 private:
  MappedRegion(void* address, uint64_t offset, uint64_t length, ibv_mr* mr,
               std::shared_ptr<const FileMapping> shared = nullptr)
      : address_(address), offset_(offset), length_(length), mr_(mr), shared_(std::move(shared)) {}

  void* const address_;
  const uint64_t offset_;
  const uint64_t length_;
  ibv_mr* const mr_;
  const std::shared_ptr<const FileMapping> shared_;  // Null: address_ is this region's mapping.
};

}  // namespace pinbroker::rdma
