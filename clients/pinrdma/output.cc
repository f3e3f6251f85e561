#include "clients/pinrdma/output.h"

#include <google/protobuf/text_format.h>
#include <google/protobuf/util/json_util.h>

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace pinrdma {

int ExitCodeFor(const absl::Status& status) {
  if (status.ok()) return kExitOk;
  return kExitStatusBase + static_cast<int>(status.code());
}


Fields& Fields::Str(absl::string_view key, absl::string_view value) {
  items_.emplace_back(std::string(key), JsonQuote(value), std::string(value));
  return *this;
}

Fields& Fields::Num(absl::string_view key, uint64_t value) {
  items_.emplace_back(std::string(key), absl::StrCat(value), absl::StrCat(value));
  return *this;
}

Fields& Fields::Real(absl::string_view key, double value) {
  const std::string text = absl::StrFormat("%.3f", value);
  items_.emplace_back(std::string(key), text, text);
  return *this;
}

Fields& Fields::Bool(absl::string_view key, bool value) {
  items_.emplace_back(std::string(key), value ? "true" : "false", value ? "yes" : "no");
  return *this;
}

Fields& Fields::Message(absl::string_view key, const google::protobuf::Message& message) {
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  if (!google::protobuf::util::MessageToJsonString(message, &json, options).ok()) json = "{}";
  std::string text;
  google::protobuf::TextFormat::Printer printer;
  printer.SetSingleLineMode(true);
  printer.PrintToString(message, &text);
  items_.emplace_back(std::string(key), json, "{" + text + "}");
  return *this;
}

Fields& Fields::Status(const absl::Status& status) {
  Str("code", absl::StatusCodeToString(status.code()));
  Str("message", status.message());
  return *this;
}

void Printer::Emit(absl::string_view event, const Fields& fields) {
  std::string line;
  if (json_) {
    line = absl::StrCat("{\"event\":", JsonQuote(event));
    for (const auto& [key, json, text] : fields.items()) {
      absl::StrAppend(&line, ",", JsonQuote(key), ":", json);
    }
    line += "}";
  } else {
    line = absl::StrCat(event, ":");
    for (const auto& [key, json, text] : fields.items()) {
      absl::StrAppend(&line, " ", key, "=", text);
    }
  }
  line += "\n";
  absl::MutexLock lock(&mu_);
  std::fwrite(line.data(), 1, line.size(), stdout);
  std::fflush(stdout);
}

void Printer::Note(absl::string_view text) {
  const std::string line = absl::StrCat("pinrdma: ", text, "\n");
  absl::MutexLock lock(&mu_);
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

int Printer::Error(absl::string_view what, const absl::Status& status) {
  Note(absl::StrCat(what, ": ", absl::StatusCodeToString(status.code()), ": ", status.message()));
  if (json_) Emit("error", Fields().Str("what", what).Status(status));
  return ExitCodeFor(status);
}

}  // namespace pinrdma
