// Output: how pinctl prints results and errors, and the exit status that goes with them.
//
//   -o table  human-readable tables and key/value blocks (see views.h)
//   -o json   one JSON object per result, one line each (streams: one line per event);
//             proto field names, primitive fields printed even when zero
// Errors always go to stderr as "pinctl: CODE: message"; with -o json stdout also gets
// {"error":{"code":"CODE","message":"..."}}.
//
// Exit status (documented in --help and README.md):
//   0 ok; 1 local failure; 2 usage error; 3 health: broker not SERVING;
//   4 lease pin --hold: the held lease was revoked or expired;
//   10 + N: the RPC failed with gRPC status code N (e.g. 15 NOT_FOUND, 26 UNAUTHENTICATED).
//
// Thread-safety: not thread-safe; pinctl prints from its main thread only. Every line is
// flushed at once, so a reader on a pipe sees each event when it happens.
#pragma once

#include <google/protobuf/message.h>
#include <grpcpp/support/status.h>

#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "clients/common/cli_text.h"
#include "clients/pinctl/cli.h"

namespace pinctl {

enum ExitCode : int {
  kExitOk = 0,
  kExitFailure = 1,
  kExitUsage = 2,
  kExitNotServing = 3,
  kExitLeaseLost = 4,
  kExitRpcBase = 10,
};

// 0 for OK, else 10 + the code's number.
int ExitCodeFor(grpc::StatusCode code);
// "NOT_FOUND", "FAILED_PRECONDITION", ...
std::string StatusCodeName(grpc::StatusCode code);

using ::pinbroker::cli_text::JsonQuote;
// `message` as a one-line JSON object with proto field names and primitive fields included.
std::string ToJson(const google::protobuf::Message& message);

class Output {
 public:
  explicit Output(OutputFormat format) : format_(format) {}

  bool json() const { return format_ == OutputFormat::kJson; }
  // The broker endpoint this run talks to, named when it cannot be reached.
  void set_endpoint(std::string endpoint) { endpoint_ = std::move(endpoint); }

  // Writes `text` and a newline to stdout and flushes.
  void Line(absl::string_view text);
  // Writes `message` as one JSON line.
  void Json(const google::protobuf::Message& message) { Line(ToJson(message)); }
  // A note for humans on stderr ("pinctl: ..."), in either format.
  void Note(absl::string_view text);

  // Reports a failed RPC; returns its exit status. `what` says what was being done. When the
  // broker could not be reached at all, the message names the endpoint tried and how to point
  // pinctl elsewhere.
  int RpcError(const grpc::Status& status, absl::string_view what);
  // Reports a usage error (exit 2), with a pointer to --help.
  int UsageError(absl::string_view message);
  // Reports a failure with an explicit code name and exit status.
  int Failure(absl::string_view code, absl::string_view message, int exit_status);

 private:
  OutputFormat format_;
  std::string endpoint_;
};

// Column-aligned text table; the first row is the header.
class Table {
 public:
  explicit Table(std::vector<std::string> header) { rows_.push_back(std::move(header)); }
  void Add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  bool empty() const { return rows_.size() == 1; }
  void PrintTo(Output& out) const;

 private:
  std::vector<std::vector<std::string>> rows_;
};

}  // namespace pinctl
