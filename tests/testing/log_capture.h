// LogCapture: the broker's log lines, kept while it lives (it is the process's log sink from
// construction to destruction), for tests that assert what was logged.
//
// Thread-safety: lines may be logged from any thread; Lines() and Count() may be called
// concurrently with logging. At most one LogCapture may live at a time.
#pragma once

#include <algorithm>
#include <cstddef>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "common/log.h"

namespace pinbroker::testing {

class LogCapture {
 public:
  LogCapture() {
    SetLogSink([this](LogSeverity, absl::string_view line) {
      absl::MutexLock lock(&mu_);
      lines_.emplace_back(line);
    });
  }
  ~LogCapture() { SetLogSink(nullptr); }
  LogCapture(const LogCapture&) = delete;
  LogCapture& operator=(const LogCapture&) = delete;

  std::vector<std::string> Lines() const {
    absl::MutexLock lock(&mu_);
    return lines_;
  }

  // How many lines contain every one of `parts`.
  size_t Count(const std::vector<std::string>& parts) const {
    absl::MutexLock lock(&mu_);
    return static_cast<size_t>(std::count_if(lines_.begin(), lines_.end(), [&](const auto& line) {
      return std::all_of(parts.begin(), parts.end(), [&](const std::string& part) {
        return line.find(part) != std::string::npos;
      });
    }));
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<std::string> lines_ ABSL_GUARDED_BY(mu_);
};

}  // namespace pinbroker::testing
