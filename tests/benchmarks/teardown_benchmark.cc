// Teardown cost: ending N leases at once, through the engine (PinService over a FakeBackend and
// a SimulatedClock, no file guard), at N = 10k and 100k.
//
// Setup (not timed): two owners each pin N one-page leases spread over kFiles files, so the
// table also holds N leases that are not being ended (another session's).
//
//   CloseSession:   what the broker's CloseSession does: list the owner's leases, release each.
//   Expire:         every lease of one owner runs out at the same instant; the clock advances
//                   past it and the expiry pass ends them all.
//   CloseSession_ListPerEnd: CloseSession with a guard stub that, on every ended lease, lists
//                   the live leases of that lease's file (as FileGuard::DisarmIfIdle does to
//                   decide whether to disarm): O(n) per end, quadratic in all. 10k only.
//   CloseSession_HasLivePerEnd: the same stub asking PinService::HasLiveLeases instead
//                   (O(log n) per end).
//
// Counters: per_lease_ns (time / N). Linear teardown keeps per_lease_ns flat from 10k to 100k;
// the 10k run is the baseline of the 100k one. Log lines are formatted and discarded.

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "benchmark/benchmark.h"
#include "common/log.h"
#include "common/simulated_clock.h"
#include "pinning/layout_guard.h"
#include "pinning/pin_service.h"
#include "tests/testing/fake_backend.h"
#include "tests/testing/temp_dir.h"

namespace pinbroker {
namespace {

constexpr int kFiles = 64;
constexpr uint64_t kPagesPerFile = 16;

// Asks about the file's live leases on every lease end, like a guard deciding whether to disarm.
class QueryingGuard final : public FileGuardHooks {
 public:
  QueryingGuard(PinService* service, bool list) : service_(service), list_(list) {}
  void OnLeaseGranted(const LeaseInfo&, int) override {}
  void OnLeaseEnded(const LeaseInfo& lease) override {
    const FileId& file = lease.file;
    if (list_) {
      LeaseFilter filter;
      filter.file = file;
      benchmark::DoNotOptimize(service_->ListLeases(filter).size());
    } else {
      benchmark::DoNotOptimize(service_->HasLiveLeases(file));
    }
  }
  void YieldLease(const FileId&) override {}
  GuardReport Report(const FileId&) const override { return UnguardedReport(); }

 private:
  PinService* const service_;
  const bool list_;
};

struct Engine {
  explicit Engine(int64_t n) {
    for (int f = 0; f < kFiles; ++f) {
      dir.WriteFile(absl::StrCat("f", f), std::string(kPagesPerFile * SystemPageSize(), 'x'));
    }
    ExportOptions exp;
    exp.name = "exp";
    exp.root = dir.path();
    exp.default_ttl = absl::Seconds(60);
    exp.max_ttl = absl::Seconds(600);
    auto created = PinService::Create(&clock, &backend, {exp});
    if (!created.ok()) return;
    service = *std::move(created);
    for (const char* owner : {"closing", "other"}) {
      for (int64_t i = 0; i < n; ++i) {
        PinRequest r;
        r.owner = owner;
        r.export_name = "exp";
        r.path = absl::StrCat("f", i % kFiles);
        r.offset = static_cast<uint64_t>(i / kFiles) % kPagesPerFile * SystemPageSize();
        r.length = 1;
        r.access = Access::kRead;
        // The other owner's leases outlive the expiry benchmark's advance.
        r.ttl = absl::Seconds(owner == std::string("other") ? 600 : 60);
        if (!service->Pin(r).ok()) {
          service.reset();
          return;
        }
      }
    }
  }
  ~Engine() {
    if (service != nullptr) service->AttachGuard(nullptr);
  }

  SimulatedClock clock;
  testing::FakeBackend backend;
  testing::TempDir dir{"/tmp"};
  std::unique_ptr<PinService> service;
};

void CloseSession(PinService& service) {
  LeaseFilter filter;
  filter.owner = "closing";
  for (const LeaseInfo& lease : service.ListLeases(filter)) {
    service.Release("closing", lease.id).IgnoreError();
  }
}

void Report(benchmark::State& state, int64_t n) {
  state.counters["leases"] = static_cast<double>(n);
  // Inverted rate of n * 1e-9 per iteration: nanoseconds per lease.
  state.counters["per_lease_ns"] = benchmark::Counter(
      static_cast<double>(n) * 1e-9,
      benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

void BM_CloseSession(benchmark::State& state) {
  const int64_t n = state.range(0);
  SetLogSink([](LogSeverity, absl::string_view) {});
  for (auto _ : state) {
    state.PauseTiming();
    auto engine = std::make_unique<Engine>(n);
    if (engine->service == nullptr) {
      state.SkipWithError("setup failed to pin");
      break;
    }
    state.ResumeTiming();
    CloseSession(*engine->service);
    state.PauseTiming();
    if (engine->service->live_lease_count() != static_cast<size_t>(n)) {
      state.SkipWithError("CloseSession left leases of the closed owner");
    }
    engine.reset();
    state.ResumeTiming();
  }
  Report(state, n);
  SetLogSink(nullptr);
}

void BM_Expire(benchmark::State& state) {
  const int64_t n = state.range(0);
  SetLogSink([](LogSeverity, absl::string_view) {});
  for (auto _ : state) {
    state.PauseTiming();
    auto engine = std::make_unique<Engine>(n);
    if (engine->service == nullptr) {
      state.SkipWithError("setup failed to pin");
      break;
    }
    state.ResumeTiming();
    engine->clock.Advance(absl::Seconds(61));
    state.PauseTiming();
    if (engine->service->live_lease_count() != static_cast<size_t>(n)) {
      state.SkipWithError("the expiry pass left expired leases");
    }
    engine.reset();
    state.ResumeTiming();
  }
  Report(state, n);
  SetLogSink(nullptr);
}

void CloseSessionWithGuardStub(benchmark::State& state, bool list) {
  const int64_t n = state.range(0);
  SetLogSink([](LogSeverity, absl::string_view) {});
  for (auto _ : state) {
    state.PauseTiming();
    auto engine = std::make_unique<Engine>(n);
    if (engine->service == nullptr) {
      state.SkipWithError("setup failed to pin");
      break;
    }
    QueryingGuard guard(engine->service.get(), list);
    engine->service->AttachGuard(&guard);
    state.ResumeTiming();
    CloseSession(*engine->service);
    state.PauseTiming();
    engine.reset();
    state.ResumeTiming();
  }
  Report(state, n);
  SetLogSink(nullptr);
}

BENCHMARK(BM_CloseSession)
    ->Arg(10000)
    ->Arg(30000)
    ->Arg(100000)
    ->Unit(benchmark::kMillisecond)
    ->Iterations(1);
BENCHMARK(BM_Expire)
    ->Arg(10000)
    ->Arg(30000)
    ->Arg(100000)
    ->Unit(benchmark::kMillisecond)
    ->Iterations(1);
void BM_CloseSession_ListPerEnd(benchmark::State& state) { CloseSessionWithGuardStub(state, true); }
void BM_CloseSession_HasLivePerEnd(benchmark::State& state) {
  CloseSessionWithGuardStub(state, false);
}

BENCHMARK(BM_CloseSession_ListPerEnd)->Arg(10000)->Unit(benchmark::kMillisecond)->Iterations(1);
BENCHMARK(BM_CloseSession_HasLivePerEnd)
    ->Arg(10000)
    ->Arg(30000)
    ->Arg(100000)
    ->Unit(benchmark::kMillisecond)
    ->Iterations(1);

}  // namespace
}  // namespace pinbroker

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  // As pinbrokerd: absl::Mutex deadlock detection off (a libabsl built without NDEBUG, as
  // Debian's is, would check every nested acquisition).
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
