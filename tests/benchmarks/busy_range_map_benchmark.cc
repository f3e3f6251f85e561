// Benchmarks for BusyRangeMap and the interval index under it, with one file
// holding N live leases (N = 1k, 100k, 1M).
//
// Leases cover random ranges of 1-16 pages over a universe of 16 * N pages,
// so about half the pages are pinned and a random 1-16 page query overlaps
// about one lease, a realistic density. The N leases are set up once per N
// (not timed) and shared by the benchmarks of the same kind; each benchmark
// leaves them as it found them. The BM_Index_* variants run on both indexes:
// BTreeIntervalIndex (the one BusyRangeMap uses) and IntervalIndex (the AVL
// tree it replaced, kept as the baseline); they show how much of the
// BusyRangeMap cost is its mutex, hash map and result vector.
//
// Each benchmark reports per-iteration time:
//   InsertErase:    Reserve + Commit (no-op callback) of a fresh lease, then
//                   Remove of it (IntervalIndex: Insert + Erase).
//   Overlapping:    Overlapping() of a random 1-16 page range (IntervalIndex:
//                   ForEachOverlapping counting the results).
//   AnyOverlapping: AnyOverlapping() of a random 1-16 page range.
//   Scan_Overlapping: the baseline, measured in the same run: a linear scan of
//                   all N ranges, as a busy-page scan without an index does
//                   (the kernel's dax_layout_busy_page() walks every page).
// "hits" is the mean number of leases a query found.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "benchmark/benchmark.h"
#include "pinning/btree_interval_index.h"
#include "pinning/busy_range_map.h"
#include "pinning/interval_index.h"
#include "pinning/lease.h"
#include "pinning/page_range.h"
#include "common/simulated_clock.h"

namespace pinbroker {
namespace {

constexpr uint64_t kPagesPerLease = 16;  // Universe = 16 * N pages.
constexpr uint64_t kMaxRangePages = 16;
constexpr size_t kRangePool = 1 << 16;  // Pre-drawn ranges, cycled through.

// `count` random ranges of 1-16 pages starting in [0, universe).
std::vector<PageRange> RandomRanges(size_t count, uint64_t universe, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<uint64_t> first(0, universe - 1);
  std::uniform_int_distribution<uint64_t> length(1, kMaxRangePages);
  std::vector<PageRange> out;
  out.reserve(count);
  for (size_t i = 0; i < count; ++i) {
    const uint64_t f = first(rng);
    out.push_back(PageRange{f, f + length(rng)});
  }
  return out;
}

// N held leases in a BusyRangeMap, with ids 1..N.
struct MapFixture {
  explicit MapFixture(size_t n) : map(&clock) {
    const uint64_t universe = kPagesPerLease * n;
    const std::vector<PageRange> ranges = RandomRanges(n, universe, 42);
    for (size_t i = 0; i < n; ++i) {
      const LeaseId lease = i + 1;
      if (!map.Reserve(lease, ranges[i], absl::InfinitePast()).ok() ||
          !map.Commit(lease, [] {}).ok()) {
        std::abort();
      }
    }
    queries = RandomRanges(kRangePool, universe, 7);
    next_lease = n + 1;
  }
  SimulatedClock clock;
  BusyRangeMap map;
  std::vector<PageRange> queries;
  LeaseId next_lease;
};

// The same N entries in a bare index.
template <typename Index>
struct IndexFixture {
  explicit IndexFixture(size_t n) {
    const uint64_t universe = kPagesPerLease * n;
    const std::vector<PageRange> ranges = RandomRanges(n, universe, 42);
    for (size_t i = 0; i < n; ++i) {
      if (!index.Insert(i + 1, ranges[i])) std::abort();
    }
    queries = RandomRanges(kRangePool, universe, 7);
    next_id = n + 1;
  }
  Index index;
  std::vector<PageRange> queries;
  uint64_t next_id;
};

// The same N ranges in a plain vector, for the linear-scan baseline.
struct ScanFixture {
  explicit ScanFixture(size_t n)
      : ranges(RandomRanges(n, kPagesPerLease * n, 42)),
        queries(RandomRanges(kRangePool, kPagesPerLease * n, 7)) {}
  std::vector<PageRange> ranges;
  std::vector<PageRange> queries;
};

// Built on first use for each N and kept for the whole run, so repetitions and
// the three benchmarks of a kind share one (untimed) setup.
template <typename Fixture>
Fixture& Get(size_t n) {
  static auto* fixtures = new std::map<size_t, std::unique_ptr<Fixture>>;
  std::unique_ptr<Fixture>& f = (*fixtures)[n];
  if (f == nullptr) f = std::make_unique<Fixture>(n);
  return *f;
}

size_t N(const benchmark::State& state) { return static_cast<size_t>(state.range(0)); }

void BM_Map_InsertErase(benchmark::State& state) {
  MapFixture& f = Get<MapFixture>(N(state));
  size_t i = 0;
  for (auto _ : state) {
    const LeaseId lease = f.next_lease++;
    const PageRange range = f.queries[i++ % kRangePool];
    absl::Status s = f.map.Reserve(lease, range, absl::InfinitePast());
    s.Update(f.map.Commit(lease, [] {}));
    s.Update(f.map.Remove(lease));
    if (!s.ok()) {
      state.SkipWithError("BusyRangeMap operation failed");
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_Map_Overlapping(benchmark::State& state) {
  MapFixture& f = Get<MapFixture>(N(state));
  size_t i = 0;
  uint64_t hits = 0;
  for (auto _ : state) {
    std::vector<BusyRangeMap::Entry> found = f.map.Overlapping(f.queries[i++ % kRangePool]);
    hits += found.size();
    benchmark::DoNotOptimize(found.data());
  }
  state.counters["hits"] =
      benchmark::Counter(static_cast<double>(hits), benchmark::Counter::kAvgIterations);
  state.SetItemsProcessed(state.iterations());
}

void BM_Map_AnyOverlapping(benchmark::State& state) {
  MapFixture& f = Get<MapFixture>(N(state));
  size_t i = 0;
  uint64_t hits = 0;
  for (auto _ : state) {
    const bool any = f.map.AnyOverlapping(f.queries[i++ % kRangePool]);
    hits += any;
    benchmark::DoNotOptimize(any);
  }
  state.counters["hits"] =
      benchmark::Counter(static_cast<double>(hits), benchmark::Counter::kAvgIterations);
  state.SetItemsProcessed(state.iterations());
}

template <typename Index>
void BM_Index_InsertErase(benchmark::State& state) {
  IndexFixture<Index>& f = Get<IndexFixture<Index>>(N(state));
  size_t i = 0;
  for (auto _ : state) {
    const uint64_t id = f.next_id++;
    const PageRange range = f.queries[i++ % kRangePool];
    const bool inserted = f.index.Insert(id, range);
    const bool erased = f.index.Erase(id, range);
    if (!inserted || !erased) {
      state.SkipWithError("index operation failed");
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());
}

template <typename Index>
void BM_Index_Overlapping(benchmark::State& state) {
  IndexFixture<Index>& f = Get<IndexFixture<Index>>(N(state));
  size_t i = 0;
  uint64_t hits = 0;
  for (auto _ : state) {
    f.index.ForEachOverlapping(f.queries[i++ % kRangePool], [&hits](uint64_t id, PageRange) {
      benchmark::DoNotOptimize(id);
      ++hits;
    });
  }
  state.counters["hits"] =
      benchmark::Counter(static_cast<double>(hits), benchmark::Counter::kAvgIterations);
  state.SetItemsProcessed(state.iterations());
}

template <typename Index>
void BM_Index_AnyOverlapping(benchmark::State& state) {
  IndexFixture<Index>& f = Get<IndexFixture<Index>>(N(state));
  size_t i = 0;
  uint64_t hits = 0;
  for (auto _ : state) {
    const bool any = f.index.AnyOverlapping(f.queries[i++ % kRangePool]);
    hits += any;
    benchmark::DoNotOptimize(any);
  }
  state.counters["hits"] =
      benchmark::Counter(static_cast<double>(hits), benchmark::Counter::kAvgIterations);
  state.SetItemsProcessed(state.iterations());
}

void BM_Scan_Overlapping(benchmark::State& state) {
  ScanFixture& f = Get<ScanFixture>(N(state));
  size_t i = 0;
  uint64_t hits = 0;
  for (auto _ : state) {
    const PageRange q = f.queries[i++ % kRangePool];
    for (size_t id = 0; id < f.ranges.size(); ++id) {
      if (f.ranges[id].Overlaps(q)) {
        benchmark::DoNotOptimize(id);
        ++hits;
      }
    }
  }
  state.counters["hits"] =
      benchmark::Counter(static_cast<double>(hits), benchmark::Counter::kAvgIterations);
  state.SetItemsProcessed(state.iterations());
}

#define PB_BENCHMARK(fn) BENCHMARK(fn)->Arg(1000)->Arg(100000)->Arg(1000000)

PB_BENCHMARK(BM_Map_InsertErase);
PB_BENCHMARK(BM_Map_Overlapping);
PB_BENCHMARK(BM_Map_AnyOverlapping);
#define PB_BENCHMARK_INDEX(fn)                                                      \
  BENCHMARK_TEMPLATE(fn, BTreeIntervalIndex)->Arg(1000)->Arg(100000)->Arg(1000000); \
  BENCHMARK_TEMPLATE(fn, IntervalIndex)->Arg(1000)->Arg(100000)->Arg(1000000)

PB_BENCHMARK_INDEX(BM_Index_InsertErase);
PB_BENCHMARK_INDEX(BM_Index_Overlapping);
PB_BENCHMARK_INDEX(BM_Index_AnyOverlapping);
PB_BENCHMARK(BM_Scan_Overlapping);

}  // namespace
}  // namespace pinbroker

// Like BENCHMARK_MAIN(), but measures for 0.2 s instead of 0.5 s unless
// --benchmark_min_time says otherwise: a 5-repetition run of everything stays
// under a minute while the 1M cases still run 100k+ iterations.
//
// absl::Mutex's deadlock detector is off, as in the shipped pinbrokerd (Debian's libabsl is built
// without NDEBUG, so it would otherwise run on every lock); --deadlock_detection turns it on to
// measure its cost.
int main(int argc, char** argv) {
  std::vector<char*> args;
  bool deadlock_detection = false;
  for (int i = 0; i < argc; ++i) {
    if (std::string_view(argv[i]) == "--deadlock_detection") {
      deadlock_detection = true;
    } else {
      args.push_back(argv[i]);
    }
  }
  absl::SetMutexDeadlockDetectionMode(deadlock_detection ? absl::OnDeadlockCycle::kAbort
                                                         : absl::OnDeadlockCycle::kIgnore);
  std::string min_time = "--benchmark_min_time=0.2";
  args.insert(args.begin() + 1, min_time.data());  // Later flags win.
  int args_count = static_cast<int>(args.size());
  benchmark::Initialize(&args_count, args.data());
  if (benchmark::ReportUnrecognizedArguments(args_count, args.data())) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
