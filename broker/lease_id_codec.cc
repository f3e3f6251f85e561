#include "broker/lease_id_codec.h"

#include <sys/random.h>

#include <cstdint>
#include <cstdio>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace pinbroker::broker {

std::string LeaseIdCodec::NewEpoch() {
  uint32_t value = 0;
  while (getrandom(&value, sizeof(value), 0) != sizeof(value)) {
  }
  return absl::StrFormat("%08x", value);
}

std::string LeaseIdCodec::Format(LeaseId id) const { return absl::StrCat(epoch_, "-", id); }

absl::StatusOr<LeaseId> LeaseIdCodec::Parse(absl::string_view text) const {
  const size_t dash = text.find('-');
  uint64_t sequence = 0;
  if (text.empty() || dash == absl::string_view::npos || dash == 0 ||
      !absl::SimpleAtoi(text.substr(dash + 1), &sequence) || sequence == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "malformed lease id '", text, "': expected <epoch>-<number> as returned by Pin"));
  }
  if (text.substr(0, dash) != epoch_) {
    return absl::NotFoundError(absl::StrCat(
        "lease ", text, " belongs to an earlier run of the broker (epoch ", text.substr(0, dash),
        "; this run is ", epoch_, "): the broker restarted and all its leases ended; pin again"));
  }
  return sequence;
}

}  // namespace pinbroker::broker
