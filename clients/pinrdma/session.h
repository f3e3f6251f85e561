// What every pinrdma command starts with: a Client session with the broker (gRPC), an RDMA
// connection attached to it, and an RDMA lease on the file range the options name; each step
// prints its event ("connected", "pinned").
//
// Thread-safety: used from the main thread; the lease's callbacks run on the Client's
// callback thread (see include/pinbroker/rdma_lease.h).
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "clients/pinrdma/options.h"
#include "clients/pinrdma/output.h"
#include "pinbroker/client.h"
#include "pinbroker/rdma_connection.h"
#include "pinbroker/rdma_lease.h"

namespace pinrdma {

// --endpoint, else $PINBROKER_ENDPOINT, else the per-user socket or the system one
// (DefaultClientEndpoint in common/runtime_paths.h: FAILED_PRECONDITION for a runtime directory
// that is not private); "/x" -> "unix:/x".
absl::StatusOr<std::string> ResolveEndpoint(const std::string& flag);

struct Session {
  std::unique_ptr<pinbroker::client::Client> client;
  std::unique_ptr<pinbroker::client::RdmaConnection> connection;
};

// Connects the Client (step "connect") and, if `rdma`, the RDMA connection (step "attach").
// On failure returns the exit status after printing the error.
int OpenSession(const Options& options, Printer& out, bool rdma, Session* session);

// Pins the options' range with RDMA access and prints "pinned". Callbacks may be unset.
int PinLease(const Options& options, Printer& out, Session& session,
             pinbroker::client::RdmaPinOptions pin,
             std::unique_ptr<pinbroker::client::RdmaLease>* lease);

// The lease's fields for the "pinned" line.
Fields LeaseFields(const pinbroker::client::RdmaLease& lease);

}  // namespace pinrdma
