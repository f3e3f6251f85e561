// Pipelined bulk transfers through an RdmaLease: a range of the lease moved in chunks, with up
// to `depth` operations in flight, each chunk in its own registered buffer. The caller supplies
// the bytes of writes and consumes the bytes of reads chunk by chunk.
//
// Thread-safety: Transfer() runs on the calling thread; the callbacks run on it too.
#pragma once

#include <cstdint>
#include <functional>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "pinbroker/rdma_lease.h"

namespace pinrdma {

struct TransferStats {
  uint64_t bytes = 0;
  uint64_t operations = 0;
  absl::Duration elapsed;  // From the first post to the last completion.
  double MiBPerSecond() const;
};

// Fills the `n` bytes of a chunk that goes to lease offset `lease_offset`.
using ChunkSource = std::function<void(uint64_t lease_offset, uint8_t* data, size_t n)>;
// Consumes the `n` bytes read from lease offset `lease_offset`; an error stops the transfer.
using ChunkSink = std::function<absl::Status(uint64_t lease_offset, const uint8_t* data, size_t n)>;

// The chunk size to use: `requested` if non-zero, else the lease's max_transfer_size, else
// 1 MiB; never above max_transfer_size or the range, and rounded down to a multiple of the
// lease's required_alignment (at least one unit).
uint64_t ChooseChunk(const pinbroker::client::LeaseLimits& lease, uint64_t requested,
                     uint64_t range_length);

// WRITE (source) or READ (sink) of [offset, offset + length) of the lease.
absl::StatusOr<TransferStats> Transfer(pinbroker::client::RdmaLease& lease,
                                       pinbroker::client::RdmaConnection& connection,
                                       pinbroker::client::RdmaOpKind kind, uint64_t offset,
                                       uint64_t length, uint64_t chunk, uint32_t depth,
                                       const ChunkSource& source, const ChunkSink& sink);

}  // namespace pinrdma
