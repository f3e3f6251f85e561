// LayoutPolicy: what a layout change (truncate, punch hole) does to leases it would break.
//
// Value type; thread-compatible.
#pragma once

#include <optional>

#include "absl/strings/string_view.h"

namespace pinbroker {

enum class LayoutPolicy {
  // Block new pins on the affected range and wait, bounded, for its leases to be released.
  kDefer,
  // Recall the affected leases, wait for a grace period, then invalidate what is left.
  kRevoke,
  // Fail the change at once, naming the busy leases.
  kRefuse,
};

absl::string_view LayoutPolicyName(LayoutPolicy policy);  // "defer", "revoke", "refuse"
std::optional<LayoutPolicy> ParseLayoutPolicy(absl::string_view name);

}  // namespace pinbroker
