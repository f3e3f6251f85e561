// VerbsBackend: the RDMA PinBackend. A lease pinned for RDMA (PinSpec::rdma) gets remote access
// to exactly its bytes through its owner's RDMA connection, and nothing else does.
//
// For each lease:
//   1. the owner's connection (ConnectionManager) must be attached and established;
//   2. a registration plan (registration_policy.h) lists the ways to register the file - pinned
//      where the kernel allows long-term pins, ODP where it refuses them and the device has ODP;
//   3. a cached region of the file (RegionCache) serving one of them is reused, or the plan's
//      candidates are registered in order until one works (the kernel's refusals are recorded
//      and, if nothing works, returned as FAILED_PRECONDITION saying what would work);
//   4. a type-2 memory window over exactly the lease's bytes, with exactly its access, is bound
//      on the owner's queue pair; the lease carries its rkey, the broker address of its first
//      byte, and the device's transfer constraints (rxe ODP: whole pages).
// Release and Revoke invalidate the window (completion checked) and deallocate it, then drop the
// region's window count; a region goes with its last window. When a connection goes, its
// windows are deallocated before its queue pair is destroyed and the engine is told which leases
// lost access (on_access_lost), so it ends them as revoked.
//
// Layout changes: before a truncate or hole punch, pinned regions covering the changed bytes go
// stale (no new windows); after it, they go with their last window. Leases overlapping the
// change have ended by then, so a stale region lives only as long as leases elsewhere in the
// file; new leases get a fresh region. ODP regions follow the file and need nothing.
//
// Thread-safety: safe to call concurrently. The backend's mutex guards its tables and is never
// held across a registration, a bind or an invalidation; connections serialize their own posts.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "pinning/pin_backend.h"
#include "pinning/rdma/connection_manager.h"
#include "pinning/rdma/file_mapping.h"
#include "pinning/rdma/region_cache.h"
#include "pinning/rdma/registration_policy.h"
#include "pinning/rdma/verbs_device.h"

namespace pinbroker::rdma {

struct VerbsOptions {
  std::vector<std::string> devices;                 // Empty: every usable device.
  std::string address;                              // Listen address; empty: 0.0.0.0.
  uint16_t port = 0;                                // 0: rdma_wire::kDefaultPort.
  absl::Duration verbs_timeout = absl::Seconds(5);  // Bind / invalidation completion bound.
  // Tests only: windows on shared file regions even where the device does not enforce window
  // bounds (rxe), to exercise the region cache on such a device. Never set in production: a
  // window's key would then reach the whole file.
  bool file_regions_despite_unbounded_windows = false;
};

// What GetInfo reports.
struct VerbsStatus {
  std::vector<DeviceCaps> devices;
  std::vector<Endpoint> endpoints;
  size_t connections = 0;
};

class VerbsBackend final : public PinBackend {
 public:
  // Ends the leases whose access went with their connection (ids, reason). Called without
  // any backend lock held; the engine then calls Revoke() on them, which succeeds.
  using AccessLostCallback = std::function<void(std::vector<LeaseId>, std::string reason)>;

  // Opens the devices (see OpenDevices). UNAVAILABLE when there is no RDMA device at all and
  // FAILED_PRECONDITION when none is usable; the message says why.
  static absl::StatusOr<std::unique_ptr<VerbsBackend>> Open(const VerbsOptions& options);
  // Shutdown(), then releases every region and the devices.
  ~VerbsBackend() override;

  // Starts accepting RDMA connections. `authenticate` maps a connect request's session and token
  // to the owner of its leases; `on_access_lost` ends leases whose connection went away.
  absl::Status Start(ConnectionManager::Authenticator authenticate,
                     AccessLostCallback on_access_lost);
  // Tears every connection down (windows before queue pairs) and closes the listener.
  // Idempotent; the backend still answers Release()/Revoke() afterwards.
  void Shutdown();

  absl::string_view name() const override { return "verbs"; }
  // RDMA pins only (spec.rdma). FAILED_PRECONDITION: no connection for the owner, no mode the
  // kernel and device allow (what was tried and what would work), rxe ODP over a path MTU
  // below 4096; RESOURCE_EXHAUSTED: locked-memory limits, windows; UNAVAILABLE: the connection
  // broke while binding. Nothing is left registered or bound on error.
  absl::StatusOr<BackendPin> Pin(const PinSpec& spec) ABSL_LOCKS_EXCLUDED(mu_) override;
  absl::Status Release(uint64_t handle) ABSL_LOCKS_EXCLUDED(mu_) override;
  absl::Status Revoke(uint64_t handle) ABSL_LOCKS_EXCLUDED(mu_) override;
  uint64_t pinned_bytes() const ABSL_LOCKS_EXCLUDED(mu_) override;
  void OnLayoutChange(const FileId& file, ByteRange changed, LayoutPhase phase)
      ABSL_LOCKS_EXCLUDED(mu_) override;
  std::vector<RegistrationInfo> Registrations(const FileId& file) const
      ABSL_LOCKS_EXCLUDED(mu_) override;

  VerbsStatus Status() const;
  // Tears down `owner`'s connection, if any (its session ended).
  void Disconnect(absl::string_view owner, std::string reason);
  std::string DescribeEndpoints() const;

 private:
  struct Grant {
    LeaseId lease = 0;
    std::shared_ptr<Connection> conn;
    bool window = true;   // The key is a window (else a lease region's own key).
    bool cached = false;  // The window is on cached file region `region`.
    RegionCache::Id region = 0;
    FileId file;
    ByteRange bytes;
    RegistrationMode mode = RegistrationMode::kPinned;
  };
  // The region registered (or found) for a lease, before its key is handed out.
  struct Registered {
    Candidate candidate;
    RegionCache::Id region = 0;         // File scope: the cache's id (one window counted).
    MappedRegion* mapped = nullptr;     // File scope: owned by the cache; else by `own`.
    std::unique_ptr<MappedRegion> own;  // Lease scope.
  };

  explicit VerbsBackend(OpenedDevices devices, VerbsOptions options)
      : devices_(std::move(devices)), options_(std::move(options)) {}

  // Steps 2-3 of the header comment.
  absl::StatusOr<Registered> Register(const PinSpec& spec, VerbsDevice* device, uint32_t path_mtu)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Registers a new region for `candidate`. A kernel refusal's errno rides on the error as a
  // payload (verbs_backend.cc: WithRefusalErrno), which Register() reads and strips.
  absl::StatusOr<Registered> RegisterNew(const PinSpec& spec, VerbsDevice* device,
                                         const Candidate& candidate, int fd)
      ABSL_LOCKS_EXCLUDED(mu_);
  // The file's shared mapping for lease regions (FileMapping), covering [0, end) and writable
  // if `writable`: the live one, or a new one mapped through `fd`. Errors carry the errno as
  // RegisterNew's do.
  absl::StatusOr<std::shared_ptr<const FileMapping>> LeaseMapping(const PinSpec& spec, int fd,
                                                                  bool writable, uint64_t end)
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status Unpin(uint64_t handle, absl::string_view verb) ABSL_LOCKS_EXCLUDED(mu_);
  void ReleaseRegionWindow(RegionCache::Id id) ABSL_LOCKS_EXCLUDED(mu_);
  void OnConnectionClosed(const std::string& owner, std::vector<LeaseId> lost,
                          const std::string& reason);

  OpenedDevices devices_;
  const VerbsOptions options_;
  std::unique_ptr<ConnectionManager> connections_;
  AccessLostCallback on_access_lost_;

  mutable absl::Mutex mu_;
  uint64_t next_handle_ ABSL_GUARDED_BY(mu_) = 1;
  absl::flat_hash_map<uint64_t, Grant> grants_ ABSL_GUARDED_BY(mu_);
  RegionCache regions_ ABSL_GUARDED_BY(mu_);
  uint64_t pinned_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  // Per (file, writable): the mapping the file's lease regions are registered in, alive while
  // one of them is.
  absl::flat_hash_map<std::pair<FileId, bool>, std::weak_ptr<const FileMapping>> mappings_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace pinbroker::rdma
