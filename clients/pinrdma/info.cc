// pinrdma info: what the broker offers for RDMA (devices with their quirks, endpoints, attached
// connections) and which RDMA devices this host has.
#include <infiniband/verbs.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "clients/pinrdma/commands.h"
#include "clients/pinrdma/session.h"
#include "common/rdma_presence.h"

namespace pinrdma {
namespace {

const char* PortStateName(ibv_port_state s) { return ibv_port_state_str(s); }

void PrintLocalDevices(Printer& out) {
  int n = 0;
  ibv_device** list = ibv_get_device_list(&n);
  if (list == nullptr || n == 0) {
    const int err = list == nullptr ? errno : 0;
    if (list != nullptr) ibv_free_device_list(list);
    out.Emit("local_devices",
             Fields().Num("count", 0).Str("why", pinbroker::NoRdmaDeviceReason(err)));
    return;
  }
  out.Emit("local_devices", Fields().Num("count", static_cast<uint64_t>(n)));
  for (int i = 0; i < n; ++i) {
    Fields f;
    f.Str("name", ibv_get_device_name(list[i]));
    if (ibv_context* ctx = ibv_open_device(list[i]); ctx != nullptr) {
      ibv_port_attr port = {};
      if (ibv_query_port(ctx, 1, &port) == 0) {
        f.Str("port1_state", PortStateName(port.state))
            .Num("active_mtu", port.active_mtu >= IBV_MTU_256 ? 128u << port.active_mtu : 0);
      }
      ibv_close_device(ctx);
    }
    out.Emit("local_device", f);
  }
  ibv_free_device_list(list);
}

}  // namespace

int RunInfo(const Options& options, Printer& out) {
  Session session;
  if (int exit = OpenSession(options, out, /*rdma=*/false, &session); exit != kExitOk) return exit;
  auto info = session.client->GetInfo();
  if (!info.ok()) return out.Error("GetInfo", info.status());
  out.Emit("broker",
           Fields()
               .Str("version", info->version())
               .Str("backend", info->backend())
               .Num("page_size", info->page_size())
               .Num("rdma_connections", info->rdma_connections())
               .Str("rdma", info->rdma_unavailable().empty()
                                ? "served"
                                : absl::StrCat("not served: ", info->rdma_unavailable())));
  for (const pinbroker::v1::DeviceInfo& d : info->devices()) {
    out.Emit("broker_device",
             Fields()
                 .Str("name", d.name())
                 .Bool("odp", d.odp())
                 .Str("memory_windows", absl::StrJoin(d.memory_window_types(), ","))
                 .Num("active_mtu", d.active_mtu())
                 .Num("max_mw", d.max_mw())
                 .Str("quirks", absl::StrJoin(d.quirks(), " | ")));
  }
  for (const pinbroker::v1::RdmaEndpoint& e : info->rdma_endpoints()) {
    out.Emit("endpoint",
             Fields().Str("device", e.device()).Str("address", e.address()).Num("port", e.port()));
  }
  PrintLocalDevices(out);
  return kExitOk;
}

}  // namespace pinrdma
