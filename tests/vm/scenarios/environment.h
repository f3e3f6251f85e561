// The guest environment vm_scenarios runs in (tests/vm/README.md, "Contract"): the PB_* variables
// set by the guest's init, the kernel version, and what rxe0 can do (ODP), probed with verbs
// rather than inferred from the kernel's name.
//
// Thread-safety: VmEnv is plain data; the functions are safe from any thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace pinbroker::scenarios {

// A filesystem the scenarios run on, exported by the broker under `export_name`.
struct Filesystem {
  std::string name;         // "tmpfs", "ext4dax", "xfsdax": the bracketed part of scenario names.
  std::string export_name;  // The broker's export (same as name).
  std::string mount;        // "/mnt/tmpfs".
  bool dax = false;
};

// What the rxe device offers for on-demand paging (ibv_query_device_ex).
struct OdpProbe {
  bool probed = false;           // The device was found and queried.
  std::string error;             // Why not, if !probed.
  bool supported = false;        // IBV_ODP_SUPPORT in general_caps.
  uint32_t rc_caps = 0;          // per_transport_caps.rc_odp_caps.
  bool rc_read_write = false;    // RC READ and WRITE on demand: what fs-dax leases need.
  std::string Describe() const;  // "rxe0: ODP general_caps=0x1 rc_odp_caps=0xff".
};

struct VmEnv {
  std::string kernel;  // PB_KERNEL (uname -r if unset).
  int kernel_major = 0;
  int kernel_minor = 0;
  std::string bin_dir;   // PB_BIN: pinbrokerd lives there.
  std::string ip0, ip1;  // Broker side (rxe0) and client side (rxe1).
  std::string rxe0, rxe1;
  std::vector<Filesystem> filesystems;  // tmpfs first, then ext4dax, xfsdax.
  OdpProbe odp;                         // Of rxe0, the broker's device.
  std::string self_exe;                 // This program, for the helper processes it forks.

  const Filesystem* Find(const std::string& name) const;
  // The kernel is at least major.minor.
  bool KernelAtLeast(int major, int minor) const;
};

// Reads the environment (with the guest's defaults for unset variables) and probes rxe0.
VmEnv LoadEnv();

// Probes `device`'s ODP capabilities with ibv_query_device_ex.
OdpProbe ProbeOdp(const std::string& device);

}  // namespace pinbroker::scenarios
