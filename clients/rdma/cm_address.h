// Socket-address helpers for the RDMA client's rdma_cm setup: resolving a host (numeric or a
// name) and port, and printing an address as "10.0.0.1:4791" / "[fe80::1]:4791".
//
// Thread-safety: stateless; getaddrinfo and inet_ntop are thread-safe.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace pinbroker::client::rdma_internal {

// "host:port" ("[host]:port" for IPv6; "host" when the port is 0); "?" for null or a family
// other than IPv4/IPv6.
std::string AddressString(const sockaddr* sa);

// Resolves `host` and `port` into `out`. INVALID_ARGUMENT naming `what` and `host` if it
// does not resolve.
absl::Status ResolveAddress(const std::string& host, uint16_t port, sockaddr_storage* out,
                            absl::string_view what);

}  // namespace pinbroker::client::rdma_internal
