// LeaseIdCodec: the public form of lease ids, "<epoch>-<sequence>".
//
// The engine numbers leases 1, 2, 3, ... afresh in every broker run. The epoch (random, chosen
// at start-up) makes the public id unique across restarts, so a client that still holds an id
// from a previous run gets NOT_FOUND, never somebody else's lease.
//
// Thread-safety: immutable; safe to share.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "pinning/lease.h"

namespace pinbroker::broker {

class LeaseIdCodec {
 public:
  explicit LeaseIdCodec(std::string epoch) : epoch_(std::move(epoch)) {}

  // A fresh random epoch: 8 lowercase hex digits from getrandom(2).
  static std::string NewEpoch();

  const std::string& epoch() const { return epoch_; }
  std::string Format(LeaseId id) const;
  // INVALID_ARGUMENT for a malformed id; NOT_FOUND, saying so, for another run's id.
  absl::StatusOr<LeaseId> Parse(absl::string_view text) const;

 private:
  const std::string epoch_;
};

}  // namespace pinbroker::broker
