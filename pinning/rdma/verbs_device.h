// VerbsDevice: one RDMA device the broker uses: librdmacm's verbs context for it (shared with
// the rdma_cm ids it accepts), the broker's protection domain on it (every region, window and
// queue pair of the device lives in it) and its probed capabilities.
//
// OpenDevices() finds and probes the devices: which exist (ibv_get_device_list), which the
// configuration names, which have an active port with an IPv4 RoCE address, and what each can
// do (ibv_query_device_ex: ODP caps, memory-window types; ibv_query_port: active MTU).
//
// Thread-safety: immutable after OpenDevices(); the verbs objects it holds are thread-safe.
#pragma once

#include <infiniband/verbs.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "pinning/rdma/device_caps.h"

namespace pinbroker::rdma {

class VerbsDevice {
 public:
  VerbsDevice(ibv_context* context, ibv_pd* pd, DeviceCaps caps)
      : context_(context), pd_(pd), caps_(std::move(caps)) {}
  // Deallocates the protection domain: every region, window and queue pair on it must be gone.
  ~VerbsDevice();
  VerbsDevice(const VerbsDevice&) = delete;
  VerbsDevice& operator=(const VerbsDevice&) = delete;

  const std::string& name() const { return caps_.name; }
  ibv_context* context() const { return context_; }  // Owned by librdmacm; never closed.
  ibv_pd* pd() const { return pd_; }
  const DeviceCaps& caps() const { return caps_; }

 private:
  ibv_context* const context_;
  ibv_pd* const pd_;
  const DeviceCaps caps_;
};

struct OpenedDevices {
  std::vector<std::unique_ptr<VerbsDevice>> devices;
  // One sentence per device present but not used ("rxe1: no active port with an IPv4 address").
  std::vector<std::string> skipped;
};

// Opens the devices named in `names` (empty: every device), keeping those that are usable.
// UNAVAILABLE "no RDMA device: ibv_get_device_list failed: ..." when the machine has none (or
// no kernel support); NOT_FOUND when a named device does not exist; an empty `devices` when
// devices exist but none is usable (`skipped` says why).
absl::StatusOr<OpenedDevices> OpenDevices(const std::vector<std::string>& names);

// 256 ... 4096 for an ibv_mtu; 0 for an unknown value.
uint32_t MtuBytes(ibv_mtu mtu);

// The capabilities of the device behind `context`, using port `port` (for tests in the VM and
// for OpenDevices). Errors name the verbs call that failed.
absl::StatusOr<DeviceCaps> ProbeDevice(ibv_context* context, uint8_t port);

}  // namespace pinbroker::rdma
