// pinbrokerd: the pinbroker daemon. Flags and configuration in, a running Broker out; SIGTERM
// or SIGINT shut it down gracefully (recall every lease, revoke what is not released in time,
// exit 0). SIGHUP is logged and ignored: the configuration is read once, at start.
//
// Flags are spelled either way: --session-ttl=45s and --session_ttl=45s are the same flag.
// --help prints this program's flags with their real defaults and exits 0; --version prints the
// version, the git commit and the build type.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "absl/base/config.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "broker/broker.h"
#include "broker/config.h"
#include "broker/proto_convert.h"
#include "common/build_info.h"
#include "common/log.h"
#include "common/real_clock.h"
#include "google/protobuf/text_format.h"
#include "pinbroker/rdma_wire.h"
#include "pinning/rdma/verbs_backend.h"

ABSL_FLAG(std::string, config, "",
          "Configuration file (text-format pinbroker.v1.BrokerConfig; see "
          "deploy/pinbrokerd.textproto). Flags below override it.");
ABSL_FLAG(std::vector<std::string>, listen, {},
          "Addresses to serve on, comma-separated: unix:/path.sock or host:port (port 0: any). "
          "Default: unix:<runtime_dir>/pinbroker.sock");
ABSL_FLAG(std::vector<std::string>, export, {},
          "Exports as NAME=DIR, comma-separated; DIR is created if missing. Replaces the "
          "config file's exports. Default (no config, no --export): 'default' under --state-dir");
ABSL_FLAG(std::string, default_policy, "",
          "Layout policy for --export exports: defer, revoke or refuse (default revoke)");
ABSL_FLAG(absl::Duration, grace, absl::Seconds(5),
          "revoke: time between recall and invalidation, for --export exports");
ABSL_FLAG(absl::Duration, layout_timeout, absl::Seconds(30),
          "defer: how long a layout change waits for releases, for --export exports");
ABSL_FLAG(absl::Duration, max_grace, absl::Minutes(10),
          "Longest grace a layout change or revoke may ask for, for --export exports");
ABSL_FLAG(absl::Duration, max_layout_timeout, absl::Minutes(10),
          "Longest timeout a layout change may ask for, for --export exports");
ABSL_FLAG(absl::Duration, default_ttl, absl::Seconds(60),
          "Lease TTL when a pin asks for none, for --export exports");
ABSL_FLAG(absl::Duration, max_ttl, absl::Minutes(10),
          "Longest lease TTL granted, for --export exports");
ABSL_FLAG(bool, read_only, false, "Make --export exports read-only");
ABSL_FLAG(bool, guard, true,
          "Catch truncates, hole punches, O_TRUNC opens and unlinks other processes make to "
          "leased files (docs/GUARD.md); --noguard turns the file guard off");
ABSL_FLAG(std::string, backend, "",
          "Pin backend: auto (RDMA pins on RDMA devices if any is usable, host pins always), "
          "host (no RDMA), or rdma (fail to start without a usable RDMA device)");
ABSL_FLAG(std::vector<std::string>, rdma_device, {},
          "RDMA devices to use, comma-separated (default: every device with an active port and "
          "an IPv4 address)");
ABSL_FLAG(std::string, rdma_address, "",
          "IPv4 address the rdma_cm listener binds (its device is then the only one used; "
          "default: every used device's addresses)");
// For the three flags below 0 means "not given" (the configuration file's value, else the default
// --help shows).
ABSL_FLAG(int32_t, rdma_port, 0, "rdma_cm listen port");
ABSL_FLAG(absl::Duration, session_ttl, absl::ZeroDuration(),
          "How long a session lives without a watch stream or renewal");
ABSL_FLAG(absl::Duration, shutdown_grace, absl::ZeroDuration(),
          "On SIGTERM/SIGINT: grace for holders to release");
// Quotas: 0 means "not given" (the configuration file's value, else the default --help shows).
ABSL_FLAG(uint64_t, max_pinned_bytes_total, 0,
          "Bytes all leases together may pin (default: RLIMIT_MEMLOCK where the kernel enforces "
          "it on the broker, else half the physical memory)");
ABSL_FLAG(uint64_t, max_sessions, 0, "Open sessions per identity (uid or TLS principal)");
ABSL_FLAG(uint64_t, max_leases, 0, "Live leases per identity");
ABSL_FLAG(uint64_t, max_pinned_bytes, 0,
          "Pinned bytes per identity (default: half of --max-pinned-bytes-total)");
ABSL_FLAG(uint64_t, max_watches, 0, "Open Watch streams per identity");
ABSL_FLAG(uint64_t, max_blocked_calls, 0,
          "Concurrent Truncate, PunchHole and RevokeLease-with-grace calls per identity");
ABSL_FLAG(uint64_t, max_vmas_total, 0,
          "Memory mappings (VMAs) the host backend's pins may take: 1 per file mapping plus 2 per "
          "separate run of locked pages (default: a quarter of vm.max_map_count)");
ABSL_FLAG(uint64_t, max_vmas, 0,
          "Host-backend VMAs per identity, counted as 1 per file mapping it pins in plus 2 per "
          "distinct range it holds (default: half of --max-vmas-total)");
ABSL_FLAG(std::string, state_dir, "",
          "Embedded default's export parent (default /var/lib/pinbroker as root, else "
          "$XDG_DATA_HOME/pinbroker)");
ABSL_FLAG(std::string, runtime_dir, "",
          "Embedded default's socket directory (default /run/pinbroker as root, else "
          "$XDG_RUNTIME_DIR/pinbroker or /tmp/pinbroker-UID)");
ABSL_FLAG(bool, print_config, false, "Print the effective configuration and exit");
ABSL_FLAG(bool, version, false, "Print the version, git commit and build type, and exit");

namespace pinbroker::broker {
namespace {

absl::StatusOr<v1::BrokerConfig> EffectiveConfig() {
  v1::BrokerConfig config;
  const std::string file = absl::GetFlag(FLAGS_config);
  const std::vector<std::string> exports = absl::GetFlag(FLAGS_export);
  if (!file.empty()) {
    auto loaded = LoadConfigFile(file);
    if (!loaded.ok()) return loaded.status();
    config = *std::move(loaded);
  } else if (exports.empty()) {
    const std::string state =
        absl::GetFlag(FLAGS_state_dir).empty() ? DefaultStateDir() : absl::GetFlag(FLAGS_state_dir);
    const std::string runtime = absl::GetFlag(FLAGS_runtime_dir).empty()
                                    ? DefaultRuntimeDir()
                                    : absl::GetFlag(FLAGS_runtime_dir);
    config = EmbeddedDefault(state, runtime);
  }
  if (!exports.empty()) {
    config.clear_exports();
    for (const std::string& spec : exports) {
      std::vector<std::string> parts = absl::StrSplit(spec, absl::MaxSplits('=', 1));
      if (parts.size() != 2 || parts[0].empty() || parts[1].empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat("--export wants NAME=DIR, got '", spec, "'"));
      }
      v1::ExportConfig* e = config.add_exports();
      e->set_name(parts[0]);
      e->set_root(parts[1]);
      e->set_create(true);
      const std::string policy = absl::GetFlag(FLAGS_default_policy);
      if (!policy.empty()) {
        auto parsed = ParseLayoutPolicy(policy);
        if (!parsed) {
          return absl::InvalidArgumentError(
              absl::StrCat("--default_policy must be defer, revoke or refuse, got '", policy, "'"));
        }
        e->set_default_policy(ToProto(*parsed));
      }
      ToProto(absl::GetFlag(FLAGS_grace), e->mutable_grace());
      ToProto(absl::GetFlag(FLAGS_layout_timeout), e->mutable_layout_timeout());
      ToProto(absl::GetFlag(FLAGS_max_grace), e->mutable_max_grace());
      ToProto(absl::GetFlag(FLAGS_max_layout_timeout), e->mutable_max_layout_timeout());
      ToProto(absl::GetFlag(FLAGS_default_ttl), e->mutable_default_ttl());
      ToProto(absl::GetFlag(FLAGS_max_ttl), e->mutable_max_ttl());
      e->set_read_only(absl::GetFlag(FLAGS_read_only));
    }
  }
  if (!absl::GetFlag(FLAGS_listen).empty()) {
    config.clear_listen();
    for (const std::string& a : absl::GetFlag(FLAGS_listen)) config.add_listen(a);
  }
  if (config.listen().empty()) {
    const std::string runtime = absl::GetFlag(FLAGS_runtime_dir).empty()
                                    ? DefaultRuntimeDir()
                                    : absl::GetFlag(FLAGS_runtime_dir);
    config.add_listen(absl::StrCat("unix:", runtime, "/pinbroker.sock"));
  }
  if (!absl::GetFlag(FLAGS_backend).empty()) config.set_backend(absl::GetFlag(FLAGS_backend));
  if (!absl::GetFlag(FLAGS_rdma_device).empty()) {
    config.mutable_rdma()->clear_devices();
    for (const std::string& d : absl::GetFlag(FLAGS_rdma_device)) {
      config.mutable_rdma()->add_devices(d);
    }
  }
  if (!absl::GetFlag(FLAGS_rdma_address).empty()) {
    config.mutable_rdma()->set_address(absl::GetFlag(FLAGS_rdma_address));
  }
  if (absl::GetFlag(FLAGS_rdma_port) < 0 || absl::GetFlag(FLAGS_rdma_port) > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("--rdma_port must be 1-65535, got ", absl::GetFlag(FLAGS_rdma_port)));
  }
  if (absl::GetFlag(FLAGS_rdma_port) > 0) {
    config.mutable_rdma()->set_port(static_cast<uint32_t>(absl::GetFlag(FLAGS_rdma_port)));
  }
  if (absl::GetFlag(FLAGS_session_ttl) > absl::ZeroDuration()) {
    ToProto(absl::GetFlag(FLAGS_session_ttl), config.mutable_session_ttl());
  }
  if (!absl::GetFlag(FLAGS_guard)) config.mutable_guard()->set_disabled(true);
  if (const uint64_t v = absl::GetFlag(FLAGS_max_pinned_bytes_total); v > 0) {
    config.set_max_pinned_bytes_total(v);
  }
  if (const uint64_t v = absl::GetFlag(FLAGS_max_vmas_total); v > 0) config.set_max_vmas_total(v);
  v1::QuotaConfig* quotas = config.mutable_quotas();
  if (const uint64_t v = absl::GetFlag(FLAGS_max_sessions); v > 0) quotas->set_max_sessions(v);
  if (const uint64_t v = absl::GetFlag(FLAGS_max_leases); v > 0) quotas->set_max_leases(v);
  if (const uint64_t v = absl::GetFlag(FLAGS_max_pinned_bytes); v > 0) {
    quotas->set_max_pinned_bytes(v);
  }
  if (const uint64_t v = absl::GetFlag(FLAGS_max_watches); v > 0) quotas->set_max_watches(v);
  if (const uint64_t v = absl::GetFlag(FLAGS_max_blocked_calls); v > 0) {
    quotas->set_max_blocked_calls(v);
  }
  if (const uint64_t v = absl::GetFlag(FLAGS_max_vmas); v > 0) quotas->set_max_vmas(v);
  if (quotas->ByteSizeLong() == 0) config.clear_quotas();
  if (absl::GetFlag(FLAGS_shutdown_grace) > absl::ZeroDuration()) {
    ToProto(absl::GetFlag(FLAGS_shutdown_grace), config.mutable_shutdown_grace());
  }
  return config;
}

int Run() {
  // Log lines with wall-clock stamps (the engine's own lines carry none).
  SetLogSink([](LogSeverity, absl::string_view line) {
    const std::string stamped = absl::StrCat(
        absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ ", absl::Now(), absl::UTCTimeZone()), line, "\n");
    std::fwrite(stamped.data(), 1, stamped.size(), stderr);
  });
  auto config = EffectiveConfig();
  if (!config.ok()) {
    std::cerr << "pinbrokerd: " << config.status().message() << "\n";
    return 2;
  }
  if (absl::GetFlag(FLAGS_print_config)) {
    std::string text;
    google::protobuf::TextFormat::PrintToString(*config, &text);
    std::cout << text;
    return 0;
  }
  // Signals are taken by sigwait() below; block them before any thread starts.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  RealClock clock;
  auto broker = Broker::Start(*config, &clock);
  if (!broker.ok()) {
    std::cerr << "pinbrokerd: " << broker.status().message() << "\n";
    return 1;
  }
  const std::string& address = (*broker)->addresses().front();
  std::cout << "pinbrokerd " << GetBuildInfo().version << " ready (epoch " << (*broker)->epoch()
            << ", backend " << (*broker)->backend().name() << ")\n";
  for (const Export* e : (*broker)->engine().exports()) {
    std::cout << "  export " << e->name() << " -> " << e->options().root
              << (e->options().read_only ? " (read-only)" : "") << "\n";
  }
  if ((*broker)->verbs() != nullptr) {
    std::cout << "  RDMA endpoints " << (*broker)->verbs()->DescribeEndpoints() << "\n";
  }
  std::cout << "  listening on " << absl::StrJoin((*broker)->addresses(), ", ") << "\n"
            << "Try:\n"
            << "  pinctl --endpoint " << address << " info\n"
            << "  head -c 1M /dev/urandom > "
            << (*broker)->engine().exports().front()->options().root << "/demo.bin\n"
            << "  pinctl --endpoint " << address << " lease pin "
            << (*broker)->engine().exports().front()->name() << " demo.bin --length 65536 --hold\n"
            << std::flush;

  int received = 0;
  for (;;) {
    if (sigwait(&signals, &received) != 0) continue;
    if (received != SIGHUP) break;
    PB_LOG(WARNING) << "received SIGHUP: pinbrokerd does not reload its configuration; still "
                       "serving with the one it started with (restart it to apply changes)";
  }
  const absl::Duration grace =
      config->has_shutdown_grace() ? FromProto(config->shutdown_grace()) : kDefaultShutdownGrace;
  PB_LOG(INFO) << "received " << (received == SIGTERM ? "SIGTERM" : "SIGINT");
  (*broker)->Shutdown(grace);
  broker->reset();
  return 0;
}

}  // namespace
}  // namespace pinbroker::broker

namespace pinbroker::broker {
namespace {

constexpr absl::string_view kUsage =
    "pinbrokerd: the pinbroker daemon. Brokers DMA/RDMA pins of file ranges and keeps them safe "
    "across truncates and hole punches.\n\n"
    "With no --config and no --export it serves the embedded default: one export 'default' and "
    "a Unix socket, both in per-user directories.\n\n"
    "Usage: pinbrokerd [--config FILE] [--listen ADDR,...] [--export NAME=DIR,...] [FLAGS]\n"
    "Flags may be spelled --kebab-case or --snake_case; booleans also as --noNAME.\n"
    "Signals: SIGTERM and SIGINT shut down gracefully; SIGHUP is logged and ignored.";

bool IsOurFlag(const absl::CommandLineFlag& flag) {
  return absl::EndsWith(flag.Filename(), "broker/main.cc");
}

// The default --help shows for `flag`: where the flag's own default means "not given", the one
// the broker applies then.
std::string ShownDefault(const absl::CommandLineFlag& flag) {
  const absl::string_view name = flag.Name();
  if (name == "session_ttl") return absl::FormatDuration(kDefaultSessionTtl);
  if (name == "shutdown_grace") return absl::FormatDuration(kDefaultShutdownGrace);
  if (name == "rdma_port") return absl::StrCat(rdma_wire::kDefaultPort);
  if (name == "backend") return "auto";
  if (name == "max_sessions") return absl::StrCat(kDefaultMaxSessions);
  if (name == "max_leases") return absl::StrCat(kDefaultMaxLeases);
  if (name == "max_watches") return absl::StrCat(kDefaultMaxWatches);
  if (name == "max_blocked_calls") return absl::StrCat(kDefaultMaxBlockedCalls);
  if (name == "max_pinned_bytes_total") return absl::StrCat(DefaultPinnedBytesBudget());
  if (name == "max_pinned_bytes") {
    return absl::StrCat(DefaultPinnedBytesBudget() / kDefaultPinnedBytesShare);
  }
  if (name == "max_vmas_total") return absl::StrCat(HostBackend::DefaultMaxVmas());
  if (name == "max_vmas") return absl::StrCat(HostBackend::DefaultMaxVmas() / kDefaultVmaShare);
  return flag.DefaultValue();
}

// `text` as lines of at most `width` columns (longer words stay whole), each after `indent`.
std::string Wrapped(absl::string_view text, absl::string_view indent, size_t width) {
  std::string out, line;
  for (absl::string_view word : absl::StrSplit(text, ' ', absl::SkipEmpty())) {
    if (!line.empty() && indent.size() + line.size() + 1 + word.size() > width) {
      absl::StrAppend(&out, indent, line, "\n");
      line.clear();
    }
    absl::StrAppend(&line, line.empty() ? "" : " ", word);
  }
  if (!line.empty()) absl::StrAppend(&out, indent, line, "\n");
  return out;
}

std::string HelpText() {
  std::vector<const absl::CommandLineFlag*> flags;
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    if (IsOurFlag(*flag)) flags.push_back(flag);
  }
  std::sort(flags.begin(), flags.end(),
            [](const absl::CommandLineFlag* a, const absl::CommandLineFlag* b) {
              return a->Name() < b->Name();
            });
  std::string out;
  for (absl::string_view paragraph : absl::StrSplit(kUsage, '\n')) {
    absl::StrAppend(&out, paragraph.empty() ? "\n" : Wrapped(paragraph, "", 100));
  }
  absl::StrAppend(&out, "\nFlags:\n");
  for (const absl::CommandLineFlag* flag : flags) {
    std::string name(flag->Name());
    std::replace(name.begin(), name.end(), '_', '-');
    std::string help(flag->Help());
    const std::string shown = ShownDefault(*flag);
    if (!shown.empty()) absl::StrAppend(&help, " (default: ", shown, ")");
    absl::StrAppend(&out, "  --", name, "\n", Wrapped(help, "      ", 100));
  }
  absl::StrAppend(&out, "  --help\n      Print this help and exit\n");
  return out;
}

// Rewrites "--kebab-name[=v]" as "--kebab_name[=v]" and "--no-name" as "--noname" for absl (every
// flag of ours is snake_case), up to a "--" that ends the flags.
std::vector<std::string> SnakeCaseFlags(int argc, char** argv) {
  std::vector<std::string> out(argv, argv + argc);
  for (size_t i = 1; i < out.size(); ++i) {
    std::string& a = out[i];
    if (a == "--") break;
    if (a.size() < 2 || a[0] != '-') continue;
    const size_t begin = a[1] == '-' ? 2 : 1;
    const size_t end = std::min(a.find('='), a.size());
    std::replace(a.begin() + static_cast<std::ptrdiff_t>(begin),
                 a.begin() + static_cast<std::ptrdiff_t>(end), '-', '_');
    // --no-guard: absl spells a negated boolean --noguard.
    const std::string name = a.substr(begin, end - begin);
    if (absl::StartsWith(name, "no_") && absl::FindCommandLineFlag(name) == nullptr &&
        absl::FindCommandLineFlag(name.substr(3)) != nullptr) {
      a.erase(begin + 2, 1);
    }
  }
  return out;
}

}  // namespace
}  // namespace pinbroker::broker

int main(int argc, char** argv) {
#if defined(NDEBUG) && !defined(ABSL_HAVE_ADDRESS_SANITIZER) && !defined(ABSL_HAVE_THREAD_SANITIZER)
  // A libabsl built without NDEBUG (Debian's) checks every nested absl::Mutex acquisition for
  // lock-order cycles, at a cost on every RPC. Release builds skip it; debug and sanitizer
  // builds keep it.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
#endif
  std::vector<std::string> args = pinbroker::broker::SnakeCaseFlags(argc, argv);
  for (size_t i = 1; i < args.size() && args[i] != "--"; ++i) {
    if (args[i] == "--help" || args[i] == "-h" || args[i] == "--helpshort" || args[i] == "-help") {
      std::cout << pinbroker::broker::HelpText();
      return 0;
    }
  }
  absl::SetProgramUsageMessage(pinbroker::broker::kUsage);
  std::vector<char*> c_args;
  for (std::string& a : args) c_args.push_back(a.data());
  absl::ParseCommandLine(static_cast<int>(c_args.size()), c_args.data());
  if (absl::GetFlag(FLAGS_version)) {
    std::cout << pinbroker::VersionLine("pinbrokerd") << "\n";
    return 0;
  }
  return pinbroker::broker::Run();
}
