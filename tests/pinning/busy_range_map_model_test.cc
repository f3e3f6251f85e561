// Model test for BusyRangeMap: long random sequences of every operation,
// each result checked against a brute-force model built from plain containers.
//
// The model is deliberately naive: entries in a std::map scanned linearly,
// blocks holding the explicit set of leases they still wait for (instead of a
// counter). Every Reserve() passes a deadline that has already passed, so
// nothing ever waits and the whole run is single-threaded and deterministic.
// On a mismatch the failure names the seed, the operation index and the last
// operations that led there.

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <map>
#include <ostream>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "pinning/busy_range_map.h"
#include "pinning/lease.h"
#include "pinning/page_range.h"
#include "common/simulated_clock.h"

namespace pinbroker {
namespace {

constexpr uint64_t kInf = kPageRangeToInfinity;

uint64_t SaturatingAdd(uint64_t a, uint64_t b) {
  uint64_t sum;
  return __builtin_add_overflow(a, b, &sum) ? kInf : sum;
}

struct ModelParam {
  const char* name;
  uint32_t seed;
  uint64_t universe;  // Range starts are drawn from [base, base + universe).
  uint64_t base;
  size_t target_live;  // The run hovers around this many entries.
  int ops;

  friend void PrintTo(const ModelParam& p, std::ostream* os) {
    *os << p.name << " (seed " << p.seed << ", " << p.universe << " pages from " << p.base << ", ~"
        << p.target_live << " live, " << p.ops << " ops)";
  }
};

// Brute-force model of one BusyRangeMap.
struct Model {
  struct Entry {
    PageRange range;
    bool held = false;
    bool doomed = false;  // A block overlapped it while it was reserved.
  };
  struct Block {
    PageRange range;
    std::string reason;
    std::set<LeaseId> waiting_for;  // Entries present at block time, not yet
                                    // removed.
  };

  std::map<LeaseId, Entry> entries;
  std::map<BusyRangeMap::BlockId, Block> blocks;
  BusyRangeMap::BlockId next_block = 1;

  static bool Overlap(PageRange a, PageRange b) {
    // Written out independently of PageRange::Overlaps(): empty ranges share
    // no page with anything.
    return !a.empty() && !b.empty() && std::max(a.first, b.first) < std::min(a.end, b.end);
  }

  // Entries overlapping `q`, ascending by (range.first, lease).
  std::vector<BusyRangeMap::Entry> Overlapping(PageRange q) const {
    std::vector<BusyRangeMap::Entry> out;
    for (const auto& [lease, e] : entries) {
      if (Overlap(e.range, q)) out.push_back({lease, e.range, e.held});
    }
    std::sort(out.begin(), out.end(),
              [](const BusyRangeMap::Entry& a, const BusyRangeMap::Entry& b) {
                return std::tie(a.range.first, a.lease) < std::tie(b.range.first, b.lease);
              });
    return out;
  }

  std::vector<const Block*> BlocksOverlapping(PageRange r) const {
    std::vector<const Block*> out;
    for (const auto& [id, b] : blocks) {
      if (Overlap(b.range, r)) out.push_back(&b);
    }
    return out;
  }
};

std::string Describe(const std::vector<BusyRangeMap::Entry>& entries) {
  std::string out = "{";
  for (const BusyRangeMap::Entry& e : entries) {
    absl::StrAppend(&out, " ", e.lease, ":", e.range.ToString(), e.held ? ":held" : ":reserved");
  }
  absl::StrAppend(&out, " }");
  return out;
}

bool SameEntries(const std::vector<BusyRangeMap::Entry>& a,
                 const std::vector<BusyRangeMap::Entry>& b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(),
                    [](const BusyRangeMap::Entry& x, const BusyRangeMap::Entry& y) {
                      return x.lease == y.lease && x.range == y.range && x.held == y.held;
                    });
}

std::vector<LeaseId> Leases(const std::vector<BusyRangeMap::Entry>& entries, bool held) {
  std::vector<LeaseId> out;
  for (const auto& e : entries) {
    if (e.held == held) out.push_back(e.lease);
  }
  return out;
}

bool MentionsOneOf(absl::string_view message, const std::vector<const Model::Block*>& blocks) {
  for (const Model::Block* b : blocks) {
    if (absl::StrContains(message, b->reason)) return true;
  }
  return false;
}

class BusyRangeMapModelTest : public ::testing::TestWithParam<ModelParam> {
 protected:
  enum class Op {
    kReserve,
    kCommit,
    kRemove,
    kBlock,
    kUnblock,
    kQuery,
    kAwaitDrained,
  };
  struct OpRecord {
    int index = -1;
    Op op = Op::kQuery;
    LeaseId lease = 0;
    PageRange range;
    BusyRangeMap::BlockId block = 0;
  };

  uint64_t Uniform(uint64_t lo, uint64_t hi) {  // Inclusive.
    return std::uniform_int_distribution<uint64_t>(lo, hi)(rng_);
  }
  bool OneIn(uint64_t n) { return Uniform(1, n) == 1; }

  // Random non-empty range: mostly 1-16 pages, sometimes a single page, a
  // long range, or open-ended.
  PageRange RandomRange() {
    const ModelParam& p = GetParam();
    const uint64_t first = p.base + Uniform(0, p.universe - 1);
    const uint64_t kind = Uniform(0, 19);
    uint64_t length;
    if (kind < 2) {
      return PageRange{first, kInf};
    } else if (kind < 4) {
      length = 1;
    } else if (kind < 5) {
      length = Uniform(1, std::max<uint64_t>(p.universe / 4, 1));
    } else {
      length = Uniform(1, 16);
    }
    return PageRange{first, SaturatingAdd(first, length)};
  }

  static const char* OpName(Op op) {
    switch (op) {
      case Op::kReserve:
        return "Reserve";
      case Op::kCommit:
        return "Commit";
      case Op::kRemove:
        return "Remove";
      case Op::kBlock:
        return "Block";
      case Op::kUnblock:
        return "Unblock";
      case Op::kQuery:
        return "Overlapping";
      case Op::kAwaitDrained:
        return "AwaitDrained";
    }
    return "?";
  }
  static std::string Format(const OpRecord& r) {
    std::string out = absl::StrCat("#", r.index, " ", OpName(r.op), "(");
    switch (r.op) {
      case Op::kReserve:
        absl::StrAppend(&out, "lease ", r.lease, ", ", r.range.ToString());
        break;
      case Op::kCommit:
      case Op::kRemove:
        absl::StrAppend(&out, "lease ", r.lease);
        break;
      case Op::kBlock:
      case Op::kQuery:
        absl::StrAppend(&out, r.range.ToString());
        break;
      case Op::kUnblock:
      case Op::kAwaitDrained:
        absl::StrAppend(&out, "block ", r.block);
        break;
    }
    return absl::StrCat(out, ")");
  }

  // "seed S, operation #i: Op(args)"; evaluated only when a check fails.
  std::string Where() const {
    return absl::StrCat("[", GetParam().name, "] seed ", GetParam().seed, ", operation ",
                        Format(current_));
  }
  std::string History() const {
    std::vector<std::string> lines;
    for (size_t i = 0; i < kHistory; ++i) {
      const OpRecord& r = history_[(next_history_ + i) % kHistory];
      if (r.index >= 0) lines.push_back(Format(r));
    }
    return absl::StrCat("seed ", GetParam().seed, "; last operations:\n  ",
                        absl::StrJoin(lines, "\n  "));
  }
  void Record(Op op, LeaseId lease, PageRange range, BusyRangeMap::BlockId block) {
    current_ = OpRecord{op_index_, op, lease, range, block};
    history_[next_history_] = current_;
    next_history_ = (next_history_ + 1) % kHistory;
  }

  // A deadline that has already passed, so Reserve() and AwaitDrained() never
  // wait: mostly InfinitePast(), sometimes exactly Now().
  absl::Time PassedDeadline() { return OneIn(4) ? clock_.Now() : absl::InfinitePast(); }

  LeaseId PickPresent(bool held) {
    // Random probing; falls back to any present lease.
    for (int tries = 0; tries < 8 && !model_.entries.empty(); ++tries) {
      auto it = model_.entries.lower_bound(Uniform(1, next_lease_));
      if (it == model_.entries.end()) it = model_.entries.begin();
      if (it->second.held == held) return it->first;
    }
    return model_.entries.empty() ? Uniform(1, next_lease_) : model_.entries.begin()->first;
  }

  void DoReserve() {
    LeaseId lease;
    const uint64_t pick = Uniform(0, 19);
    if (pick < 16 || model_.entries.empty()) {
      lease = next_lease_++;  // Fresh.
    } else if (pick < 18) {
      lease = PickPresent(OneIn(2));  // Present: ALREADY_EXISTS.
    } else {
      lease = Uniform(1, next_lease_);  // Maybe reused after Remove().
      if (lease == next_lease_) ++next_lease_;
    }
    PageRange range = RandomRange();
    if (OneIn(100)) range.end = range.first;  // Empty.
    Record(Op::kReserve, lease, range, 0);

    const absl::Status got = map_.Reserve(lease, range, PassedDeadline());
    if (range.empty()) {
      ASSERT_EQ(got.code(), absl::StatusCode::kInvalidArgument) << Where() << ": " << got;
      return;
    }
    if (model_.entries.contains(lease)) {
      ASSERT_EQ(got.code(), absl::StatusCode::kAlreadyExists) << Where() << ": " << got;
      return;
    }
    const std::vector<const Model::Block*> blocking = model_.BlocksOverlapping(range);
    if (!blocking.empty()) {
      ASSERT_EQ(got.code(), absl::StatusCode::kAborted) << Where() << ": " << got;
      ASSERT_TRUE(MentionsOneOf(got.message(), blocking))
          << Where() << ": message names no overlapping block: " << got;
      ++stats_.reserve_aborted;
      return;
    }
    ASSERT_TRUE(got.ok()) << Where() << ": " << got;
    model_.entries[lease] = Model::Entry{range, false, false};
    ++stats_.reserve_ok;
  }

  void DoCommit() {
    LeaseId lease;
    const uint64_t pick = Uniform(0, 19);
    if (pick < 15) {
      lease = PickPresent(/*held=*/false);
    } else if (pick < 17) {
      lease = PickPresent(/*held=*/true);
    } else {
      lease = Uniform(1, next_lease_ + 2);
    }
    Record(Op::kCommit, lease, {}, 0);

    int calls = 0;
    const absl::Status got = map_.Commit(lease, [&calls] { ++calls; });
    auto it = model_.entries.find(lease);
    absl::StatusCode want = absl::StatusCode::kOk;
    if (it == model_.entries.end()) {
      want = absl::StatusCode::kNotFound;
    } else if (it->second.held) {
      want = absl::StatusCode::kFailedPrecondition;
    } else if (it->second.doomed) {
      want = absl::StatusCode::kAborted;
    }
    ASSERT_EQ(got.code(), want) << Where() << ": " << got;
    ASSERT_EQ(calls, want == absl::StatusCode::kOk ? 1 : 0)
        << Where() << ": on_commit ran " << calls << " times";
    if (want == absl::StatusCode::kAborted) {
      // Names a block still overlapping, or says the change completed.
      const std::vector<const Model::Block*> blocking = model_.BlocksOverlapping(it->second.range);
      if (blocking.empty()) {
        ASSERT_TRUE(absl::StrContains(got.message(), "since completed")) << Where() << ": " << got;
      } else {
        ASSERT_TRUE(MentionsOneOf(got.message(), blocking)) << Where() << ": " << got;
      }
      ++stats_.commit_aborted;
    }
    if (want == absl::StatusCode::kOk) {
      it->second.held = true;
      ++stats_.commit_ok;
    }
  }

  void DoRemove() {
    const LeaseId lease =
        OneIn(7) || model_.entries.empty() ? Uniform(1, next_lease_ + 2) : PickPresent(OneIn(2));
    Record(Op::kRemove, lease, {}, 0);
    const absl::Status got = map_.Remove(lease);
    auto it = model_.entries.find(lease);
    if (it == model_.entries.end()) {
      ASSERT_EQ(got.code(), absl::StatusCode::kNotFound) << Where() << ": " << got;
      return;
    }
    ASSERT_TRUE(got.ok()) << Where() << ": " << got;
    model_.entries.erase(it);
    for (auto& [id, block] : model_.blocks) block.waiting_for.erase(lease);
  }

  void DoBlock() {
    const PageRange range = RandomRange();
    Record(Op::kBlock, 0, range, model_.next_block);
    const std::string reason =
        absl::StrCat("layout change #", model_.next_block, " on ", range.ToString());
    const BusyRangeMap::BlockResult got = map_.Block(range, reason);

    const std::vector<BusyRangeMap::Entry> now = model_.Overlapping(range);
    ASSERT_EQ(got.id, model_.next_block) << Where();
    ASSERT_EQ(got.held, Leases(now, /*held=*/true))
        << Where() << ": held leases; overlapping " << Describe(now);
    ASSERT_EQ(got.pending, Leases(now, /*held=*/false))
        << Where() << ": pending leases; overlapping " << Describe(now);

    Model::Block& block = model_.blocks[model_.next_block++];
    block.range = range;
    block.reason = reason;
    for (const BusyRangeMap::Entry& e : now) {
      block.waiting_for.insert(e.lease);
      if (!e.held) model_.entries[e.lease].doomed = true;
    }
    stats_.block_waits += now.size();
  }

  void DoUnblock() {
    BusyRangeMap::BlockId id;
    if (model_.blocks.empty() || OneIn(10)) {
      id = Uniform(0, model_.next_block + 1);  // Often unknown: a no-op.
    } else {
      auto it = model_.blocks.begin();
      std::advance(it, Uniform(0, model_.blocks.size() - 1));
      id = it->first;
    }
    Record(Op::kUnblock, 0, {}, id);
    map_.Unblock(id);
    if (model_.blocks.erase(id) > 0) retired_blocks_.push_back(id);
  }

  void DoQuery() {
    PageRange q = RandomRange();
    if (OneIn(50)) q.end = q.first;  // Empty query: matches nothing.
    if (OneIn(50)) q = PageRange{0, kInf};
    Record(Op::kQuery, 0, q, 0);
    const std::vector<BusyRangeMap::Entry> want = model_.Overlapping(q);
    const std::vector<BusyRangeMap::Entry> got = map_.Overlapping(q);
    ASSERT_TRUE(SameEntries(got, want))
        << Where() << "\n got " << Describe(got) << "\nwant " << Describe(want);
    ASSERT_EQ(map_.AnyOverlapping(q), !want.empty()) << Where() << ": AnyOverlapping";
    stats_.query_hits += want.size();
  }

  void DoAwaitDrained() {
    // Non-waiting AwaitDrained() on an active, retired or never-used id.
    BusyRangeMap::BlockId id;
    const uint64_t pick = Uniform(0, 2);
    if (pick == 0 && !model_.blocks.empty()) {
      id = model_.blocks.rbegin()->first;
    } else if (pick == 1 && !retired_blocks_.empty()) {
      id = retired_blocks_[Uniform(0, retired_blocks_.size() - 1)];
    } else {
      id = model_.next_block + Uniform(0, 3);
    }
    Record(Op::kAwaitDrained, 0, {}, id);
    auto it = model_.blocks.find(id);
    const bool want = it != model_.blocks.end() && it->second.waiting_for.empty();
    ASSERT_EQ(map_.AwaitDrained(id, PassedDeadline()), want) << Where();
    ASSERT_EQ(map_.IsDrained(id), want) << Where();
  }

  // Checks run after every operation (the full entry listing less often).
  void CheckState(bool full) {
    ASSERT_EQ(map_.size(), model_.entries.size()) << Where();
    ASSERT_EQ(map_.idle(), model_.entries.empty() && model_.blocks.empty()) << Where();

    const std::vector<BusyRangeMap::BlockInfo> blocks = map_.Blocks();
    ASSERT_EQ(blocks.size(), model_.blocks.size()) << Where();
    size_t i = 0;
    for (const auto& [id, want] : model_.blocks) {
      const BusyRangeMap::BlockInfo& got = blocks[i++];
      ASSERT_EQ(got.id, id) << Where();
      ASSERT_EQ(got.range, want.range) << Where() << ": block " << id;
      ASSERT_EQ(got.reason, want.reason) << Where() << ": block " << id;
      ASSERT_EQ(got.remaining, want.waiting_for.size())
          << Where() << ": block " << id << " still waits for "
          << absl::StrJoin(want.waiting_for, ", ");
      ASSERT_EQ(map_.IsDrained(id), want.waiting_for.empty())
          << Where() << ": IsDrained(" << id << ")";
    }

    if (full) {
      const std::vector<BusyRangeMap::Entry> want = model_.Overlapping(PageRange{0, kInf});
      const std::vector<BusyRangeMap::Entry> got = map_.Entries();
      ASSERT_TRUE(SameEntries(got, want))
          << Where() << ": Entries()\n got " << Describe(got) << "\nwant " << Describe(want);
    }
  }

  void Step() {
    const ModelParam& p = GetParam();
    const bool crowded = model_.entries.size() > p.target_live;
    const uint64_t r = Uniform(0, 999);
    // Per mille: Reserve 300 (150 when crowded), Commit 200, Remove 200 (350
    // when crowded), Block 15 (while fewer than 3 blocks), Unblock 25,
    // AwaitDrained 10, and the rest Overlapping/AnyOverlapping.
    const uint64_t reserve = crowded ? 150 : 300;
    const uint64_t remove = crowded ? 350 : 200;
    if (r < reserve) {
      DoReserve();
    } else if (r < reserve + 200) {
      DoCommit();
    } else if (r < reserve + 200 + remove) {
      DoRemove();
    } else if (r < 715) {
      if (model_.blocks.size() < 3) {
        DoBlock();
      } else {
        DoUnblock();
      }
    } else if (r < 740) {
      DoUnblock();
    } else if (r < 750) {
      DoAwaitDrained();
    } else {
      DoQuery();
    }
  }

  static constexpr size_t kHistory = 12;

  std::mt19937_64 rng_{GetParam().seed};
  SimulatedClock clock_;
  BusyRangeMap map_{&clock_};
  Model model_;
  LeaseId next_lease_ = 1;
  std::vector<BusyRangeMap::BlockId> retired_blocks_;

  int op_index_ = 0;
  OpRecord current_;
  OpRecord history_[kHistory];
  size_t next_history_ = 0;

  struct {
    uint64_t reserve_ok = 0;
    uint64_t reserve_aborted = 0;
    uint64_t commit_ok = 0;
    uint64_t commit_aborted = 0;
    uint64_t block_waits = 0;
    uint64_t query_hits = 0;
  } stats_;
};

TEST_P(BusyRangeMapModelTest, MatchesBruteForceModel) {
  const ModelParam& p = GetParam();
  for (op_index_ = 0; op_index_ < p.ops; ++op_index_) {
    Step();
    if (HasFatalFailure()) break;
    const Op op = current_.op;
    CheckState(/*full=*/op == Op::kBlock || op_index_ % 16 == 0);
    if (HasFatalFailure()) break;
  }
  if (HasFatalFailure()) {
    ADD_FAILURE() << History();
    return;
  }
  // Drain everything: all blocks must report drained and the map go idle.
  std::vector<LeaseId> leases;
  for (const auto& [lease, e] : model_.entries) leases.push_back(lease);
  for (LeaseId lease : leases) {
    ASSERT_TRUE(map_.Remove(lease).ok()) << "seed " << p.seed;
  }
  for (const auto& [id, block] : model_.blocks) {
    EXPECT_TRUE(map_.IsDrained(id)) << "seed " << p.seed << " block " << id;
    map_.Unblock(id);
  }
  EXPECT_TRUE(map_.idle()) << "seed " << p.seed;

  // The run must have exercised the interesting outcomes, or it proves
  // little.
  EXPECT_GT(stats_.reserve_ok, 1000u) << "seed " << p.seed;
  EXPECT_GT(stats_.reserve_aborted, 100u) << "seed " << p.seed;
  EXPECT_GT(stats_.commit_ok, 1000u) << "seed " << p.seed;
  EXPECT_GT(stats_.commit_aborted, 0u) << "seed " << p.seed;
  EXPECT_GT(stats_.query_hits, 1000u) << "seed " << p.seed;
  RecordProperty("reserve_ok", static_cast<int>(stats_.reserve_ok));
  RecordProperty("reserve_aborted", static_cast<int>(stats_.reserve_aborted));
  RecordProperty("commit_ok", static_cast<int>(stats_.commit_ok));
  RecordProperty("commit_aborted", static_cast<int>(stats_.commit_aborted));
  RecordProperty("block_waits", static_cast<int>(stats_.block_waits));
  RecordProperty("query_hits", static_cast<int>(stats_.query_hits));
}

constexpr int kOpsPerSeed = 120000;

INSTANTIATE_TEST_SUITE_P(Seeds, BusyRangeMapModelTest,
                         ::testing::Values(
                             // 64 pages: nearly every range overlaps something.
                             ModelParam{"dense64", 1, 64, 0, 24, kOpsPerSeed},
                             ModelParam{"sparse64", 2, 64, 0, 6, kOpsPerSeed},
                             ModelParam{"medium512", 3, 512, 0, 64, kOpsPerSeed},
                             // Near the top of the page space: ranges end at kPageRangeToInfinity.
                             ModelParam{"top256", 4, 256, kInf - 256, 48, kOpsPerSeed},
                             ModelParam{"wide4096", 5, 4096, 12345, 200, kOpsPerSeed},
                             // 1M pages: overlaps are rare except for long and open-ended ranges.
                             ModelParam{"huge1M", 6, 1 << 20, 0, 400, kOpsPerSeed}),
                         [](const ::testing::TestParamInfo<ModelParam>& info) {
                           return absl::StrCat(info.param.name, "_seed", info.param.seed);
                         });

}  // namespace
}  // namespace pinbroker
