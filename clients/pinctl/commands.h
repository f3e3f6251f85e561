// pinctl's commands: the table main() dispatches on, and the functions behind it. Each command
// returns the process exit status (see output.h) and prints its own result or error.
//
// Thread-safety: commands run on the main thread; the streaming ones (lease watch, lease pin
// --hold) start a reader thread and a signal thread of their own and join them before
// returning.
#pragma once

#include <google/protobuf/duration.pb.h>
#include <google/protobuf/timestamp.pb.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "api/time_convert.h"
#include "clients/pinctl/cli.h"
#include "clients/pinctl/connection.h"
#include "clients/pinctl/output.h"

namespace pinctl {

// Everything a command needs.
struct Invocation {
  const GlobalOptions& global;
  const Args& args;
  Connection& connection;
  Output& out;
};

struct Command {
  CommandSyntax syntax;
  int min_positional;
  int max_positional;
  const char* usage;    // "lease pin EXPORT PATH --length N [--offset N] ..."
  const char* summary;  // One line for --help.
  // True for commands that run until interrupted: SIGINT/SIGTERM are blocked before any thread
  // starts and handled by the command.
  bool (*streaming)(const Args& args);
  int (*run)(Invocation& inv);
};

const std::vector<Command>& Commands();

// Command implementations (commands_*.cc, lease_hold.cc).
int RunSessionOpen(Invocation& inv);
int RunSessionRenew(Invocation& inv);
int RunSessionClose(Invocation& inv);
int RunLeasePin(Invocation& inv);
int RunLeaseHold(Invocation& inv);  // lease pin --hold
int RunLeaseRenew(Invocation& inv);
int RunLeaseRelease(Invocation& inv);
int RunLeaseList(Invocation& inv);
int RunLeaseShow(Invocation& inv);
int RunLeaseRevoke(Invocation& inv);
int RunSessionList(Invocation& inv);
int RunLeaseWatch(Invocation& inv);
int RunFileTruncate(Invocation& inv);
int RunFilePunch(Invocation& inv);
int RunFileDescribe(Invocation& inv);
int RunInfo(Invocation& inv);
int RunHealth(Invocation& inv);

// Shared helpers (commands_common.cc).

// The session credentials from --session/--token or the environment; prints a usage error
// and returns nullopt when there are none.
std::optional<pinbroker::v1::SessionCredentials> RequireCredentials(Invocation& inv,
                                                                    const char* command);
// Reads a typed flag or reports the usage error: `if (!Get(inv, v, ...)) return kExitUsage;`
bool GetSize(Invocation& inv, const char* flag, uint64_t fallback, uint64_t* value);
bool GetDuration(Invocation& inv, const char* flag, absl::Duration fallback, absl::Duration* value);
// Conversions between protobuf's and abseil's time types (api/time_convert.h).
using ::pinbroker::FromProto;
using ::pinbroker::ToProto;
// The JSON object pinctl prints for session credentials:
// {"session_id":..,"token":..,"expires_at":..,"broker_epoch":..}
std::string SessionJson(const pinbroker::v1::OpenSessionResponse& opened);

// lease pin's request from EXPORT PATH --offset --length --access --ttl --wait (credentials
// not set); false after reporting a usage error.
bool MakePinRequest(Invocation& inv, pinbroker::v1::PinRequest* request);
// Opens a session for a command run without --session (--name, --session-ttl).
grpc::Status OpenOwnSession(Invocation& inv, pinbroker::v1::OpenSessionResponse* opened);
// Closes a session pinctl opened itself, best effort, with a short deadline.
void CloseOwnSession(Invocation& inv, const pinbroker::v1::SessionCredentials& credentials);

}  // namespace pinctl
