// PageRange: a half-open range of page indices [first, end) and the byte <-> page arithmetic
// used everywhere a byte range meets the page granularity of pins and layout changes.
//
// Value type; thread-compatible. All arithmetic is overflow-checked by the callers through
// `PagesCovering`, which refuses byte ranges that wrap around.
#pragma once

#include <cstdint>
#include <limits>
#include <optional>
#include <string>

namespace pinbroker {

// Half-open range of page indices. `end == kPageRangeToInfinity` means "to the end of any file".
struct PageRange {
  uint64_t first = 0;
  uint64_t end = 0;

  uint64_t size() const { return end - first; }
  bool empty() const { return end <= first; }
  // Empty ranges overlap nothing, as in IntervalIndex.
  bool Overlaps(const PageRange& other) const {
    return !empty() && !other.empty() && first < other.end && other.first < end;
  }
  bool Contains(const PageRange& other) const { return first <= other.first && other.end <= end; }
  friend bool operator==(const PageRange&, const PageRange&) = default;

  // "[first, end)" in pages, "[first, inf)" for open-ended ranges.
  std::string ToString() const;
};

inline constexpr uint64_t kPageRangeToInfinity = std::numeric_limits<uint64_t>::max();

// The pages touched by bytes [offset, offset + length), or nullopt when length is 0 or the
// range wraps around 2^64. `page_size` must be a power of two.
std::optional<PageRange> PagesCovering(uint64_t offset, uint64_t length, uint64_t page_size);

// Bytes [first * page_size, end * page_size) as offset/length; open-ended ranges saturate.
struct ByteRange {
  uint64_t offset = 0;
  uint64_t length = 0;
  friend bool operator==(const ByteRange&, const ByteRange&) = default;
};
ByteRange ToBytes(const PageRange& pages, uint64_t page_size);

// "bytes [4096, 65536)" or, for open-ended ranges, "bytes from 4096 to the end of the file": how
// messages and logs name a page range (never by page index).
std::string BytesText(const PageRange& pages, uint64_t page_size);

// The process's page size (sysconf(_SC_PAGESIZE)), read once.
uint64_t SystemPageSize();

}  // namespace pinbroker
