// Protobuf's log lines in the broker's log: libprotobuf's messages (GOOGLE_LOG) go to the
// broker's logger (common/log.h) at their severity, as "libprotobuf file:line] message", instead
// of straight to stderr.
//
// One kind is dropped: protobuf's complaint that a string field it was parsing is not UTF-8.
// That is a client's request, which the broker answers itself with INVALID_ARGUMENT naming the
// field (pinbroker/v1/wire_traits.h); logged, every such request would add an ERROR line, so
// any client could flood the log. Complaints about what the broker serializes stay visible.
//
// Thread-safety: RouteProtobufLogs() may be called from any thread, any number of times (the
// first call installs the handler; protobuf's SetLogHandler itself is not thread-safe, so
// nothing else in the process may call it). ForwardProtobufLog() is safe from any thread.
#pragma once

#include <string>

#include "google/protobuf/stubs/logging.h"

namespace pinbroker::broker {

// Installs ForwardProtobufLog as protobuf's log handler, once per process.
void RouteProtobufLogs();

// The handler: one protobuf message into the broker's log, unless it is the UTF-8 parse
// complaint.
void ForwardProtobufLog(google::protobuf::LogLevel level, const char* filename, int line,
                        const std::string& message);

}  // namespace pinbroker::broker
