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
// The guard sweeps each file once per check (FileLayout: size and every hole, one SEEK_HOLE/
// SEEK_DATA walk from offset 0, so O(extents) on extent filesystems and one page-cache walk on
// tmpfs) and derives every lease's view from that one sweep (Within()); the per-range
// LayoutOf() is the reference the sweep is tested against.
//
// Value types and stateless functions; thread-safe. LayoutOf() and SweepLayout() only call
// fstat(2) and lseek(2) on the descriptor: no read, write or mapping, so they raise no fanotify
// pre-content event.
#pragma once

#include <sys/stat.h>

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

// What fstat(2) says about a file's layout: equal stamps mean no truncate, hole punch or write
// in between, except changes within one timestamp tick that also restore the size and the
// block count (which detect-after cannot tell from no change at all anyway).
struct LayoutStamp {
  uint64_t size = 0;
  uint64_t blocks = 0;
  int64_t mtime_ns = 0;
  int64_t ctime_ns = 0;
  friend bool operator==(const LayoutStamp&, const LayoutStamp&) = default;
};
LayoutStamp StampOf(const struct ::stat& st);

// One sweep of a whole file.
struct FileLayout {
  uint64_t size = 0;
  std::vector<ByteRange> holes;  // Every hole within [0, size), ascending and merged.
  LayoutStamp stamp;             // fstat(2) before the sweep.
  // fstat(2) after the sweep said the same: nothing changed while it ran, so the sweep is the
  // layout of every moment the file keeps `stamp`.
  bool settled = false;
  // Order of sweeps of one file (the guard numbers them; 0 when taken alone).
  uint64_t sequence = 0;
  // Not a sweep but a grant's view (GuardedFile::DenseView): the leases standing on it found
  // their bytes all data, within `size`, right after their grant (AllDataNow), and no holes
  // are listed. It speaks for those bytes only, and only against sweeps numbered `sequence`
  // or later (begun after those grants).
  bool grant_view = false;

  // Same size and holes.
  bool SameLayout(const FileLayout& other) const;
};

// Sweeps the file open as `fd`: fstat, every hole from offset 0 to EOF, fstat again.
absl::StatusOr<FileLayout> SweepLayout(int fd);

// The layout of `bytes` as `file` saw it: what LayoutOf(fd, bytes) returns at the moment of
// the sweep. O(log holes + holes within bytes).
RangeLayout Within(const FileLayout& file, ByteRange bytes);

// The layout of `bytes` of the file open as `fd` now.
absl::StatusOr<RangeLayout> LayoutOf(int fd, ByteRange bytes);

// Whether `bytes` of the file open as `fd` are all data now and within its size, which it
// stores in `*size` (fstat(2)). One lseek(SEEK_HOLE) from bytes.offset, which walks the file up
// to the first hole at or after bytes.offset: O(extents) on extent filesystems, but on tmpfs a
// walk of the page cache, to EOF on a file without holes. So with `page` nonzero (a file whose
// holes are whole pages of that size: tmpfs) and page-aligned bytes of at most kPageProbes
// pages, it asks each page instead (lseek(SEEK_DATA) at its start returns that start exactly
// when the page is data): bounded by the range, not the file.
inline constexpr uint64_t kPageProbes = 64;
absl::StatusOr<bool> AllDataNow(int fd, ByteRange bytes, uint64_t page, uint64_t* size);

// Holes of the file open as `fd` within `bytes` ∩ [0, size), ascending and merged.
absl::StatusOr<std::vector<ByteRange>> HolesWithin(int fd, uint64_t size, ByteRange bytes);

// How `now` differs from `before` in a way that removed pages under the range, or nullopt:
// "the file shrank from 1048576 to 4096 bytes, below the end of bytes [0, 65536)" or
// "bytes [8192, 16384) became a hole". A size that grows, or holes that fill, are not changes.
std::optional<std::string> RemovedUnder(const RangeLayout& before, const RangeLayout& now);

}  // namespace pinbroker::guard
