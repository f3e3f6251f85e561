// WatchStream: one Watch RPC read by a background thread into a queue, so the main thread can
// wait for "the next event, a timer (lease renewal), or a signal", whichever comes first.
//
// Thread-safety: Next() from one consumer thread; Interrupt() from any thread (the signal
// thread); the destructor cancels the RPC and joins the reader, from the consumer thread.
#pragma once

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "absl/time/time.h"
#include "pinbroker/v1/pinbroker.grpc.pb.h"

namespace pinctl {

class WatchStream {
 public:
  struct Item {
    std::optional<pinbroker::v1::WatchEvent> event;  // Set for an event.
    grpc::Status end;                                // The final status, when `event` is unset.
  };

  // Starts Watch(credentials) on `stub` (which must outlive this).
  WatchStream(pinbroker::v1::PinBroker::Stub& stub,
              const pinbroker::v1::SessionCredentials& credentials);
  ~WatchStream();
  WatchStream(const WatchStream&) = delete;
  WatchStream& operator=(const WatchStream&) = delete;

  // The next event or the end of the stream; nullopt if `deadline` passed or Interrupt() was
  // called first. After the end item, returns nullopt at once.
  std::optional<Item> Next(absl::Time deadline);
  // Makes the current and every later Next() return nullopt at once.
  void Interrupt();
  bool interrupted();
  // Cancels the RPC; the reader thread then delivers a CANCELLED end item.
  void Cancel();

 private:
  void ReadLoop();

  std::unique_ptr<grpc::ClientContext> context_;
  std::unique_ptr<grpc::ClientReader<pinbroker::v1::WatchEvent>> reader_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Item> items_;    // Guarded by mu_.
  bool ended_ = false;        // Guarded by mu_: the end item was taken.
  bool interrupted_ = false;  // Guarded by mu_.

  std::thread thread_;  // Last: starts reading once everything above exists.
};

}  // namespace pinctl
