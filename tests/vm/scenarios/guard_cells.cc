#include "tests/vm/scenarios/guard_cells.h"

#include <cerrno>

namespace pinbroker::scenarios {

bool HasPreContentEvents(const VmEnv& env, const Filesystem& fs) {
  return env.KernelAtLeast(6, 14) && fs.name != "tmpfs";
}

int RefusedErrno(const VmEnv& env) { return env.KernelAtLeast(6, 14) ? EBUSY : EPERM; }

const char* CellCode(Cell cell) {
  switch (cell) {
    case Cell::kFanotify:
      return "F";
    case Cell::kFileLease:
      return "L";
    case Cell::kDetectedAfter:
      return "D";
    case Cell::kNotAChange:
      return "-";
  }
  return "?";
}

DocumentedCell ExpectedCell(const VmEnv& env, const Filesystem& fs, OobOp op,
                            bool writable_mapping) {
  const bool pre_content = HasPreContentEvents(env, fs);
  switch (op) {
    case OobOp::kPwrite:
      return {Cell::kNotAChange, "a write is not a layout change"};
    case OobOp::kOpenTrunc:
      return {Cell::kFanotify,
              "FAN_OPEN_PERM catches O_TRUNC opens on every kernel and filesystem"};
    case OobOp::kTruncate:
      if (pre_content) return {Cell::kFanotify, "pre-content events catch truncate(2)"};
      if (!writable_mapping) {
        return {Cell::kFileLease,
                "no pre-content events; a read file lease catches truncate(2) while nobody has "
                "the file open for writing"};
      }
      return {Cell::kDetectedAfter,
              "no pre-content events, and the broker's writable mapping rules out a file lease"};
    case OobOp::kFtruncate:
      if (pre_content) return {Cell::kFanotify, "pre-content events catch ftruncate(2)"};
      return {Cell::kDetectedAfter,
              "no pre-content events; ftruncate(2) breaks no file lease (the open for writing "
              "gave it up)"};
    case OobOp::kPunch:
      if (pre_content) {
        return {Cell::kFanotify,
                "pre-content events catch a punch through a descriptor opened after arming"};
      }
      return {Cell::kDetectedAfter, "no pre-content events; a punch breaks no file lease"};
  }
  return {Cell::kDetectedAfter, "?"};
}

}  // namespace pinbroker::scenarios
