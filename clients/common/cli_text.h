// Text helpers shared by the command-line tools (pinctl, pinrdma): size arguments and JSON
// string literals. Pure functions; safe to call from any thread.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace pinbroker::cli_text {

// Decimal bytes with an optional K, M, G or T suffix (powers of 1024). INVALID_ARGUMENT for
// anything else or for a value that overflows 64 bits.
absl::StatusOr<uint64_t> ParseSize(absl::string_view text);

// `text` as a JSON string literal, quotes included.
std::string JsonQuote(absl::string_view text);

}  // namespace pinbroker::cli_text
