#include "clients/common/cli_text.h"

#include <limits>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace pinbroker::cli_text {

absl::StatusOr<uint64_t> ParseSize(absl::string_view text) {
  absl::string_view digits = text;
  uint64_t multiplier = 1;
  if (!digits.empty()) {
    switch (absl::ascii_toupper(digits.back())) {
      case 'K':
        multiplier = uint64_t{1} << 10;
        break;
      case 'M':
        multiplier = uint64_t{1} << 20;
        break;
      case 'G':
        multiplier = uint64_t{1} << 30;
        break;
      case 'T':
        multiplier = uint64_t{1} << 40;
        break;
      default:
        break;
    }
    if (multiplier != 1) digits.remove_suffix(1);
  }
  uint64_t value = 0;
  if (digits.empty() || !absl::ascii_isdigit(digits.front()) || !absl::SimpleAtoi(digits, &value)) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", text, "' is not a size (bytes, optionally with K, M, G or T)"));
  }
  if (value > std::numeric_limits<uint64_t>::max() / multiplier) {
    return absl::InvalidArgumentError(absl::StrCat("'", text, "' is too large"));
  }
  return value * multiplier;
}

absl::StatusOr<absl::Duration> ParseDuration(absl::string_view text) {
  absl::Duration d;
  double seconds = 0;
  if (absl::ParseDuration(std::string(text), &d)) {
  } else if (absl::SimpleAtod(text, &seconds)) {
    d = absl::Seconds(seconds);
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("'", text, "' is not a duration (e.g. 500ms, 2s, 1m30s)"));
  }
  if (d < absl::ZeroDuration() || d == absl::InfiniteDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", text, "' is not a finite, non-negative duration"));
  }
  return d;
}

std::string JsonQuote(absl::string_view text) {
  std::string out = "\"";
  for (const char c : text) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          absl::StrAppend(&out, absl::StrFormat("\\u%04x", c));
        } else {
          out += c;
        }
    }
  }
  out += "\"";
  return out;
}

}  // namespace pinbroker::cli_text
