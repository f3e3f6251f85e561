#include "broker/config.h"

#include <arpa/inet.h>
#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/text_format.h>
#include <grp.h>
#include <linux/capability.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "broker/proto_convert.h"
#include "common/errno_status.h"

namespace pinbroker::broker {
namespace {

class Collector : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int line, int column, const std::string& message) override {
    errors.push_back(absl::StrCat("line ", line + 1, " column ", column + 1, ": ", message));
  }
  std::vector<std::string> errors;
};

absl::Status MakeDirs(const std::string& path, mode_t mode) {
  if (path.empty()) return absl::OkStatus();
  std::string prefix;
  for (size_t i = 1; i <= path.size(); ++i) {
    if (i == path.size() || path[i] == '/') {
      prefix = path.substr(0, i);
      if (mkdir(prefix.c_str(), mode) != 0 && errno != EEXIST) {
        return ErrnoToStatus(errno, absl::StrCat("mkdir ", prefix));
      }
    }
  }
  return absl::OkStatus();
}

std::string EnvOr(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::string(v) : fallback;
}

}  // namespace

absl::StatusOr<v1::BrokerConfig> ParseConfig(const std::string& text) {
  v1::BrokerConfig config;
  google::protobuf::TextFormat::Parser parser;
  Collector errors;
  parser.RecordErrorsTo(&errors);
  if (!parser.ParseFromString(text, &config)) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad configuration: ", absl::StrJoin(errors.errors, "; ")));
  }
  return config;
}

absl::StatusOr<v1::BrokerConfig> LoadConfigFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return ErrnoToStatus(errno, absl::StrCat("open configuration file ", path));
  std::stringstream text;
  text << in.rdbuf();
  auto config = ParseConfig(text.str());
  if (!config.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", config.status().message()));
  }
  return config;
}

std::string DefaultStateDir() {
  if (geteuid() == 0) return "/var/lib/pinbroker";
  return EnvOr("XDG_DATA_HOME", EnvOr("HOME", "/tmp") + "/.local/share") + "/pinbroker";
}

v1::BrokerConfig EmbeddedDefault(const std::string& state_dir, const std::string& runtime_dir) {
  v1::BrokerConfig config;
  config.add_listen(absl::StrCat("unix:", runtime_dir, "/pinbroker.sock"));
  v1::ExportConfig* exp = config.add_exports();
  exp->set_name("default");
  exp->set_root(absl::StrCat(state_dir, "/default"));
  exp->set_create(true);
  config.set_backend("auto");
  return config;
}

absl::StatusOr<std::vector<ExportOptions>> ExportsFromConfig(const v1::BrokerConfig& config) {
  std::vector<ExportOptions> out;
  for (const v1::ExportConfig& e : config.exports()) {
    ExportOptions o;
    o.name = e.name();
    o.root = e.root();
    auto policy = FromProto(e.default_policy());
    if (!policy.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("export '", e.name(), "': ", policy.status().message()));
    }
    o.default_policy = policy->value_or(LayoutPolicy::kRevoke);
    if (e.has_grace()) o.grace = FromProto(e.grace());
    if (e.has_layout_timeout()) o.layout_timeout = FromProto(e.layout_timeout());
    if (e.has_default_ttl()) o.default_ttl = FromProto(e.default_ttl());
    if (e.has_max_ttl()) o.max_ttl = FromProto(e.max_ttl());
    o.read_only = e.read_only();
    o.cross_mounts = e.cross_mounts();
    if (e.create()) {
      if (absl::Status s = MakeDirs(o.root, 0755); !s.ok()) {
        return absl::Status(s.code(), absl::StrCat("export '", e.name(), "': ", s.message()));
      }
    }
    out.push_back(std::move(o));
  }
  return out;
}

absl::StatusOr<absl::flat_hash_map<std::string, LayoutCaps>> LayoutCapsFromConfig(
    const v1::BrokerConfig& config) {
  absl::flat_hash_map<std::string, LayoutCaps> out;
  const ExportOptions defaults;
  for (const v1::ExportConfig& e : config.exports()) {
    LayoutCaps caps;
    if (e.has_max_grace()) caps.max_grace = FromProto(e.max_grace());
    if (e.has_max_layout_timeout()) caps.max_layout_timeout = FromProto(e.max_layout_timeout());
    const absl::Duration grace = e.has_grace() ? FromProto(e.grace()) : defaults.grace;
    const absl::Duration timeout =
        e.has_layout_timeout() ? FromProto(e.layout_timeout()) : defaults.layout_timeout;
    if (caps.max_grace <= absl::ZeroDuration() || caps.max_grace < grace) {
      return absl::InvalidArgumentError(
          absl::StrCat("export '", e.name(), "': max_grace ", absl::FormatDuration(caps.max_grace),
                       " must be positive and at least its grace ", absl::FormatDuration(grace)));
    }
    if (caps.max_layout_timeout <= absl::ZeroDuration() || caps.max_layout_timeout < timeout) {
      return absl::InvalidArgumentError(absl::StrCat(
          "export '", e.name(), "': max_layout_timeout ",
          absl::FormatDuration(caps.max_layout_timeout),
          " must be positive and at least its layout_timeout ", absl::FormatDuration(timeout)));
    }
    out[e.name()] = caps;
  }
  return out;
}

uint64_t DefaultPinnedBytesBudget() {
  bool ipc_lock = false;
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (!absl::StartsWith(line, "CapEff:")) continue;
    uint64_t caps = 0;
    if (absl::SimpleHexAtoi(absl::StripAsciiWhitespace(line.substr(7)), &caps)) {
      ipc_lock = (caps >> CAP_IPC_LOCK) & 1;
    }
  }
  rlimit memlock{};
  if (!ipc_lock && getrlimit(RLIMIT_MEMLOCK, &memlock) == 0 && memlock.rlim_cur != RLIM_INFINITY) {
    return memlock.rlim_cur;
  }
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page = sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page <= 0) return kUnlimited;
  return static_cast<uint64_t>(pages) / 2 * static_cast<uint64_t>(page);
}

absl::StatusOr<uint64_t> PinnedBytesBudgetFromConfig(const v1::BrokerConfig& config) {
  if (!config.has_max_pinned_bytes_total()) return DefaultPinnedBytesBudget();
  if (config.max_pinned_bytes_total() == 0) {
    return absl::InvalidArgumentError("max_pinned_bytes_total must be positive");
  }
  return config.max_pinned_bytes_total();
}

absl::StatusOr<QuotaLedger::Options> QuotaOptionsFromConfig(const v1::BrokerConfig& config,
                                                            uint64_t budget) {
  QuotaLedger::Options options;
  QuotaLimits& limits = options.per_identity;
  limits.max_sessions = kDefaultMaxSessions;
  limits.max_leases = kDefaultMaxLeases;
  limits.max_pinned_bytes =
      budget == kUnlimited ? kUnlimited : std::max<uint64_t>(1, budget / kDefaultPinnedBytesShare);
  limits.max_watches = kDefaultMaxWatches;
  limits.max_blocked_calls = kDefaultMaxBlockedCalls;
  const auto take = [](absl::string_view where, absl::string_view field, bool has, uint64_t value,
                       uint64_t* out) -> absl::Status {
    if (!has) return absl::OkStatus();
    if (value == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, field, " must be positive (leave it unset for the default)"));
    }
    *out = value;
    return absl::OkStatus();
  };
  const v1::QuotaConfig& q = config.quotas();
  for (absl::Status s : {
           take("quotas.", "max_sessions", q.has_max_sessions(), q.max_sessions(),
                &limits.max_sessions),
           take("quotas.", "max_leases", q.has_max_leases(), q.max_leases(), &limits.max_leases),
           take("quotas.", "max_pinned_bytes", q.has_max_pinned_bytes(), q.max_pinned_bytes(),
                &limits.max_pinned_bytes),
           take("quotas.", "max_watches", q.has_max_watches(), q.max_watches(),
                &limits.max_watches),
           take("quotas.", "max_blocked_calls", q.has_max_blocked_calls(), q.max_blocked_calls(),
                &limits.max_blocked_calls),
       }) {
    if (!s.ok()) return s;
  }
  for (const v1::ExportConfig& e : config.exports()) {
    if (!e.has_quotas()) continue;
    const v1::QuotaConfig& eq = e.quotas();
    const std::string where = absl::StrCat("export '", e.name(), "': quotas.");
    if (eq.has_max_sessions() || eq.has_max_watches() || eq.has_max_blocked_calls() ||
        eq.has_max_vmas()) {
      return absl::InvalidArgumentError(absl::StrCat(
          where,
          "max_sessions, max_watches, max_blocked_calls and max_vmas are per identity only (set "
          "them in the top-level quotas); an export limits max_leases and max_pinned_bytes"));
    }
    ExportQuotaLimits export_limits;
    if (absl::Status s = take(where, "max_leases", eq.has_max_leases(), eq.max_leases(),
                              &export_limits.max_leases);
        !s.ok()) {
      return s;
    }
    if (absl::Status s = take(where, "max_pinned_bytes", eq.has_max_pinned_bytes(),
                              eq.max_pinned_bytes(), &export_limits.max_pinned_bytes);
        !s.ok()) {
      return s;
    }
    options.per_export[e.name()] = export_limits;
  }
  return options;
}

absl::StatusOr<HostBackend::Options> HostOptionsFromConfig(const v1::BrokerConfig& config) {
  HostBackend::Options options;
  options.max_vmas = HostBackend::DefaultMaxVmas();
  if (config.has_max_vmas_total()) {
    if (config.max_vmas_total() == 0) {
      return absl::InvalidArgumentError(
          "max_vmas_total must be positive (leave it unset for the default)");
    }
    options.max_vmas = config.max_vmas_total();
  }
  options.max_vmas_per_holder = std::max<uint64_t>(1, options.max_vmas / kDefaultVmaShare);
  if (config.quotas().has_max_vmas()) {
    if (config.quotas().max_vmas() == 0) {
      return absl::InvalidArgumentError(
          "quotas.max_vmas must be positive (leave it unset for the default)");
    }
    options.max_vmas_per_holder = config.quotas().max_vmas();
  }
  return options;
}

absl::StatusOr<BackendChoice> BackendFromConfig(const v1::BrokerConfig& config) {
  const std::string& name = config.backend();
  if (name.empty() || name == "auto") return BackendChoice::kAuto;
  if (name == "host") return BackendChoice::kHost;
  if (name == "rdma") return BackendChoice::kRdma;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown backend '", name,
                   "'; use \"auto\" (RDMA devices if usable, else host), \"host\" or \"rdma\""));
}

absl::StatusOr<rdma::VerbsOptions> RdmaOptionsFromConfig(const v1::BrokerConfig& config) {
  const v1::RdmaConfig& c = config.rdma();
  rdma::VerbsOptions options;
  for (const std::string& device : c.devices()) {
    if (device.empty()) return absl::InvalidArgumentError("rdma.devices: empty device name");
    options.devices.push_back(device);
  }
  if (c.port() > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("rdma.port ", c.port(), " is not a port (1-65535; 0: the default 7471)"));
  }
  options.port = static_cast<uint16_t>(c.port());
  if (!c.address().empty()) {
    in_addr parsed;
    if (inet_pton(AF_INET, c.address().c_str(), &parsed) != 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          "rdma.address '", c.address(), "' is not an IPv4 address (RoCE endpoints are IPv4)"));
    }
    options.address = c.address();
  }
  if (c.has_verbs_timeout()) {
    options.verbs_timeout = FromProto(c.verbs_timeout());
    if (options.verbs_timeout <= absl::ZeroDuration()) {
      return absl::InvalidArgumentError("rdma.verbs_timeout must be positive");
    }
  }
  return options;
}

absl::StatusOr<UnixListener::Options> UnixListenOptionsFor(const std::string& address,
                                                           const v1::BrokerConfig& config) {
  UnixListener::Options options;
  options.path = address.substr(5);
  if (absl::StartsWith(options.path, "//")) options.path = options.path.substr(2);
  if (!config.listen_group().empty()) {
    const std::string& name = config.listen_group();
    uint32_t number = 0;
    if (absl::SimpleAtoi(name, &number)) {
      options.group = static_cast<gid_t>(number);
    } else {
      std::vector<char> buffer(16384);
      group entry;
      group* found = nullptr;
      if (getgrnam_r(name.c_str(), &entry, buffer.data(), buffer.size(), &found) != 0 ||
          found == nullptr) {
        return absl::InvalidArgumentError(absl::StrCat(
            "listen_group '", name, "' is not a group on this host; create it or fix the config"));
      }
      options.group = found->gr_gid;
    }
  }
  options.mode = options.group.has_value() ? 0660 : 0600;
  if (!config.listen_mode().empty()) {
    const std::string& text = config.listen_mode();
    char* end = nullptr;
    const unsigned long mode = std::strtoul(text.c_str(), &end, 8);
    if (end == text.c_str() || *end != '\0' || mode > 0777) {
      return absl::InvalidArgumentError(absl::StrCat(
          "listen_mode '", text, "' is not an octal permission mode 0-0777 (e.g. \"0660\")"));
    }
    options.mode = static_cast<mode_t>(mode);
  }
  return options;
}

absl::Status PrepareListenAddress(const std::string& address) {
  if (!absl::StartsWith(address, "unix:")) return absl::OkStatus();
  std::string path = address.substr(5);
  if (absl::StartsWith(path, "//")) path = path.substr(2);
  if (path.size() >= 108) {
    return absl::InvalidArgumentError(
        absl::StrCat("Unix socket path ", path, " is ", path.size(), " bytes; the limit is 107"));
  }
  const size_t slash = path.rfind('/');
  if (slash != std::string::npos && slash > 0) {
    const std::string dir = path.substr(0, slash);
    if (geteuid() != 0 && dir == DefaultRuntimeDir()) {
      // A non-root broker's own runtime directory (perhaps under /tmp): made private, and
      // refused if someone else made it first.
      if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
        if (absl::Status s = MakeDirs(dir, 0700); !s.ok()) return s;
      }
      if (absl::Status s = CheckPrivateDir(dir); !s.ok()) return s;
    } else if (absl::Status s = MakeDirs(dir, 0755); !s.ok()) {
      return s;
    }
  }
  struct stat st;
  if (lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return absl::FailedPreconditionError(
          absl::StrCat(path, " exists and is not a socket; refusing to replace it"));
    }
    // A socket someone still accepts on belongs to a running broker: never steal it.
    const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    const bool live = fd >= 0 && connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
    if (fd >= 0) close(fd);
    if (live) {
      return absl::FailedPreconditionError(absl::StrCat(
          path, " is already serving (another pinbrokerd?); stop it or choose another --listen"));
    }
    unlink(path.c_str());  // A stale socket from an earlier run.
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<guard::FileGuard::Options>> GuardOptionsFromConfig(
    const v1::BrokerConfig& config) {
  const v1::GuardConfig& g = config.guard();
  if (g.disabled()) return std::nullopt;
  guard::FileGuard::Options options;
  options.use_fanotify = !g.no_fanotify();
  options.use_leases = !g.no_file_leases();
  if (g.has_check_interval()) {
    options.check_interval = FromProto(g.check_interval());
    if (options.check_interval <= absl::ZeroDuration()) {
      return absl::InvalidArgumentError(absl::StrCat("guard.check_interval must be positive, got ",
                                                     absl::FormatDuration(options.check_interval)));
    }
  }
  return options;
}

}  // namespace pinbroker::broker
