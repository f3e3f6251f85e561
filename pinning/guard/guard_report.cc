#include "pinning/guard/guard_report.h"

namespace pinbroker::guard {

GuardReport ReportFor(const ArmedMechanisms& armed) {
  GuardReport report;
  if (armed.fanotify && armed.lease) {
    report.guard = "fanotify+lease";
  } else if (armed.fanotify) {
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
  if (!armed.lease) ops.push_back(kOpOpenTrunc);
  ops.push_back(kOpOpenReadOnlyTrunc);
  return report;
}

}  // namespace pinbroker::guard
