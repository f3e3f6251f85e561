// Broker configuration: the text-format BrokerConfig file, its defaults, and what the engine
// and server make of it.
//
// Thread-safety: stateless functions.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "broker/unix_listener.h"
#include "common/runtime_paths.h"
#include "pinbroker/v1/config.pb.h"
#include "pinning/export.h"
#include "pinning/guard/file_guard.h"
#include "pinning/host_backend.h"
#include "pinning/quota.h"
#include "pinning/rdma/verbs_backend.h"

namespace pinbroker::broker {

// What the broker applies when the configuration leaves these unset (pinbrokerd --help shows them).
inline constexpr absl::Duration kDefaultSessionTtl = absl::Seconds(30);
inline constexpr absl::Duration kDefaultMaxSessionTtl = absl::Minutes(10);
inline constexpr absl::Duration kDefaultShutdownGrace = absl::Seconds(2);
inline constexpr absl::Duration kDefaultMaxGrace = absl::Minutes(10);
inline constexpr absl::Duration kDefaultMaxLayoutTimeout = absl::Minutes(10);

// Per-identity quota defaults: generous for one real application (a few processes, each with a
// handful of sessions, tens of thousands of leases, one Watch stream per session), small enough
// that one identity cannot take the broker's capacity from the others.
inline constexpr uint64_t kDefaultMaxSessions = 1024;
inline constexpr uint64_t kDefaultMaxLeases = 131072;
inline constexpr uint64_t kDefaultMaxWatches = 256;
inline constexpr uint64_t kDefaultMaxBlockedCalls = 64;
// max_pinned_bytes defaults to the budget divided by this: no identity can hold more than half.
inline constexpr uint64_t kDefaultPinnedBytesShare = 2;
// quotas.max_vmas defaults to max_vmas_total divided by this: half the host backend's VMAs.
inline constexpr uint64_t kDefaultVmaShare = 2;

// The longest grace and layout timeout callers may ask for in one export.
struct LayoutCaps {
  absl::Duration max_grace = kDefaultMaxGrace;
  absl::Duration max_layout_timeout = kDefaultMaxLayoutTimeout;
};

// Parses a text-format BrokerConfig. INVALID_ARGUMENT with the parser's line and column.
absl::StatusOr<v1::BrokerConfig> ParseConfig(const std::string& text);
absl::StatusOr<v1::BrokerConfig> LoadConfigFile(const std::string& path);

// The embedded default: one read-write export "default" under `state_dir` (created) and one
// Unix socket under `runtime_dir`.
v1::BrokerConfig EmbeddedDefault(const std::string& state_dir, const std::string& runtime_dir);
// Where the embedded default keeps its state for this user: root uses /var/lib/pinbroker; others
// $XDG_DATA_HOME (or ~/.local/share). Its socket goes under DefaultRuntimeDir()
// (common/runtime_paths.h).
std::string DefaultStateDir();
// Engine export options for `config`, with defaults filled in; creates roots marked `create`.
// INVALID_ARGUMENT naming the export for bad values; errors from mkdir otherwise.
absl::StatusOr<std::vector<ExportOptions>> ExportsFromConfig(const v1::BrokerConfig& config);

// Each export's LayoutCaps, by export name, defaults filled in. INVALID_ARGUMENT naming the
// export for a non-positive cap or one below the export's own grace / layout_timeout.
absl::StatusOr<absl::flat_hash_map<std::string, LayoutCaps>> LayoutCapsFromConfig(
    const v1::BrokerConfig& config);

// The broker-wide budget of pinned bytes when the configuration sets none: RLIMIT_MEMLOCK when
// the kernel enforces it on this process (finite, and no CAP_IPC_LOCK: beyond it mlock and
// RDMA registration fail anyway), else half the physical memory (pinned pages cannot be
// reclaimed or swapped; the other half stays for the host).
uint64_t DefaultPinnedBytesBudget();
// config.max_pinned_bytes_total, else DefaultPinnedBytesBudget(). INVALID_ARGUMENT for 0.
absl::StatusOr<uint64_t> PinnedBytesBudgetFromConfig(const v1::BrokerConfig& config);
// Per-identity quotas from config.quotas and each export's quotas, defaults filled in
// (max_pinned_bytes: `budget` / kDefaultPinnedBytesShare). INVALID_ARGUMENT naming the field
// for a 0, or for an export's quota other than max_leases / max_pinned_bytes.
absl::StatusOr<QuotaLedger::Options> QuotaOptionsFromConfig(const v1::BrokerConfig& config,
                                                            uint64_t budget);

// The host backend's VMA limits: max_vmas_total (unset: HostBackend::DefaultMaxVmas(), a
// quarter of vm.max_map_count) and quotas.max_vmas, each identity's share (unset: half of
// max_vmas_total). INVALID_ARGUMENT naming the field for a 0.
absl::StatusOr<HostBackend::Options> HostOptionsFromConfig(const v1::BrokerConfig& config);

// The pin backend config.backend() asks for. INVALID_ARGUMENT for anything but "" / "auto" (RDMA
// devices if usable, else host), "host" and "rdma" (fail to start without a usable device).
enum class BackendChoice { kAuto, kHost, kRdma };
absl::StatusOr<BackendChoice> BackendFromConfig(const v1::BrokerConfig& config);

// The verbs backend's options from config.rdma(), defaults filled in. INVALID_ARGUMENT for a
// port above 65535, an address that is not IPv4, an empty device name or a non-positive
// verbs_timeout.
absl::StatusOr<rdma::VerbsOptions> RdmaOptionsFromConfig(const v1::BrokerConfig& config);

// The broker's own listener options for the "unix:" address `address`: its path, and
// listen_mode/listen_group from `config`. INVALID_ARGUMENT for a mode that is not octal
// 0-0777 or a group that does not exist.
absl::StatusOr<UnixListener::Options> UnixListenOptionsFor(const std::string& address,
                                                           const v1::BrokerConfig& config);

// For Unix-socket addresses: creates the parent directory and removes a stale socket file.
absl::Status PrepareListenAddress(const std::string& address);

// The file guard's options from config.guard(), defaults filled in; nullopt when the guard is
// disabled. INVALID_ARGUMENT for a non-positive check_interval.
absl::StatusOr<std::optional<guard::FileGuard::Options>> GuardOptionsFromConfig(
    const v1::BrokerConfig& config);

}  // namespace pinbroker::broker
