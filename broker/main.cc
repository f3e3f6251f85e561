// pinbrokerd: the pinbroker daemon. Flags and configuration in, a running Broker out; SIGTERM
// or SIGINT shut it down gracefully (recall every lease, revoke what is not released in time,
// exit 0).
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "broker/broker.h"
#include "broker/config.h"
#include "broker/proto_convert.h"
#include "google/protobuf/text_format.h"
#include "pinning/log.h"
#include "pinning/rdma/verbs_backend.h"
#include "pinning/real_clock.h"

ABSL_FLAG(std::string, config, "",
          "Configuration file (text-format pinbroker.v1.BrokerConfig; see "
          "deploy/pinbrokerd.textproto). Flags below override it.");
ABSL_FLAG(std::vector<std::string>, listen, {},
          "Addresses to serve on, comma-separated: unix:/path.sock or host:port (port 0: any). "
          "Default: unix:<runtime_dir>/pinbroker.sock");
ABSL_FLAG(std::vector<std::string>, export, {},
          "Exports as NAME=DIR, comma-separated; DIR is created if missing. Replaces the "
          "config file's exports. Default (no config, no --export): 'default' under state_dir");
ABSL_FLAG(std::string, default_policy, "",
          "Layout policy for --export exports: defer, revoke or refuse (default revoke)");
ABSL_FLAG(absl::Duration, grace, absl::Seconds(5),
          "revoke: time between recall and invalidation, for --export exports");
ABSL_FLAG(absl::Duration, layout_timeout, absl::Seconds(30),
          "defer: how long a layout change waits for releases, for --export exports");
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
ABSL_FLAG(int32_t, rdma_port, 0, "rdma_cm listen port (default 7471)");
ABSL_FLAG(absl::Duration, session_ttl, absl::ZeroDuration(),
          "How long a session lives without a watch stream or renewal (default 30s)");
ABSL_FLAG(absl::Duration, shutdown_grace, absl::ZeroDuration(),
          "On SIGTERM/SIGINT: grace for holders to release (default 2s)");
ABSL_FLAG(std::string, state_dir, "",
          "Embedded default's export parent (default /var/lib/pinbroker as root, else "
          "$XDG_DATA_HOME/pinbroker)");
ABSL_FLAG(std::string, runtime_dir, "",
          "Embedded default's socket directory (default /run/pinbroker as root, else "
          "$XDG_RUNTIME_DIR/pinbroker or /tmp/pinbroker-UID)");
ABSL_FLAG(bool, print_config, false, "Print the effective configuration and exit");

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
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  RealClock clock;
  auto broker = Broker::Start(*config, &clock);
  if (!broker.ok()) {
    std::cerr << "pinbrokerd: " << broker.status().message() << "\n";
    return 1;
  }
  const std::string& address = (*broker)->addresses().front();
  std::cout << "pinbrokerd " << PINBROKER_VERSION << " ready (epoch " << (*broker)->epoch()
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
  sigwait(&signals, &received);
  const absl::Duration grace =
      config->has_shutdown_grace() ? FromProto(config->shutdown_grace()) : absl::Seconds(2);
  PB_LOG(INFO) << "received " << (received == SIGTERM ? "SIGTERM" : "SIGINT");
  (*broker)->Shutdown(grace);
  broker->reset();
  return 0;
}

}  // namespace
}  // namespace pinbroker::broker

int main(int argc, char** argv) {
  // --help lists this file's flags (absl's default looks for a file named after the program).
  absl::FlagsUsageConfig usage;
  usage.contains_help_flags = [](absl::string_view file) {
    return absl::EndsWith(file, "broker/main.cc");
  };
  usage.contains_helpshort_flags = usage.contains_help_flags;
  absl::SetFlagsUsageConfig(usage);
  absl::SetProgramUsageMessage(
      "pinbroker daemon: brokers DMA/RDMA pins of file ranges and keeps them safe across "
      "truncates and hole punches.\n\nWith no --config and no --export it serves the embedded "
      "default: one export 'default' and a Unix socket, both in per-user directories.\n\n"
      "Usage: pinbrokerd [--config FILE] [--listen ADDR,...] [--export NAME=DIR,...] ...");
  absl::ParseCommandLine(argc, argv);
  return pinbroker::broker::Run();
}
