#include "pinning/rdma/device_caps.h"

#include "absl/strings/str_cat.h"

namespace pinbroker::rdma {

const char kRxeOdpPlacementQuirk[] =
    "rxe: RDMA into an on-demand-paging (ODP) region lands in the wrong place, while the "
    "completion still reports success, unless every packet is one whole page at a page "
    "boundary: use path MTU 4096 (network device MTU 4200 or more) and page-aligned remote "
    "offsets and lengths, and page-aligned local buffers in your own ODP regions";

const char kWindowBoundsQuirk[] =
    "memory-window bounds are not enforced (an access through a window is checked only against "
    "its memory region): the broker registers a region of exactly each lease's bytes for its "
    "window, which costs one registration per lease";

std::vector<std::string> MemoryWindowTypeNames(const DeviceCaps& caps) {
  std::vector<std::string> out;
  if (caps.mw_type1) out.push_back("1");
  if (caps.mw_type2a) out.push_back("2A");
  if (caps.mw_type2b) out.push_back("2B");
  return out;
}

std::vector<std::string> DeviceQuirks(const DeviceCaps& caps) {
  std::vector<std::string> out;
  if (caps.soft_roce && caps.odp.supported) out.push_back(kRxeOdpPlacementQuirk);
  if (caps.has_type2_windows() && !caps.window_bounds_enforced) {
    out.push_back(absl::StrCat(caps.name, ": ", kWindowBoundsQuirk));
  }
  if (!caps.has_type2_windows()) {
    out.push_back(absl::StrCat(
        caps.name,
        " has no type-2 memory windows: each RDMA lease gets a region of its own, "
        "whose key is valid on every connection to this device, not only the owner's"));
  }
  return out;
}

}  // namespace pinbroker::rdma
