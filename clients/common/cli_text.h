// Text helpers shared by the command-line tools (pinctl, pinrdma): size and duration arguments
// and JSON string literals. Pure functions; safe to call from any thread.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace pinbroker::cli_text {

// Decimal bytes with an optional K, M, G or T suffix (powers of 1024). INVALID_ARGUMENT for
// anything else or for a value that overflows 64 bits.
absl::StatusOr<uint64_t> ParseSize(absl::string_view text);

// "500ms", "2s", "1m30s" (absl::ParseDuration), or a bare number of seconds ("1.5"). Finite and
// not negative; INVALID_ARGUMENT otherwise.
absl::StatusOr<absl::Duration> ParseDuration(absl::string_view text);

// `text` as a JSON string literal, quotes included.
std::string JsonQuote(absl::string_view text);

}  // namespace pinbroker::cli_text
