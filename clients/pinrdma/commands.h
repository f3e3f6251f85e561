// pinrdma's commands. Each returns the process exit status (see output.h) and prints its own
// events and errors.
//
// Thread-safety: commands run on the main thread; hold also uses a signal thread and the
// Client's callback thread, and joins/stops them before returning.
#pragma once

#include <cstdint>

#include "clients/pinrdma/options.h"
#include "clients/pinrdma/output.h"
#include "pinbroker/rdma_lease.h"

namespace pinrdma {

int RunCheck(const Options& options, Printer& out);
int RunWrite(const Options& options, Printer& out);
int RunRead(const Options& options, Printer& out);
int RunHold(const Options& options, Printer& out);
int RunInfo(const Options& options, Printer& out);

// The lease bytes the transfer options select: [lease_offset, lease_offset + io_length), with
// io_length 0 meaning "to the end of the lease".
struct IoRange {
  uint64_t offset = 0;
  uint64_t length = 0;
};
IoRange SelectRange(const Options& options, const pinbroker::client::RdmaLease& lease);

// Writes the pattern (seed options.pattern) into `range` of the lease; prints "write".
int WritePattern(const Options& options, Printer& out, pinbroker::client::RdmaLease& lease,
                 pinbroker::client::RdmaConnection& connection, IoRange range,
                 const char* event = "write");

}  // namespace pinrdma
