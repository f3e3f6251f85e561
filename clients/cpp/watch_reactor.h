// WatchReactor: one Watch stream of a client's session, on gRPC's callback API. It hands every
// event and the stream's end to its Core; the Core decides what they mean and when to reopen.
// Not part of the public API.
//
// Lifetime: owned by shared_ptr. The Core holds one reference from before Start() until
// OnDone(), in which it drops it; whoever holds the last reference destroys the reactor, at the
// earliest when OnDone() runs (deleting a reactor in OnDone() is gRPC's documented pattern).
// The Core outlives the reactor's callbacks: Core::Close() waits for OnDone() before returning.
//
// Thread-safety: Start() once, from one thread; Cancel() from any thread, any number of times,
// before or after the stream ends. gRPC runs OnReadDone()/OnDone() on its callback threads,
// one at a time.
#pragma once

#include <grpcpp/client_context.h>
#include <grpcpp/support/client_callback.h>

#include <cstdint>

#include "pinbroker/v1/pinbroker.grpc.pb.h"

namespace pinbroker::client::internal {

class Core;

class WatchReactor final : public grpc::ClientReadReactor<v1::WatchEvent> {
 public:
  // `wait_for_ready`: wait for the broker to become reachable instead of failing at once.
  WatchReactor(Core* core, uint64_t generation, v1::WatchRequest request, bool wait_for_ready);

  void Start(v1::PinBroker::Stub* stub);
  void Cancel() { context_.TryCancel(); }

  void OnReadDone(bool ok) override;
  void OnDone(const grpc::Status& status) override;

 private:
  Core* const core_;
  const uint64_t generation_;
  const v1::WatchRequest request_;
  grpc::ClientContext context_;
  v1::WatchEvent event_;  // The read in flight writes here; only one read at a time.
};

}  // namespace pinbroker::client::internal
