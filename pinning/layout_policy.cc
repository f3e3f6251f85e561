#include "pinning/layout_policy.h"

namespace pinbroker {

absl::string_view LayoutPolicyName(LayoutPolicy policy) {
  switch (policy) {
    case LayoutPolicy::kDefer:
      return "defer";
    case LayoutPolicy::kRevoke:
      return "revoke";
    case LayoutPolicy::kRefuse:
      return "refuse";
  }
  return "?";
}

std::optional<LayoutPolicy> ParseLayoutPolicy(absl::string_view name) {
  if (name == "defer") return LayoutPolicy::kDefer;
  if (name == "revoke") return LayoutPolicy::kRevoke;
  if (name == "refuse") return LayoutPolicy::kRefuse;
  return std::nullopt;
}

}  // namespace pinbroker
