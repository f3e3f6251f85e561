#include "pinning/rdma/verbs_device.h"

#include <arpa/inet.h>
#include <rdma/rdma_cma.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/rdma_presence.h"
#include "common/errno_status.h"
#include "common/log.h"

namespace pinbroker::rdma {
namespace {

constexpr uint32_t kRxeVendorId = 0xFFFFFF;

// The IPv4 addresses in the port's GID table (RoCE keeps them as ::ffff:a.b.c.d).
std::vector<std::string> Ipv4Gids(ibv_context* context, uint8_t port, int table_length) {
  std::vector<std::string> out;
  for (int i = 0; i < table_length; ++i) {
    ibv_gid gid;
    if (ibv_query_gid(context, port, i, &gid) != 0) continue;
    static constexpr uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (std::memcmp(gid.raw, kMapped, sizeof(kMapped)) != 0) continue;
    char text[INET_ADDRSTRLEN] = {};
    if (inet_ntop(AF_INET, gid.raw + 12, text, sizeof(text)) == nullptr) continue;
    if (std::find(out.begin(), out.end(), text) == out.end()) out.push_back(text);
  }
  return out;
}

}  // namespace

uint32_t MtuBytes(ibv_mtu mtu) {
  switch (mtu) {
    case IBV_MTU_256:
      return 256;
    case IBV_MTU_512:
      return 512;
    case IBV_MTU_1024:
      return 1024;
    case IBV_MTU_2048:
      return 2048;
    case IBV_MTU_4096:
      return 4096;
  }
  return 0;
}

VerbsDevice::~VerbsDevice() {
  if (pd_ != nullptr) {
    if (int err = ibv_dealloc_pd(pd_); err != 0) {
      PB_LOG(ERROR) << "rdma: ibv_dealloc_pd on " << caps_.name
                    << " failed: " << ErrnoDescription(err)
                    << " (something registered on it was not released)";
    }
  }
}

absl::StatusOr<DeviceCaps> ProbeDevice(ibv_context* context, uint8_t port) {
  DeviceCaps caps;
  caps.name = ibv_get_device_name(context->device);
  caps.port = port;
  ibv_device_attr_ex attr;
  std::memset(&attr, 0, sizeof(attr));
  if (int err = ibv_query_device_ex(context, nullptr, &attr); err != 0) {
    return ErrnoToStatus(err, absl::StrCat("ibv_query_device_ex(", caps.name, ")"));
  }
  const ibv_device_attr& base = attr.orig_attr;
  caps.soft_roce = base.vendor_id == kRxeVendorId || absl::StartsWith(caps.name, "rxe");
  // rxe checks a window access against the window's region only (rxe_resp.c check_rkey).
  caps.window_bounds_enforced = !caps.soft_roce;
  caps.odp.supported = (attr.odp_caps.general_caps & IBV_ODP_SUPPORT) != 0;
  const uint32_t rc = attr.odp_caps.per_transport_caps.rc_odp_caps;
  caps.odp.read = caps.odp.supported && (rc & IBV_ODP_SUPPORT_READ) != 0;
  caps.odp.write = caps.odp.supported && (rc & IBV_ODP_SUPPORT_WRITE) != 0;
  caps.odp.atomic = caps.odp.supported && (rc & IBV_ODP_SUPPORT_ATOMIC) != 0;
  const unsigned int flags = base.device_cap_flags;
  caps.mw_type1 = (flags & IBV_DEVICE_MEM_WINDOW) != 0;
  caps.mw_type2a = (flags & IBV_DEVICE_MEM_WINDOW_TYPE_2A) != 0;
  caps.mw_type2b = (flags & IBV_DEVICE_MEM_WINDOW_TYPE_2B) != 0;
  caps.max_mw = base.max_mw > 0 ? static_cast<uint64_t>(base.max_mw) : 0;
  caps.max_qp_rd_atom = base.max_qp_rd_atom > 0 ? static_cast<uint32_t>(base.max_qp_rd_atom) : 0;

  ibv_port_attr port_attr;
  std::memset(&port_attr, 0, sizeof(port_attr));
  if (int err = ibv_query_port(context, port, &port_attr); err != 0) {
    return ErrnoToStatus(err, absl::StrCat("ibv_query_port(", caps.name, ", ", port, ")"));
  }
  caps.active_mtu = MtuBytes(port_attr.active_mtu);
  caps.port_active = port_attr.state == IBV_PORT_ACTIVE;
  if (caps.port_active) {
    caps.ipv4_addresses = Ipv4Gids(context, port, port_attr.gid_tbl_len);
  }
  return caps;
}

absl::StatusOr<OpenedDevices> OpenDevices(const std::vector<std::string>& names) {
  int count = 0;
  ibv_device** list = ibv_get_device_list(&count);
  if (list == nullptr) {
    return absl::UnavailableError(absl::StrCat("no RDMA device: ", NoRdmaDeviceReason(errno)));
  }
  ibv_free_device_list(list);
  if (count == 0) {
    return absl::UnavailableError(absl::StrCat("no RDMA device: ", NoRdmaDeviceReason(0)));
  }
  // librdmacm's contexts: the ids it accepts carry these, so our PDs must live on them.
  ibv_context** contexts = rdma_get_devices(&count);
  if (contexts == nullptr) {
    return absl::UnavailableError(
        absl::StrCat("no RDMA device: rdma_get_devices failed: ", ErrnoDescription(errno)));
  }
  OpenedDevices out;
  std::vector<std::string> present;
  for (int i = 0; i < count; ++i) {
    ibv_context* context = contexts[i];
    const std::string name = ibv_get_device_name(context->device);
    present.push_back(name);
    if (!names.empty() && std::find(names.begin(), names.end(), name) == names.end()) continue;
    ibv_device_attr attr;
    if (int err = ibv_query_device(context, &attr); err != 0) {
      out.skipped.push_back(
          absl::StrCat(name, ": ibv_query_device failed: ", ErrnoDescription(err)));
      continue;
    }
    std::string why_not;
    for (uint8_t port = 1; port <= attr.phys_port_cnt; ++port) {
      auto caps = ProbeDevice(context, port);
      if (!caps.ok()) {
        why_not = std::string(caps.status().message());
        continue;
      }
      if (caps->ipv4_addresses.empty()) {
        why_not = absl::StrCat("no active port with an IPv4 address (port ", port,
                               caps->port_active ? " has no IPv4 address)" : " is not active)");
        continue;
      }
      ibv_pd* pd = ibv_alloc_pd(context);
      if (pd == nullptr) {
        why_not = absl::StrCat("ibv_alloc_pd failed: ", ErrnoDescription(errno));
        break;
      }
      out.devices.push_back(std::make_unique<VerbsDevice>(context, pd, *std::move(caps)));
      why_not.clear();
      break;
    }
    if (!why_not.empty()) out.skipped.push_back(absl::StrCat(name, ": ", why_not));
  }
  rdma_free_devices(contexts);
  for (const std::string& name : names) {
    if (std::find(present.begin(), present.end(), name) == present.end()) {
      return absl::NotFoundError(
          absl::StrCat("configured RDMA device '", name,
                       "' does not exist; present: ", absl::StrJoin(present, ", ")));
    }
  }
  return out;
}

}  // namespace pinbroker::rdma
