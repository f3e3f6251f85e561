// pinrdma hold: pin and hold a lease, printing one line per event, for operators and for the
// VM suite's recall/revoke scenarios.
//
//   - "pinned" first; then, every --write-interval (if set), a "write" of the pattern into the
//     selected range (one chunk by default) with its outcome;
//   - RECALLED: the library stops new operations, drains those in flight and releases the
//     lease; then "recalled" (released=true) and exit 0. With --ignore-recall: "recalled"
//     (ignored=true) and the writes go on, so the revocation shows;
//   - REVOKED / EXPIRED / lost: "revoked" (state, reason); if writes were enabled, one "probe"
//     write through the dead window (RdmaOpOptions::after_end), whose error shows that the
//     broker invalidated it; exit 4;
//   - a write that fails (e.g. PERMISSION_DENIED: the window was invalidated before the
//     REVOKED event arrived): "write" with ok=false, writes stop, and the REVOKED event is
//     awaited for 10 s (exit 4 if it comes, else 10 + the write's code);
//   - SIGINT/SIGTERM or --max-time: release, "released", exit 0.
#include <signal.h>

#include <atomic>
#include <deque>
#include <memory>
#include <optional>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "clients/pinrdma/commands.h"
#include "clients/pinrdma/pattern.h"
#include "clients/pinrdma/session.h"
#include "clients/pinrdma/transfer.h"

namespace pinrdma {
namespace {

namespace client = ::pinbroker::client;

constexpr absl::Duration kRevokeWait = absl::Seconds(10);

struct HoldEvent {
  enum Kind { kRecalled, kRevoked, kSignal };
  static HoldEvent Recalled(absl::string_view reason, absl::Time deadline) {
    HoldEvent e(kRecalled);
    e.reason = std::string(reason);
    e.deadline = deadline;
    return e;
  }
  static HoldEvent Revoked(absl::string_view reason, client::LeaseState state) {
    HoldEvent e(kRevoked);
    e.reason = std::string(reason);
    e.state = state;
    return e;
  }
  static HoldEvent Signal(int signal) {
    HoldEvent e(kSignal);
    e.signal = signal;
    return e;
  }

  Kind kind;
  std::string reason;
  absl::Time deadline = absl::InfiniteFuture();
  client::LeaseState state = client::LeaseState::kGranted;
  int signal = 0;

 private:
  explicit HoldEvent(Kind k) : kind(k) {}
};

// Events from the Client's callback thread and the signal thread to the main loop.
class EventQueue {
 public:
  void Push(HoldEvent e) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    events_.push_back(std::move(e));
  }
  std::optional<HoldEvent> Next(absl::Time deadline) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !events_.empty(); };
    if (!mu_.AwaitWithDeadline(absl::Condition(&ready), deadline)) return std::nullopt;
    HoldEvent e = std::move(events_.front());
    events_.pop_front();
    return e;
  }

 private:
  absl::Mutex mu_;
  std::deque<HoldEvent> events_ ABSL_GUARDED_BY(mu_);
};

// Waits for SIGINT/SIGTERM (blocked by main() before any thread started) and queues them.
class SignalThread {
 public:
  explicit SignalThread(EventQueue& queue) : thread_([this, &queue] { Loop(queue); }) {}
  ~SignalThread() {
    stop_ = true;
    thread_.join();
  }

 private:
  void Loop(EventQueue& queue) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    const timespec tick = {0, 200 * 1000 * 1000};
    while (!stop_) {
      const int sig = sigtimedwait(&set, nullptr, &tick);
      if (sig > 0) queue.Push(HoldEvent::Signal(sig));
    }
  }

  std::atomic<bool> stop_{false};
  std::thread thread_;
};

class Holder {
 public:
  Holder(const Options& options, Printer& out) : options_(options), out_(out) {}

  int Run() {
    if (int exit = OpenSession(options_, out_, /*rdma=*/true, &session_); exit != kExitOk) {
      return exit;
    }
    client::RdmaPinOptions pin;
    pin.stop_on_recall = !options_.ignore_recall;
    pin.release_on_recall = !options_.ignore_recall;
    pin.on_recall = [this](client::RdmaLease&, absl::string_view reason, absl::Time deadline) {
      queue_.Push(HoldEvent::Recalled(reason, deadline));
    };
    pin.on_revoked = [this](client::RdmaLease& lease, absl::string_view reason) {
      queue_.Push(HoldEvent::Revoked(reason, lease.state()));
    };
    if (int exit = PinLease(options_, out_, session_, std::move(pin), &lease_); exit != kExitOk) {
      return exit;
    }
    range_ = SelectRange(options_, *lease_);
    if (options_.io_length == 0) {
      range_.length =
          std::min(range_.length, ChooseChunk(lease_->limits(), options_.chunk, range_.length));
    }
    const absl::Time now = absl::Now();
    if (options_.write_interval > absl::ZeroDuration()) next_write_ = now;
    if (options_.max_time > absl::ZeroDuration()) end_at_ = now + options_.max_time;
    for (;;) {
      const absl::Time wake = std::min({next_write_, end_at_, give_up_at_});
      std::optional<HoldEvent> event = queue_.Next(wake);
      if (event.has_value()) {
        if (int exit = OnEvent(*event); exit >= 0) return exit;
        continue;
      }
      const absl::Time t = absl::Now();
      if (t >= give_up_at_) return out_.Error("write", write_error_);
      if (t >= end_at_) return ReleaseAndExit("max-time");
      if (t >= next_write_) WriteOnce();
    }
  }

  ~Holder() {
    lease_.reset();  // Before the connection and the client.
  }

 private:
  int OnEvent(const HoldEvent& e) {
    switch (e.kind) {
      case HoldEvent::kSignal:
        return ReleaseAndExit(e.signal == SIGINT ? "SIGINT" : "SIGTERM");
      case HoldEvent::kRecalled: {
        Fields f;
        f.Str("lease_id", lease_->id()).Str("reason", e.reason);
        if (e.deadline != absl::InfiniteFuture()) {
          f.Str("deadline", absl::FormatTime(absl::RFC3339_full, e.deadline, absl::UTCTimeZone()));
        }
        if (options_.ignore_recall) {
          out_.Emit("recalled", f.Bool("ignored", true));
          return -1;
        }
        const bool released = lease_->state() == client::LeaseState::kReleased;
        out_.Emit("recalled",
                  f.Bool("drained", lease_->in_flight() == 0).Bool("released", released));
        return released ? kExitOk
                        : out_.Error("release after recall",
                                     absl::InternalError(
                                         absl::StrCat("lease ", lease_->id(), " is ",
                                                      client::LeaseStateName(lease_->state()))));
      }
      case HoldEvent::kRevoked: {
        out_.Emit("revoked", Fields()
                                 .Str("lease_id", lease_->id())
                                 .Str("state", client::LeaseStateName(e.state))
                                 .Str("reason", e.reason));
        if (options_.write_interval > absl::ZeroDuration()) Probe();
        return kExitLeaseLost;
      }
    }
    return -1;
  }

  absl::Status WriteRange(bool after_end) {
    const uint64_t file_base = lease_->lease().range().offset;
    absl::StatusOr<client::LocalBuffer> buffer = session_.connection->AllocateBuffer(range_.length);
    if (!buffer.ok()) return buffer.status();
    FillPattern(options_.pattern, file_base + range_.offset, buffer->data(), range_.length);
    client::RdmaOpOptions op;
    op.after_end = after_end;
    return lease_->Write(range_.offset, *buffer, 0, range_.length, op);
  }

  void WriteOnce() {
    ++writes_;
    const absl::Status s = WriteRange(/*after_end=*/false);
    Fields f;
    f.Str("lease_id", lease_->id())
        .Num("seq", writes_)
        .Num("lease_offset", range_.offset)
        .Num("bytes", range_.length)
        .Bool("ok", s.ok());
    if (!s.ok()) f.Status(s);
    out_.Emit("write", f);
    if (s.ok() || (s.code() == absl::StatusCode::kFailedPrecondition &&
                   lease_->state() == client::LeaseState::kRecalling)) {
      next_write_ = absl::Now() + options_.write_interval;
      return;
    }
    // The window is gone or the connection broke: wait for the broker to say why.
    next_write_ = absl::InfiniteFuture();
    write_error_ = s;
    give_up_at_ = absl::Now() + kRevokeWait;
  }

  void Probe() {
    const absl::Status s = WriteRange(/*after_end=*/true);
    Fields f;
    f.Str("lease_id", lease_->id()).Bool("ok", s.ok());
    if (!s.ok()) f.Status(s);
    out_.Emit("probe", f);
  }

  int ReleaseAndExit(absl::string_view why) {
    absl::Status s = lease_->Release();
    if (!s.ok() && s.code() != absl::StatusCode::kNotFound) return out_.Error("release", s);
    out_.Emit("released",
              Fields().Str("lease_id", lease_->id()).Str("why", why).Bool("was_held", s.ok()));
    return kExitOk;
  }

  const Options& options_;
  Printer& out_;
  EventQueue queue_;
  SignalThread signals_{queue_};
  Session session_;
  std::unique_ptr<client::RdmaLease> lease_;
  IoRange range_;
  uint64_t writes_ = 0;
  absl::Time next_write_ = absl::InfiniteFuture();
  absl::Time end_at_ = absl::InfiniteFuture();
  absl::Time give_up_at_ = absl::InfiniteFuture();
  absl::Status write_error_;
};

}  // namespace

int RunHold(const Options& options, Printer& out) {
  Holder holder(options, out);
  return holder.Run();
}

}  // namespace pinrdma
