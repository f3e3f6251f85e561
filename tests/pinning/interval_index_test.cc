#include "pinning/interval_index.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pinning/btree_interval_index.h"
#include "pinning/page_range.h"

namespace pinbroker {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using Item = std::pair<uint64_t, PageRange>;

constexpr uint64_t kInf = kPageRangeToInfinity;

uint64_t SaturatingAdd(uint64_t a, uint64_t b) {
  uint64_t sum;
  return __builtin_add_overflow(a, b, &sum) ? kInf : sum;
}

template <typename Index>
std::vector<Item> Overlapping(const Index& index, PageRange query) {
  std::vector<Item> out;
  index.ForEachOverlapping(query, [&](uint64_t id, PageRange r) { out.emplace_back(id, r); });
  return out;
}

template <typename Index>
std::vector<Item> All(const Index& index) {
  std::vector<Item> out;
  index.ForEach([&](uint64_t id, PageRange r) { out.emplace_back(id, r); });
  return out;
}

std::string Describe(const std::vector<Item>& items) {
  std::string out = "{";
  for (const auto& [id, r] : items) {
    absl::StrAppend(&out, " ", id, ":", r.ToString());
  }
  absl::StrAppend(&out, " }");
  return out;
}

// Every case runs on both indexes: the AVL tree (the baseline) and the B+tree (the one
// BusyRangeMap uses).
template <typename Index>
class IntervalIndexTest : public ::testing::Test {};
using Indexes = ::testing::Types<IntervalIndex, BTreeIntervalIndex>;
TYPED_TEST_SUITE(IntervalIndexTest, Indexes);

TYPED_TEST(IntervalIndexTest, StartsEmpty) {
  TypeParam index;
  EXPECT_TRUE(index.empty());
  EXPECT_EQ(index.size(), 0u);
  EXPECT_THAT(All(index), IsEmpty());
  EXPECT_THAT(Overlapping(index, PageRange{0, kInf}), IsEmpty());
  EXPECT_FALSE(index.AnyOverlapping(PageRange{0, kInf}));
  EXPECT_TRUE(index.CheckInvariants());
}

TYPED_TEST(IntervalIndexTest, InsertAndFind) {
  TypeParam index;
  EXPECT_TRUE(index.Insert(7, PageRange{10, 20}));
  EXPECT_TRUE(index.CheckInvariants());
  EXPECT_EQ(index.size(), 1u);
  EXPECT_FALSE(index.empty());
  EXPECT_THAT(All(index), ElementsAre(Item{7, {10, 20}}));
  EXPECT_THAT(Overlapping(index, PageRange{15, 16}), ElementsAre(Item{7, {10, 20}}));
  EXPECT_TRUE(index.AnyOverlapping(PageRange{15, 16}));
}

TYPED_TEST(IntervalIndexTest, InsertRejectsEmptyRanges) {
  TypeParam index;
  EXPECT_FALSE(index.Insert(1, PageRange{5, 5}));
  EXPECT_FALSE(index.Insert(1, PageRange{6, 5}));
  EXPECT_FALSE(index.Insert(1, PageRange{}));
  EXPECT_TRUE(index.empty());
  EXPECT_TRUE(index.CheckInvariants());
}

TYPED_TEST(IntervalIndexTest, DuplicateKeyIsRejected) {
  TypeParam index;
  ASSERT_TRUE(index.Insert(1, PageRange{5, 10}));
  // Same (first, id): rejected whatever the end, and nothing changes.
  EXPECT_FALSE(index.Insert(1, PageRange{5, 10}));
  EXPECT_FALSE(index.Insert(1, PageRange{5, 50}));
  EXPECT_TRUE(index.CheckInvariants());
  EXPECT_THAT(All(index), ElementsAre(Item{1, {5, 10}}));
  // The key is (first, id): same id at another start, or another id at the
  // same start, are different entries.
  EXPECT_TRUE(index.Insert(1, PageRange{6, 10}));
  EXPECT_TRUE(index.Insert(2, PageRange{5, 10}));
  EXPECT_TRUE(index.CheckInvariants());
  EXPECT_EQ(index.size(), 3u);
  EXPECT_THAT(All(index), ElementsAre(Item{1, {5, 10}}, Item{2, {5, 10}}, Item{1, {6, 10}}));
}

TYPED_TEST(IntervalIndexTest, EraseNeedsTheExactRange) {
  TypeParam index;
  ASSERT_TRUE(index.Insert(1, PageRange{5, 10}));
  ASSERT_TRUE(index.Insert(2, PageRange{7, 9}));
  EXPECT_FALSE(index.Erase(1, PageRange{5, 11}));  // Wrong end.
  EXPECT_FALSE(index.Erase(1, PageRange{5, 9}));   // Wrong end.
  EXPECT_FALSE(index.Erase(1, PageRange{4, 10}));  // Wrong first.
  EXPECT_FALSE(index.Erase(3, PageRange{5, 10}));  // Wrong id.
  EXPECT_FALSE(index.Erase(2, PageRange{5, 10}));  // Other entry's range.
  EXPECT_TRUE(index.CheckInvariants());
  EXPECT_EQ(index.size(), 2u);
  EXPECT_THAT(All(index), ElementsAre(Item{1, {5, 10}}, Item{2, {7, 9}}));

  EXPECT_TRUE(index.Erase(1, PageRange{5, 10}));
  EXPECT_TRUE(index.CheckInvariants());
  EXPECT_FALSE(index.Erase(1, PageRange{5, 10}));  // Already gone.
  EXPECT_THAT(All(index), ElementsAre(Item{2, {7, 9}}));
  EXPECT_TRUE(index.Erase(2, PageRange{7, 9}));
  EXPECT_TRUE(index.empty());
  EXPECT_TRUE(index.CheckInvariants());
}

TYPED_TEST(IntervalIndexTest, EraseFromEmptyIndex) {
  TypeParam index;
  EXPECT_FALSE(index.Erase(1, PageRange{0, 1}));
  EXPECT_FALSE(index.Erase(1, PageRange{}));
  EXPECT_TRUE(index.CheckInvariants());
}

TYPED_TEST(IntervalIndexTest, QueriesAreHalfOpen) {
  TypeParam index;
  ASSERT_TRUE(index.Insert(1, PageRange{10, 20}));
  // Touching either end does not overlap.
  EXPECT_THAT(Overlapping(index, PageRange{0, 10}), IsEmpty());
  EXPECT_THAT(Overlapping(index, PageRange{20, 30}), IsEmpty());
  EXPECT_FALSE(index.AnyOverlapping(PageRange{0, 10}));
  EXPECT_FALSE(index.AnyOverlapping(PageRange{20, 30}));
  EXPECT_FALSE(index.AnyOverlapping(PageRange{20, kInf}));
  // One page in on either side does.
  EXPECT_THAT(Overlapping(index, PageRange{0, 11}), ElementsAre(Item{1, {10, 20}}));
  EXPECT_THAT(Overlapping(index, PageRange{19, 30}), ElementsAre(Item{1, {10, 20}}));
  EXPECT_TRUE(index.AnyOverlapping(PageRange{9, 11}));
  EXPECT_TRUE(index.AnyOverlapping(PageRange{19, 20}));
  EXPECT_TRUE(index.AnyOverlapping(PageRange{10, 11}));
  EXPECT_TRUE(index.AnyOverlapping(PageRange{0, kInf}));
  EXPECT_TRUE(index.AnyOverlapping(PageRange{19, kInf}));
}

TYPED_TEST(IntervalIndexTest, EmptyQueriesMatchNothing) {
  TypeParam index;
  ASSERT_TRUE(index.Insert(1, PageRange{10, 20}));
  ASSERT_TRUE(index.Insert(2, PageRange{0, kInf}));
  EXPECT_THAT(Overlapping(index, PageRange{15, 15}), IsEmpty());
  EXPECT_THAT(Overlapping(index, PageRange{16, 15}), IsEmpty());
  EXPECT_FALSE(index.AnyOverlapping(PageRange{15, 15}));
  EXPECT_FALSE(index.AnyOverlapping(PageRange{16, 15}));
}

TYPED_TEST(IntervalIndexTest, ResultsAreInFirstThenIdOrder) {
  TypeParam index;
  // Inserted in a scrambled order.
  ASSERT_TRUE(index.Insert(9, PageRange{5, 6}));
  ASSERT_TRUE(index.Insert(3, PageRange{5, 100}));
  ASSERT_TRUE(index.Insert(4, PageRange{0, 50}));
  ASSERT_TRUE(index.Insert(1, PageRange{20, 21}));
  ASSERT_TRUE(index.Insert(2, PageRange{5, 7}));
  ASSERT_TRUE(index.Insert(8, PageRange{0, 1}));
  ASSERT_TRUE(index.CheckInvariants());
  EXPECT_THAT(All(index), ElementsAre(Item{4, {0, 50}}, Item{8, {0, 1}}, Item{2, {5, 7}},
                                      Item{3, {5, 100}}, Item{9, {5, 6}}, Item{1, {20, 21}}));
  EXPECT_THAT(Overlapping(index, PageRange{5, 21}),
              ElementsAre(Item{4, {0, 50}}, Item{2, {5, 7}}, Item{3, {5, 100}}, Item{9, {5, 6}},
                          Item{1, {20, 21}}));
  EXPECT_THAT(Overlapping(index, PageRange{6, 20}),
              ElementsAre(Item{4, {0, 50}}, Item{2, {5, 7}}, Item{3, {5, 100}}));
  EXPECT_THAT(Overlapping(index, PageRange{50, 51}), ElementsAre(Item{3, {5, 100}}));
}

TYPED_TEST(IntervalIndexTest, LongEntryFoundBehindManyShortOnes) {
  // The max-end augmentation must find an early, long entry from a query far
  // to the right, past many short entries that end before the query.
  TypeParam index;
  ASSERT_TRUE(index.Insert(0, PageRange{0, 10000}));
  for (uint64_t i = 1; i <= 1000; ++i) {
    ASSERT_TRUE(index.Insert(i, PageRange{i, i + 1}));
  }
  ASSERT_TRUE(index.CheckInvariants());
  EXPECT_THAT(Overlapping(index, PageRange{5000, 5001}), ElementsAre(Item{0, {0, 10000}}));
  EXPECT_TRUE(index.AnyOverlapping(PageRange{9999, 10000}));
  EXPECT_FALSE(index.AnyOverlapping(PageRange{10000, 20000}));
  ASSERT_TRUE(index.Erase(0, PageRange{0, 10000}));
  ASSERT_TRUE(index.CheckInvariants());
  EXPECT_FALSE(index.AnyOverlapping(PageRange{5000, 5001}));
  EXPECT_THAT(Overlapping(index, PageRange{1000, kInf}), ElementsAre(Item{1000, {1000, 1001}}));
}

TYPED_TEST(IntervalIndexTest, OpenEndedEntriesAndQueries) {
  TypeParam index;
  ASSERT_TRUE(index.Insert(1, PageRange{100, kInf}));
  ASSERT_TRUE(index.Insert(2, PageRange{kInf - 1, kInf}));
  ASSERT_TRUE(index.Insert(3, PageRange{0, 100}));
  ASSERT_TRUE(index.CheckInvariants());
  EXPECT_THAT(Overlapping(index, PageRange{kInf - 1, kInf}),
              ElementsAre(Item{1, {100, kInf}}, Item{2, {kInf - 1, kInf}}));
  EXPECT_THAT(Overlapping(index, PageRange{99, 100}), ElementsAre(Item{3, {0, 100}}));
  EXPECT_THAT(Overlapping(index, PageRange{99, kInf}),
              ElementsAre(Item{3, {0, 100}}, Item{1, {100, kInf}}, Item{2, {kInf - 1, kInf}}));
  EXPECT_TRUE(index.AnyOverlapping(PageRange{kInf - 2, kInf - 1}));
  EXPECT_TRUE(index.Erase(1, PageRange{100, kInf}));
  EXPECT_FALSE(index.AnyOverlapping(PageRange{kInf - 2, kInf - 1}));
  EXPECT_TRUE(index.AnyOverlapping(PageRange{kInf - 2, kInf}));
  EXPECT_TRUE(index.CheckInvariants());
}

TYPED_TEST(IntervalIndexTest, ClearEmptiesAndTheIndexStaysUsable) {
  TypeParam index;
  for (uint64_t i = 0; i < 100; ++i) {
    ASSERT_TRUE(index.Insert(i, PageRange{i, i + 3}));
  }
  ASSERT_TRUE(index.Erase(50, PageRange{50, 53}));  // Leaves a free node.
  index.Clear();
  EXPECT_TRUE(index.empty());
  EXPECT_EQ(index.size(), 0u);
  EXPECT_TRUE(index.CheckInvariants());
  EXPECT_THAT(All(index), IsEmpty());
  EXPECT_FALSE(index.AnyOverlapping(PageRange{0, kInf}));
  EXPECT_FALSE(index.Erase(1, PageRange{1, 4}));
  ASSERT_TRUE(index.Insert(1, PageRange{1, 4}));
  ASSERT_TRUE(index.Insert(2, PageRange{2, 3}));
  EXPECT_TRUE(index.CheckInvariants());
  EXPECT_THAT(All(index), ElementsAre(Item{1, {1, 4}}, Item{2, {2, 3}}));
  index.Clear();
  index.Clear();  // Idempotent.
  EXPECT_TRUE(index.CheckInvariants());
}

TYPED_TEST(IntervalIndexTest, NodesAreReusedAfterErase) {
  // Erased nodes go to a free list and come back on the next insert; the
  // invariant check verifies pool size == live + free, so any leak or double
  // free of a node shows up here.
  TypeParam index;
  for (uint64_t i = 0; i < 64; ++i) {
    ASSERT_TRUE(index.Insert(i, PageRange{2 * i, 2 * i + 1}));
  }
  for (int round = 0; round < 50; ++round) {
    for (uint64_t i = round % 2; i < 64; i += 2) {
      ASSERT_TRUE(index.Erase(i, PageRange{2 * i, 2 * i + 1}));
      ASSERT_TRUE(index.CheckInvariants()) << round << " " << i;
    }
    // A rejected duplicate must hand its node back too.
    const uint64_t kept = (round + 1) % 2;  // Still present.
    ASSERT_FALSE(index.Insert(kept, PageRange{2 * kept, 2 * kept + 7}));
    ASSERT_TRUE(index.CheckInvariants());
    for (uint64_t i = round % 2; i < 64; i += 2) {
      ASSERT_TRUE(index.Insert(i, PageRange{2 * i, 2 * i + 1}));
      ASSERT_TRUE(index.CheckInvariants()) << round << " " << i;
    }
    ASSERT_EQ(index.size(), 64u);
  }
  std::vector<Item> want;
  for (uint64_t i = 0; i < 64; ++i) want.push_back({i, {2 * i, 2 * i + 1}});
  EXPECT_EQ(All(index), want);
}

TYPED_TEST(IntervalIndexTest, AscendingInsertsStayBalanced) {
  TypeParam index;
  constexpr uint64_t kN = 2000;
  for (uint64_t i = 0; i < kN; ++i) {
    ASSERT_TRUE(index.Insert(i, PageRange{i, i + 5}));
    ASSERT_TRUE(index.CheckInvariants()) << "after inserting " << i;
  }
  EXPECT_EQ(index.size(), kN);
  EXPECT_THAT(Overlapping(index, PageRange{1000, 1001}),
              ElementsAre(Item{996, {996, 1001}}, Item{997, {997, 1002}}, Item{998, {998, 1003}},
                          Item{999, {999, 1004}}, Item{1000, {1000, 1005}}));
  // Erase ascending too: always the leftmost node.
  for (uint64_t i = 0; i < kN; ++i) {
    ASSERT_TRUE(index.Erase(i, PageRange{i, i + 5}));
    ASSERT_TRUE(index.CheckInvariants()) << "after erasing " << i;
  }
  EXPECT_TRUE(index.empty());
}

TYPED_TEST(IntervalIndexTest, DescendingInsertsStayBalanced) {
  TypeParam index;
  constexpr uint64_t kN = 2000;
  for (uint64_t i = kN; i-- > 0;) {
    ASSERT_TRUE(index.Insert(i, PageRange{i, kInf - i}));
    ASSERT_TRUE(index.CheckInvariants()) << "after inserting " << i;
  }
  EXPECT_EQ(index.size(), kN);
  EXPECT_EQ(Overlapping(index, PageRange{kInf - 2, kInf}).size(), 2u);
  // Erase descending: always the rightmost node.
  for (uint64_t i = kN; i-- > 0;) {
    ASSERT_TRUE(index.Erase(i, PageRange{i, kInf - i}));
    ASSERT_TRUE(index.CheckInvariants()) << "after erasing " << i;
  }
  EXPECT_TRUE(index.empty());
}

TYPED_TEST(IntervalIndexTest, ZigZagInsertsAndMiddleErases) {
  // Alternating ends forces double rotations; erasing from the middle forces
  // successor detachment from two-child nodes.
  TypeParam index;
  constexpr uint64_t kN = 1000;
  std::vector<uint64_t> order;
  for (uint64_t lo = 0, hi = kN - 1; lo <= hi; ++lo, --hi) {
    order.push_back(lo);
    if (hi != lo) order.push_back(hi);
    if (hi == 0) break;
  }
  for (uint64_t k : order) {
    ASSERT_TRUE(index.Insert(k, PageRange{k * 10, k * 10 + 15}));
    ASSERT_TRUE(index.CheckInvariants()) << "after inserting " << k;
  }
  ASSERT_EQ(index.size(), kN);
  for (uint64_t d = 0; d < kN / 2; ++d) {
    for (uint64_t k : {kN / 2 + d, kN / 2 - 1 - d}) {
      ASSERT_TRUE(index.Erase(k, PageRange{k * 10, k * 10 + 15}));
      ASSERT_TRUE(index.CheckInvariants()) << "after erasing " << k;
    }
  }
  EXPECT_TRUE(index.empty());
}

TYPED_TEST(IntervalIndexTest, ManyEntriesWithTheSameStart) {
  TypeParam index;
  for (uint64_t id = 500; id-- > 0;) {
    ASSERT_TRUE(index.Insert(id, PageRange{7, 8 + id}));
    ASSERT_TRUE(index.CheckInvariants());
  }
  std::vector<Item> got = Overlapping(index, PageRange{400, 401});
  ASSERT_EQ(got.size(), 107u);  // ids 393..499 end at or past 401.
  for (size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i].first, 393 + i);
  for (uint64_t id = 0; id < 500; id += 3) {
    ASSERT_TRUE(index.Erase(id, PageRange{7, 8 + id}));
    ASSERT_TRUE(index.CheckInvariants());
  }
}

// --- Randomized comparison with a brute-force model
// ----------------------------

struct RandomParam {
  uint32_t seed;
  uint64_t universe;  // Pages are drawn from [base, base + universe).
  uint64_t base;
  uint64_t ids;  // Ids are drawn from [0, ids).
  int ops;
  int phase = 2500;  // Operations per growing, then shrinking, phase.
};

class IntervalIndexRandomTest : public ::testing::TestWithParam<RandomParam> {};

struct ModelEntry {
  uint64_t first;
  uint64_t id;
  uint64_t end;
  friend bool operator<(const ModelEntry& a, const ModelEntry& b) {
    return std::tie(a.first, a.id) < std::tie(b.first, b.id);
  }
};

template <typename Index>
void MatchesBruteForce(const RandomParam& p) {
  std::mt19937_64 rng(p.seed);
  auto uniform = [&](uint64_t lo, uint64_t hi) {  // Inclusive.
    return std::uniform_int_distribution<uint64_t>(lo, hi)(rng);
  };
  auto random_range = [&]() {
    const uint64_t first = p.base + uniform(0, p.universe - 1);
    uint64_t end;
    switch (uniform(0, 9)) {
      case 0:
        end = kInf;
        break;
      case 1:
        end = first;  // Empty.
        break;
      case 2:
        end = SaturatingAdd(first, uniform(0, p.universe));  // Long.
        break;
      default:
        end = SaturatingAdd(first, uniform(1, 8));
    }
    return PageRange{first, end};
  };

  Index index;
  std::vector<ModelEntry> model;  // Kept sorted by (first, id).
  auto model_overlapping = [&](PageRange q) {
    std::vector<Item> out;
    if (q.empty()) return out;
    for (const ModelEntry& e : model) {
      if (e.first < q.end && q.first < e.end) {
        out.push_back({e.id, {e.first, e.end}});
      }
    }
    return out;
  };

  const auto where = [&](int op) { return absl::StrCat("seed ", p.seed, ", operation #", op); };
  for (int op = 0; op < p.ops; ++op) {
    // Alternate growing and shrinking phases so the tree reaches a few
    // hundred entries and also drains again.
    const bool growing = (op / p.phase) % 2 == 0;
    const uint64_t kind = uniform(0, 99);
    if (kind < (growing ? 45u : 25u)) {  // Insert.
      const uint64_t id = uniform(0, p.ids - 1);
      PageRange r = random_range();
      if (!model.empty() && uniform(0, 9) == 0) {
        // Reuse an existing key: must be refused.
        const ModelEntry& e = model[uniform(0, model.size() - 1)];
        r = PageRange{e.first, SaturatingAdd(e.end, uniform(0, 3))};
        const bool ok = index.Insert(e.id, r);
        ASSERT_FALSE(ok) << where(op) << ": duplicate insert accepted";
      } else {
        const ModelEntry e{r.first, id, r.end};
        auto it = std::lower_bound(model.begin(), model.end(), e);
        const bool expect = !r.empty() && (it == model.end() || e < *it);
        ASSERT_EQ(index.Insert(id, r), expect)
            << where(op) << ": Insert(" << id << ", " << r.ToString() << ")";
        if (expect) model.insert(it, e);
      }
    } else if (kind < 75) {  // Erase.
      if (!model.empty() && uniform(0, 4) != 0) {
        const size_t i = uniform(0, model.size() - 1);
        const ModelEntry e = model[i];
        if (uniform(0, 5) == 0) {
          // Wrong end: refused, nothing changes.
          const uint64_t wrong = e.end == kInf ? e.end - 1 : e.end + 1;
          ASSERT_FALSE(index.Erase(e.id, PageRange{e.first, wrong})) << where(op);
        } else {
          ASSERT_TRUE(index.Erase(e.id, PageRange{e.first, e.end}))
              << where(op) << ": Erase(" << e.id << ", [" << e.first << ", " << e.end << "))";
          model.erase(model.begin() + static_cast<ptrdiff_t>(i));
        }
      } else {
        const uint64_t id = uniform(0, p.ids - 1);
        const PageRange r = random_range();
        const ModelEntry e{r.first, id, r.end};
        auto it = std::lower_bound(model.begin(), model.end(), e);
        const bool expect = it != model.end() && !(e < *it) && it->end == r.end;
        ASSERT_EQ(index.Erase(id, r), expect)
            << where(op) << ": Erase(" << id << ", " << r.ToString() << ")";
        if (expect) model.erase(it);
      }
    } else if (kind < 98) {  // Queries.
      const PageRange q = random_range();
      const std::vector<Item> want = model_overlapping(q);
      const std::vector<Item> got = Overlapping(index, q);
      ASSERT_EQ(got, want) << where(op) << ": ForEachOverlapping(" << q.ToString() << ")\n got "
                           << Describe(got) << "\nwant " << Describe(want);
      ASSERT_EQ(index.AnyOverlapping(q), !want.empty())
          << where(op) << ": AnyOverlapping(" << q.ToString() << ")";
    } else if (kind < 99) {  // Full listing.
      ASSERT_EQ(All(index), model_overlapping(PageRange{0, kInf})) << where(op);
    } else if (uniform(0, 19) == 0) {  // Rare Clear.
      index.Clear();
      model.clear();
    }
    ASSERT_EQ(index.size(), model.size()) << where(op);
    ASSERT_EQ(index.empty(), model.empty()) << where(op);
    ASSERT_TRUE(index.CheckInvariants()) << where(op);
  }
  EXPECT_EQ(All(index), model_overlapping(PageRange{0, kInf}));
}

TEST_P(IntervalIndexRandomTest, MatchesBruteForce) { MatchesBruteForce<IntervalIndex>(GetParam()); }

TEST_P(IntervalIndexRandomTest, BTreeMatchesBruteForce) {
  MatchesBruteForce<BTreeIntervalIndex>(GetParam());
}

INSTANTIATE_TEST_SUITE_P(
    Seeds, IntervalIndexRandomTest,
    ::testing::Values(
        RandomParam{.seed = 1, .universe = 64, .base = 0, .ids = 16, .ops = 10000},
        RandomParam{.seed = 2, .universe = 512, .base = 0, .ids = 200, .ops = 10000},
        RandomParam{.seed = 3, .universe = 1 << 20, .base = 0, .ids = 1000, .ops = 10000},
        RandomParam{.seed = 4, .universe = 200, .base = kInf - 200, .ids = 50, .ops = 10000},
        RandomParam{.seed = 5, .universe = 4096, .base = 1000, .ids = 5, .ops = 10000},
        RandomParam{.seed = 6, .universe = 32, .base = 0, .ids = 1 << 20, .ops = 10000},
        // Long phases: a few thousand entries, three or more B+tree levels, splits and merges
        // of inner nodes.
        RandomParam{.seed = 7,
                    .universe = 1 << 16,
                    .base = 0,
                    .ids = 1 << 16,
                    .ops = 40000,
                    .phase = 20000}),
    [](const ::testing::TestParamInfo<RandomParam>& info) {
      return absl::StrCat("seed", info.param.seed);
    });

}  // namespace
}  // namespace pinbroker
