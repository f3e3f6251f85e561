// ConnectionCore: one RC connection to pinbrokerd over rdma_cm, with the verbs objects the
// client needs (protection domain, completion channel + CQ, queue pair, a scratch page for
// atomics' results), the table of operations in flight, and an event thread that reaps
// completions and connection-manager events. Not part of the public API: RdmaConnection,
// LocalBuffer, PendingOp and RdmaLease (rdma_connection.h, rdma_lease.h) are its handles.
//
// The verbs objects are the kit's owners (common/verbs/); the operation records and local
// buffers are op_record.h and local_buffer.h; setup (resolve, connect) is in
// connection_setup.cc.
//
// Lifetime: shared. RdmaConnection owns the connection and closes it (Close(): drain, flush if
// the drain times out, disconnect, destroy the QP and CQ, stop the thread); buffers and pending
// operations keep the core (and so the protection domain and their memory registrations) alive
// after that. The QP is destroyed only once its operations have completed or been flushed.
//
// Broken state: the first error completion (an RC QP is then in the error state), a
// DISCONNECTED event, an operation's timeout or Break() mark the connection broken; it then
// disconnects (flushing what is in flight) and every later Post() fails with UNAVAILABLE
// naming the first cause.
//
// Thread-safety: every public method is safe to call concurrently. All mutable state is under
// mu_, a leaf lock (verbs calls made under it never call back). The event thread never runs
// user code; it completes OpRecords and LeaseGates, whose locks are leaves too and are taken
// only after mu_ is released.
#pragma once

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "clients/rdma/lease_gate.h"
#include "clients/rdma/local_buffer.h"
#include "clients/rdma/op_record.h"
#include "common/verbs/fd_events.h"
#include "common/verbs/owners.h"
#include "common/verbs/rc_queue.h"
#include "pinbroker/rdma_transfer_checks.h"
#include "pinbroker/rdma_wire.h"

namespace pinbroker::client::rdma_internal {

struct ConnectTarget {
  std::string address;  // Broker's IP address (or host name).
  uint16_t port = rdma_wire::kDefaultPort;
  std::string source_address;  // Local IP to bind; empty: the route decides.
};

struct CoreOptions {
  absl::Duration connect_timeout = absl::Seconds(10);
  uint32_t send_queue_depth = 128;  // Capped at the device's limit.
};

class ConnectionCore : public std::enable_shared_from_this<ConnectionCore> {
 public:
  // Resolves, connects with `attach` as private data and starts the event thread.
  static absl::StatusOr<std::shared_ptr<ConnectionCore>> Connect(
      const ConnectTarget& target, const rdma_wire::AttachRequest& attach,
      const CoreOptions& options);
  ~ConnectionCore();
  ConnectionCore(const ConnectionCore&) = delete;
  ConnectionCore& operator=(const ConnectionCore&) = delete;

  absl::StatusOr<std::shared_ptr<BufferImpl>> Allocate(size_t size);

  // Posts one signaled work request. FAILED_PRECONDITION once closed; the broken status
  // (UNAVAILABLE) once broken; RESOURCE_EXHAUSTED when the send queue is full.
  absl::StatusOr<std::shared_ptr<OpRecord>> Post(OpSpec spec) ABSL_LOCKS_EXCLUDED(mu_);

  // Marks the connection broken with `why` (the first cause is kept) and disconnects, which
  // moves the QP to the error state and flushes every operation in flight.
  void Break(const absl::Status& why) ABSL_LOCKS_EXCLUDED(mu_);

  // Stops new posts, waits up to `drain_timeout` for operations in flight (then breaks the
  // connection to flush them), disconnects and destroys the QP, CQ and event thread.
  // Idempotent. OK if everything drained; DEADLINE_EXCEEDED if something had to be flushed.
  absl::Status Close(absl::Duration drain_timeout) ABSL_LOCKS_EXCLUDED(mu_);

  // OK while usable; FAILED_PRECONDITION once closed; UNAVAILABLE with the cause once broken.
  absl::Status health() const ABSL_LOCKS_EXCLUDED(mu_);
  size_t outstanding() const ABSL_LOCKS_EXCLUDED(mu_);

  const std::string& device() const { return device_; }
  const std::string& local_address() const { return local_address_; }
  const std::string& peer() const { return peer_; }
  uint32_t path_mtu() const { return path_mtu_; }        // Bytes.
  uint64_t max_message() const { return max_message_; }  // Bytes.
  bool atomics() const { return atomics_; }
  ibv_pd* pd() const { return pd_.get(); }

 private:
  ConnectionCore() = default;

  absl::Status Setup(const ConnectTarget& target, const rdma_wire::AttachRequest& attach,
                     const CoreOptions& options);
  // Waits for the next rdma_cm event during setup (before the event thread runs).
  struct CmEvent {
    rdma_cm_event_type type;
    int status = 0;
    std::vector<uint8_t> private_data;
  };
  absl::StatusOr<CmEvent> NextCmEvent(absl::Time deadline);

  void EventLoop();
  void ReapCompletions();
  void HandleCmEvents();
  // Event thread: reaps completions until nothing is in flight or `bound` passes.
  void AwaitInFlightCompletions(absl::Duration bound);
  void Wake();

  // Set by Setup() before the event thread starts; immutable afterwards. Declared in creation
  // order, so that ~ConnectionCore destroys them in reverse: Close() has already reset the
  // queue (QP, CQ, completion channel); then the scratch MR, the PD, the rdma_cm id and its
  // event channel go, and the wake fd last.
  verbs::WakeFd wake_;
  verbs::CmEventChannel channel_;
  verbs::CmId id_;
  verbs::ProtectionDomain pd_;
  bool connected_ = false;  // ESTABLISHED was seen (so there is something to disconnect).
  std::string device_;
  std::string local_address_;
  std::string peer_;
  uint32_t path_mtu_ = 0;
  uint64_t max_message_ = 0;
  bool atomics_ = false;
  uint32_t sq_depth_ = 0;
  // Scratch page for atomics' 8-byte results: one slot per atomic in flight. Unmapped by
  // ~ConnectionCore after scratch_mr_ is deregistered.
  void* scratch_ = nullptr;
  verbs::MemoryRegion scratch_mr_;
  static constexpr size_t kScratchSlots = 512;
  // Completion channel, CQ and QP (created by Setup()). Its CQ event count is touched only by
  // the event thread; Close() resets it (under mu_) after joining that thread.
  verbs::RcQueue queue_;
  std::thread thread_;  // Started by Connect(); joined by Close().

  mutable absl::Mutex mu_;
  absl::flat_hash_map<uint64_t, std::shared_ptr<OpRecord>> outstanding_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint64_t, size_t> atomic_slot_ ABSL_GUARDED_BY(mu_);  // wr_id -> slot.
  std::vector<size_t> free_slots_ ABSL_GUARDED_BY(mu_);
  uint64_t next_wr_id_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status broken_ ABSL_GUARDED_BY(mu_);
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  bool qp_created_ ABSL_GUARDED_BY(mu_) = false;
  bool disconnect_sent_ ABSL_GUARDED_BY(mu_) = false;
  bool disconnected_ ABSL_GUARDED_BY(mu_) = false;  // DISCONNECTED seen.
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status close_status_ ABSL_GUARDED_BY(mu_);
};

}  // namespace pinbroker::client::rdma_internal
