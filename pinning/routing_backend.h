// RoutingBackend: one PinBackend over two. Pins asked for RDMA (PinSpec::rdma) go to the RDMA
// backend; every other pin goes to the host backend, even when RDMA devices exist. Without an
// RDMA backend, RDMA pins fail with FAILED_PRECONDITION saying why the broker has none.
// Layout-change notices go to both; registrations are both backends' together.
//
// Thread-safety: safe to call concurrently; its handle table has its own mutex, never held
// while a backend is called.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "pinning/pin_backend.h"

namespace pinbroker {

class RoutingBackend final : public PinBackend {
 public:
  // `rdma` may be null; then `no_rdma_reason` ("no RDMA device: ...") explains RDMA refusals.
  RoutingBackend(std::unique_ptr<PinBackend> host, std::unique_ptr<PinBackend> rdma,
                 std::string no_rdma_reason);
  RoutingBackend(const RoutingBackend&) = delete;
  RoutingBackend& operator=(const RoutingBackend&) = delete;

  // The RDMA backend's name when there is one ("verbs"), else the host backend's.
  absl::string_view name() const override;
  absl::StatusOr<BackendPin> Pin(const PinSpec& spec) ABSL_LOCKS_EXCLUDED(mu_) override;
  absl::Status Release(uint64_t handle) ABSL_LOCKS_EXCLUDED(mu_) override;
  absl::Status Revoke(uint64_t handle) ABSL_LOCKS_EXCLUDED(mu_) override;
  uint64_t pinned_bytes() const override;
  void OnLayoutChange(const FileId& file, ByteRange changed, LayoutPhase phase) override;
  std::vector<RegistrationInfo> Registrations(const FileId& file) const override;

  PinBackend* host() const { return host_.get(); }
  PinBackend* rdma() const { return rdma_.get(); }

 private:
  struct Route {
    PinBackend* backend = nullptr;
    uint64_t handle = 0;
  };
  absl::StatusOr<Route> Take(uint64_t handle, absl::string_view verb) ABSL_LOCKS_EXCLUDED(mu_);
  void Restore(uint64_t handle, Route route) ABSL_LOCKS_EXCLUDED(mu_);

  const std::unique_ptr<PinBackend> host_;
  const std::unique_ptr<PinBackend> rdma_;
  const std::string no_rdma_reason_;

  mutable absl::Mutex mu_;
  uint64_t next_handle_ ABSL_GUARDED_BY(mu_) = 1;
  absl::flat_hash_map<uint64_t, Route> routes_ ABSL_GUARDED_BY(mu_);
};

}  // namespace pinbroker
