#include "clients/rdma/connection_core.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "clients/rdma/completion_status.h"
#include "common/errno_status.h"
#include "common/log.h"

namespace pinbroker::client::rdma_internal {
namespace {

// How long a DISCONNECTED event from the broker lets operations in flight complete with their
// own status (a remote access error NAK can arrive after the broker's DREQ) before flushing.
constexpr absl::Duration kDisconnectSettle = absl::Milliseconds(500);
// How long Close() waits for the flush after breaking, and for the DISCONNECTED event.
constexpr absl::Duration kFlushWait = absl::Seconds(5);
constexpr absl::Duration kDisconnectWait = absl::Seconds(2);

}  // namespace

// --- ConnectionCore: operations --------------------------------------------------------------

absl::StatusOr<std::shared_ptr<BufferImpl>> ConnectionCore::Allocate(size_t size) {
  if (absl::Status s = health(); !s.ok()) return s;
  return BufferImpl::Create(shared_from_this(), size);
}

absl::StatusOr<std::shared_ptr<OpRecord>> ConnectionCore::Post(OpSpec spec) {
  const bool atomic = IsAtomic(spec.kind);
  if (atomic && !atomics_) {
    return absl::FailedPreconditionError(absl::StrCat("lease ", spec.lease_id, ": device ", device_,
                                                      " does not support atomic operations"));
  }
  auto record = std::make_shared<OpRecord>(spec);
  ibv_sge sge = {};
  ibv_send_wr wr = {};
  wr.sg_list = &sge;
  wr.num_sge = 1;
  wr.send_flags = IBV_SEND_SIGNALED;
  switch (spec.kind) {
    case RdmaOpKind::kWrite:
    case RdmaOpKind::kRead:
      wr.opcode = spec.kind == RdmaOpKind::kWrite ? IBV_WR_RDMA_WRITE : IBV_WR_RDMA_READ;
      wr.wr.rdma.remote_addr = spec.remote_address;
      wr.wr.rdma.rkey = spec.rkey;
      sge.addr = reinterpret_cast<uintptr_t>(spec.buffer->data() + spec.local_offset);
      sge.length = static_cast<uint32_t>(spec.length);
      sge.lkey = spec.buffer->lkey();
      break;
    case RdmaOpKind::kFetchAdd:
    case RdmaOpKind::kCompareSwap:
      wr.opcode = spec.kind == RdmaOpKind::kFetchAdd ? IBV_WR_ATOMIC_FETCH_AND_ADD
                                                     : IBV_WR_ATOMIC_CMP_AND_SWP;
      wr.wr.atomic.remote_addr = spec.remote_address;
      wr.wr.atomic.rkey = spec.rkey;
      wr.wr.atomic.compare_add = spec.compare_add;
      wr.wr.atomic.swap = spec.swap;
      sge.length = kAtomicBytes;
      sge.lkey = scratch_mr_->lkey;
      break;
  }

  absl::MutexLock lock(&mu_);
  if (closing_) {
    return absl::FailedPreconditionError(
        absl::StrCat("lease ", spec.lease_id, ": the RDMA connection to ", peer_, " is closed"));
  }
  if (!broken_.ok()) {
    return absl::Status(broken_.code(),
                        absl::StrCat("lease ", spec.lease_id, ": ", broken_.message()));
  }
  if (outstanding_.size() >= sq_depth_) {
    return absl::ResourceExhaustedError(
        absl::StrCat("lease ", spec.lease_id, ": the send queue is full (", sq_depth_,
                     " operations in flight); wait for some to complete"));
  }
  size_t slot = 0;
  if (atomic) {
    if (free_slots_.empty()) {
      return absl::ResourceExhaustedError(
          absl::StrCat("lease ", spec.lease_id, ": too many atomics in flight"));
    }
    slot = free_slots_.back();
    free_slots_.pop_back();
    sge.addr = reinterpret_cast<uintptr_t>(scratch_) + slot * kAtomicBytes;
  }
  const uint64_t wr_id = ++next_wr_id_;
  wr.wr_id = wr_id;
  ibv_send_wr* bad = nullptr;
  if (int rc = ibv_post_send(queue_.qp(), &wr, &bad); rc != 0) {
    if (atomic) free_slots_.push_back(slot);
    return ErrnoToStatus(rc, absl::StrCat("lease ", spec.lease_id, ": ibv_post_send"));
  }
  outstanding_.emplace(wr_id, record);
  if (atomic) atomic_slot_.emplace(wr_id, slot);
  return record;
}

void ConnectionCore::Break(const absl::Status& why) {
  absl::MutexLock lock(&mu_);
  if (broken_.ok()) {
    broken_ = absl::UnavailableError(absl::StrCat("the RDMA connection to ", peer_, " is broken: ",
                                                  why.message(), "; open a new connection"));
    PB_LOG(WARNING) << "RDMA connection " << local_address_ << " -> " << peer_
                    << " broken: " << why.message();
  }
  if (!disconnect_sent_ && qp_created_ && connected_) {
    disconnect_sent_ = true;
    // Moves the QP to the error state (flushing what is in flight) and sends a DREQ.
    if (rdma_disconnect(id_.get()) != 0) {
      PB_LOG(WARNING) << "rdma_disconnect: " << std::strerror(errno);
    }
  }
}

absl::Status ConnectionCore::health() const {
  absl::MutexLock lock(&mu_);
  if (closing_) {
    return absl::FailedPreconditionError(
        absl::StrCat("the RDMA connection to ", peer_, " is closed"));
  }
  return broken_;
}

size_t ConnectionCore::outstanding() const {
  absl::MutexLock lock(&mu_);
  return outstanding_.size();
}

// --- ConnectionCore: event thread ------------------------------------------------------------

void ConnectionCore::Wake() { wake_.Wake(); }

void ConnectionCore::EventLoop() {
  const int fds[] = {queue_.channel_fd(), channel_->fd, wake_.fd()};
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      if (stop_) return;
    }
    absl::StatusOr<std::vector<bool>> ready = verbs::PollReadable(fds, absl::InfiniteDuration());
    if (!ready.ok()) {
      PB_LOG(ERROR) << "RDMA event thread: " << ready.status().message();
      return;
    }
    if ((*ready)[2]) wake_.Drain();
    if ((*ready)[0]) ReapCompletions();
    if ((*ready)[1]) HandleCmEvents();
  }
}

void ConnectionCore::ReapCompletions() {
  ibv_cq* ev_cq = nullptr;
  void* ev_ctx = nullptr;
  while (ibv_get_cq_event(queue_.channel(), &ev_cq, &ev_ctx) == 0) queue_.AddUnackedEvents(1);
  if (queue_.unacked_events() >= 64) queue_.AckEvents();
  if (int rc = ibv_req_notify_cq(queue_.cq(), 0); rc != 0) {
    PB_LOG(ERROR) << "ibv_req_notify_cq: " << std::strerror(rc);
  }
  ibv_wc wcs[16];
  for (;;) {
    const int n = ibv_poll_cq(queue_.cq(), 16, wcs);
    if (n <= 0) {
      if (n < 0) {
        PB_LOG(ERROR) << "ibv_poll_cq failed";
      }
      return;
    }
    for (int i = 0; i < n; ++i) {
      const ibv_wc& wc = wcs[i];
      std::shared_ptr<OpRecord> record;
      uint64_t atomic_value = 0;
      bool first_error = false;
      std::string broken_because;
      {
        absl::MutexLock lock(&mu_);
        auto it = outstanding_.find(wc.wr_id);
        if (it == outstanding_.end()) continue;  // Not ours (e.g. a flushed receive).
        record = std::move(it->second);
        outstanding_.erase(it);
        if (auto slot = atomic_slot_.find(wc.wr_id); slot != atomic_slot_.end()) {
          std::memcpy(&atomic_value, static_cast<uint8_t*>(scratch_) + slot->second * kAtomicBytes,
                      sizeof(atomic_value));
          free_slots_.push_back(slot->second);
          atomic_slot_.erase(slot);
        }
        if (wc.status != IBV_WC_SUCCESS) {
          first_error = broken_.ok();
          broken_because = std::string(broken_.message());
        }
      }
      const OpSpec& spec = record->spec();
      absl::Status status =
          CompletionStatus(wc.status, spec.lease_id, spec.kind, spec.length, broken_because);
      if (first_error) Break(status);
      record->Complete(std::move(status), atomic_value);
    }
  }
}

void ConnectionCore::AwaitInFlightCompletions(absl::Duration bound) {
  const absl::Time give_up = absl::Now() + bound;
  for (;;) {
    ReapCompletions();
    if (outstanding() == 0) return;
    const absl::Duration left = give_up - absl::Now();
    if (left <= absl::ZeroDuration()) return;
    const int fds[] = {queue_.channel_fd()};
    if (!verbs::PollReadable(fds, std::min(left + absl::Milliseconds(1), absl::Milliseconds(20)))
             .ok()) {
      return;
    }
  }
}

void ConnectionCore::HandleCmEvents() {
  rdma_cm_event* event = nullptr;
  while (rdma_get_cm_event(channel_.get(), &event) == 0) {
    const rdma_cm_event_type type = event->event;
    rdma_ack_cm_event(event);
    switch (type) {
      case RDMA_CM_EVENT_DISCONNECTED: {
        bool closing;
        {
          absl::MutexLock lock(&mu_);
          disconnected_ = true;
          closing = closing_;
        }
        // A disconnect this side asked for by closing is not a failure.
        if (closing) break;
        // The broker tears a connection down as soon as its queue pair fails, e.g. after it
        // refused one of our operations with a remote access error. Its DREQ can overtake our
        // processing of that NAK: let what is in flight complete with its own status first
        // (bounded), so the refusal surfaces as the remote access error it is, not as a flush.
        AwaitInFlightCompletions(kDisconnectSettle);
        Break(absl::UnavailableError("the broker closed the RDMA connection"));
        break;
      }
      case RDMA_CM_EVENT_DEVICE_REMOVAL:
        Break(absl::UnavailableError(absl::StrCat("RDMA device ", device_, " was removed")));
        break;
      default:
        break;  // TIMEWAIT_EXIT and the like.
    }
  }
}

// --- ConnectionCore: teardown ----------------------------------------------------------------

absl::Status ConnectionCore::Close(absl::Duration drain_timeout) {
  {
    absl::MutexLock lock(&mu_);
    if (closing_) {
      mu_.Await(absl::Condition(&closed_));
      return close_status_;
    }
    closing_ = true;
  }
  absl::Status result;
  auto drained = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return outstanding_.empty(); };
  bool ok;
  size_t left;
  {
    absl::MutexLock lock(&mu_);
    ok = mu_.AwaitWithTimeout(absl::Condition(&drained), drain_timeout);
    left = outstanding_.size();
  }
  if (!ok) {
    result = absl::DeadlineExceededError(
        absl::StrCat(left, " RDMA operations did not complete within ",
                     absl::FormatDuration(drain_timeout), " of closing; they were flushed"));
    Break(result);
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(&drained), kFlushWait);
  }
  {
    absl::MutexLock lock(&mu_);
    if (!disconnect_sent_ && qp_created_ && connected_) {
      disconnect_sent_ = true;
      if (rdma_disconnect(id_.get()) != 0) {
        PB_LOG(WARNING) << "rdma_disconnect: " << std::strerror(errno);
      }
    }
    // The event thread sees the DISCONNECTED event (it only runs once connected).
    if (connected_ && thread_.joinable()) {
      mu_.AwaitWithTimeout(absl::Condition(&disconnected_), kDisconnectWait);
    }
    stop_ = true;
  }
  Wake();
  if (thread_.joinable()) {
    if (thread_.get_id() == std::this_thread::get_id()) {
      thread_.detach();  // Cannot happen through the public API; never join oneself.
    } else {
      thread_.join();
    }
  }
  // The event thread is gone: complete whatever was not flushed (its memory stays registered
  // through the record until the QP is destroyed below).
  absl::flat_hash_map<uint64_t, std::shared_ptr<OpRecord>> orphans;
  {
    absl::MutexLock lock(&mu_);
    orphans.swap(outstanding_);
    atomic_slot_.clear();
    // Queue pair, then CQ (acking its events), then the completion channel.
    qp_created_ = false;
    if (absl::Status s = queue_.Reset(); !s.ok()) {
      PB_LOG(WARNING) << s.message();
    }
  }
  for (auto& [wr_id, record] : orphans) {
    record->Complete(absl::UnavailableError(absl::StrCat("lease ", record->spec().lease_id,
                                                         ": the RDMA connection was closed")),
                     0);
  }
  absl::MutexLock lock(&mu_);
  close_status_ = result;
  closed_ = true;
  return result;
}

ConnectionCore::~ConnectionCore() {
  bool need_close;
  {
    absl::MutexLock lock(&mu_);
    need_close = !closed_;
  }
  if (need_close) Close(absl::ZeroDuration()).IgnoreError();
  // The members go in reverse order of declaration (connection_core.h); the scratch page's
  // registration must go before its memory.
  scratch_mr_.reset();
  if (scratch_ != nullptr) munmap(scratch_, static_cast<size_t>(sysconf(_SC_PAGESIZE)));
  if (pd_ != nullptr) {
    if (int rc = ibv_dealloc_pd(pd_.release()); rc != 0) {
      PB_LOG(WARNING) << "ibv_dealloc_pd: " << std::strerror(rc);
    }
  }
}

}  // namespace pinbroker::client::rdma_internal
