// What docs/GUARD.md's matrix promises for one operation by another process on a leased file in
// the guest, for a broker running as root with the default guard configuration. Scenario 10
// checks the broker's own report (DescribeFile) against this, then the behaviour against the
// cell, so the matrix in the docs is what the VM suite demonstrates on each kernel.
//
// Thread-safety: pure functions.
#pragma once

#include <string>

#include "tests/vm/scenarios/environment.h"
#include "tests/vm/scenarios/oob_call.h"

namespace pinbroker::scenarios {

enum class Cell {
  kFanotify,       // F: the caller is held before the change; every policy applies.
  kFileLease,      // L: held by a file-lease break (delay only; refuse revokes instead).
  kDetectedAfter,  // D: the change happens; the leases under it are revoked at once.
  kNotAChange,     // -: never held beyond answering an event, never recalls.
};

struct DocumentedCell {
  Cell cell = Cell::kDetectedAfter;
  std::string why;  // The matrix's reason, for failure messages.
};

// The cell for `op` on a file on `fs` whose only lease is held by the broker through a writable
// mapping (`writable_mapping`: a read-write lease, or any RDMA lease, since the kernel counts
// MW_BIND as write access) or a read-only host mapping.
DocumentedCell ExpectedCell(const VmEnv& env, const Filesystem& fs, OobOp op,
                            bool writable_mapping);
// Whether fanotify pre-content events exist for files on `fs` here: Linux >= 6.14, not tmpfs.
bool HasPreContentEvents(const VmEnv& env, const Filesystem& fs);
// The errno of a caller the guard fails: EBUSY (FAN_DENY_ERRNO, Linux >= 6.14), else EPERM.
int RefusedErrno(const VmEnv& env);
// "F", "L", "D", "-".
const char* CellCode(Cell cell);

}  // namespace pinbroker::scenarios
