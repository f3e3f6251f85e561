// Owning handles for the verbs and rdma_cm objects that are not part of a connection's
// RcQueue: protection domain, memory registration, rdma_cm id and event channel. Each is a
// std::unique_ptr with a deleter that calls the library's destroy function, so an owner that
// declares them in creation order (channel, id, PD, MRs, RcQueue) destroys them in the order
// the library requires: queue pair before its PD and id, MRs before their PD, the id before
// its event channel.
//
// Thread-safety: as std::unique_ptr: the owner serializes access.
#pragma once

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

#include <memory>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace pinbroker::verbs {

struct PdDeleter {
  void operator()(ibv_pd* pd) const { ibv_dealloc_pd(pd); }
};
struct MrDeleter {
  void operator()(ibv_mr* mr) const { ibv_dereg_mr(mr); }
};
struct CmIdDeleter {
  void operator()(rdma_cm_id* id) const { rdma_destroy_id(id); }
};
struct CmChannelDeleter {
  void operator()(rdma_event_channel* channel) const { rdma_destroy_event_channel(channel); }
};

using ProtectionDomain = std::unique_ptr<ibv_pd, PdDeleter>;
using MemoryRegion = std::unique_ptr<ibv_mr, MrDeleter>;
using CmId = std::unique_ptr<rdma_cm_id, CmIdDeleter>;
using CmEventChannel = std::unique_ptr<rdma_event_channel, CmChannelDeleter>;

absl::StatusOr<ProtectionDomain> AllocPd(ibv_context* context);
// ibv_reg_mr of [addr, addr + length) with `access`; `what` names it in the error.
absl::StatusOr<MemoryRegion> RegisterMr(ibv_pd* pd, void* addr, size_t length, int access,
                                        absl::string_view what);

}  // namespace pinbroker::verbs
