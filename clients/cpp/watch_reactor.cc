#include "clients/cpp/watch_reactor.h"

#include <utility>

#include "clients/cpp/core.h"

namespace pinbroker::client::internal {

WatchReactor::WatchReactor(Core* core, uint64_t generation, v1::WatchRequest request,
                           bool wait_for_ready)
    : core_(core), generation_(generation), request_(std::move(request)) {
  context_.set_wait_for_ready(wait_for_ready);
}

void WatchReactor::Start(v1::PinBroker::Stub* stub) {
  stub->async()->Watch(&context_, &request_, this);
  StartRead(&event_);
  StartCall();
}

void WatchReactor::OnReadDone(bool ok) {
  if (!ok) return;  // The stream ended; OnDone() follows with its status.
  core_->OnWatchEvent(generation_, event_);
  event_.Clear();
  StartRead(&event_);
}

void WatchReactor::OnDone(const grpc::Status& status) {
  // Last use of `this`: the Core drops its reference here, which may destroy the reactor.
  core_->OnWatchDone(generation_, status);
}

}  // namespace pinbroker::client::internal
