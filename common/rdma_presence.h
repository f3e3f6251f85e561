// Why a host has no usable RDMA device, in words an operator can act on. Shared by the daemon
// (GetInfo's rdma_unavailable, its start-up log) and the clients (pinrdma info), so both say the
// same thing. No verbs dependency: it looks at sysfs only.
//
// Stateless; thread-safe.
#pragma once

#include <string>

namespace pinbroker {

// After ibv_get_device_list() failed with `err` (errno) or found no device (`err` 0): what is
// missing, e.g. "this kernel offers no RDMA to user space (/sys/class/infiniband_verbs is
// missing: the ib_uverbs module is not loaded, or the kernel has no RDMA support;
// ibv_get_device_list: Function not implemented)".
std::string NoRdmaDeviceReason(int err);

}  // namespace pinbroker
