// What pinning costs over the broker's Unix socket, against the cheapest RPC there is.
//
// One in-process Broker (RealClock, host backend: mmap + mlock) listens on a Unix socket and
// exports a directory holding one 64 MiB file (in /dev/shm when it is writable, else in /tmp).
// The benchmarks call it from the benchmark thread, through a raw generated stub on its own
// channel, so they measure the service and the transport, not a client library:
//
//   BM_Echo:              one Echo RPC with an empty payload: gRPC and the socket alone.
//                         The baseline.
//   BM_PinRelease:        Pin of one page (read-write), then Release of the lease: TWO RPCs
//                         per iteration. Successive iterations pin successive pages.
//   BM_PinReleaseLibrary: the same through the C++ client library (Client::Pin +
//                         Lease::Release), whose session also has its Watch stream open, so
//                         the broker streams a GRANTED and a RELEASED event per iteration.
//   BM_WatchRevokeDelivery: a layout change's events reaching a big session over its Watch
//                         stream. The benchmark's session holds N one-page leases (pinned on
//                         the engine in its name, untimed, wrapping at 4000 pages) and its Watch
//                         stream is open and past its snapshot; timed: a PunchHole of the N pages
//                         with policy revoke and no grace (on the engine, on a thread of its own)
//                         until the stream has delivered all N REVOKED events (after the N
//                         RECALLED) and the punch has returned.
//   BM_EnginePinRelease:  a diagnostic, not an RPC: the same Pin + Release called on the
//                         broker's engine (PinService) directly, in this thread. What the
//                         engine's own work (path resolution, busy-range map, lease table,
//                         mmap + mlock + munmap) costs, to tell it apart from the RPC's cost.
//
// Times are wall-clock (UseRealTime): the work happens on the broker's threads, so the
// calling thread's CPU time would understate it. Two counters cover the whole process (the
// broker runs in it): proc_cpu_us, the CPU time of all its threads per iteration, and
// ctx_switches, its context switches per iteration (getrusage). The broker's INFO log lines (one
// per grant and per release) are formatted but discarded, so the terminal's speed does not count;
// pass
// --log_to_stderr to keep them. absl::Mutex deadlock detection is off, as in a release
// pinbrokerd; --deadlock_detection turns it on (the default of a libabsl built without NDEBUG).
// The file guard is on, as shipped; --noguard turns it off (the bound), --guard_no_fanotify and
// --guard_no_file_leases leave out one of its mechanisms (to tell their costs apart).
//
// Run, for example (one line):
//   build/gcc/tests/benchmarks/rpc_benchmark --benchmark_repetitions=5
//       --benchmark_report_aggregates_only=true

#include <fcntl.h>
#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "benchmark/benchmark.h"
#include "broker/broker.h"
#include "common/log.h"
#include "common/real_clock.h"
#include "pinbroker/client.h"
#include "pinbroker/v1/pinbroker.grpc.pb.h"

namespace pinbroker {
namespace {

namespace v1 = ::pinbroker::v1;

constexpr uint64_t kFileBytes = uint64_t{64} << 20;
constexpr char kExport[] = "bench";
constexpr char kFile[] = "data";

struct Environment {
  std::string endpoint;
  std::string data_dir;
  std::string socket_dir;
  RealClock clock;
  std::unique_ptr<broker::Broker> broker;
  std::unique_ptr<v1::PinBroker::Stub> stub;
  v1::SessionCredentials credentials;
  std::unique_ptr<client::Client> library;
  uint64_t page_size = 0;
  uint64_t pages = 0;
};

Environment* env = nullptr;
v1::GuardConfig guard_config;  // The broker's file guard: on, as shipped, unless flags say.

// CPU time and context switches of the whole process (every thread, the broker's included).
struct ProcessUsage {
  double cpu_seconds = 0;
  double context_switches = 0;

  static ProcessUsage Now() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    ProcessUsage p;
    p.cpu_seconds = static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
                    static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
    p.context_switches = static_cast<double>(u.ru_nvcsw + u.ru_nivcsw);
    return p;
  }
};

// Reports the process's usage since `start`, per iteration.
void ReportUsage(benchmark::State& state, const ProcessUsage& start) {
  const ProcessUsage end = ProcessUsage::Now();
  state.counters["proc_cpu_us"] = benchmark::Counter((end.cpu_seconds - start.cpu_seconds) * 1e6,
                                                     benchmark::Counter::kAvgIterations);
  state.counters["ctx_switches"] = benchmark::Counter(end.context_switches - start.context_switches,
                                                      benchmark::Counter::kAvgIterations);
}

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "rpc_benchmark: %s\n", what.c_str());
  std::exit(1);
}

// With `held` (the benchmark's argument "held:1"), a lease of the file's last page, held by
// another owner while the benchmark runs, as an application holding leases of a file pins more
// of it; without it (held:0) every pin is the first lease of an idle file.
class HeldLease {
 public:
  explicit HeldLease(bool held) {
    if (!held) return;
    PinRequest pin;
    pin.owner = "rpc_benchmark-held";
    pin.export_name = kExport;
    pin.path = kFile;
    pin.offset = (env->pages - 1) * env->page_size;
    pin.length = env->page_size;
    pin.access = Access::kReadWrite;
    auto lease = env->broker->engine().Pin(pin);
    if (!lease.ok()) Die("the held lease: " + lease.status().ToString());
    id_ = lease->id;
  }
  ~HeldLease() {
    if (id_ != 0) env->broker->engine().Release("rpc_benchmark-held", id_).IgnoreError();
  }
  HeldLease(const HeldLease&) = delete;
  HeldLease& operator=(const HeldLease&) = delete;

 private:
  LeaseId id_ = 0;
};

std::string MakeTempDir(const std::string& parent) {
  std::string templ = parent + "/pb-rpc.XXXXXX";
  if (mkdtemp(templ.data()) == nullptr) return "";
  return templ;
}

void WriteDataFile(const std::string& path) {
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) Die("create " + path + ": " + std::strerror(errno));
  std::vector<char> chunk(1 << 20, 'x');
  for (uint64_t done = 0; done < kFileBytes; done += chunk.size()) {
    if (write(fd, chunk.data(), chunk.size()) != static_cast<ssize_t>(chunk.size())) {
      Die("write " + path + ": " + std::strerror(errno));
    }
  }
  close(fd);
}

void SetUp() {
  env = new Environment();
  // The data on tmpfs when possible: the benchmark is about the broker, not the disk.
  env->data_dir = access("/dev/shm", W_OK) == 0 ? MakeTempDir("/dev/shm") : "";
  if (env->data_dir.empty()) env->data_dir = MakeTempDir("/tmp");
  env->socket_dir = MakeTempDir("/tmp");
  if (env->data_dir.empty() || env->socket_dir.empty()) Die("cannot create temporary dirs");
  WriteDataFile(env->data_dir + "/" + kFile);

  v1::BrokerConfig config;
  const std::string endpoint = absl::StrCat("unix:", env->socket_dir, "/s.sock");
  env->endpoint = endpoint;
  config.add_listen(endpoint);
  v1::ExportConfig* exp = config.add_exports();
  exp->set_name(kExport);
  exp->set_root(env->data_dir);
  *config.mutable_guard() = guard_config;
  auto broker = broker::Broker::Start(config, &env->clock);
  if (!broker.ok()) Die("starting the broker: " + broker.status().ToString());
  env->broker = *std::move(broker);
  env->page_size = env->broker->engine().page_size();
  env->pages = kFileBytes / env->page_size;

  env->stub =
      v1::PinBroker::NewStub(grpc::CreateChannel(endpoint, grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  v1::OpenSessionRequest open;
  open.set_client_name("rpc_benchmark");
  v1::OpenSessionResponse opened;
  grpc::Status s = env->stub->OpenSession(&context, open, &opened);
  if (!s.ok()) Die("OpenSession: " + s.error_message());
  env->credentials = opened.credentials();

  client::ClientOptions options;
  options.client_name = "rpc_benchmark-library";
  auto library = client::Client::Connect(endpoint, options);
  if (!library.ok()) Die("client library: " + library.status().ToString());
  env->library = *std::move(library);
}

void TearDown() {
  env->library.reset();
  env->stub.reset();
  env->broker->Shutdown(absl::ZeroDuration());
  env->broker.reset();
  unlink((env->data_dir + "/" + kFile).c_str());
  rmdir(env->data_dir.c_str());
  unlink((env->socket_dir + "/s.sock").c_str());
  rmdir(env->socket_dir.c_str());
  delete env;
  env = nullptr;
}

// One Pin of a page (read-write) and its Release, in the benchmark's session, through `stub`;
// false (the benchmark skipped with the error) if either fails.
class PinReleaser {
 public:
  PinReleaser() {
    *pin_.mutable_credentials() = env->credentials;
    pin_.set_export_name(kExport);
    pin_.set_path(kFile);
    pin_.set_length(env->page_size);
    pin_.set_access(v1::ACCESS_READ_WRITE);
    *release_.mutable_credentials() = env->credentials;
  }
  bool Run(v1::PinBroker::Stub& stub, uint64_t page, benchmark::State& state) {
    pin_.set_offset(page * env->page_size);
    grpc::ClientContext pin_context;
    grpc::Status s = stub.Pin(&pin_context, pin_, &pinned_);
    if (!s.ok()) {
      state.SkipWithError(("Pin: " + s.error_message()).c_str());
      return false;
    }
    release_.set_lease_id(pinned_.lease().lease_id());
    grpc::ClientContext release_context;
    s = stub.Release(&release_context, release_, &released_);
    if (!s.ok()) {
      state.SkipWithError(("Release: " + s.error_message()).c_str());
      return false;
    }
    return true;
  }

 private:
  v1::PinRequest pin_;
  v1::ReleaseRequest release_;
  v1::PinResponse pinned_;
  v1::ReleaseResponse released_;
};

// One Echo through `stub`; false (the benchmark skipped) if it fails.
bool EchoOnce(v1::PinBroker::Stub& stub, benchmark::State& state) {
  static const v1::EchoRequest request;
  v1::EchoResponse response;
  grpc::ClientContext context;
  const grpc::Status s = stub.Echo(&context, request, &response);
  if (s.ok()) return true;
  state.SkipWithError(("Echo: " + s.error_message()).c_str());
  return false;
}

void BM_Echo(benchmark::State& state) {
  const ProcessUsage start = ProcessUsage::Now();
  for (auto _ : state) {
    if (!EchoOnce(*env->stub, state)) break;
  }
  ReportUsage(state, start);
  state.SetItemsProcessed(state.iterations());  // RPCs.
}
BENCHMARK(BM_Echo)->UseRealTime();

void BM_PinRelease(benchmark::State& state) {
  PinReleaser pin_release;
  uint64_t page = 0;
  const HeldLease held(state.range(0) != 0);
  const ProcessUsage start = ProcessUsage::Now();
  for (auto _ : state) {
    if (!pin_release.Run(*env->stub, page++ % env->pages, state)) break;
  }
  ReportUsage(state, start);
  state.SetItemsProcessed(2 * state.iterations());  // RPCs.
}
BENCHMARK(BM_PinRelease)->ArgName("held")->Arg(0)->Arg(1)->UseRealTime();

void BM_PinReleaseLibrary(benchmark::State& state) {
  client::PinOptions pin;
  pin.export_name = kExport;
  pin.path = kFile;
  pin.length = env->page_size;
  pin.access = v1::ACCESS_READ_WRITE;
  uint64_t page = 0;
  const HeldLease held(state.range(0) != 0);
  const ProcessUsage start = ProcessUsage::Now();
  for (auto _ : state) {
    pin.offset = (page++ % env->pages) * env->page_size;
    auto lease = env->library->Pin(pin);
    if (!lease.ok()) {
      state.SkipWithError(("Pin: " + lease.status().ToString()).c_str());
      break;
    }
    const absl::Status s = (*lease)->Release();
    if (!s.ok()) {
      state.SkipWithError(("Release: " + s.ToString()).c_str());
      break;
    }
  }
  ReportUsage(state, start);
  state.SetItemsProcessed(2 * state.iterations());  // RPCs.
}
BENCHMARK(BM_PinReleaseLibrary)->ArgName("held")->Arg(0)->Arg(1)->UseRealTime();

// Throughput at 1, 4, 16 and 64 concurrent clients: each benchmark thread is a client with a
// channel (and so a connection) of its own, calling one RPC at a time; items_per_second is the
// RPCs per second of all of them together. BM_EchoClients is the baseline for
// BM_PinReleaseClients (Pin + Release of one page, two RPCs per iteration, in one session, on a
// file with a lease held, as held:1 above).
std::unique_ptr<v1::PinBroker::Stub> ClientStub(int client) {
  grpc::ChannelArguments args;
  args.SetInt("pinbroker.rpc_benchmark.client", client);  // A connection of its own.
  return v1::PinBroker::NewStub(
      grpc::CreateCustomChannel(env->endpoint, grpc::InsecureChannelCredentials(), args));
}

void BM_EchoClients(benchmark::State& state) {
  const auto stub = ClientStub(state.thread_index());
  for (auto _ : state) {
    if (!EchoOnce(*stub, state)) break;
  }
  state.SetItemsProcessed(state.iterations());  // RPCs.
}
BENCHMARK(BM_EchoClients)->Threads(1)->Threads(4)->Threads(16)->Threads(64)->UseRealTime();

void BM_PinReleaseClients(benchmark::State& state) {
  const auto stub = ClientStub(state.thread_index());
  std::optional<HeldLease> held;
  if (state.thread_index() == 0) held.emplace(true);  // Before the loop's start, for everyone.
  PinReleaser pin_release;
  uint64_t page = static_cast<uint64_t>(state.thread_index()) * 61;
  for (auto _ : state) {
    if (!pin_release.Run(*stub, page++ % (env->pages - 1), state)) break;
  }
  state.SetItemsProcessed(2 * state.iterations());  // RPCs.
}
BENCHMARK(BM_PinReleaseClients)->Threads(1)->Threads(4)->Threads(16)->Threads(64)->UseRealTime();

// BM_WatchRevokeDelivery's leases wrap at this many pages: one holder's host pins may span at
// most 4095 distinct ranges (its max_vmas share, 2 VMAs per range).
constexpr uint64_t kWatchPages = 4000;

void BM_WatchRevokeDelivery(benchmark::State& state) {
  const auto leases = static_cast<uint64_t>(state.range(0));
  PinService& engine = env->broker->engine();
  PinRequest pin;
  pin.owner = env->credentials.session_id();  // The session's own leases: its Watch sees them.
  pin.export_name = kExport;
  pin.path = kFile;
  pin.length = env->page_size;
  pin.access = Access::kReadWrite;
  LayoutRequest punch;
  punch.export_name = kExport;
  punch.path = kFile;
  punch.policy = LayoutPolicy::kRevoke;
  punch.grace = absl::ZeroDuration();
  punch.initiator = "rpc_benchmark";
  v1::WatchRequest watch;
  *watch.mutable_credentials() = env->credentials;
  for (auto _ : state) {
    state.PauseTiming();
    for (uint64_t i = 0; i < leases; ++i) {
      pin.offset = (i % kWatchPages) * env->page_size;
      if (auto lease = engine.Pin(pin); !lease.ok()) Die("Pin: " + lease.status().ToString());
    }
    grpc::ClientContext context;
    auto stream = env->stub->Watch(&context, watch);
    v1::WatchEvent event;
    while (stream->Read(&event) && event.type() != v1::WatchEvent::SNAPSHOT_COMPLETE) {
    }
    state.ResumeTiming();
    absl::StatusOr<LayoutResult> punched;
    std::thread punching([&] {
      punched = engine.PunchHole(punch, 0, std::min(leases, kWatchPages) * env->page_size);
    });
    uint64_t revoked = 0;
    while (revoked < leases && stream->Read(&event)) {
      if (event.type() == v1::WatchEvent::REVOKED) ++revoked;
    }
    punching.join();
    state.PauseTiming();
    context.TryCancel();
    stream->Finish().IgnoreError();
    if (!punched.ok()) Die("PunchHole: " + punched.status().ToString());
    if (revoked != leases || punched->revoked.size() != leases) {
      Die(absl::StrCat("the stream delivered ", revoked, " REVOKED events and the punch revoked ",
                       punched->revoked.size(), " of ", leases, " leases"));
    }
    state.ResumeTiming();
  }
  state.SetItemsProcessed(2 * leases * state.iterations());  // Events delivered.
}
BENCHMARK(BM_WatchRevokeDelivery)
    ->ArgName("leases")
    ->Arg(1000)
    ->Arg(10000)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

void BM_EnginePinRelease(benchmark::State& state) {
  PinRequest pin;
  pin.owner = "rpc_benchmark-engine";  // Not a session: the engine does not check owners.
  pin.export_name = kExport;
  pin.path = kFile;
  pin.length = env->page_size;
  pin.access = Access::kReadWrite;
  PinService& engine = env->broker->engine();
  uint64_t page = 0;
  const HeldLease held(state.range(0) != 0);
  const ProcessUsage start = ProcessUsage::Now();
  for (auto _ : state) {
    pin.offset = (page++ % env->pages) * env->page_size;
    auto lease = engine.Pin(pin);
    if (!lease.ok()) {
      state.SkipWithError(("Pin: " + lease.status().ToString()).c_str());
      break;
    }
    const absl::Status s = engine.Release(pin.owner, lease->id);
    if (!s.ok()) {
      state.SkipWithError(("Release: " + s.ToString()).c_str());
      break;
    }
  }
  ReportUsage(state, start);
}
BENCHMARK(BM_EnginePinRelease)->ArgName("held")->Arg(0)->Arg(1)->UseRealTime();

}  // namespace
}  // namespace pinbroker

int main(int argc, char** argv) {
  bool log_to_stderr = false;
  bool deadlock_detection = false;
  std::vector<char*> args;
  for (int i = 0; i < argc; ++i) {
    const absl::string_view arg = argv[i];
    if (arg == "--noguard") {
      pinbroker::guard_config.set_disabled(true);
    } else if (arg == "--guard_no_fanotify") {
      pinbroker::guard_config.set_no_fanotify(true);
    } else if (arg == "--guard_no_file_leases") {
      pinbroker::guard_config.set_no_file_leases(true);
    } else if (arg == "--log_to_stderr") {
      log_to_stderr = true;
    } else if (arg == "--deadlock_detection") {
      deadlock_detection = true;
    } else {
      args.push_back(argv[i]);
    }
  }
  int count = static_cast<int>(args.size());
  benchmark::Initialize(&count, args.data());
  if (benchmark::ReportUnrecognizedArguments(count, args.data())) return 1;
  if (!log_to_stderr) {
    pinbroker::SetLogSink([](pinbroker::LogSeverity severity, absl::string_view line) {
      if (severity != pinbroker::LogSeverity::kInfo) {
        std::fprintf(stderr, "%.*s\n", static_cast<int>(line.size()), line.data());
      }
    });
  }
  // As pinbrokerd: absl::Mutex deadlock detection off in release builds, unless
  // --deadlock_detection asks for it (what a libabsl built without NDEBUG does by default).
  absl::SetMutexDeadlockDetectionMode(deadlock_detection ? absl::OnDeadlockCycle::kAbort
                                                         : absl::OnDeadlockCycle::kIgnore);
  pinbroker::SetUp();
  benchmark::RunSpecifiedBenchmarks();
  pinbroker::TearDown();
  benchmark::Shutdown();
  return 0;
}
