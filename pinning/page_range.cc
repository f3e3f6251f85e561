#include "pinning/page_range.h"

#include <unistd.h>

#include "absl/strings/str_cat.h"

namespace pinbroker {

std::string PageRange::ToString() const {
  if (end == kPageRangeToInfinity) return absl::StrCat("[", first, ", inf)");
  return absl::StrCat("[", first, ", ", end, ")");
}

std::optional<PageRange> PagesCovering(uint64_t offset, uint64_t length, uint64_t page_size) {
  if (length == 0) return std::nullopt;
  uint64_t last_byte;
  if (__builtin_add_overflow(offset, length - 1, &last_byte)) return std::nullopt;
  return PageRange{offset / page_size, last_byte / page_size + 1};
}

ByteRange ToBytes(const PageRange& pages, uint64_t page_size) {
  const uint64_t kMax = std::numeric_limits<uint64_t>::max();
  const uint64_t offset = pages.first > kMax / page_size ? kMax : pages.first * page_size;
  const uint64_t end = pages.end > kMax / page_size ? kMax : pages.end * page_size;
  return ByteRange{offset, end - offset};
}

std::string BytesText(const PageRange& pages, uint64_t page_size) {
  const ByteRange bytes = ToBytes(pages, page_size);
  if (pages.end == kPageRangeToInfinity) {
    return absl::StrCat("bytes from ", bytes.offset, " to the end of the file");
  }
  return absl::StrCat("bytes [", bytes.offset, ", ", bytes.offset + bytes.length, ")");
}

uint64_t SystemPageSize() {
  static const uint64_t kPageSize = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  return kPageSize;
}

}  // namespace pinbroker
