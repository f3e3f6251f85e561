#include "common/rdma_presence.h"

#include <sys/stat.h>

#include <cstring>

#include "absl/strings/str_cat.h"

namespace pinbroker {

std::string NoRdmaDeviceReason(int err) {
  struct stat st;
  const std::string detail =
      err == 0 ? "" : absl::StrCat("; ibv_get_device_list: ", std::strerror(err));
  if (stat("/sys/class/infiniband_verbs", &st) != 0) {
    return absl::StrCat(
        "this kernel offers no RDMA to user space (/sys/class/infiniband_verbs is missing: the "
        "ib_uverbs module is not loaded, or the kernel has no RDMA support",
        detail, ")");
  }
  if (err == 0) {
    return "the kernel's RDMA subsystem has no device registered (none in /sys/class/infiniband: "
           "load the NIC's driver, or add a soft-RoCE device with 'rdma link add rxe0 type rxe "
           "netdev IFACE')";
  }
  return absl::StrCat("ibv_get_device_list failed: ", std::strerror(err));
}

}  // namespace pinbroker
