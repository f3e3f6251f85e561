#include "pinning/rdma/connection.h"

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/errno_status.h"
#include "common/log.h"
#include "common/verbs/fd_events.h"
#include "common/verbs/rc_queue.h"

namespace pinbroker::rdma {
namespace {

constexpr int kCqDepth = 32;
constexpr uint32_t kSendDepth = 16;

}  // namespace

absl::StatusOr<std::shared_ptr<Connection>> Connection::Create(rdma_cm_id* id, VerbsDevice* device,
                                                               std::string owner, std::string peer,
                                                               BrokenCallback on_broken) {
  std::shared_ptr<Connection> conn(
      new Connection(id, device, std::move(owner), std::move(peer), std::move(on_broken)));
  absl::MutexLock lock(&conn->mu_);
  verbs::RcQueueSpec spec;
  spec.cq_depth = kCqDepth;
  spec.max_send_wr = kSendDepth;
  spec.what = device->name();
  absl::StatusOr<verbs::RcQueue> queue = verbs::RcQueue::Create(id, device->pd(), spec);
  if (!queue.ok()) return queue.status();
  conn->queue_ = std::move(*queue);
  conn->qp_num_ = id->qp->qp_num;
  return conn;
}

Connection::~Connection() {
  bool destroyed;
  {
    absl::MutexLock lock(&mu_);
    destroyed = destroyed_;
  }
  if (destroyed) return;
  Close();
  Destroy(/*destroy_id=*/false);  // The id belongs to whoever failed to hand it over.
}

void Connection::MarkEstablished() {
  absl::MutexLock lock(&mu_);
  ibv_qp_attr attr;
  ibv_qp_init_attr init;
  std::memset(&attr, 0, sizeof(attr));
  if (ibv_query_qp(id_->qp, &attr, IBV_QP_PATH_MTU, &init) == 0) {
    path_mtu_ = MtuBytes(attr.path_mtu);
  }
  established_ = true;
}

absl::Status Connection::AwaitEstablished(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto settled = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return established_ || broken_ || closed_;
  };
  mu_.AwaitWithTimeout(absl::Condition(&settled), timeout);
  if (established_ && !broken_ && !closed_) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      "the RDMA connection of session ", owner_,
      broken_ || closed_ ? " broke; attach a new one"
                         : " is not established yet; retry once the client's connect completed"));
}

void Connection::MarkBroken() {
  absl::MutexLock lock(&mu_);
  BreakLocked();
}

void Connection::MarkFailed() {
  absl::MutexLock lock(&mu_);
  broken_ = true;
}

bool Connection::AwaitErrorState(absl::Duration bound) const {
  const absl::Time deadline = absl::Now() + bound;
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      if (id_->qp == nullptr || destroyed_) return true;
      ibv_qp_attr attr;
      ibv_qp_init_attr init;
      std::memset(&attr, 0, sizeof(attr));
      if (ibv_query_qp(id_->qp, &attr, IBV_QP_STATE, &init) == 0 && attr.qp_state == IBV_QPS_ERR) {
        return true;
      }
    }
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(absl::Milliseconds(1));
  }
}

bool Connection::established() const {
  absl::MutexLock lock(&mu_);
  return established_ && !broken_ && !closed_;
}

uint32_t Connection::path_mtu() const {
  absl::MutexLock lock(&mu_);
  return path_mtu_;
}

size_t Connection::window_count() const {
  absl::MutexLock lock(&mu_);
  return windows_.size() + lease_regions_.size();
}

bool Connection::BreakLocked() {
  if (broken_) return false;
  broken_ = true;
  if (id_->qp != nullptr && !destroyed_) {
    ibv_qp_attr attr;
    std::memset(&attr, 0, sizeof(attr));
    attr.qp_state = IBV_QPS_ERR;
    ibv_modify_qp(id_->qp, &attr, IBV_QP_STATE);
  }
  return true;
}

void Connection::NotifyBroken(const std::string& reason) {
  if (on_broken_) on_broken_(this, reason);
}

absl::StatusOr<ibv_wc> Connection::AwaitCompletionLocked(uint64_t wr_id, absl::Time deadline) {
  for (;;) {
    ibv_wc wc;
    const int n = ibv_poll_cq(queue_.cq(), 1, &wc);
    if (n < 0) return absl::InternalError("ibv_poll_cq failed");
    if (n == 1) {
      if (wc.wr_id == wr_id) return wc;
      continue;  // A straggler of an earlier, abandoned post.
    }
    if (!cq_armed_) {
      // Arm, then poll again: a completion that arrived before arming raises no event.
      if (int err = ibv_req_notify_cq(queue_.cq(), 0); err != 0) {
        return ErrnoToStatus(err, "ibv_req_notify_cq");
      }
      cq_armed_ = true;
      continue;
    }
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return absl::DeadlineExceededError("no completion");
    const int fds[] = {queue_.channel_fd()};
    absl::StatusOr<std::vector<bool>> ready =
        verbs::PollReadable(fds, left + absl::Milliseconds(1));
    if (!ready.ok()) return ready.status();
    if (!(*ready)[0]) continue;
    ibv_cq* event_cq = nullptr;
    void* context = nullptr;
    if (ibv_get_cq_event(queue_.channel(), &event_cq, &context) == 0) {
      ibv_ack_cq_events(event_cq, 1);
      cq_armed_ = false;
    }
  }
}

absl::Status Connection::PostAndWaitLocked(ibv_send_wr& wr, absl::string_view what,
                                           absl::Duration timeout) {
  wr.wr_id = next_wr_id_++;
  wr.next = nullptr;
  wr.send_flags |= IBV_SEND_SIGNALED;
  ibv_send_wr* bad = nullptr;
  if (int err = ibv_post_send(id_->qp, &wr, &bad); err != 0) {
    return ErrnoToStatus(err, absl::StrCat(what, ": ibv_post_send"));
  }
  auto wc = AwaitCompletionLocked(wr.wr_id, absl::Now() + timeout);
  if (!wc.ok()) {
    BreakLocked();
    return absl::UnavailableError(
        absl::StrCat(what, " on the RDMA connection of session ", owner_,
                     " got no completion within ", absl::FormatDuration(timeout), " (",
                     wc.status().message(), "); the connection is declared broken: reconnect"));
  }
  if (wc->status != IBV_WC_SUCCESS) {
    BreakLocked();
    return absl::UnavailableError(absl::StrCat(what, " on the RDMA connection of session ", owner_,
                                               " failed: ", ibv_wc_status_str(wc->status),
                                               " (vendor error ", wc->vendor_err,
                                               "); the connection is broken: reconnect"));
  }
  return absl::OkStatus();
}

absl::StatusOr<uint32_t> Connection::BindWindow(uint64_t handle, LeaseId lease, ibv_mr* mr,
                                                uint64_t address, uint64_t length, int access,
                                                absl::Duration timeout,
                                                std::unique_ptr<MappedRegion> region) {
  absl::StatusOr<uint32_t> result;
  bool newly_broken = false;
  {
    absl::MutexLock lock(&mu_);
    if (closed_) {
      return absl::FailedPreconditionError(
          absl::StrCat("the RDMA connection of session ", owner_, " is closed; attach a new one"));
    }
    if (!established_) {
      return absl::FailedPreconditionError(absl::StrCat("the RDMA connection of session ", owner_,
                                                        " is not established yet; retry once the "
                                                        "client's rdma_connect has completed"));
    }
    if (broken_) {
      return absl::UnavailableError(
          absl::StrCat("the RDMA connection of session ", owner_,
                       " is broken (its queue pair is in the error state); attach a new one"));
    }
    ibv_mw* mw = ibv_alloc_mw(device_->pd(), IBV_MW_TYPE_2);
    if (mw == nullptr) {
      const int err = errno;
      return absl::ResourceExhaustedError(
          absl::StrCat("ibv_alloc_mw on ", device_->name(), " failed: ", ErrnoDescription(err),
                       " (the device allows ", device_->caps().max_mw, " memory windows)"));
    }
    const uint32_t rkey = ibv_inc_rkey(mw->rkey);
    ibv_send_wr wr;
    std::memset(&wr, 0, sizeof(wr));
    wr.opcode = IBV_WR_BIND_MW;
    wr.bind_mw.mw = mw;
    wr.bind_mw.rkey = rkey;
    wr.bind_mw.bind_info.mr = mr;
    wr.bind_mw.bind_info.addr = address;
    wr.bind_mw.bind_info.length = length;
    wr.bind_mw.bind_info.mw_access_flags = access;
    const bool was_broken = broken_;
    absl::Status bound = PostAndWaitLocked(wr, "memory-window bind", timeout);
    newly_broken = !was_broken && broken_;
    if (bound.ok()) {
      mw->rkey = rkey;  // The next bind or invalidation of this window must name its key.
      windows_[handle] = Window{mw, lease, std::move(region)};
      result = rkey;
    } else {
      // The queue pair is in error now (or the post never started): nothing can still bind it.
      if (int err = ibv_dealloc_mw(mw); err != 0) {
        PB_LOG(ERROR) << "rdma: ibv_dealloc_mw after a failed bind failed: "
                      << ErrnoDescription(err);
      }
      result = bound;
    }
  }
  if (newly_broken) NotifyBroken(std::string(result.status().message()));
  return result;
}

absl::Status Connection::UnbindWindow(uint64_t handle, absl::Duration timeout) {
  bool newly_broken = false;
  std::string invalidation_error;
  absl::Status result;
  std::unique_ptr<MappedRegion> region;  // Released after the window, outside the lock.
  {
    absl::MutexLock lock(&mu_);
    auto it = windows_.find(handle);
    if (it == windows_.end()) return absl::OkStatus();  // Went with Close().
    Window window = std::move(it->second);
    windows_.erase(it);
    if (!broken_ && !closed_) {
      ibv_send_wr wr;
      std::memset(&wr, 0, sizeof(wr));
      wr.opcode = IBV_WR_LOCAL_INV;
      wr.invalidate_rkey = window.mw->rkey;
      absl::Status invalidated = PostAndWaitLocked(wr, "memory-window invalidation", timeout);
      newly_broken = broken_;
      if (!invalidated.ok()) invalidation_error = std::string(invalidated.message());
    }
    // Deallocating takes the key away whether or not the invalidation completed.
    if (int err = ibv_dealloc_mw(window.mw); err != 0) {
      result = absl::InternalError(absl::StrCat("ibv_dealloc_mw of the window of lease ",
                                                window.lease, " failed: ", ErrnoDescription(err),
                                                "; it may still grant access"));
      windows_[handle] = std::move(window);
    } else {
      region = std::move(window.region);
    }
  }
  region.reset();
  if (!invalidation_error.empty()) {
    PB_LOG(WARNING) << "rdma: " << invalidation_error << "; the window was deallocated instead";
  }
  if (newly_broken) NotifyBroken(invalidation_error);
  return result;
}

absl::Status Connection::AdoptLeaseRegion(uint64_t handle, LeaseId lease,
                                          std::unique_ptr<MappedRegion> region) {
  absl::MutexLock lock(&mu_);
  if (closed_ || broken_) {
    return absl::FailedPreconditionError(
        absl::StrCat("the RDMA connection of session ", owner_, " is closed; attach a new one"));
  }
  lease_regions_[handle] = LeaseRegion{std::move(region), lease};
  return absl::OkStatus();
}

absl::Status Connection::DropLeaseRegion(uint64_t handle) {
  std::unique_ptr<MappedRegion> region;
  {
    absl::MutexLock lock(&mu_);
    auto it = lease_regions_.find(handle);
    if (it == lease_regions_.end()) return absl::OkStatus();
    region = std::move(it->second.region);
    lease_regions_.erase(it);
  }
  region.reset();  // Deregisters: the key is dead once ibv_dereg_mr returns.
  return absl::OkStatus();
}

std::vector<LeaseId> Connection::Close() {
  std::vector<LeaseId> lost;
  std::vector<std::unique_ptr<MappedRegion>> regions;
  {
    absl::MutexLock lock(&mu_);
    if (closed_) return lost;
    closed_ = true;
    // Every window first: a region cannot be deregistered under a bound window.
    for (auto& [handle, window] : windows_) {
      if (int err = ibv_dealloc_mw(window.mw); err != 0) {
        PB_LOG(ERROR) << "rdma: ibv_dealloc_mw of lease " << window.lease
                      << "'s window failed: " << ErrnoDescription(err);
        (void)window.region.release();  // Registered under a live window: leave it be.
      }
      lost.push_back(window.lease);
      if (window.region != nullptr) regions.push_back(std::move(window.region));
    }
    windows_.clear();
    for (auto& [handle, region] : lease_regions_) {
      lost.push_back(region.lease);
      regions.push_back(std::move(region.region));
    }
    lease_regions_.clear();
  }
  regions.clear();  // Deregisters every lease region.
  return lost;
}

void Connection::Destroy(bool destroy_id) {
  absl::MutexLock lock(&mu_);
  if (destroyed_) return;
  destroyed_ = true;
  closed_ = true;
  // Queue pair, completion queue, channel (the windows went with Close()).
  if (absl::Status s = queue_.Reset(); !s.ok()) {
    PB_LOG(ERROR) << "rdma: tearing down the connection of session " << owner_ << ": "
                  << s.message();
  }
  if (destroy_id) rdma_destroy_id(id_);
}

}  // namespace pinbroker::rdma
