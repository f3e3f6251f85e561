#include "pinning/page_range.h"

#include <cstdint>
#include <limits>
#include <optional>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pinbroker {
namespace {

using ::testing::Eq;
using ::testing::Optional;

constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
constexpr uint64_t kPage = 4096;

// --- PagesCovering -----------------------------------------------------------

TEST(PagesCoveringTest, ZeroLengthIsNullopt) {
  EXPECT_EQ(PagesCovering(0, 0, kPage), std::nullopt);
  EXPECT_EQ(PagesCovering(12345, 0, kPage), std::nullopt);
  EXPECT_EQ(PagesCovering(kMax, 0, kPage), std::nullopt);
}

TEST(PagesCoveringTest, WrapAroundIsNullopt) {
  EXPECT_EQ(PagesCovering(kMax, 2, kPage), std::nullopt);
  EXPECT_EQ(PagesCovering(2, kMax, kPage), std::nullopt);
  EXPECT_EQ(PagesCovering(kMax, kMax, kPage), std::nullopt);
  EXPECT_EQ(PagesCovering(kMax - kPage, kPage + 2, kPage), std::nullopt);
}

TEST(PagesCoveringTest, RangeEndingOnTheLastByteIsAccepted) {
  // [1, 2^64): its last byte is 2^64 - 1, which does not wrap.
  EXPECT_THAT(PagesCovering(1, kMax, kPage), Optional(PageRange{0, kMax / kPage + 1}));
  // [2^64 - 4096 - 1, 2^64).
  EXPECT_THAT(PagesCovering(kMax - kPage, kPage + 1, kPage),
              Optional(PageRange{kMax / kPage - 1, kMax / kPage + 1}));
}

TEST(PagesCoveringTest, LastByteOfTheUint64Range) {
  // The single byte 2^64 - 1 lives in the last page, index 2^52 - 1.
  EXPECT_THAT(PagesCovering(kMax, 1, kPage), Optional(PageRange{kMax / kPage, kMax / kPage + 1}));
  EXPECT_EQ(kMax / kPage, (uint64_t{1} << 52) - 1);
  // The whole last page.
  EXPECT_THAT(PagesCovering(kMax - kPage + 1, kPage, kPage),
              Optional(PageRange{kMax / kPage, kMax / kPage + 1}));
  // Everything from byte 0.
  EXPECT_THAT(PagesCovering(0, kMax, kPage), Optional(PageRange{0, kMax / kPage + 1}));
}

TEST(PagesCoveringTest, ExactPages) {
  EXPECT_THAT(PagesCovering(0, kPage, kPage), Optional(PageRange{0, 1}));
  EXPECT_THAT(PagesCovering(kPage, kPage, kPage), Optional(PageRange{1, 2}));
  EXPECT_THAT(PagesCovering(3 * kPage, 5 * kPage, kPage), Optional(PageRange{3, 8}));
}

TEST(PagesCoveringTest, PartialPagesAtBothEnds) {
  // One byte at the start of a page, one at its end.
  EXPECT_THAT(PagesCovering(0, 1, kPage), Optional(PageRange{0, 1}));
  EXPECT_THAT(PagesCovering(kPage - 1, 1, kPage), Optional(PageRange{0, 1}));
  // Two bytes straddling a page boundary.
  EXPECT_THAT(PagesCovering(kPage - 1, 2, kPage), Optional(PageRange{0, 2}));
  // Partial first page, full middle pages, partial last page.
  EXPECT_THAT(PagesCovering(kPage + 100, 3 * kPage, kPage), Optional(PageRange{1, 5}));
  // Ends exactly on a boundary: the next page is not touched.
  EXPECT_THAT(PagesCovering(kPage + 100, 2 * kPage - 100, kPage), Optional(PageRange{1, 3}));
  // Starts exactly on a boundary, ends one byte into the next page.
  EXPECT_THAT(PagesCovering(2 * kPage, kPage + 1, kPage), Optional(PageRange{2, 4}));
}

TEST(PagesCoveringTest, OtherPageSizes) {
  constexpr uint64_t kHuge = uint64_t{2} << 20;
  EXPECT_THAT(PagesCovering(kHuge - 1, 2, kHuge), Optional(PageRange{0, 2}));
  EXPECT_THAT(PagesCovering(kMax, 1, kHuge), Optional(PageRange{kMax / kHuge, kMax / kHuge + 1}));
  EXPECT_THAT(PagesCovering(10, 5, 1), Optional(PageRange{10, 15}));
}

TEST(PagesCoveringTest, ResultIsNeverEmpty) {
  for (uint64_t offset : {uint64_t{0}, uint64_t{1}, kPage - 1, kPage, kMax - 3 * kPage, kMax - 1}) {
    for (uint64_t length : {uint64_t{1}, uint64_t{2}, kPage, kPage + 1}) {
      std::optional<PageRange> r = PagesCovering(offset, length, kPage);
      if (!r.has_value()) {
        EXPECT_GT(length - 1, kMax - offset) << offset << " +" << length;
        continue;
      }
      EXPECT_FALSE(r->empty()) << offset << " +" << length;
      EXPECT_EQ(r->first, offset / kPage);
      EXPECT_EQ(r->end, (offset + length - 1) / kPage + 1);
    }
  }
}

// --- ToBytes
// -------------------------------------------------------------------

TEST(ToBytesTest, Simple) {
  EXPECT_EQ(ToBytes(PageRange{0, 1}, kPage), (ByteRange{0, kPage}));
  EXPECT_EQ(ToBytes(PageRange{3, 8}, kPage), (ByteRange{3 * kPage, 5 * kPage}));
  EXPECT_EQ(ToBytes(PageRange{7, 7}, kPage), (ByteRange{7 * kPage, 0}));
}

TEST(ToBytesTest, RoundTripsPagesCovering) {
  for (uint64_t first : {uint64_t{0}, uint64_t{1}, uint64_t{1000}}) {
    for (uint64_t n : {uint64_t{1}, uint64_t{2}, uint64_t{513}}) {
      const ByteRange b = ToBytes(PageRange{first, first + n}, kPage);
      EXPECT_THAT(PagesCovering(b.offset, b.length, kPage), Optional(PageRange{first, first + n}));
    }
  }
}

TEST(ToBytesTest, OpenEndedRangeSaturates) {
  EXPECT_EQ(ToBytes(PageRange{0, kPageRangeToInfinity}, kPage), (ByteRange{0, kMax}));
  EXPECT_EQ(ToBytes(PageRange{5, kPageRangeToInfinity}, kPage),
            (ByteRange{5 * kPage, kMax - 5 * kPage}));
}

TEST(ToBytesTest, LastRepresentablePage) {
  // The last page starts at 2^64 - 4096; its end, 2^64, saturates to 2^64 - 1.
  const uint64_t last = kMax / kPage;
  EXPECT_EQ(ToBytes(PageRange{last, last + 1}, kPage), (ByteRange{last * kPage, kPage - 1}));
  EXPECT_EQ(last * kPage, kMax - kPage + 1);
}

TEST(ToBytesTest, StartBeyondTheByteRangeSaturates) {
  const uint64_t past = kMax / kPage + 1;  // First page that starts at >= 2^64.
  EXPECT_EQ(ToBytes(PageRange{past, past + 10}, kPage), (ByteRange{kMax, 0}));
  EXPECT_EQ(ToBytes(PageRange{past, kPageRangeToInfinity}, kPage), (ByteRange{kMax, 0}));
  EXPECT_EQ(ToBytes(PageRange{kMax - 1, kMax}, kPage), (ByteRange{kMax, 0}));
}

// --- size / empty / Overlaps / Contains
// ----------------------------------------

TEST(PageRangeTest, SizeAndEmpty) {
  EXPECT_EQ((PageRange{3, 8}).size(), 5u);
  EXPECT_FALSE((PageRange{3, 8}).empty());
  EXPECT_TRUE((PageRange{}).empty());
  EXPECT_TRUE((PageRange{4, 4}).empty());
  EXPECT_TRUE((PageRange{5, 4}).empty());  // Inverted counts as empty.
  EXPECT_FALSE((PageRange{0, kPageRangeToInfinity}).empty());
  EXPECT_EQ((PageRange{0, kPageRangeToInfinity}).size(), kMax);
}

TEST(PageRangeTest, AdjacentRangesDoNotOverlap) {
  const PageRange a{0, 4};
  const PageRange b{4, 8};
  EXPECT_FALSE(a.Overlaps(b));
  EXPECT_FALSE(b.Overlaps(a));
  EXPECT_FALSE((PageRange{8, kPageRangeToInfinity}).Overlaps(b));
  EXPECT_FALSE(b.Overlaps(PageRange{8, kPageRangeToInfinity}));
}

TEST(PageRangeTest, OverlapsBySinglePage) {
  const PageRange a{0, 5};
  const PageRange b{4, 8};
  EXPECT_TRUE(a.Overlaps(b));
  EXPECT_TRUE(b.Overlaps(a));
  EXPECT_TRUE((PageRange{7, 8}).Overlaps(b));
  EXPECT_TRUE((PageRange{4, 5}).Overlaps(b));
  EXPECT_FALSE((PageRange{3, 4}).Overlaps(b));
}

TEST(PageRangeTest, OverlapsIsSymmetricAndReflexive) {
  const PageRange ranges[] = {{0, 1},
                              {0, 4},
                              {2, 3},
                              {3, 9},
                              {8, 9},
                              {9, kPageRangeToInfinity},
                              {0, kPageRangeToInfinity},
                              {kMax - 1, kMax}};
  for (const PageRange& a : ranges) {
    EXPECT_TRUE(a.Overlaps(a)) << a.ToString();
    for (const PageRange& b : ranges) {
      EXPECT_EQ(a.Overlaps(b), b.Overlaps(a)) << a.ToString() << " " << b.ToString();
      // Brute force over the pages of the finite ones.
      if (a.end < 100 && b.end < 100) {
        bool shared = false;
        for (uint64_t p = a.first; p < a.end; ++p) {
          shared |= b.first <= p && p < b.end;
        }
        EXPECT_EQ(a.Overlaps(b), shared) << a.ToString() << " " << b.ToString();
      }
    }
  }
}

TEST(PageRangeTest, OpenEndedRangesOverlapEverythingAfterTheirStart) {
  const PageRange tail{100, kPageRangeToInfinity};
  EXPECT_TRUE(tail.Overlaps(PageRange{99, 101}));
  EXPECT_TRUE(tail.Overlaps(PageRange{kMax - 1, kMax}));
  EXPECT_FALSE(tail.Overlaps(PageRange{0, 100}));
  EXPECT_TRUE(tail.Overlaps(PageRange{0, kPageRangeToInfinity}));
}

TEST(PageRangeTest, EmptyRangesOutsideOrAtTheEdgesOverlapNothing) {
  const PageRange r{10, 20};
  EXPECT_FALSE((PageRange{0, 0}).Overlaps(r));
  EXPECT_FALSE((PageRange{10, 10}).Overlaps(r));  // At the start.
  EXPECT_FALSE((PageRange{20, 20}).Overlaps(r));  // At the end.
  EXPECT_FALSE((PageRange{30, 30}).Overlaps(r));
  EXPECT_FALSE(r.Overlaps(PageRange{10, 10}));
  EXPECT_FALSE(r.Overlaps(PageRange{20, 20}));
  EXPECT_FALSE((PageRange{5, 5}).Overlaps(PageRange{5, 5}));
}

// Regression: an empty range strictly inside another has no pages and overlaps
// nothing (as in IntervalIndex). Before the fix, [15, 15) overlapped [10, 20),
// so the empty block of a same-size truncate refused pins around it.
TEST(PageRangeTest, EmptyRangeInsideAnotherOverlapsNothing) {
  const PageRange r{10, 20};
  EXPECT_FALSE((PageRange{15, 15}).Overlaps(r));
  EXPECT_FALSE(r.Overlaps(PageRange{15, 15}));
}

TEST(PageRangeTest, Contains) {
  const PageRange r{10, 20};
  EXPECT_TRUE(r.Contains(r));
  EXPECT_TRUE(r.Contains(PageRange{10, 11}));
  EXPECT_TRUE(r.Contains(PageRange{19, 20}));
  EXPECT_TRUE(r.Contains(PageRange{12, 15}));
  EXPECT_FALSE(r.Contains(PageRange{9, 11}));
  EXPECT_FALSE(r.Contains(PageRange{19, 21}));
  EXPECT_FALSE(r.Contains(PageRange{0, 30}));
  EXPECT_FALSE(r.Contains(PageRange{20, 21}));  // Adjacent.
  EXPECT_FALSE(r.Contains(PageRange{20, kPageRangeToInfinity}));
  const PageRange tail{10, kPageRangeToInfinity};
  EXPECT_TRUE(tail.Contains(r));
  EXPECT_TRUE(tail.Contains(PageRange{kMax - 1, kMax}));
  EXPECT_TRUE(tail.Contains(tail));
  EXPECT_FALSE(r.Contains(tail));
  EXPECT_FALSE(tail.Contains(PageRange{9, 10}));
}

TEST(PageRangeTest, ContainsEmptyRanges) {
  const PageRange r{10, 20};
  // Empty ranges within [first, end] bounds are contained, also at the edges.
  EXPECT_TRUE(r.Contains(PageRange{10, 10}));
  EXPECT_TRUE(r.Contains(PageRange{15, 15}));
  EXPECT_TRUE(r.Contains(PageRange{20, 20}));
  EXPECT_FALSE(r.Contains(PageRange{30, 30}));
  // An empty range contains only empty ranges at its point.
  EXPECT_TRUE((PageRange{5, 5}).Contains(PageRange{5, 5}));
  EXPECT_FALSE((PageRange{5, 5}).Contains(PageRange{5, 6}));
}

TEST(PageRangeTest, Equality) {
  EXPECT_EQ((PageRange{1, 2}), (PageRange{1, 2}));
  EXPECT_NE((PageRange{1, 2}), (PageRange{1, 3}));
  EXPECT_NE((PageRange{0, 2}), (PageRange{1, 2}));
  EXPECT_EQ((ByteRange{1, 2}), (ByteRange{1, 2}));
  EXPECT_NE((ByteRange{1, 2}), (ByteRange{2, 1}));
}

// --- ToString
// ------------------------------------------------------------------

TEST(PageRangeTest, ToString) {
  EXPECT_EQ((PageRange{3, 8}).ToString(), "[3, 8)");
  EXPECT_EQ((PageRange{}).ToString(), "[0, 0)");
  EXPECT_EQ((PageRange{0, kPageRangeToInfinity}).ToString(), "[0, inf)");
  EXPECT_EQ((PageRange{42, kPageRangeToInfinity}).ToString(), "[42, inf)");
  EXPECT_EQ((PageRange{0, kMax - 1}).ToString(), "[0, 18446744073709551614)");
}

// --- SystemPageSize
// ------------------------------------------------------------

TEST(SystemPageSizeTest, IsAPowerOfTwo) {
  const uint64_t size = SystemPageSize();
  EXPECT_GE(size, 4096u);
  EXPECT_EQ(size & (size - 1), 0u);
  EXPECT_EQ(SystemPageSize(), size);
}

}  // namespace
}  // namespace pinbroker
