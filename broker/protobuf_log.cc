#include "broker/protobuf_log.h"

#include "absl/base/call_once.h"
#include "absl/strings/match.h"
#include "common/log.h"

namespace pinbroker::broker {
namespace {

// protobuf 3.21's wording (wire_format_lite.cc, PrintUTF8ErrorLog): "String field 'T.f' contains
// invalid UTF-8 data when parsing a protocol buffer. Use the 'bytes' type ...".
bool IsUtf8ParseComplaint(const std::string& message) {
  return absl::StartsWith(message, "String field") &&
         absl::StrContains(message, "contains invalid UTF-8 data when parsing a protocol buffer");
}

LogSeverity SeverityOf(google::protobuf::LogLevel level) {
  switch (level) {
    case google::protobuf::LOGLEVEL_INFO:
      return LogSeverity::kInfo;
    case google::protobuf::LOGLEVEL_WARNING:
      return LogSeverity::kWarning;
    default:  // ERROR, FATAL (protobuf aborts after a FATAL by itself).
      return LogSeverity::kError;
  }
}

}  // namespace

void ForwardProtobufLog(google::protobuf::LogLevel level, const char* filename, int line,
                        const std::string& message) {
  if (IsUtf8ParseComplaint(message)) return;
  const LogSeverity severity = SeverityOf(level);
  if (!LogEnabled(severity)) return;
  LogMessage(severity).stream() << "libprotobuf " << (filename != nullptr ? filename : "?") << ":"
                                << line << "] " << message;
}

void RouteProtobufLogs() {
  static absl::once_flag once;
  absl::call_once(once, [] { google::protobuf::SetLogHandler(&ForwardProtobufLog); });
}

}  // namespace pinbroker::broker
