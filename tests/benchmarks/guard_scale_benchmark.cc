// The engine with 10k-100k leases on one file, with the file guard on and off (the bound).
// Prints one line per measurement; nothing here is pass/fail except that every step succeeds.
//
// Setup per measurement: a fresh PinService over a FakeBackend (no real pinning, so the numbers
// are the engine's and the guard's own), one export on a tmpfs directory (/dev/shm, else the
// temp dir), one fully written file of N pages, N one-page read-write leases (lease i on page
// i), time on a SimulatedClock (timers and the guard's checks run when the program advances it).
//
// Measurements (each "guard" and "noguard"):
//   pin_us_per_lease       wall time of the N pins / N
//   heap_bytes_per_lease   heap in use (mallinfo2: arena and mmapped chunks) grown over the
//                          N pins / N: the engine's records, the guard's, and the
//                          FakeBackend's call log (~40 B)
//   rss_bytes_per_lease    RSS growth over the N pins / N (0 when freed memory is reused)
//   idle_cpu_ms_per_check  CPU (getrusage, user + sys) per check interval while idle: the clock
//                          is advanced one interval at a time and the guard's checks awaited
//   pin_written_us         N pins of a file being written: before each pin a pwrite(2) of
//                          its page (the file's mtime moves, so the guard cannot reuse its last
//                          sweep); wall time of the N writes and pins / N (the simulated clock
//                          follows real time here, so the guard's event checks run as shipped)
//   pin_filling_us         the same on a file of N pages that starts as one hole: each
//                          write fills the page its pin then takes
//   close_us_per_lease     a session's close: list the owner's leases and release each (as
//                          CloseSession does), wall time / N
//   expire_us_per_lease    every lease expiring in one clock advance, wall time / N
//   fanout_ms              a revoke-truncate to 0 from call to applied, every lease held by a
//                          holder that releases on RECALLED (1 or S sessions)
//   revoke_after_grace_ms  the same with holders that never release: from the end of the grace
//                          to applied (every lease revoked)
//
// Usage: guard_scale_benchmark [--leases=10000,100000] [--fanout_leases=10000]
//                              [--sessions=1,100] [--checks=10] [--smoke]
//                              [--only=steady,changing,fanout,revoke] [--guard=both|on|off]
//                              [--log=info|warning]
//
// Log lines at INFO (the broker's default) are formatted and discarded; --log=warning skips
// them. Warnings and errors go to stderr.
#include <fcntl.h>
#include <malloc.h>
#include <sys/resource.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/log.h"
#include "common/simulated_clock.h"
#include "pinning/guard/file_guard.h"
#include "pinning/pin_service.h"
#include "tests/testing/fake_backend.h"
#include "tests/testing/temp_dir.h"

namespace pinbroker {
namespace {

constexpr absl::Duration kCheckInterval = absl::Seconds(1);

[[noreturn]] void Die(const std::string& what) {
  std::cerr << "guard_scale_benchmark: ERROR OCCURRED: " << what << "\n";
  std::exit(1);
}

double CpuSeconds() {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

uint64_t RssBytes() {
  std::ifstream statm("/proc/self/statm");
  uint64_t size = 0, resident = 0;
  statm >> size >> resident;
  return resident * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
}

// Bytes malloc has handed out and not had back: the arena's chunks plus those it mmapped on their
// own (a hash table's slot array past M_MMAP_THRESHOLD, 128 KiB and up, is one of those).
size_t HeapInUse() {
  const struct mallinfo2 info = mallinfo2();
  return info.uordblks + info.hblkhd;
}

void Print(const std::string& metric, size_t leases, int sessions, bool guard, double value) {
  std::printf("%-22s leases=%-7zu sessions=%-4d %-8s %.3f\n", metric.c_str(), leases, sessions,
              guard ? "guard" : "noguard", value);
  std::fflush(stdout);
}

// A PinService (and maybe a guard) over one file of `pages` pages.
struct World {
  World(uint64_t pages, bool with_guard)
      : dir(IsTmpfs("/dev/shm") ? std::make_unique<testing::TempDir>("/dev/shm")
                                : std::make_unique<testing::TempDir>()) {
    dir->WriteFile("data", std::string(pages * page, 'f'));
    ExportOptions exp;
    exp.name = "exp";
    exp.root = dir->path();
    exp.default_policy = LayoutPolicy::kRevoke;
    exp.grace = absl::Seconds(30);
    exp.layout_timeout = absl::Minutes(10);
    exp.default_ttl = absl::Seconds(60);
    exp.max_ttl = absl::Hours(1);
    auto created = PinService::Create(&clock, &backend, {exp});
    if (!created.ok()) Die(created.status().ToString());
    service = *std::move(created);
    if (with_guard) {
      guard::FileGuard::Options options;
      options.check_interval = kCheckInterval;
      auto started = guard::FileGuard::Start(service.get(), options);
      if (!started.ok()) Die(started.status().ToString());
      file_guard = *std::move(started);
    }
  }
  ~World() {
    file_guard.reset();
    service.reset();
  }
  static bool IsTmpfs(const char* path) {
    struct statfs fs;
    return statfs(path, &fs) == 0 && fs.f_type == 0x01021994;
  }
  void Pin(std::string owner, uint64_t page_index) {
    PinRequest pin;
    pin.owner = std::move(owner);
    pin.export_name = "exp";
    pin.path = "data";
    pin.offset = page_index * page;
    pin.length = page;
    pin.access = Access::kReadWrite;
    if (auto lease = service->Pin(pin); !lease.ok()) Die(lease.status().ToString());
  }
  void Settle() {
    if (file_guard != nullptr) file_guard->AwaitIdle();
  }
  absl::StatusOr<LayoutResult> TruncateToZero() {
    LayoutRequest truncate;
    truncate.export_name = "exp";
    truncate.path = "data";
    truncate.policy = LayoutPolicy::kRevoke;
    truncate.grace = absl::Seconds(30);
    truncate.initiator = "benchmark";
    return service->Truncate(truncate, 0);
  }

  const uint64_t page = SystemPageSize();
  SimulatedClock clock;
  testing::FakeBackend backend;
  std::unique_ptr<testing::TempDir> dir;
  std::unique_ptr<PinService> service;
  std::unique_ptr<guard::FileGuard> file_guard;
};

// Pins, memory, idle checks, close, expiry.
void Steady(size_t leases, bool guard, int checks) {
  {
    World world(leases, guard);
    const uint64_t rss = RssBytes();
    const size_t heap = HeapInUse();
    const absl::Time t0 = absl::Now();
    for (size_t i = 0; i < leases; ++i) world.Pin("holder", i);
    const double pin_s = absl::ToDoubleSeconds(absl::Now() - t0);
    const double heap_grown = static_cast<double>(HeapInUse()) - static_cast<double>(heap);
    const double rss_grown = static_cast<double>(RssBytes()) - static_cast<double>(rss);
    Print("pin_us_per_lease", leases, 1, guard, pin_s * 1e6 / static_cast<double>(leases));
    Print("heap_bytes_per_lease", leases, 1, guard, heap_grown / static_cast<double>(leases));
    Print("rss_bytes_per_lease", leases, 1, guard, rss_grown / static_cast<double>(leases));
    world.Settle();
    const double cpu0 = CpuSeconds();
    for (int i = 0; i < checks; ++i) {
      world.clock.Advance(kCheckInterval);
      world.Settle();
    }
    Print("idle_cpu_ms_per_check", leases, 1, guard, (CpuSeconds() - cpu0) * 1e3 / checks);
    if (world.service->live_lease_count() != leases) Die("leases lost while idle");
    const absl::Time c0 = absl::Now();
    LeaseFilter filter;
    filter.owner = "holder";
    for (const LeaseInfo& lease : world.service->ListLeases(filter)) {
      if (!world.service->Release("holder", lease.id).ok()) Die("release failed");
    }
    Print("close_us_per_lease", leases, 1, guard,
          absl::ToDoubleMicroseconds(absl::Now() - c0) / static_cast<double>(leases));
  }
  {
    World world(leases, guard);
    for (size_t i = 0; i < leases; ++i) world.Pin("holder", i);
    world.Settle();
    const absl::Time e0 = absl::Now();
    world.clock.Advance(absl::Seconds(61));  // Past every lease's TTL: all expire in here.
    if (world.service->live_lease_count() != 0) Die("leases left after expiry");
    Print("expire_us_per_lease", leases, 1, guard,
          absl::ToDoubleMicroseconds(absl::Now() - e0) / static_cast<double>(leases));
  }
}

// Pins of a file that changes between them (pin_written, pin_filling).
void Changing(size_t leases, bool guard, bool sparse) {
  World world(leases, guard);
  const std::string path = world.dir->Join("data");
  const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) Die("open " + path);
  if (sparse &&
      (::ftruncate(fd, 0) != 0 || ::ftruncate(fd, static_cast<off_t>(leases * world.page)) != 0)) {
    Die("ftruncate " + path);
  }
  const std::string bytes(world.page, 'w');
  const absl::Time t0 = absl::Now();
  const absl::Time sim0 = world.clock.Now();
  for (size_t i = 0; i < leases; ++i) {
    // The guard's timers (the checks its notification events ask for, event_check_gap apart)
    // see real time pass.
    world.clock.AdvanceTo(sim0 + (absl::Now() - t0));
    if (::pwrite(fd, bytes.data(), bytes.size(), static_cast<off_t>(i * world.page)) !=
        static_cast<ssize_t>(bytes.size())) {
      Die("pwrite " + path);
    }
    world.Pin("holder", i);
  }
  const double us = absl::ToDoubleMicroseconds(absl::Now() - t0) / static_cast<double>(leases);
  ::close(fd);
  Print(sparse ? "pin_filling_us" : "pin_written_us", leases, 1, guard, us);
}

// A holder that releases on RECALLED (or, uncooperative, never does).
class Holder {
 public:
  Holder(PinService* service, std::string owner, bool cooperative)
      : service_(service), owner_(std::move(owner)), cooperative_(cooperative) {
    events_ = service_->Watch(owner_).events;
    thread_ = std::thread([this] {
      for (;;) {
        absl::StatusOr<LeaseEvent> event = events_->Next(absl::InfiniteFuture());
        if (!event.ok()) {
          // A holder whose stream broke would leave the fan-out waiting for ever: say so.
          if (absl::IsResourceExhausted(event.status())) Die("a holder's Watch queue overflowed");
          return;  // Closed.
        }
        if (event->type == LeaseEvent::Type::kRecalled && cooperative_) {
          service_->Release(owner_, event->lease.id).IgnoreError();
        }
      }
    });
  }
  ~Holder() {
    events_->Close();
    thread_.join();
  }
  const std::string& owner() const { return owner_; }

 private:
  PinService* const service_;
  const std::string owner_;
  const bool cooperative_;
  std::shared_ptr<EventQueue> events_;
  std::thread thread_;
};

void FanOut(size_t leases, int sessions, bool guard, bool cooperative) {
  World world(leases, guard);
  // The holders watch once their leases are pinned (their snapshot has them), as a client that
  // reconnects does: N GRANTED events would overflow the stream's bound unless the holder drains
  // them as fast as they come, which on a busy machine it does not.
  for (size_t i = 0; i < leases; ++i) world.Pin(absl::StrCat("holder-", i % sessions), i);
  std::vector<std::unique_ptr<Holder>> holders;
  for (int s = 0; s < sessions; ++s) {
    holders.push_back(
        std::make_unique<Holder>(world.service.get(), absl::StrCat("holder-", s), cooperative));
  }
  world.Settle();
  if (cooperative) {
    const absl::Time t0 = absl::Now();
    absl::StatusOr<LayoutResult> result = world.TruncateToZero();
    const double ms = absl::ToDoubleMilliseconds(absl::Now() - t0);
    if (!result.ok()) Die(result.status().ToString());
    if (!result->revoked.empty() || result->released.size() != leases) {
      Die(absl::StrCat("fan-out: ", result->released.size(), " released, ", result->revoked.size(),
                       " revoked"));
    }
    Print("fanout_ms", leases, sessions, guard, ms);
  } else {
    absl::StatusOr<LayoutResult> result;
    std::thread truncate([&] { result = world.TruncateToZero(); });
    world.clock.WaitForWaiters(sessions + 1);  // Holders' Next() and the truncate's grace wait.
    const absl::Time t0 = absl::Now();
    world.clock.Advance(absl::Seconds(30));
    truncate.join();
    const double ms = absl::ToDoubleMilliseconds(absl::Now() - t0);
    if (!result.ok()) Die(result.status().ToString());
    if (result->revoked.size() != leases) {
      Die(absl::StrCat("revoke: ", result->revoked.size(), " revoked of ", leases));
    }
    Print("revoke_after_grace_ms", leases, sessions, guard, ms);
  }
}

std::vector<size_t> Sizes(absl::string_view list) {
  std::vector<size_t> out;
  for (absl::string_view s : absl::StrSplit(list, ',', absl::SkipEmpty())) {
    size_t n;
    if (!absl::SimpleAtoi(s, &n) || n == 0) Die(absl::StrCat("bad number '", s, "'"));
    out.push_back(n);
  }
  return out;
}

int Main(int argc, char** argv) {
  std::vector<size_t> leases = {10000, 100000};
  std::vector<size_t> fanout_leases = {10000};
  std::vector<size_t> sessions = {1, 100};
  int checks = 10;
  std::vector<std::string> only = {"steady", "changing", "fanout", "revoke"};
  std::vector<bool> guards = {true, false};
  bool log_info = true;
  for (int i = 1; i < argc; ++i) {
    const absl::string_view arg = argv[i];
    if (absl::StartsWith(arg, "--leases=")) {
      leases = Sizes(arg.substr(9));
    } else if (absl::StartsWith(arg, "--fanout_leases=")) {
      fanout_leases = Sizes(arg.substr(16));
    } else if (absl::StartsWith(arg, "--sessions=")) {
      sessions = Sizes(arg.substr(11));
    } else if (absl::StartsWith(arg, "--checks=")) {
      checks = static_cast<int>(Sizes(arg.substr(9)).front());
    } else if (absl::StartsWith(arg, "--only=")) {
      only = absl::StrSplit(arg.substr(7), ',', absl::SkipEmpty());
      for (const std::string& part : only) {
        if (part != "steady" && part != "changing" && part != "fanout" && part != "revoke") {
          Die(absl::StrCat("--only: unknown measurement '", part, "'"));
        }
      }
    } else if (arg == "--guard=on" || arg == "--guard=off" || arg == "--guard=both") {
      guards = arg == "--guard=on"    ? std::vector<bool>{true}
               : arg == "--guard=off" ? std::vector<bool>{false}
                                      : std::vector<bool>{true, false};
    } else if (arg == "--log=info" || arg == "--log=warning") {
      log_info = arg == "--log=info";
    } else if (arg == "--smoke") {
      leases = {1000};
      fanout_leases = {1000};
      sessions = {1, 10};
      checks = 2;
    } else {
      Die(absl::StrCat("unknown argument ", arg));
    }
  }
  // The broker logs at INFO (every grant, recall and end): lines are formatted, as shipped,
  // and discarded. --log=warning leaves the INFO lines out.
  SetMinLogSeverity(log_info ? LogSeverity::kInfo : LogSeverity::kWarning);
  SetLogSink([](LogSeverity severity, absl::string_view line) {
    if (severity != LogSeverity::kInfo) std::cerr << line << "\n";
  });
  // As pinbrokerd: absl::Mutex deadlock detection off (a libabsl built without NDEBUG, as
  // Debian's is, would check every nested acquisition).
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  auto wanted = [&only](absl::string_view part) {
    return std::find(only.begin(), only.end(), part) != only.end();
  };
  for (bool guard : guards) {
    if (wanted("steady")) {
      for (size_t n : leases) Steady(n, guard, checks);
    }
    if (wanted("changing")) {
      for (size_t n : leases) {
        Changing(n, guard, /*sparse=*/false);
        Changing(n, guard, /*sparse=*/true);
      }
    }
    for (size_t n : fanout_leases) {
      if (wanted("fanout")) {
        for (size_t s : sessions) FanOut(n, static_cast<int>(s), guard, /*cooperative=*/true);
      }
      if (wanted("revoke")) {
        for (size_t s : sessions) FanOut(n, static_cast<int>(s), guard, /*cooperative=*/false);
      }
    }
  }
  return 0;
}

}  // namespace
}  // namespace pinbroker

int main(int argc, char** argv) { return pinbroker::Main(argc, argv); }
