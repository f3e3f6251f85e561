// RdmaInfo: what the RDMA backend serving a broker reports about itself (GetInfo's devices,
// endpoints and connection count), as plain data, so that the gRPC edge shows it without
// knowing which backend produced it. The composition root (broker/broker.cc) makes the
// provider from the concrete backend.
//
// Thread-safety: plain values. A provider is called from any gRPC thread concurrently and must
// be safe for that.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace pinbroker {

struct RdmaDeviceInfo {
  std::string name;  // "rxe0"
  bool odp = false;  // On-demand paging for both reads and writes.
  std::vector<std::string> memory_window_types;
  std::vector<std::string> quirks;
  uint32_t active_mtu = 0;
  uint64_t max_mw = 0;
};

struct RdmaEndpointInfo {
  std::string device;
  std::string address;
  int port = 0;
};

struct RdmaInfo {
  std::vector<RdmaDeviceInfo> devices;
  std::vector<RdmaEndpointInfo> endpoints;
  size_t connections = 0;
};

// Reads the RDMA backend's current state; empty (null) when no RDMA backend serves pins.
using RdmaInfoProvider = std::function<RdmaInfo()>;

}  // namespace pinbroker
