#include "clients/pinrdma/transfer.h"

#include <algorithm>
#include <deque>
#include <vector>

namespace pinrdma {

namespace client = ::pinbroker::client;

double TransferStats::MiBPerSecond() const {
  const double seconds = absl::ToDoubleSeconds(elapsed);
  return seconds > 0 ? static_cast<double>(bytes) / (1024.0 * 1024.0) / seconds : 0;
}

uint64_t ChooseChunk(const client::LeaseLimits& lease, uint64_t requested, uint64_t range_length) {
  uint64_t chunk = requested;
  if (chunk == 0) chunk = lease.max_transfer_size != 0 ? lease.max_transfer_size : 1 << 20;
  if (lease.max_transfer_size != 0) chunk = std::min(chunk, lease.max_transfer_size);
  if (range_length != 0) chunk = std::min(chunk, range_length);
  const uint64_t align = std::max<uint64_t>(lease.required_alignment, 1);
  chunk = std::max(chunk / align * align, align);
  return chunk;
}

absl::StatusOr<TransferStats> Transfer(client::RdmaLease& lease, client::RdmaConnection& connection,
                                       client::RdmaOpKind kind, uint64_t offset, uint64_t length,
                                       uint64_t chunk, uint32_t depth, const ChunkSource& source,
                                       const ChunkSink& sink) {
  if (chunk == 0 || depth == 0) return absl::InvalidArgumentError("zero chunk or depth");
  const uint32_t slots =
      static_cast<uint32_t>(std::min<uint64_t>(depth, (length + chunk - 1) / chunk));
  std::vector<client::LocalBuffer> buffers;
  for (uint32_t i = 0; i < std::max<uint32_t>(slots, 1); ++i) {
    absl::StatusOr<client::LocalBuffer> b = connection.AllocateBuffer(chunk);
    if (!b.ok()) return b.status();
    buffers.push_back(*std::move(b));
  }
  struct InFlight {
    client::PendingOp op;
    size_t slot;
    uint64_t offset;
    uint64_t n;
  };
  std::deque<InFlight> in_flight;
  std::vector<size_t> free_slots;
  for (size_t i = 0; i < buffers.size(); ++i) free_slots.push_back(i);
  TransferStats stats;
  absl::Status failure;
  // Completes the oldest operation; its slot becomes free.
  auto finish_one = [&]() {
    InFlight f = std::move(in_flight.front());
    in_flight.pop_front();
    absl::Status s = f.op.Wait();
    if (s.ok() && kind == client::RdmaOpKind::kRead && sink) {
      s = sink(f.offset, buffers[f.slot].data(), f.n);
    }
    if (s.ok()) {
      stats.bytes += f.n;
      ++stats.operations;
    } else if (failure.ok()) {
      failure = s;
    }
    free_slots.push_back(f.slot);
  };
  const absl::Time start = absl::Now();
  for (uint64_t done = 0; done < length && failure.ok();) {
    if (free_slots.empty()) {
      finish_one();
      continue;
    }
    const uint64_t n = std::min(chunk, length - done);
    const size_t slot = free_slots.back();
    free_slots.pop_back();
    if (kind == client::RdmaOpKind::kWrite && source) {
      source(offset + done, buffers[slot].data(), n);
    }
    absl::StatusOr<client::PendingOp> op =
        kind == client::RdmaOpKind::kWrite ? lease.StartWrite(offset + done, buffers[slot], 0, n)
                                           : lease.StartRead(offset + done, buffers[slot], 0, n);
    if (!op.ok()) {
      failure = op.status();
      free_slots.push_back(slot);
      break;
    }
    in_flight.push_back({*std::move(op), slot, offset + done, n});
    done += n;
  }
  while (!in_flight.empty()) finish_one();  // Always wait: the buffers must not go early.
  stats.elapsed = absl::Now() - start;
  if (!failure.ok()) return failure;
  return stats;
}

}  // namespace pinrdma
