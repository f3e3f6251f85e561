// Connection: the broker's end of one client's RDMA connection (rdma_cm, RC), tied to the
// client's session (`owner`). Its queue pair is where that session's leases' memory windows are
// bound, so their keys work on this connection only.
//
// It posts the broker's only work requests - IBV_WR_BIND_MW to grant a lease, IBV_WR_LOCAL_INV
// to take it back - one at a time, each signaled and waited for on the connection's own
// completion queue (completion channel + poll, bounded by a timeout). A bind or invalidation
// that fails or times out leaves the queue pair in the error state: the connection is then
// broken, `on_broken` is called, and whatever it bound is deallocated.
//
// Teardown is in two steps, always in this order, because destroying a queue pair with a bound
// type-2 window hangs for ~50 s on rxe: Close() deallocates every window (and per-lease region)
// and refuses new ones; Destroy() then destroys the queue pair, completion queue, channel and
// rdma_cm id.
//
// Thread-safety: safe to call concurrently; posts and teardown are serialized by one mutex,
// which may be held while a post's completion is awaited (bounded by the timeout).
#pragma once

#include <rdma/rdma_cma.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/verbs/rc_queue.h"
#include "pinning/lease.h"
#include "pinning/rdma/mapped_region.h"
#include "pinning/rdma/verbs_device.h"

namespace pinbroker::rdma {

class Connection {
 public:
  // Called (once, without the connection's lock) when a post failed or timed out.
  using BrokenCallback = std::function<void(Connection*, const std::string& reason)>;

  // Creates the completion channel, completion queue and RC queue pair for the connect request
  // `id` on `device`'s protection domain. Does not accept. Errors name the verbs call.
  static absl::StatusOr<std::shared_ptr<Connection>> Create(rdma_cm_id* id, VerbsDevice* device,
                                                            std::string owner, std::string peer,
                                                            BrokenCallback on_broken);
  // Releases whatever Close()/Destroy() have not (failure paths).
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  const std::string& owner() const { return owner_; }
  const std::string& peer() const { return peer_; }  // "10.77.0.2:40312"
  VerbsDevice* device() const { return device_; }
  rdma_cm_id* id() const { return id_; }
  uint32_t qp_num() const { return qp_num_; }

  // The connection was accepted (its queue pair is in RTS): binds may start. Reads the queue
  // pair's path MTU.
  void MarkEstablished() ABSL_LOCKS_EXCLUDED(mu_);
  // Waits up to `timeout` for MarkEstablished() (a client may pin as soon as its own side is
  // connected, a moment before the broker's event thread gets there). FAILED_PRECONDITION if it
  // does not come, or the connection broke or closed.
  absl::Status AwaitEstablished(absl::Duration timeout) ABSL_LOCKS_EXCLUDED(mu_);
  // The connection must not be used any more (e.g. its device failed): no more posts, and the
  // queue pair is moved to the error state.
  void MarkBroken() ABSL_LOCKS_EXCLUDED(mu_);
  // The device reported that the queue pair failed (a fatal, request or access error async
  // event): no more posts, but the queue pair is left alone. A device raises such an event
  // while it still answers the request that failed (rxe raises the access error before it sends
  // the NAK, and drops the NAK if the queue pair is moved to the error state meanwhile); the
  // device moves the queue pair to the error state itself once it has answered.
  void MarkFailed() ABSL_LOCKS_EXCLUDED(mu_);
  // Waits up to `bound` for the queue pair to be in the error state (polled every millisecond);
  // true if it is (or is already destroyed).
  bool AwaitErrorState(absl::Duration bound) const ABSL_LOCKS_EXCLUDED(mu_);
  bool established() const ABSL_LOCKS_EXCLUDED(mu_);
  uint32_t path_mtu() const ABSL_LOCKS_EXCLUDED(mu_);  // Bytes; 0 before ESTABLISHED.

  // Binds a new type-2 window over [address, address + length) of `mr` with `access` and
  // returns its rkey. `region`, if given, is the lease's own region under the window (`mr` is
  // its registration): the connection keeps it and releases it after the window. Errors:
  // FAILED_PRECONDITION if the connection is not established or is closed; RESOURCE_EXHAUSTED
  // if no window can be allocated; UNAVAILABLE (connection broken) if the bind failed or timed
  // out. On error nothing stays bound (and `region` is released).
  absl::StatusOr<uint32_t> BindWindow(uint64_t handle, LeaseId lease, ibv_mr* mr, uint64_t address,
                                      uint64_t length, int access, absl::Duration timeout,
                                      std::unique_ptr<MappedRegion> region = nullptr)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Invalidates (IBV_WR_LOCAL_INV, completion checked) and deallocates the window of `handle`;
  // just deallocates it when the queue pair is in error; then releases its lease region, if
  // any. OK when the window went with Close(). INTERNAL only if the window could not be
  // deallocated (it may still grant access).
  absl::Status UnbindWindow(uint64_t handle, absl::Duration timeout) ABSL_LOCKS_EXCLUDED(mu_);

  // A per-lease region (devices without type-2 windows): the connection keeps it so that
  // Close() takes its access away too. FAILED_PRECONDITION if closed (the region is destroyed).
  absl::Status AdoptLeaseRegion(uint64_t handle, LeaseId lease,
                                std::unique_ptr<MappedRegion> region) ABSL_LOCKS_EXCLUDED(mu_);
  // Deregisters the per-lease region of `handle`; OK if it went with Close().
  absl::Status DropLeaseRegion(uint64_t handle) ABSL_LOCKS_EXCLUDED(mu_);

  // Teardown step 1: refuses further binds, deallocates every window, then releases every
  // lease region, and returns the leases that lost their access. Idempotent (later calls
  // return nothing).
  std::vector<LeaseId> Close() ABSL_LOCKS_EXCLUDED(mu_);
  // Teardown step 2, after Close(): destroys the queue pair, completion queue and channel, and
  // (if `destroy_id`) the rdma_cm id. Call on the rdma_cm event thread, after acking the id's
  // events.
  void Destroy(bool destroy_id) ABSL_LOCKS_EXCLUDED(mu_);

  size_t window_count() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Window {
    ibv_mw* mw = nullptr;
    LeaseId lease = 0;
    std::unique_ptr<MappedRegion> region;  // A lease region under the window, if any.
  };
  struct LeaseRegion {
    std::unique_ptr<MappedRegion> region;
    LeaseId lease = 0;
  };

  Connection(rdma_cm_id* id, VerbsDevice* device, std::string owner, std::string peer,
             BrokenCallback on_broken)
      : id_(id),
        device_(device),
        owner_(std::move(owner)),
        peer_(std::move(peer)),
        on_broken_(std::move(on_broken)) {}

  // Posts `wr` (signaled, with a fresh wr_id) and waits for its completion until `timeout`.
  // Any failure leaves the queue pair in the error state and sets `broken_`.
  absl::Status PostAndWaitLocked(ibv_send_wr& wr, absl::string_view what, absl::Duration timeout)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<ibv_wc> AwaitCompletionLocked(uint64_t wr_id, absl::Time deadline)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Marks the connection broken (queue pair to the error state); returns whether it was not yet.
  bool BreakLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void NotifyBroken(const std::string& reason);

  rdma_cm_id* const id_;
  VerbsDevice* const device_;
  const std::string owner_;
  const std::string peer_;
  const BrokenCallback on_broken_;
  uint32_t qp_num_ = 0;  // Set by Create() before the connection is shared.

  mutable absl::Mutex mu_;
  // Channel, CQ and QP (common/verbs/rc_queue.h); reset by Destroy(), after Close().
  verbs::RcQueue queue_ ABSL_GUARDED_BY(mu_);
  bool established_ ABSL_GUARDED_BY(mu_) = false;
  bool broken_ ABSL_GUARDED_BY(mu_) = false;  // Queue pair in error: no posts.
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  bool destroyed_ ABSL_GUARDED_BY(mu_) = false;
  uint32_t path_mtu_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t next_wr_id_ ABSL_GUARDED_BY(mu_) = 1;
  bool cq_armed_ ABSL_GUARDED_BY(mu_) = false;
  absl::flat_hash_map<uint64_t, Window> windows_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint64_t, LeaseRegion> lease_regions_ ABSL_GUARDED_BY(mu_);
};

}  // namespace pinbroker::rdma
