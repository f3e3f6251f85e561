#include "pinning/rdma/file_mapping.h"

#include <sys/mman.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "common/errno_status.h"

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22  // Linux 5.14; older headers lack it.
#endif

namespace pinbroker::rdma {

FileMapping::Result FileMapping::Create(int fd, uint64_t length, bool writable) {
  Result result;
  const int prot = PROT_READ | (writable ? PROT_WRITE : 0);
  void* address = ::mmap(nullptr, static_cast<size_t>(length), prot, MAP_SHARED, fd, 0);
  if (address == MAP_FAILED) {
    result.err = errno;
    result.status =
        ErrnoToStatus(result.err, absl::StrCat("mmap of ", length, " bytes of the file"));
    return result;
  }
  // Registered file data is not the broker's to dump.
  ::madvise(address, static_cast<size_t>(length), MADV_DONTDUMP);
  result.mapping.reset(new FileMapping(address, length, writable));
  return result;
}

FileMapping::~FileMapping() { ::munmap(address_, static_cast<size_t>(length_)); }

void FileMapping::Populate(uint64_t offset, uint64_t length) const {
  if (offset >= length_) return;
  if (length > length_ - offset) length = length_ - offset;
  ::madvise(address() + offset, static_cast<size_t>(length), MADV_POPULATE_READ);
}

}  // namespace pinbroker::rdma
