#include "pinning/routing_backend.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace pinbroker {

RoutingBackend::RoutingBackend(std::unique_ptr<PinBackend> host, std::unique_ptr<PinBackend> rdma,
                               std::string no_rdma_reason)
    : host_(std::move(host)), rdma_(std::move(rdma)), no_rdma_reason_(std::move(no_rdma_reason)) {}

absl::string_view RoutingBackend::name() const {
  return rdma_ != nullptr ? rdma_->name() : host_->name();
}

absl::StatusOr<BackendPin> RoutingBackend::Pin(const PinSpec& spec) {
  PinBackend* backend = host_.get();
  if (spec.rdma) {
    if (rdma_ == nullptr) {
      return absl::FailedPreconditionError(absl::StrCat(
          "this broker has no RDMA device (", no_rdma_reason_,
          "), so it cannot grant RDMA access; pin without rdma for a host pin, or use a broker "
          "on a machine with an RDMA device (backend auto or rdma)"));
    }
    backend = rdma_.get();
  }
  absl::StatusOr<BackendPin> pin = backend->Pin(spec);
  if (!pin.ok()) return pin;
  absl::MutexLock lock(&mu_);
  const uint64_t handle = next_handle_++;
  routes_[handle] = Route{backend, pin->handle};
  pin->handle = handle;
  return pin;
}

absl::StatusOr<RoutingBackend::Route> RoutingBackend::Take(uint64_t handle,
                                                           absl::string_view verb) {
  absl::MutexLock lock(&mu_);
  auto it = routes_.find(handle);
  if (it == routes_.end()) {
    return absl::NotFoundError(absl::StrCat("cannot ", verb, " pin handle ", handle,
                                            ": no such pin (never pinned, or already ended)"));
  }
  Route route = it->second;
  routes_.erase(it);
  return route;
}

void RoutingBackend::Restore(uint64_t handle, Route route) {
  absl::MutexLock lock(&mu_);
  routes_[handle] = route;
}

absl::Status RoutingBackend::Release(uint64_t handle) {
  absl::StatusOr<Route> route = Take(handle, "release");
  if (!route.ok()) return route.status();
  absl::Status done = route->backend->Release(route->handle);
  if (!done.ok() && !absl::IsNotFound(done)) Restore(handle, *route);  // Still held: retryable.
  return done;
}

absl::Status RoutingBackend::Revoke(uint64_t handle) {
  absl::StatusOr<Route> route = Take(handle, "revoke");
  if (!route.ok()) return route.status();
  absl::Status done = route->backend->Revoke(route->handle);
  if (!done.ok() && !absl::IsNotFound(done)) Restore(handle, *route);
  return done;
}

uint64_t RoutingBackend::pinned_bytes() const {
  return host_->pinned_bytes() + (rdma_ != nullptr ? rdma_->pinned_bytes() : 0);
}

void RoutingBackend::OnLayoutChange(const FileId& file, ByteRange changed, LayoutPhase phase) {
  host_->OnLayoutChange(file, changed, phase);
  if (rdma_ != nullptr) rdma_->OnLayoutChange(file, changed, phase);
}

std::vector<RegistrationInfo> RoutingBackend::Registrations(const FileId& file) const {
  std::vector<RegistrationInfo> out = host_->Registrations(file);
  if (rdma_ != nullptr) {
    std::vector<RegistrationInfo> more = rdma_->Registrations(file);
    out.insert(out.end(), more.begin(), more.end());
  }
  return out;
}

}  // namespace pinbroker
