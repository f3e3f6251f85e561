// Layout snapshots: what a leased byte range looked like when the lease was granted (the file's
// size and which parts of the range were holes), and the comparison that tells, afterwards,
// whether someone truncated into the range or punched a hole in it. This is the guard's
// detect-after: for changes no mechanism could intercept (docs/GUARD.md), the broker notices
// the result and revokes the affected leases with reason "out-of-band change".
//
// What it sees: the size shrinking below the end of a lease's bytes, and data turning into a
// hole inside them (SEEK_DATA/SEEK_HOLE, so unwritten extents count as holes, as the
// filesystem reports them). Holes that become data (writes into a sparse lease) are fine.
// What it cannot see: a shrink that is grown and rewritten again between two checks, and a
// collapse/insert range that shifts data without changing size or holes inside the lease.
//
// Value types and stateless functions; thread-safe. LayoutOf() only calls fstat(2) and lseek(2)
// on the descriptor: no read, write or mapping, so it raises no fanotify pre-content event.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "pinning/page_range.h"

namespace pinbroker::guard {

struct RangeLayout {
  ByteRange bytes;               // The lease's bytes.
  uint64_t size = 0;             // The file's size when taken.
  std::vector<ByteRange> holes;  // Holes within bytes ∩ [0, size), ascending.
};

// The layout of `bytes` of the file open as `fd` now.
absl::StatusOr<RangeLayout> LayoutOf(int fd, ByteRange bytes);

// Holes of the file open as `fd` within `bytes` ∩ [0, size), ascending and merged.
absl::StatusOr<std::vector<ByteRange>> HolesWithin(int fd, uint64_t size, ByteRange bytes);

// How `now` differs from `before` in a way that removed pages under the range, or nullopt:
// "the file shrank from 1048576 to 4096 bytes, below the end of bytes [0, 65536)" or
// "bytes [8192, 16384) became a hole". A size that grows, or holes that fill, are not changes.
std::optional<std::string> RemovedUnder(const RangeLayout& before, const RangeLayout& now);

}  // namespace pinbroker::guard
