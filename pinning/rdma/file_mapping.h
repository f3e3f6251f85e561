// FileMapping: one long-lived shared mapping of a file, from offset 0, in the broker, in which
// the per-lease regions of that file are registered where every lease needs a region of its own
// (devices that do not enforce memory-window bounds, such as rxe). A fresh mapping per lease
// would make every registration fault the lease's pages into empty page tables; inside one
// mapping the first lease on a range fills them (Populate) and later leases on the same range
// register pages that are already mapped.
//
// The mapping pins nothing and holds no registration: the kernel zaps its page-table entries for
// pages a truncate or punch removes, and the regions registered in it (MappedRegion) are what
// pin pages. It lives as long as a region registered in it does.
//
// Thread-safety: immutable after Create(); Populate() may be called from any thread.
#pragma once

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"

namespace pinbroker::rdma {

class FileMapping {
 public:
  struct Result {
    std::shared_ptr<FileMapping> mapping;
    int err = 0;  // On failure: mmap's errno.
    absl::Status status;
  };
  // Maps `length` bytes (page-aligned) of `fd` from offset 0, shared, readable, and writable if
  // `writable` (the descriptor must be open for writing then). Nothing is faulted in.
  static Result Create(int fd, uint64_t length, bool writable);
  ~FileMapping();
  FileMapping(const FileMapping&) = delete;
  FileMapping& operator=(const FileMapping&) = delete;

  uint8_t* address() const { return static_cast<uint8_t*>(address_); }
  uint64_t length() const { return length_; }
  bool writable() const { return writable_; }
  // Fills the page tables of the file's bytes [offset, offset + length) with read faults, which
  // map up to 16 pages each (MADV_POPULATE_READ, Linux >= 5.14; best effort: a registration of
  // the range faults in whatever is left).
  void Populate(uint64_t offset, uint64_t length) const;

 private:
  FileMapping(void* address, uint64_t length, bool writable)
      : address_(address), length_(length), writable_(writable) {}

  void* const address_;
  const uint64_t length_;
  const bool writable_;
};

}  // namespace pinbroker::rdma
