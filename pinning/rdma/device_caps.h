// DeviceCaps: what the broker knows about one RDMA device after probing it at start-up
// (ibv_query_device_ex, ibv_query_port, the GID table), and the device behaviour clients must
// respect (quirks). The probe itself lives in verbs_device.cc; this header is plain data and
// pure functions, so the policy built on it is unit-tested without a device.
//
// Value types; thread-compatible.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace pinbroker::rdma {

// RC on-demand paging (IBV_ODP_SUPPORT in general_caps plus the rc_odp_caps bits).
struct OdpCaps {
  bool supported = false;  // IBV_ODP_SUPPORT
  bool read = false;       // Remote RDMA READ of an ODP region.
  bool write = false;      // Remote RDMA WRITE into one.
  bool atomic = false;     // Remote atomics on one.
};

struct DeviceCaps {
  std::string name;        // "rxe0"
  bool soft_roce = false;  // rdma_rxe: software RoCE, with the ODP quirk below.
  OdpCaps odp;
  bool mw_type1 = false;
  bool mw_type2a = false;
  bool mw_type2b = false;
  uint64_t max_mw = 0;
  uint8_t port = 1;  // The port the broker uses.
  bool port_active = false;
  uint32_t active_mtu = 0;                  // That port's active MTU, bytes.
  std::vector<std::string> ipv4_addresses;  // From the port's RoCE GIDs.
  uint32_t max_qp_rd_atom = 0;              // Incoming RDMA READ/atomic depth per QP.
  // Whether an access through a memory window is checked against the window's bounds. rxe
  // (measured on Linux 7.3) checks only the underlying region's: a window's key reaches the
  // whole region.
  bool window_bounds_enforced = true;

  bool has_type2_windows() const { return mw_type2a || mw_type2b; }
};

// "1", "2A", "2B" for the memory-window types the device supports.
std::vector<std::string> MemoryWindowTypeNames(const DeviceCaps& caps);

// One sentence per behaviour of the device that clients must respect (GetInfo quirks).
std::vector<std::string> DeviceQuirks(const DeviceCaps& caps);

// The text of rxe's ODP data-placement quirk, shared by DeviceQuirks and lease constraints.
extern const char kRxeOdpPlacementQuirk[];
// The text of the unenforced window bounds quirk.
extern const char kWindowBoundsQuirk[];

}  // namespace pinbroker::rdma
