// Helpers shared by the commands.
#include <google/protobuf/util/time_util.h>

#include "absl/strings/str_cat.h"
#include "clients/pinctl/commands.h"

namespace pinctl {

std::optional<pinbroker::v1::SessionCredentials> RequireCredentials(Invocation& inv,
                                                                    const char* command) {
  auto credentials = inv.connection.credentials();
  if (!credentials.has_value()) {
    inv.out.UsageError(
        absl::StrCat(command,
                     " needs a session: pass --session ID --token T before the command, or set "
                     "PINBROKER_SESSION and PINBROKER_TOKEN (pinctl session open prints both)"));
  }
  return credentials;
}

bool GetSize(Invocation& inv, const char* flag, uint64_t fallback, uint64_t* value) {
  auto parsed = inv.args.Size(flag, fallback);
  if (!parsed.ok()) {
    inv.out.UsageError(parsed.status().message());
    return false;
  }
  *value = *parsed;
  return true;
}

bool GetDuration(Invocation& inv, const char* flag, absl::Duration fallback,
                 absl::Duration* value) {
  auto parsed = inv.args.Duration(flag, fallback);
  if (!parsed.ok()) {
    inv.out.UsageError(parsed.status().message());
    return false;
  }
  *value = *parsed;
  return true;
}

std::string SessionJson(const pinbroker::v1::OpenSessionResponse& opened) {
  return absl::StrCat("{\"session_id\":", JsonQuote(opened.credentials().session_id()),
                      ",\"token\":", JsonQuote(opened.credentials().token()), ",\"expires_at\":",
                      JsonQuote(google::protobuf::util::TimeUtil::ToString(opened.expires_at())),
                      ",\"broker_epoch\":", JsonQuote(opened.broker_epoch()), "}");
}

}  // namespace pinctl
