#include "clients/pinctl/output.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <cstdio>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace pinctl {

int ExitCodeFor(grpc::StatusCode code) {
  if (code == grpc::StatusCode::OK) return kExitOk;
  return kExitRpcBase + static_cast<int>(code);
}

std::string StatusCodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return "OK";
    case grpc::StatusCode::CANCELLED:
      return "CANCELLED";
    case grpc::StatusCode::UNKNOWN:
      return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND:
      return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS:
      return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED:
      return "PERMISSION_DENIED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED:
      return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE:
      return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED:
      return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL:
      return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE:
      return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS:
      return "DATA_LOSS";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "UNAUTHENTICATED";
    default:
      return absl::StrCat("CODE_", static_cast<int>(code));
  }
}

std::string ToJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = false;
  options.always_print_primitive_fields = true;
  options.preserve_proto_field_names = true;
  std::string json;
  if (!google::protobuf::util::MessageToJsonString(message, &json, options).ok()) {
    // Only unknown Any types fail; pinctl's messages have none.
    return absl::StrCat("{\"error\":{\"code\":\"INTERNAL\",\"message\":",
                        JsonQuote("could not print the reply as JSON"), "}}");
  }
  return json;
}

void Output::Line(absl::string_view text) {
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

void Output::Note(absl::string_view text) {
  const std::string line = absl::StrCat("pinctl: ", text, "\n");
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

int Output::Failure(absl::string_view code, absl::string_view message, int exit_status) {
  Note(absl::StrCat(code, ": ", message));
  if (json()) {
    Line(absl::StrCat("{\"error\":{\"code\":", JsonQuote(code), ",\"message\":", JsonQuote(message),
                      "}}"));
  }
  return exit_status;
}

int Output::RpcError(const grpc::Status& status, absl::string_view what) {
  std::string message = status.error_message();
  if (status.error_code() == grpc::StatusCode::UNAVAILABLE &&
      (message.empty() || absl::StrContains(message, "failed to connect"))) {
    message =
        absl::StrCat("no broker reachable at ", endpoint_.empty() ? "the endpoint" : endpoint_,
                     " (", message.empty() ? "no detail" : message,
                     "). Is pinbrokerd running? Point pinctl at it with --endpoint ADDR or "
                     "PINBROKER_ENDPOINT=ADDR (unix:/path.sock or host:port)");
  }
  return Failure(StatusCodeName(status.error_code()), absl::StrCat(what, ": ", message),
                 ExitCodeFor(status.error_code()));
}

int Output::UsageError(absl::string_view message) {
  return Failure("USAGE", absl::StrCat(message, " (see pinctl --help)"), kExitUsage);
}

void Table::PrintTo(Output& out) const {
  std::vector<size_t> widths;
  for (const auto& row : rows_) {
    if (widths.size() < row.size()) widths.resize(row.size(), 0);
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  for (const auto& row : rows_) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      if (i + 1 == row.size()) {
        absl::StrAppend(&line, row[i]);
      } else {
        absl::StrAppend(&line, row[i], std::string(widths[i] - row[i].size() + 2, ' '));
      }
    }
    out.Line(line);
  }
}

}  // namespace pinctl
