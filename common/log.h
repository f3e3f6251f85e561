// Minimal leveled logging: `PB_LOG(INFO) << "lease " << id << " revoked";`
//
// abseil 20220623 has no absl/log, so pinbroker carries this. A line is formatted as
// "I pinbroker] message" and handed whole to the sink (stderr by default); lines never
// interleave. The daemon installs a sink that adds timestamps; tests may install a capturing one.
//
// Thread-safety: safe to use from any thread; SetLogSink() is safe against concurrent logging.
#pragma once

#include <functional>
#include <sstream>
#include <string>

#include "absl/strings/string_view.h"
#include "pinbroker/log_sink.h"

namespace pinbroker {

// LogSeverity, LogSink, SetLogSink() and SetMinLogSeverity() are public: pinbroker/log_sink.h.
bool LogEnabled(LogSeverity severity);

class LogMessage {
 public:
  explicit LogMessage(LogSeverity severity) : severity_(severity) {}
  ~LogMessage();
  LogMessage(const LogMessage&) = delete;
  LogMessage& operator=(const LogMessage&) = delete;
  std::ostream& stream() { return stream_; }

 private:
  LogSeverity severity_;
  std::ostringstream stream_;
};

}  // namespace pinbroker

#define PB_LOG_SEVERITY_INFO ::pinbroker::LogSeverity::kInfo
#define PB_LOG_SEVERITY_WARNING ::pinbroker::LogSeverity::kWarning
#define PB_LOG_SEVERITY_ERROR ::pinbroker::LogSeverity::kError

#define PB_LOG(severity)                                      \
  if (!::pinbroker::LogEnabled(PB_LOG_SEVERITY_##severity)) { \
  } else                                                      \
    ::pinbroker::LogMessage(PB_LOG_SEVERITY_##severity).stream()
