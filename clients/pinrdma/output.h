// How pinrdma prints: one line per event or result. With -o json each line is a JSON object
// {"event":"<name>", ...} (a driver can follow a hold with a line reader); otherwise
// "<name>: key=value ...". Errors also go to stderr as "pinrdma: CODE: message".
//
// Exit status: 0 ok; 1 local failure; 2 usage; 4 hold: the lease was revoked or expired;
// 10 + N for an error with status code N.
//
// Thread-safety: Printer serializes its lines with a mutex; safe from any thread.
#pragma once

#include "clients/common/cli_text.h"

#include <google/protobuf/message.h>

#include <cstdint>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace pinrdma {

enum ExitCode : int {
  kExitOk = 0,
  kExitFailure = 1,
  kExitUsage = 2,
  kExitLeaseLost = 4,
  kExitStatusBase = 10,
};

// 0 for OK, else 10 + the code's number.
int ExitCodeFor(const absl::Status& status);
using ::pinbroker::cli_text::JsonQuote;

// The fields of one line, in order.
class Fields {
 public:
  Fields& Str(absl::string_view key, absl::string_view value);
  Fields& Num(absl::string_view key, uint64_t value);
  Fields& Real(absl::string_view key, double value);
  Fields& Bool(absl::string_view key, bool value);
  // A proto message (as JSON; as its one-line text form in table mode).
  Fields& Message(absl::string_view key, const google::protobuf::Message& message);
  Fields& Status(const absl::Status& status);  // "code", "message"

  // (key, JSON value, table value)
  const std::vector<std::tuple<std::string, std::string, std::string>>& items() const {
    return items_;
  }

 private:
  std::vector<std::tuple<std::string, std::string, std::string>> items_;
};

class Printer {
 public:
  explicit Printer(bool json) : json_(json) {}
  bool json() const { return json_; }
  void Emit(absl::string_view event, const Fields& fields) ABSL_LOCKS_EXCLUDED(mu_);
  // A note for humans on stderr.
  void Note(absl::string_view text) ABSL_LOCKS_EXCLUDED(mu_);
  // Reports `status` (what: the step that failed) and returns its exit status.
  int Error(absl::string_view what, const absl::Status& status) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  const bool json_;
  absl::Mutex mu_;
};

}  // namespace pinrdma
