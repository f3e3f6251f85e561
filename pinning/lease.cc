#include "pinning/lease.h"

namespace pinbroker {

absl::string_view AccessName(Access access) {
  switch (access) {
    case Access::kRead:
      return "read";
    case Access::kReadWrite:
      return "read-write";
  }
  return "?";
}

absl::string_view RegistrationModeName(RegistrationMode mode) {
  switch (mode) {
    case RegistrationMode::kHost:
      return "host";
    case RegistrationMode::kPinned:
      return "pinned";
    case RegistrationMode::kOdp:
      return "odp";
  }
  return "?";
}

absl::string_view LeaseStateName(LeaseState state) {
  switch (state) {
    case LeaseState::kGranted:
      return "granted";
    case LeaseState::kRecalling:
      return "recalling";
    case LeaseState::kReleased:
      return "released";
    case LeaseState::kRevoked:
      return "revoked";
    case LeaseState::kExpired:
      return "expired";
  }
  return "?";
}

absl::string_view LeaseEventTypeName(LeaseEvent::Type type) {
  switch (type) {
    case LeaseEvent::Type::kGranted:
      return "granted";
    case LeaseEvent::Type::kRecalled:
      return "recalled";
    case LeaseEvent::Type::kReleased:
      return "released";
    case LeaseEvent::Type::kRevoked:
      return "revoked";
    case LeaseEvent::Type::kExpired:
      return "expired";
  }
  return "?";
}

}  // namespace pinbroker
