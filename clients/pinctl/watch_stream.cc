#include "clients/pinctl/watch_stream.h"

#include <algorithm>

#include "clients/pinctl/connection.h"

namespace pinctl {

namespace v1 = ::pinbroker::v1;

WatchStream::WatchStream(v1::PinBroker::Stub& stub, const v1::SessionCredentials& credentials)
    : context_(Connection::StreamContext()) {
  v1::WatchRequest request;
  *request.mutable_credentials() = credentials;
  reader_ = stub.Watch(context_.get(), request);
  thread_ = std::thread([this] { ReadLoop(); });
}

WatchStream::~WatchStream() {
  Cancel();
  thread_.join();
}

void WatchStream::ReadLoop() {
  v1::WatchEvent event;
  while (reader_->Read(&event)) {
    std::lock_guard<std::mutex> lock(mu_);
    items_.push_back(Item{event, grpc::Status::OK});
    cv_.notify_all();
  }
  grpc::Status status = reader_->Finish();
  std::lock_guard<std::mutex> lock(mu_);
  items_.push_back(Item{std::nullopt, std::move(status)});
  cv_.notify_all();
}

std::optional<WatchStream::Item> WatchStream::Next(absl::Time deadline) {
  std::unique_lock<std::mutex> lock(mu_);
  // Far deadlines are capped (callers loop), keeping the chrono arithmetic away from overflow.
  const auto until = absl::ToChronoTime(std::min(deadline, absl::Now() + absl::Hours(1)));
  cv_.wait_until(lock, until, [this] { return interrupted_ || ended_ || !items_.empty(); });
  if (interrupted_ || ended_ || items_.empty()) return std::nullopt;
  Item item = std::move(items_.front());
  items_.pop_front();
  if (!item.event.has_value()) ended_ = true;
  return item;
}

void WatchStream::Interrupt() {
  std::lock_guard<std::mutex> lock(mu_);
  interrupted_ = true;
  cv_.notify_all();
}

bool WatchStream::interrupted() {
  std::lock_guard<std::mutex> lock(mu_);
  return interrupted_;
}

void WatchStream::Cancel() { context_->TryCancel(); }

}  // namespace pinctl
