// pinctl's command line: global options, the noun-verb command table entry, and the parsed
// arguments of one command (positionals and --flags), with typed accessors for sizes and
// durations.
//
// Grammar: pinctl [GLOBAL...] NOUN [VERB] [ARG | --flag [VALUE] | GLOBAL]...
// Global options may appear before the noun; after it they are accepted too unless the command
// defines a flag of the same name (file truncate's --timeout is the layout timeout, not the
// per-RPC deadline). "--flag=value" and "--flag value" are both accepted; "--" ends the flags.
//
// Thread-safety: plain values; parse once on the main thread, then read from anywhere.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "clients/common/cli_text.h"

namespace pinctl {

enum class OutputFormat { kTable, kJson };

struct GlobalOptions {
  std::string endpoint;  // Empty: PINBROKER_ENDPOINT, else the embedded default socket.
  OutputFormat output = OutputFormat::kTable;
  absl::Duration timeout = absl::Seconds(30);  // Per-RPC deadline (not for streams).
  std::string session;                         // Empty: PINBROKER_SESSION.
  std::string token;                           // Empty: PINBROKER_TOKEN.
  // TLS for TCP endpoints (pinbroker/channel_security.h); each empty field: $PINBROKER_TLS_CA,
  // $PINBROKER_TLS_CERT, $PINBROKER_TLS_KEY, $PINBROKER_TLS_SERVER_NAME.
  std::string tls_ca;
  std::string tls_cert;
  std::string tls_key;
  std::string tls_server_name;
  bool help = false;
  bool version = false;
};

struct FlagSpec {
  const char* name;  // Without the leading dashes: "length".
  bool takes_value;
};

// The arguments that follow "NOUN VERB".
class Args {
 public:
  const std::vector<std::string>& positional() const { return positional_; }
  bool Has(absl::string_view flag) const;
  std::optional<std::string> Get(absl::string_view flag) const;

  // Typed values; INVALID_ARGUMENT naming the flag when malformed. Absent flags give `fallback`.
  // Sizes: decimal bytes with an optional K, M, G or T suffix (powers of 1024).
  absl::StatusOr<uint64_t> Size(absl::string_view flag, uint64_t fallback) const;
  // Durations: "500ms", "2s", "1m30s" (absl::ParseDuration), or a bare number of seconds.
  absl::StatusOr<absl::Duration> Duration(absl::string_view flag, absl::Duration fallback) const;

  void AddPositional(std::string value) { positional_.push_back(std::move(value)); }
  void Set(std::string flag, std::string value) { values_[std::move(flag)] = std::move(value); }

 private:
  std::vector<std::string> positional_;
  std::map<std::string, std::string, std::less<>> values_;
};

using ::pinbroker::cli_text::ParseDuration;
using ::pinbroker::cli_text::ParseSize;

// One entry of the command table, as far as parsing goes.
struct CommandSyntax {
  std::string noun;
  std::string verb;  // Empty for verb-less commands ("info", "health").
  std::vector<FlagSpec> flags;
};

// The result of splitting argv.
struct CommandLine {
  GlobalOptions global;
  int command = -1;                // Index into the table; -1 when only help was asked for.
  std::vector<std::string> words;  // The noun and verb as typed, for help on partial commands.
  Args args;
};

// Splits argv against `commands`. INVALID_ARGUMENT, saying what is wrong, for unknown
// commands and flags, missing values and bad global values. With --help (or "help") anywhere
// it succeeds with global.help set and as much of the command as was recognized.
absl::StatusOr<CommandLine> ParseCommandLine(int argc, const char* const* argv,
                                             const std::vector<CommandSyntax>& commands);

}  // namespace pinctl
