#include "pinning/rdma/mapped_region.h"

#include <sys/mman.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/errno_status.h"
#include "common/log.h"

namespace pinbroker::rdma {

MappedRegion::Result MappedRegion::Create(const Spec& spec) {
  Result result;
  const size_t length = static_cast<size_t>(spec.length);
  const off_t offset = static_cast<off_t>(spec.offset);
  const int prot = PROT_READ | (spec.writable ? PROT_WRITE : 0);
  const int populate = spec.populate ? MAP_POPULATE : 0;
  const absl::Time start = absl::Now();
  void* address = MAP_FAILED;
  if (spec.dax) {
    address =
        ::mmap(nullptr, length, prot, MAP_SHARED_VALIDATE | MAP_SYNC | populate, spec.fd, offset);
  }
  if (address == MAP_FAILED) {
    address = ::mmap(nullptr, length, prot, MAP_SHARED | populate, spec.fd, offset);
  }
  if (address == MAP_FAILED) {
    result.err = errno;
    result.registration_time = absl::Now() - start;
    result.status = ErrnoToStatus(
        result.err, absl::StrCat("mmap of ", length, " bytes at file offset ", spec.offset));
    return result;
  }
  // Registered file data is not the broker's to dump.
  ::madvise(address, length, MADV_DONTDUMP);
  ibv_mr* mr = ibv_reg_mr(spec.pd, address, length, spec.access);
  result.registration_time = absl::Now() - start;
  if (mr == nullptr) {
    result.err = errno;
    result.status = ErrnoToStatus(result.err, absl::StrCat("ibv_reg_mr of ", length, " bytes"));
    ::munmap(address, length);
    return result;
  }
  result.region.reset(new MappedRegion(address, spec.offset, spec.length, mr));
  return result;
}

MappedRegion::Result MappedRegion::CreateWithin(std::shared_ptr<const FileMapping> mapping,
                                                const Spec& spec) {
  Result result;
  const absl::Time start = absl::Now();
  mapping->Populate(spec.offset, spec.length);
  void* address = mapping->address() + spec.offset;
  ibv_mr* mr = ibv_reg_mr(spec.pd, address, static_cast<size_t>(spec.length), spec.access);
  result.registration_time = absl::Now() - start;
  if (mr == nullptr) {
    result.err = errno;
    result.status =
        ErrnoToStatus(result.err, absl::StrCat("ibv_reg_mr of ", spec.length, " bytes"));
    return result;
  }
  result.region.reset(new MappedRegion(address, spec.offset, spec.length, mr, std::move(mapping)));
  return result;
}

MappedRegion::~MappedRegion() {
  if (int err = ibv_dereg_mr(mr_); err != 0) {
    PB_LOG(ERROR) << "rdma: ibv_dereg_mr of a " << length_ << "-byte region at file offset "
                  << offset_ << " failed: " << ErrnoDescription(err)
                  << "; leaving it registered and mapped";
    if (shared_ != nullptr) new std::shared_ptr<const FileMapping>(shared_);  // Never unmapped.
    return;
  }
  if (shared_ == nullptr) ::munmap(address_, static_cast<size_t>(length_));
}

}  // namespace pinbroker::rdma
