#include "pinbroker/rdma_lease.h"

#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "clients/rdma/connection_core.h"
#include "clients/rdma/lease_gate.h"
#include "common/log.h"

namespace pinbroker::client {

using rdma_internal::ConnectionCore;
using rdma_internal::LeaseGate;

// How long to wait for the flush after breaking the connection because a drain timed out.
constexpr absl::Duration kFlushWait = absl::Seconds(10);

namespace {

// Waits for `gate` to drain until `deadline`; on timeout breaks the connection (flushing every
// operation in flight) and waits for the flush.
void Drain(LeaseGate& gate, ConnectionCore& core, absl::string_view lease_id, absl::Time deadline,
           absl::string_view why) {
  if (gate.AwaitDrained(deadline)) return;
  core.Break(absl::DeadlineExceededError(
      absl::StrCat("lease ", lease_id, ": ", gate.in_flight(),
                   " operations still in flight when it had to stop (", why, ")")));
  if (!gate.AwaitDrained(absl::Now() + kFlushWait)) {
    PB_LOG(ERROR) << "lease " << lease_id << ": " << gate.in_flight()
                  << " RDMA operations were not flushed";
  }
}

}  // namespace

// The part of an RdmaLease its Client callbacks share: they may run before the RdmaLease
// exists (an event that arrives with the Pin response) and while it is being destroyed.
struct RdmaLease::Shared {
  Shared(std::shared_ptr<ConnectionCore> core_in, RdmaPinOptions options_in)
      : core(std::move(core_in)), options(std::move(options_in)) {}

  // The RdmaLease now exists (or, with nullptr, never will / is going away).
  void Settle(RdmaLease* lease) ABSL_LOCKS_EXCLUDED(mu) {
    absl::MutexLock lock(&mu);
    owner = lease;
    settled = true;
  }
  RdmaLease* AwaitOwner() ABSL_LOCKS_EXCLUDED(mu) {
    absl::MutexLock lock(&mu);
    mu.Await(absl::Condition(&settled));
    return owner;
  }

  void OnRecall(Lease& lease, absl::string_view reason, absl::Time deadline) {
    if (options.stop_on_recall) {
      gate->Close(absl::FailedPreconditionError(absl::StrCat(
          "lease ", lease.id(), " is being recalled (", reason, "); no new RDMA operations")));
      absl::Time drain_deadline = absl::Now() + options.drain_timeout;
      if (deadline < drain_deadline) drain_deadline = deadline;
      Drain(*gate, *core, lease.id(), drain_deadline, "recalled");
      if (options.release_on_recall) {
        if (absl::Status s = lease.Release(); !s.ok()) {
          PB_LOG(WARNING) << "lease " << lease.id() << ": release after recall: " << s;
        }
      }
    }
    RdmaLease* self = AwaitOwner();
    if (self != nullptr && options.on_recall) options.on_recall(*self, reason, deadline);
  }

  void OnRevoked(Lease& lease, absl::string_view reason) {
    gate->MarkEnded(absl::NotFoundError(
        absl::StrCat("lease ", lease.id(), " was ", LeaseStateName(lease.state()),
                     reason.empty() ? "" : ": ", reason, "; its RDMA access is gone")));
    RdmaLease* self = AwaitOwner();
    if (self != nullptr && options.on_revoked) options.on_revoked(*self, reason);
  }

  const std::shared_ptr<LeaseGate> gate = std::make_shared<LeaseGate>();
  const std::shared_ptr<ConnectionCore> core;
  const RdmaPinOptions options;
  absl::Mutex mu;
  RdmaLease* owner ABSL_GUARDED_BY(mu) = nullptr;
  bool settled ABSL_GUARDED_BY(mu) = false;
};

absl::StatusOr<std::unique_ptr<RdmaLease>> RdmaLease::Pin(Client& client,
                                                          RdmaConnection& connection,
                                                          RdmaPinOptions options) {
  if (connection.session_id() != client.session_id()) {
    return absl::FailedPreconditionError(
        absl::StrCat("the RDMA connection is attached to session ", connection.session_id(),
                     ", not to this client's session ", client.session_id(),
                     "; a lease's key works only on its own session's connection"));
  }
  if (absl::Status s = connection.status(); !s.ok()) return s;
  if (options.drain_timeout < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("drain_timeout must not be negative");
  }
  auto shared = std::make_shared<Shared>(connection.core_, options);
  PinOptions pin;
  pin.export_name = options.export_name;
  pin.path = options.path;
  pin.offset = options.offset;
  pin.length = options.length;
  pin.access = options.access;
  pin.ttl = options.ttl;
  pin.wait_if_blocked = options.wait_if_blocked;
  pin.rdma = true;
  pin.release_on_recall = false;  // Shared::OnRecall releases, after draining.
  pin.on_recall = [shared](Lease& lease, absl::string_view reason, absl::Time deadline) {
    shared->OnRecall(lease, reason, deadline);
  };
  pin.on_revoked = [shared](Lease& lease, absl::string_view reason) {
    shared->OnRevoked(lease, reason);
  };
  absl::StatusOr<std::unique_ptr<Lease>> lease = client.Pin(pin);
  if (!lease.ok()) {
    shared->Settle(nullptr);
    return lease.status();
  }
  const v1::Lease info = (*lease)->info();
  if (!info.has_rdma() || info.rdma().length() == 0) {
    shared->Settle(nullptr);
    if (absl::Status s = (*lease)->Release(); !s.ok()) {
      PB_LOG(WARNING) << "lease " << info.lease_id() << ": release: " << s;
    }
    return absl::FailedPreconditionError(absl::StrCat(
        "the broker granted lease ", info.lease_id(), " without RDMA access (registration mode ",
        v1::RegistrationMode_Name(info.mode()),
        "); it was released. Is pinbrokerd running an RDMA backend?"));
  }
  std::unique_ptr<RdmaLease> result(new RdmaLease(shared, *std::move(lease), connection.core_,
                                                  connection.options().op_timeout,
                                                  connection.path_mtu(), connection.max_message()));
  shared->Settle(result.get());
  return result;
}

RdmaLease::RdmaLease(std::shared_ptr<Shared> shared, std::unique_ptr<Lease> lease,
                     std::shared_ptr<ConnectionCore> core, absl::Duration op_timeout,
                     uint32_t path_mtu, uint64_t max_message)
    : shared_(std::move(shared)),
      core_(std::move(core)),
      op_timeout_(op_timeout),
      path_mtu_(path_mtu),
      max_message_(max_message),
      rdma_(lease->info().rdma()),
      limits_(LeaseLimits::From(lease->info())),
      lease_(std::move(lease)) {}

RdmaLease::~RdmaLease() {
  shared_->Settle(nullptr);  // No user callback starts from now on.
  StopAndDrain(absl::FailedPreconditionError(absl::StrCat("lease ", id(), " is being released")));
  lease_.reset();  // Waits for a running callback; releases the lease if still held.
}

int RdmaLease::in_flight() const { return shared_->gate->in_flight(); }

void RdmaLease::StopAndDrain(const absl::Status& why) {
  shared_->gate->Close(why);
  Drain(*shared_->gate, *core_, id(), absl::Now() + shared_->options.drain_timeout, "released");
}

absl::Status RdmaLease::Release() {
  StopAndDrain(absl::FailedPreconditionError(absl::StrCat("lease ", id(), " is being released")));
  return lease_->Release();
}

absl::StatusOr<PendingOp> RdmaLease::Start(RdmaOpKind kind, uint64_t offset,
                                           const LocalBuffer* buffer, uint64_t buffer_offset,
                                           uint64_t length, uint64_t compare_add, uint64_t swap,
                                           const RdmaOpOptions& options) {
  if (absl::Status s = CheckLeaseOp(limits_, kind, offset, length, path_mtu_, max_message_);
      !s.ok()) {
    return s;
  }
  if (buffer != nullptr) {
    if (buffer->impl_ == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("lease ", id(), ": ", RdmaOpName(kind), " with an empty local buffer"));
    }
    if (buffer->impl_->core() != core_.get()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "lease ", id(), ": ", RdmaOpName(kind),
          " with a local buffer of another RDMA connection; allocate it on this lease's"));
    }
    if (absl::Status s = CheckLocalRange(kind, buffer->size(), buffer_offset, length); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("lease ", id(), ": ", s.message()));
    }
  }
  // The broker's view first (it moves as soon as an event is applied), then the gate, which
  // counts the operation in flight atomically with the recall/release check.
  const LeaseState state = lease_->state();
  if (state == LeaseState::kRecalling && shared_->options.stop_on_recall) {
    return absl::FailedPreconditionError(absl::StrCat(
        "lease ", id(), " is being recalled (", lease_->reason(), "); no new RDMA operations"));
  }
  if (!IsLive(state) && !options.after_end) {
    const std::string reason = lease_->reason();
    return absl::NotFoundError(absl::StrCat("lease ", id(), " was ", LeaseStateName(state),
                                            reason.empty() ? "" : ": ", reason,
                                            "; its RDMA access is gone"));
  }
  if (absl::Status s = shared_->gate->Admit(options.after_end); !s.ok()) return s;

  rdma_internal::OpSpec spec;
  spec.kind = kind;
  spec.lease_id = id();
  spec.remote_address = rdma_.remote_address() + offset;
  spec.rkey = rdma_.rkey();
  if (buffer != nullptr) spec.buffer = buffer->impl_;
  spec.local_offset = buffer_offset;
  spec.length = length;
  spec.compare_add = compare_add;
  spec.swap = swap;
  spec.gate = shared_->gate;
  absl::StatusOr<std::shared_ptr<rdma_internal::OpRecord>> record = core_->Post(std::move(spec));
  if (!record.ok()) {
    shared_->gate->Done();
    return record.status();
  }
  return PendingOp(*std::move(record), core_,
                   options.timeout > absl::ZeroDuration() ? options.timeout : op_timeout_);
}

absl::StatusOr<PendingOp> RdmaLease::StartWrite(uint64_t offset, const LocalBuffer& buffer,
                                                uint64_t buffer_offset, uint64_t length,
                                                const RdmaOpOptions& options) {
  return Start(RdmaOpKind::kWrite, offset, &buffer, buffer_offset, length, 0, 0, options);
}

absl::StatusOr<PendingOp> RdmaLease::StartRead(uint64_t offset, const LocalBuffer& buffer,
                                               uint64_t buffer_offset, uint64_t length,
                                               const RdmaOpOptions& options) {
  return Start(RdmaOpKind::kRead, offset, &buffer, buffer_offset, length, 0, 0, options);
}

absl::StatusOr<PendingOp> RdmaLease::StartFetchAdd(uint64_t offset, uint64_t add,
                                                   const RdmaOpOptions& options) {
  return Start(RdmaOpKind::kFetchAdd, offset, nullptr, 0, kAtomicBytes, add, 0, options);
}

absl::StatusOr<PendingOp> RdmaLease::StartCompareSwap(uint64_t offset, uint64_t expected,
                                                      uint64_t desired,
                                                      const RdmaOpOptions& options) {
  return Start(RdmaOpKind::kCompareSwap, offset, nullptr, 0, kAtomicBytes, expected, desired,
               options);
}

absl::Status RdmaLease::Write(uint64_t offset, const LocalBuffer& buffer, uint64_t buffer_offset,
                              uint64_t length, const RdmaOpOptions& options) {
  absl::StatusOr<PendingOp> op = StartWrite(offset, buffer, buffer_offset, length, options);
  if (!op.ok()) return op.status();
  return op->Wait();
}

absl::Status RdmaLease::Read(uint64_t offset, const LocalBuffer& buffer, uint64_t buffer_offset,
                             uint64_t length, const RdmaOpOptions& options) {
  absl::StatusOr<PendingOp> op = StartRead(offset, buffer, buffer_offset, length, options);
  if (!op.ok()) return op.status();
  return op->Wait();
}

absl::StatusOr<uint64_t> RdmaLease::FetchAdd(uint64_t offset, uint64_t add,
                                             const RdmaOpOptions& options) {
  absl::StatusOr<PendingOp> op = StartFetchAdd(offset, add, options);
  if (!op.ok()) return op.status();
  if (absl::Status s = op->Wait(); !s.ok()) return s;
  return op->atomic_result();
}

absl::StatusOr<uint64_t> RdmaLease::CompareSwap(uint64_t offset, uint64_t expected,
                                                uint64_t desired, const RdmaOpOptions& options) {
  absl::StatusOr<PendingOp> op = StartCompareSwap(offset, expected, desired, options);
  if (!op.ok()) return op.status();
  if (absl::Status s = op->Wait(); !s.ok()) return s;
  return op->atomic_result();
}

}  // namespace pinbroker::client
