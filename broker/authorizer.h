// Authorizer: what a caller may do in an export, decided in one place.
//
// Two gates apply to every call, and both must admit it:
//   1. the export's rules (ExportConfig pin / pin_writable / layout / admins), checked here;
//   2. the file's own permissions for the caller, decided by the kernel: the engine opens the
//      file with the caller's credentials (pinning/credentials.h), read-only for a READ pin and
//      DescribeFile, read-write for a READ_WRITE pin, Truncate and PunchHole.
// Admins (root, the owner of the export root, and the export's `admins`) see every lease and
// session of the export and its root; everyone else sees only what their own sessions hold.
//
// Refusals are PERMISSION_DENIED naming the caller, the right and the rule.
//
// Thread-safety: immutable after construction; safe to call concurrently.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "broker/peer_identity.h"
#include "pinbroker/v1/config.pb.h"

namespace pinbroker::broker {

enum class Right { kPin, kPinWritable, kLayout, kAdmin };
absl::string_view RightName(Right right);

class Authorizer {
 public:
  // `root_owners`: each export's root directory owner (an admin of that export).
  Authorizer(const v1::BrokerConfig& config,
             absl::flat_hash_map<std::string, uid_t> root_owners);

  // OK if `caller` has `right` in `export_name` by the export's rules. An unknown export passes
  // (the engine answers NOT_FOUND).
  absl::Status Check(const PeerIdentity& caller, absl::string_view export_name,
                     Right right) const;
  bool IsAdmin(const PeerIdentity& caller, absl::string_view export_name) const {
    return Check(caller, export_name, Right::kAdmin).ok();
  }
  // Admin of at least one export (or root): may list every session.
  bool IsAdminAnywhere(const PeerIdentity& caller) const;

 private:
  struct Rules {
    v1::AccessRule pin, pin_writable, layout, admins;
    uid_t root_owner = 0;
  };
  absl::flat_hash_map<std::string, Rules> exports_;
};

}  // namespace pinbroker::broker
