// Where pinbroker's log lines go: the sink that receives each finished line, and the minimum
// severity logged. The client libraries log what they cannot return (a failed background
// renewal, a broken stream); by default the lines go to stderr. A program routes or silences
// them here:
//
//   pinbroker::SetLogSink([](pinbroker::LogSeverity severity, absl::string_view line) {
//     MyLogger(severity).Write(line);
//   });
//   pinbroker::SetMinLogSeverity(pinbroker::LogSeverity::kWarning);
//
// A line reaches the sink whole ("I pinbroker] message", without the trailing newline); lines
// never interleave. Implemented in pinbroker::common (common/log.cc); pinbroker's own code logs
// with PB_LOG (common/log.h, not installed).
//
// Thread-safety: both functions may be called from any thread, concurrently with logging. The
// sink is called from whichever thread logs, one line at a time, under the logging lock: it must
// not call SetLogSink() itself.
#pragma once

#include <functional>

#include "absl/strings/string_view.h"

namespace pinbroker {

enum class LogSeverity { kInfo, kWarning, kError };

// Receives each finished line (without the trailing newline).
using LogSink = std::function<void(LogSeverity, absl::string_view line)>;

// Installs `sink` (nullptr restores stderr) and returns the previous one.
LogSink SetLogSink(LogSink sink);

// Lines below `min` are dropped. Default: kInfo.
void SetMinLogSeverity(LogSeverity min);

}  // namespace pinbroker
