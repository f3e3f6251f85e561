#include "tests/vm/scenarios/environment.h"

#include <infiniband/verbs.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace pinbroker::scenarios {
namespace {

std::string Getenv(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return (v != nullptr && *v != '\0') ? v : fallback;
}

}  // namespace

std::string OdpProbe::Describe() const {
  if (!probed) return absl::StrCat("ODP not probed (", error, ")");
  return absl::StrFormat("ODP %s, rc_odp_caps=0x%x", supported ? "supported" : "absent", rc_caps);
}

const Filesystem* VmEnv::Find(const std::string& name) const {
  for (const Filesystem& fs : filesystems) {
    if (fs.name == name) return &fs;
  }
  return nullptr;
}

bool VmEnv::KernelAtLeast(int major, int minor) const {
  return kernel_major > major || (kernel_major == major && kernel_minor >= minor);
}

OdpProbe ProbeOdp(const std::string& device) {
  OdpProbe probe;
  int n = 0;
  ibv_device** list = ibv_get_device_list(&n);
  if (list == nullptr) {
    probe.error = absl::StrCat("ibv_get_device_list: ", std::strerror(errno));
    return probe;
  }
  ibv_device* found = nullptr;
  for (int i = 0; i < n; ++i) {
    if (device == ibv_get_device_name(list[i])) found = list[i];
  }
  if (found == nullptr) {
    probe.error = absl::StrCat("no RDMA device named ", device);
    ibv_free_device_list(list);
    return probe;
  }
  ibv_context* ctx = ibv_open_device(found);
  if (ctx == nullptr) {
    probe.error = absl::StrCat("ibv_open_device(", device, "): ", std::strerror(errno));
    ibv_free_device_list(list);
    return probe;
  }
  ibv_device_attr_ex attr = {};
  if (int err = ibv_query_device_ex(ctx, nullptr, &attr); err != 0) {
    probe.error = absl::StrCat("ibv_query_device_ex(", device, "): ", std::strerror(err));
  } else {
    probe.probed = true;
    probe.supported = (attr.odp_caps.general_caps & IBV_ODP_SUPPORT) != 0;
    probe.rc_caps = attr.odp_caps.per_transport_caps.rc_odp_caps;
    probe.rc_read_write = probe.supported && (probe.rc_caps & IBV_ODP_SUPPORT_READ) != 0 &&
                          (probe.rc_caps & IBV_ODP_SUPPORT_WRITE) != 0;
  }
  ibv_close_device(ctx);
  ibv_free_device_list(list);
  return probe;
}

VmEnv LoadEnv() {
  VmEnv env;
  utsname u = {};
  uname(&u);
  env.kernel = Getenv("PB_KERNEL", u.release);
  if (std::sscanf(env.kernel.c_str(), "%d.%d", &env.kernel_major, &env.kernel_minor) != 2) {
    env.kernel_major = env.kernel_minor = 0;
  }
  env.bin_dir = Getenv("PB_BIN", "/pb/bin");
  env.ip0 = Getenv("PB_IP0", "10.77.0.1");
  env.ip1 = Getenv("PB_IP1", "10.77.0.2");
  env.rxe0 = Getenv("PB_RXE0", "rxe0");
  env.rxe1 = Getenv("PB_RXE1", "rxe1");
  env.filesystems = {
      {"tmpfs", "tmpfs", Getenv("PB_TMPFS", "/mnt/tmpfs"), false},
      {"ext4dax", "ext4dax", Getenv("PB_EXT4DAX", "/mnt/ext4dax"), true},
      {"xfsdax", "xfsdax", Getenv("PB_XFSDAX", "/mnt/xfsdax"), true},
  };
  char self[4096];
  const ssize_t len = readlink("/proc/self/exe", self, sizeof(self) - 1);
  env.self_exe = len > 0 ? std::string(self, len) : "";
  env.odp = ProbeOdp(env.rxe0);
  return env;
}

}  // namespace pinbroker::scenarios
