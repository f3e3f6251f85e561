// pinrdma's command line: which command to run and every option, parsed and validated.
//
// Grammar: pinrdma [OPTION...] COMMAND [EXPORT PATH] [OPTION...]
// Options may appear anywhere; "--flag=value" and "--flag value" are both accepted; "--" ends
// the options. EXPORT and PATH may be given as positionals or with --export / --path.
//
// Thread-safety: plain values; parse once on the main thread, then read from anywhere.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "clients/common/cli_text.h"
#include "pinbroker/v1/pinbroker.pb.h"

namespace pinrdma {

enum class Command { kHelp, kCheck, kWrite, kRead, kHold, kInfo };
absl::string_view CommandName(Command c);

struct Options {
  Command command = Command::kHelp;
  bool help = false;
  bool version = false;
  bool json = false;  // -o json

  // Broker (gRPC).
  std::string endpoint;  // --endpoint / --broker; empty: $PINBROKER_ENDPOINT, else the default.
  absl::Duration timeout = absl::Seconds(30);  // Per-RPC.
  std::string client_name = "pinrdma";

  // RDMA connection.
  std::string rdma_address;    // Empty: GetInfo's endpoints.
  uint16_t rdma_port = 0;      // 0: the endpoint's port.
  std::string broker_device;   // Pick the broker's endpoint on this device.
  std::string source_address;  // Local address to bind (picks the local RDMA device).
  absl::Duration connect_timeout = absl::Seconds(10);
  absl::Duration op_timeout = absl::Seconds(30);

  // The pin.
  std::string export_name;
  std::string path;
  uint64_t offset = 0;
  uint64_t length = 0;  // Required for check/write/read/hold.
  pinbroker::v1::Access access = pinbroker::v1::ACCESS_READ_WRITE;
  bool access_given = false;
  absl::Duration ttl = absl::ZeroDuration();

  // Transfers.
  uint64_t lease_offset = 0;
  uint64_t io_length = 0;  // 0: from lease_offset to the end of the lease.
  uint64_t pattern = 1;    // Seed of the byte pattern.
  bool pattern_given = false;
  uint64_t chunk = 0;   // 0: the lease's max_transfer_size, else 1 MiB.
  uint32_t depth = 4;   // Operations in flight.
  bool restore = true;  // check: put the original bytes back.
  bool atomics = true;  // check: also try FETCH_AND_ADD and COMPARE_SWAP.

  // hold.
  bool ignore_recall = false;
  absl::Duration write_interval = absl::ZeroDuration();  // 0: none (1 s with --ignore-recall).
  absl::Duration max_time = absl::ZeroDuration();        // 0: until recalled or interrupted.
};

// Parses argv (argv[0] is the program). INVALID_ARGUMENT saying what is wrong: unknown command
// or option, missing or malformed values, missing EXPORT/PATH/--length, conflicting options.
// With --help (or "help") anywhere, succeeds with help set.
absl::StatusOr<Options> ParseOptions(int argc, const char* const* argv);

// Sizes: decimal bytes with an optional K, M, G or T suffix (powers of 1024).
using ::pinbroker::cli_text::ParseSize;
// Durations: "500ms", "2s", "1m30s", or a bare number of seconds; finite, not negative.
using ::pinbroker::cli_text::ParseDuration;

// The --help text.
std::string HelpText();

}  // namespace pinrdma
