#include "common/log.h"

#include <atomic>
#include <cstdio>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace pinbroker {
namespace {

absl::Mutex sink_mu(absl::kConstInit);
LogSink* sink ABSL_GUARDED_BY(sink_mu) = nullptr;
std::atomic<int> min_severity{static_cast<int>(LogSeverity::kInfo)};

char SeverityLetter(LogSeverity s) {
  switch (s) {
    case LogSeverity::kInfo:
      return 'I';
    case LogSeverity::kWarning:
      return 'W';
    case LogSeverity::kError:
      return 'E';
  }
  return '?';
}

}  // namespace

LogSink SetLogSink(LogSink new_sink) {
  absl::MutexLock lock(&sink_mu);
  LogSink previous = sink != nullptr ? std::move(*sink) : nullptr;
  delete sink;
  sink = new_sink ? new LogSink(std::move(new_sink)) : nullptr;
  return previous;
}

void SetMinLogSeverity(LogSeverity min) { min_severity.store(static_cast<int>(min)); }

bool LogEnabled(LogSeverity severity) {
  return static_cast<int>(severity) >= min_severity.load(std::memory_order_relaxed);
}

LogMessage::~LogMessage() {
  // No timestamp here: pinning/ reads time only through a Clock. The daemon's sink (or
  // journald) stamps lines.
  std::string line(1, SeverityLetter(severity_));
  line += " pinbroker] ";
  line += stream_.str();
  absl::MutexLock lock(&sink_mu);
  if (sink != nullptr) {
    (*sink)(severity_, line);
  } else {
    line += '\n';
    std::fwrite(line.data(), 1, line.size(), stderr);
  }
}

}  // namespace pinbroker
