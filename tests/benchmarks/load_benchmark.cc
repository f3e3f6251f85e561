// Broker load: memory and threads of a real broker holding many leases and Watch streams, and
// what pinning and revoking 10k leases costs the host backend. A plain program printing numbers.
//
//   load_benchmark [--noguard] [--unread_streams] [--smoke]   broker part
//   load_benchmark --backend [--smoke]     host backend part
//
// Broker part: an in-process Broker (RealClock, host backend, the file guard on as shipped, or
// off with --noguard as the bound) listens on a Unix socket and exports a directory holding one
// 64 MiB file (on /dev/shm when writable). A client process (this program re-executed with
// --client, so its memory is not counted) opens a session and pins one-page leases of the file
// (successive pages, wrapping at 4000 pages: an identity's share of the host backend's VMAs) with
// 4 threads until 10k, then 100k, are held; then closes the
// session (CloseSession releases them all; its time is printed); then opens 1k, then 10k Watch
// streams (one session each). At each step the broker process's VmRSS, RssAnon and thread count
// (/proc/self/status) are printed. Last, a new session holds the largest lease step again, the
// streams still open, and the broker's Shutdown (what pinbrokerd does on SIGTERM) with a 1 s
// grace is timed: the holder never releases, so every lease is revoked at the grace's end. The
// client reads its streams meanwhile, as clients do; --unread_streams: it reads none of them.
//
// Backend part: a HostBackend pins 10k one-page leases of a 10k-page file (one per page, then
// all on one page), then revokes them all; prints the time per pin and per revoke, and the
// process's VMA count (/proc/self/maps lines) while they are held.
//
// --smoke: 1k leases and 100 streams, for the CI smoke test.

#include <fcntl.h>
#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
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
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "broker/broker.h"
#include "common/log.h"
#include "common/real_clock.h"
#include "pinbroker/v1/pinbroker.grpc.pb.h"
#include "pinning/file_info.h"
#include "pinning/host_backend.h"
#include "pinning/page_range.h"

extern char** environ;

namespace pinbroker {
namespace {

namespace v1 = ::pinbroker::v1;

constexpr uint64_t kFileBytes = uint64_t{64} << 20;
constexpr char kExport[] = "bench";
constexpr char kFile[] = "data";

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "load_benchmark: %s\n", what.c_str());
  std::exit(1);
}

std::string MakeTempDir(const std::string& parent) {
  std::string templ = parent + "/pb-load.XXXXXX";
  if (mkdtemp(templ.data()) == nullptr) return "";
  return templ;
}

void WriteFile(const std::string& path, uint64_t bytes) {
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) Die("create " + path + ": " + std::strerror(errno));
  std::vector<char> chunk(1 << 20, 'x');
  for (uint64_t done = 0; done < bytes; done += chunk.size()) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(chunk.size(), bytes - done));
    if (write(fd, chunk.data(), n) != static_cast<ssize_t>(n)) Die("write " + path);
  }
  close(fd);
}

// "VmRSS" (kB) or "Threads" from /proc/self/status.
uint64_t StatusField(absl::string_view name) {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (absl::StartsWith(line, absl::StrCat(name, ":"))) {
      uint64_t value = 0;
      std::string rest = line.substr(name.size() + 1);
      rest.erase(0, rest.find_first_not_of(" \t"));
      rest = rest.substr(0, rest.find_first_of(" \t"));
      if (absl::SimpleAtoi(rest, &value)) return value;
    }
  }
  return 0;
}

size_t MapCount() {
  std::ifstream maps("/proc/self/maps");
  size_t n = 0;
  for (std::string line; std::getline(maps, line);) ++n;
  return n;
}

// RSS counts the locked file pages the broker maps (RssFile/RssShmem, at most the 64 MiB file);
// RssAnon is the broker's own memory.
void PrintBroker(absl::string_view step) {
  std::printf("  %-28s rss_mib=%8.1f anon_mib=%8.1f threads=%5llu\n", std::string(step).c_str(),
              static_cast<double>(StatusField("VmRSS")) / 1024.0,
              static_cast<double>(StatusField("RssAnon")) / 1024.0,
              static_cast<unsigned long long>(StatusField("Threads")));
  std::fflush(stdout);
}

// --- Client process -------------------------------------------------------------------------

constexpr uint64_t kDistinctPages = 4000;

v1::SessionCredentials OpenSession(v1::PinBroker::Stub& stub) {
  grpc::ClientContext context;
  v1::OpenSessionRequest open;
  open.set_client_name("load_benchmark");
  v1::OpenSessionResponse opened;
  grpc::Status s = stub.OpenSession(&context, open, &opened);
  if (!s.ok()) Die("OpenSession: " + s.error_message());
  return opened.credentials();
}

// Pin number `i` (`when`: "" or " before shutdown"): a read lease of [offset, offset + length)
// with a 600 s TTL; dies saying so if refused.
void PinPage(v1::PinBroker::Stub& stub, const v1::SessionCredentials& credentials, uint64_t offset,
             uint64_t length, uint64_t i, absl::string_view when) {
  v1::PinRequest pin;
  *pin.mutable_credentials() = credentials;
  pin.set_export_name(kExport);
  pin.set_path(kFile);
  pin.set_offset(offset);
  pin.set_length(length);
  pin.set_access(v1::ACCESS_READ);
  pin.mutable_ttl()->set_seconds(600);
  grpc::ClientContext context;
  v1::PinResponse pinned;
  const grpc::Status s = stub.Pin(&context, pin, &pinned);
  if (!s.ok()) Die(absl::StrCat("Pin ", i, when, ": ", s.error_message()));
}

void Say(const std::string& line) {
  std::cout << line << std::endl;
  std::string ack;
  if (!std::getline(std::cin, ack)) std::exit(0);
}

int ClientMain(const std::string& endpoint, const std::vector<uint64_t>& lease_steps,
               const std::vector<uint64_t>& watch_steps, uint64_t page_size, bool read_streams) {
  auto channel = grpc::CreateChannel(endpoint, grpc::InsecureChannelCredentials());
  auto stub = v1::PinBroker::NewStub(channel);
  const v1::SessionCredentials credentials = OpenSession(*stub);
  // One identity may hold 4095 distinct ranges of host pins by default (its max_vmas share:
  // 2 per range), so the leases wrap at 4000 pages.
  const uint64_t pages = std::min<uint64_t>(kFileBytes / page_size, kDistinctPages);
  std::atomic<uint64_t> next{0};
  for (uint64_t target : lease_steps) {
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&] {
        auto own = v1::PinBroker::NewStub(channel);
        for (uint64_t i; (i = next.fetch_add(1)) < target;) {
          PinPage(*own, credentials, (i % pages) * page_size, page_size, i, "");
        }
      });
    }
    for (std::thread& t : threads) t.join();
    next = target;
    Say(absl::StrCat("leases ", target));
  }
  {
    const absl::Time start = absl::Now();
    grpc::ClientContext context;
    v1::CloseSessionRequest close;
    *close.mutable_credentials() = credentials;
    v1::CloseSessionResponse closed;
    grpc::Status s = stub->CloseSession(&context, close, &closed);
    if (!s.ok()) Die("CloseSession: " + s.error_message());
    Say(absl::StrCat("closed ", absl::ToDoubleMilliseconds(absl::Now() - start)));
  }
  // Watch streams, one session each, held open by async calls on one completion queue.
  grpc::CompletionQueue cq;
  struct Stream {
    grpc::ClientContext context;
    std::unique_ptr<grpc::ClientAsyncReader<v1::WatchEvent>> reader;
    v1::WatchEvent event;
    grpc::Status status;
    bool finishing = false;
  };
  std::vector<std::unique_ptr<Stream>> streams;
  for (uint64_t target : watch_steps) {
    while (streams.size() < target) {
      auto stream = std::make_unique<Stream>();
      v1::WatchRequest request;
      *request.mutable_credentials() = OpenSession(*stub);
      stream->reader = stub->AsyncWatch(&stream->context, request, &cq, stream.get());
      void* tag = nullptr;
      bool ok = false;
      if (!cq.Next(&tag, &ok) || !ok) Die(absl::StrCat("Watch ", streams.size(), " did not start"));
      streams.push_back(std::move(stream));
    }
    Say(absl::StrCat("watches ", target));
  }
  // Shutdown: a new session holds the largest lease step again, with every stream still open;
  // the broker times its Shutdown (this process never releases, so the leases are revoked at
  // the end of the grace). The broker closes the pipe when it is done. With `read_streams` the
  // streams are read from here on, as a client reads its Watch stream, until they end.
  std::thread drain;
  if (read_streams) {
    for (auto& stream : streams) stream->reader->Read(&stream->event, stream.get());
    drain = std::thread([&cq] {
      void* tag = nullptr;
      bool ok = false;
      while (cq.Next(&tag, &ok)) {
        auto* stream = static_cast<Stream*>(tag);
        if (stream->finishing) continue;  // Its Finish came back: the stream has ended.
        if (ok) {
          stream->reader->Read(&stream->event, stream);
        } else {
          stream->finishing = true;
          stream->reader->Finish(&stream->status, stream);
        }
      }
    });
    drain.detach();  // Until the process exits.
  }
  {
    const v1::SessionCredentials holder = OpenSession(*stub);
    const uint64_t target = lease_steps.back();
    for (uint64_t i = 0; i < target; ++i) {
      PinPage(*stub, holder, (i % pages) * page_size, page_size, i, " before shutdown");
    }
    Say(absl::StrCat("held ", target));
  }
  std::_Exit(0);  // The streams' teardown is not what is measured.
}

// --- Broker process -------------------------------------------------------------------------

constexpr absl::Duration kShutdownGrace = absl::Seconds(1);

int BrokerMain(const char* self, bool guard, bool smoke, bool read_streams) {
  const std::string data_dir =
      access("/dev/shm", W_OK) == 0 ? MakeTempDir("/dev/shm") : MakeTempDir("/tmp");
  const std::string socket_dir = MakeTempDir("/tmp");
  if (data_dir.empty() || socket_dir.empty()) Die("cannot create temporary dirs");
  WriteFile(data_dir + "/" + kFile, kFileBytes);

  v1::BrokerConfig config;
  const std::string endpoint = absl::StrCat("unix:", socket_dir, "/s.sock");
  config.add_listen(endpoint);
  config.mutable_session_ttl()->set_seconds(600);
  config.mutable_guard()->set_disabled(!guard);
  // One client process (one identity) plays every caller: its session and Watch stream quotas
  // (1024 and 256 by default) are raised past the largest step.
  config.mutable_quotas()->set_max_sessions(20000);
  config.mutable_quotas()->set_max_watches(20000);
  v1::ExportConfig* exp = config.add_exports();
  exp->set_name(kExport);
  exp->set_root(data_dir);
  RealClock clock;
  auto broker = broker::Broker::Start(config, &clock);
  if (!broker.ok()) Die("starting the broker: " + broker.status().ToString());
  const uint64_t page_size = (*broker)->engine().page_size();

  std::printf("broker, guard %s:\n", guard ? "on" : "off");
  PrintBroker("leases 0");
  const std::string leases = smoke ? "1000" : "10000,100000";
  const std::string watches = smoke ? "100" : "1000,10000";
  int to_child[2];
  int from_child[2];
  if (pipe2(to_child, O_CLOEXEC) != 0 || pipe2(from_child, O_CLOEXEC) != 0) Die("pipe");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, to_child[0], 0);
  posix_spawn_file_actions_adddup2(&actions, from_child[1], 1);
  const std::string page_arg = absl::StrCat(page_size);
  std::vector<const char*> argv = {self,
                                   "--client",
                                   endpoint.c_str(),
                                   leases.c_str(),
                                   watches.c_str(),
                                   page_arg.c_str(),
                                   read_streams ? "read" : "unread",
                                   nullptr};
  pid_t pid = 0;
  if (posix_spawn(&pid, "/proc/self/exe", &actions, nullptr, const_cast<char**>(argv.data()),
                  environ) != 0) {
    Die("posix_spawn");
  }
  close(to_child[0]);
  close(from_child[1]);
  FILE* in = fdopen(from_child[0], "r");
  char line[256];
  while (std::fgets(line, sizeof(line), in) != nullptr) {
    std::string step(line);
    while (!step.empty() && step.back() == '\n') step.pop_back();
    if (absl::StartsWith(step, "closed ")) {
      PrintBroker("after CloseSession");
      std::printf("  %-28s %s ms\n", "CloseSession time", step.substr(7).c_str());
    } else if (absl::StartsWith(step, "held ")) {
      // What SIGTERM does in pinbrokerd: Shutdown with the configured grace, here 1 s.
      PrintBroker(absl::StrCat("before shutdown, ", step));
      const absl::Time start = absl::Now();
      const size_t revoked = (*broker)->Shutdown(kShutdownGrace);
      std::printf("  %-28s %.1f ms (grace %s, %zu leases revoked)\n", "Shutdown time",
                  absl::ToDoubleMilliseconds(absl::Now() - start),
                  absl::FormatDuration(kShutdownGrace).c_str(), revoked);
      std::fflush(stdout);
      break;
    } else {
      PrintBroker(step);
    }
    if (write(to_child[1], "\n", 1) != 1) break;
  }
  close(to_child[1]);  // The client exits at its next read.
  int status = 0;
  waitpid(pid, &status, 0);
  (*broker)->Shutdown(absl::ZeroDuration());  // No-op when the shutdown step ran.
  broker->reset();
  unlink((data_dir + "/" + kFile).c_str());
  rmdir(data_dir.c_str());
  unlink((socket_dir + "/s.sock").c_str());
  rmdir(socket_dir.c_str());
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) Die("the client process failed");
  return 0;
}

// --- Backend part ---------------------------------------------------------------------------

int BackendMain(bool smoke) {
  const uint64_t n = smoke ? 1000 : 10000;
  const uint64_t page = SystemPageSize();
  const std::string dir =
      access("/dev/shm", W_OK) == 0 ? MakeTempDir("/dev/shm") : MakeTempDir("/tmp");
  const std::string path = dir + "/pages";
  WriteFile(path, n * page);
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  absl::StatusOr<FileInfo> info = InspectFile(fd);
  if (fd < 0 || !info.ok()) Die("open " + path);
  std::printf("host backend, %llu one-page leases:\n", static_cast<unsigned long long>(n));
  for (bool same_page : {false, true}) {
    HostBackend backend;
    const size_t maps_before = MapCount();
    std::vector<uint64_t> handles;
    handles.reserve(n);
    const absl::Time start = absl::Now();
    for (uint64_t i = 0; i < n; ++i) {
      PinSpec spec{.lease = i + 1,
                   .owner = "load",
                   .fd = fd,
                   .file = &*info,
                   .bytes = ByteRange{.offset = same_page ? 0 : i * page, .length = page},
                   .access = Access::kRead};
      absl::StatusOr<BackendPin> pin = backend.Pin(spec);
      if (!pin.ok()) Die("pin: " + pin.status().ToString());
      handles.push_back(pin->handle);
    }
    const absl::Time pinned = absl::Now();
    const size_t maps_held = MapCount();
    for (uint64_t handle : handles) {
      if (absl::Status s = backend.Revoke(handle); !s.ok()) Die("revoke: " + s.ToString());
    }
    const absl::Time revoked = absl::Now();
    std::printf("  %-10s pin_us=%7.2f revoke_us=%7.2f vmas_held=+%zu\n",
                same_page ? "same page" : "per page",
                absl::ToDoubleMicroseconds(pinned - start) / static_cast<double>(n),
                absl::ToDoubleMicroseconds(revoked - pinned) / static_cast<double>(n),
                maps_held - maps_before);
  }
  close(fd);
  unlink(path.c_str());
  rmdir(dir.c_str());
  return 0;
}

std::vector<uint64_t> Numbers(absl::string_view list) {
  std::vector<uint64_t> out;
  for (absl::string_view part : absl::StrSplit(list, ',')) {
    uint64_t v = 0;
    if (!absl::SimpleAtoi(part, &v)) Die(absl::StrCat("not a number: ", part));
    out.push_back(v);
  }
  return out;
}

}  // namespace
}  // namespace pinbroker

int main(int argc, char** argv) {
  // As pinbrokerd in a release build.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  pinbroker::SetLogSink([](pinbroker::LogSeverity severity, absl::string_view line) {
    if (severity != pinbroker::LogSeverity::kInfo) {
      std::fprintf(stderr, "%.*s\n", static_cast<int>(line.size()), line.data());
    }
  });
  bool guard = true;
  bool smoke = false;
  bool backend = false;
  bool read_streams = true;
  for (int i = 1; i < argc; ++i) {
    const absl::string_view arg = argv[i];
    if (arg == "--client" && i + 5 < argc) {
      uint64_t page = 0;
      if (!absl::SimpleAtoi(argv[i + 4], &page)) return 2;
      return pinbroker::ClientMain(argv[i + 1], pinbroker::Numbers(argv[i + 2]),
                                   pinbroker::Numbers(argv[i + 3]), page,
                                   absl::string_view(argv[i + 5]) == "read");
    }
    if (arg == "--noguard") {
      guard = false;
    } else if (arg == "--smoke") {
      smoke = true;
    } else if (arg == "--backend") {
      backend = true;
    } else if (arg == "--unread_streams") {
      read_streams = false;
    } else {
      std::fprintf(stderr,
                   "usage: load_benchmark [--noguard] [--unread_streams] [--backend] [--smoke]\n");
      return 2;
    }
  }
  return backend ? pinbroker::BackendMain(smoke)
                 : pinbroker::BrokerMain(argv[0], guard, smoke, read_streams);
}
