#include "common/verbs/owners.h"

#include <cerrno>

#include "common/errno_status.h"

namespace pinbroker::verbs {

absl::StatusOr<ProtectionDomain> AllocPd(ibv_context* context) {
  ibv_pd* pd = ibv_alloc_pd(context);
  if (pd == nullptr) return ErrnoToStatus(errno, "ibv_alloc_pd");
  return ProtectionDomain(pd);
}

absl::StatusOr<MemoryRegion> RegisterMr(ibv_pd* pd, void* addr, size_t length, int access,
                                        absl::string_view what) {
  ibv_mr* mr = ibv_reg_mr(pd, addr, length, access);
  if (mr == nullptr) return ::pinbroker::ErrnoToStatus(errno, what);
  return MemoryRegion(mr);
}

}  // namespace pinbroker::verbs
