#include "pinning/guard/guard_report.h"

namespace pinbroker::guard {

GuardReport ReportFor(const ArmedMechanisms& armed) {
  GuardReport report;
  const bool fanotify = armed.fanotify || armed.open_perm;
  if (fanotify && armed.lease) {
    report.guard = "fanotify+lease";
  } else if (fanotify) {
    report.guard = "fanotify";
  } else if (armed.lease) {
    report.guard = "lease";
  } else {
    report.guard = "none";
  }
  auto& ops = report.unguarded_operations;
  if (!armed.fanotify && !armed.lease) ops.push_back(kOpTruncate);
  if (!armed.fanotify) {
    ops.push_back(kOpFtruncate);
    ops.push_back(kOpPunch);
  } else {
    if (armed.writers_predate_mark) ops.push_back(kOpPunchPreopened);
    ops.push_back(kOpPunchUnidentified);
  }
  if (!armed.open_perm && !armed.lease) ops.push_back(kOpOpenTrunc);
  if (!armed.open_perm) ops.push_back(kOpOpenReadOnlyTrunc);
  // Where opens are intercepted at all (else open(2) O_TRUNC is listed already).
  if (armed.open_perm || armed.lease) ops.push_back(kOpOpenat2FlagsChanged);
  return report;
}

}  // namespace pinbroker::guard
