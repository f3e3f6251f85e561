#include "pinning/guard/layout_snapshot.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "absl/strings/str_cat.h"
#include "common/errno_status.h"

namespace pinbroker::guard {
namespace {

uint64_t End(const ByteRange& r) { return r.offset + r.length; }

// Bytes of `r` not covered by the sorted, disjoint `cover`.
std::optional<ByteRange> FirstUncovered(const ByteRange& r, const std::vector<ByteRange>& cover) {
  uint64_t at = r.offset;
  for (const ByteRange& c : cover) {
    if (End(c) <= at) continue;
    if (c.offset > at) break;
    at = std::max(at, End(c));
    if (at >= End(r)) return std::nullopt;
  }
  if (at >= End(r)) return std::nullopt;
  // Uncovered from `at` up to the next cover start (or the end of r).
  uint64_t stop = End(r);
  for (const ByteRange& c : cover) {
    if (c.offset > at) {
      stop = std::min(stop, c.offset);
      break;
    }
  }
  return ByteRange{at, stop - at};
}

}  // namespace

absl::StatusOr<std::vector<ByteRange>> HolesWithin(int fd, uint64_t size, ByteRange bytes) {
  std::vector<ByteRange> holes;
  const uint64_t end = std::min(End(bytes), size);
  uint64_t at = bytes.offset;
  while (at < end) {
    const off_t hole = ::lseek(fd, static_cast<off_t>(at), SEEK_HOLE);
    if (hole < 0) {
      if (errno == ENXIO) break;  // At or past EOF (the file shrank meanwhile).
      return ErrnoToStatus(errno, "lseek(SEEK_HOLE)");
    }
    const uint64_t hole_start = static_cast<uint64_t>(hole);
    if (hole_start >= end) break;
    const off_t data = ::lseek(fd, static_cast<off_t>(hole_start), SEEK_DATA);
    uint64_t hole_end = end;
    if (data >= 0) {
      hole_end = std::min<uint64_t>(end, static_cast<uint64_t>(data));
    } else if (errno != ENXIO) {  // ENXIO: a hole up to EOF.
      return ErrnoToStatus(errno, "lseek(SEEK_DATA)");
    }
    if (hole_end > hole_start) holes.push_back(ByteRange{hole_start, hole_end - hole_start});
    at = hole_end;
  }
  return holes;
}

absl::StatusOr<RangeLayout> LayoutOf(int fd, ByteRange bytes) {
  struct stat st;
  if (::fstat(fd, &st) != 0) return ErrnoToStatus(errno, "fstat");
  RangeLayout layout;
  layout.bytes = bytes;
  layout.size = static_cast<uint64_t>(st.st_size);
  absl::StatusOr<std::vector<ByteRange>> holes = HolesWithin(fd, layout.size, bytes);
  if (!holes.ok()) return holes.status();
  layout.holes = *std::move(holes);
  return layout;
}

absl::StatusOr<bool> AllDataNow(int fd, ByteRange bytes, uint64_t page, uint64_t* size) {
  struct stat st;
  if (::fstat(fd, &st) != 0) return ErrnoToStatus(errno, "fstat");
  *size = static_cast<uint64_t>(st.st_size);
  if (End(bytes) > *size) return false;
  if (bytes.length == 0) return true;
  if (page != 0 && bytes.offset % page == 0 && bytes.length % page == 0 &&
      bytes.length / page <= kPageProbes) {
    for (uint64_t at = bytes.offset; at < End(bytes); at += page) {
      const off_t data = ::lseek(fd, static_cast<off_t>(at), SEEK_DATA);
      if (data < 0) {
        if (errno == ENXIO) return false;  // A hole up to EOF (or the file shrank meanwhile).
        return ErrnoToStatus(errno, "lseek(SEEK_DATA)");
      }
      if (static_cast<uint64_t>(data) != at) return false;
    }
    return true;
  }
  const off_t hole = ::lseek(fd, static_cast<off_t>(bytes.offset), SEEK_HOLE);
  if (hole < 0) {
    if (errno == ENXIO) return false;  // Past EOF: the file shrank meanwhile.
    return ErrnoToStatus(errno, "lseek(SEEK_HOLE)");
  }
  return static_cast<uint64_t>(hole) >= End(bytes);
}

LayoutStamp StampOf(const struct ::stat& st) {
  LayoutStamp stamp;
  stamp.size = static_cast<uint64_t>(st.st_size);
  stamp.blocks = static_cast<uint64_t>(st.st_blocks);
  stamp.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  stamp.ctime_ns = static_cast<int64_t>(st.st_ctim.tv_sec) * 1000000000 + st.st_ctim.tv_nsec;
  return stamp;
}

bool FileLayout::SameLayout(const FileLayout& other) const {
  return size == other.size && holes == other.holes;
}

absl::StatusOr<FileLayout> SweepLayout(int fd) {
  struct stat st;
  if (::fstat(fd, &st) != 0) return ErrnoToStatus(errno, "fstat");
  FileLayout layout;
  layout.stamp = StampOf(st);
  layout.size = layout.stamp.size;
  absl::StatusOr<std::vector<ByteRange>> holes =
      HolesWithin(fd, layout.size, ByteRange{0, layout.size});
  if (!holes.ok()) return holes.status();
  layout.holes = *std::move(holes);
  if (::fstat(fd, &st) != 0) return ErrnoToStatus(errno, "fstat");
  layout.settled = StampOf(st) == layout.stamp;
  return layout;
}

RangeLayout Within(const FileLayout& file, ByteRange bytes) {
  RangeLayout out;
  out.bytes = bytes;
  out.size = file.size;
  const uint64_t start = bytes.offset;
  const uint64_t end = std::min(End(bytes), file.size);
  if (start >= end) return out;
  // The first hole that ends after `start`.
  auto it = std::upper_bound(file.holes.begin(), file.holes.end(), start,
                             [](uint64_t at, const ByteRange& h) { return at < End(h); });
  for (; it != file.holes.end() && it->offset < end; ++it) {
    const uint64_t from = std::max(it->offset, start);
    const uint64_t to = std::min(End(*it), end);
    if (to > from) out.holes.push_back(ByteRange{from, to - from});
  }
  return out;
}

std::optional<std::string> RemovedUnder(const RangeLayout& before, const RangeLayout& now) {
  const ByteRange& r = before.bytes;
  // Pages of the range that existed then: up to the smaller of its end and the size then.
  const uint64_t existed_end = std::min(End(r), before.size);
  if (now.size < existed_end && now.size < before.size) {
    return absl::StrCat("the file shrank from ", before.size, " to ", now.size,
                        " bytes, below the end of bytes [", r.offset, ", ", End(r), ")");
  }
  // Data then that is a hole now.
  for (const ByteRange& hole : now.holes) {
    const uint64_t start = std::max(hole.offset, r.offset);
    const uint64_t stop = std::min({End(hole), existed_end});
    if (start >= stop) continue;
    if (auto gone = FirstUncovered(ByteRange{start, stop - start}, before.holes)) {
      return absl::StrCat("bytes [", gone->offset, ", ", End(*gone), ") of bytes [", r.offset, ", ",
                          End(r), ") became a hole");
    }
  }
  return std::nullopt;
}

}  // namespace pinbroker::guard
