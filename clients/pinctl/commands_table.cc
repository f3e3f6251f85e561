// The command table: syntax, usage and the function behind each noun-verb pair.
#include "clients/pinctl/commands.h"

namespace pinctl {
namespace {

bool Never(const Args&) { return false; }
bool Always(const Args&) { return true; }
bool Holding(const Args& args) { return args.Has("hold"); }

const std::vector<FlagSpec> kLayoutFlags = {
    {"policy", true}, {"grace", true}, {"timeout", true}, {"initiator", true}};

std::vector<FlagSpec> With(std::vector<FlagSpec> a, const std::vector<FlagSpec>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

}  // namespace

const std::vector<Command>& Commands() {
  static const auto* const commands = new std::vector<Command>{
      {{"session", "open", {{"name", true}, {"ttl", true}}},
       0,
       0,
       "session open [--name N] [--ttl D]",
       "open a session; prints its id, token and expiry",
       Never,
       RunSessionOpen},
      {{"session", "renew", {}},
       0,
       0,
       "session renew",
       "keep the session (--session/--token) alive",
       Never,
       RunSessionRenew},
      {{"session", "close", {}},
       0,
       0,
       "session close",
       "end the session and release all its leases",
       Never,
       RunSessionClose},
      {{"lease",
        "pin",
        {{"offset", true},
         {"length", true},
         {"access", true},
         {"ttl", true},
         {"wait", true},
         {"hold", false},
         {"ignore-recall", false},
         {"name", true},
         {"session-ttl", true}}},
       2,
       2,
       "lease pin EXPORT PATH --length N [--offset N] [--access read|rw] [--ttl D] [--wait D]\n"
       "          [--hold [--ignore-recall]] [--name N] [--session-ttl D]",
       "pin a byte range; with --hold keep it (renewing) until recalled or interrupted",
       Holding,
       RunLeasePin},
      {{"lease", "renew", {{"ttl", true}}},
       1,
       1,
       "lease renew ID [--ttl D]",
       "extend a lease's expiry",
       Never,
       RunLeaseRenew},
      {{"lease", "release", {}},
       1,
       1,
       "lease release ID",
       "release a lease",
       Never,
       RunLeaseRelease},
      {{"lease", "list", {{"export", true}, {"path", true}, {"session", true}}},
       0,
       0,
       "lease list [--export E] [--path P] [--session S]",
       "list live leases (your own; an export's admins see all of its); --session filters",
       Never,
       RunLeaseList},
      {{"lease", "show", {}}, 1, 1, "lease show ID", "show one live lease", Never, RunLeaseShow},
      {{"lease", "revoke", {{"grace", true}, {"reason", true}}},
       1,
       1,
       "lease revoke ID [--grace D] [--reason T]",
       "admin: recall any lease, revoke it after the grace (default: at once)",
       Never,
       RunLeaseRevoke},
      {{"session", "list", {}},
       0,
       0,
       "session list",
       "sessions with their owner (uid, pid, command), leases, pinned bytes and TTL; admins "
       "see all",
       Never,
       RunSessionList},
      {{"lease", "watch", {}},
       0,
       0,
       "lease watch",
       "stream the session's lease events until interrupted or the stream ends",
       Always,
       RunLeaseWatch},
      {{"file", "truncate", With({{"size", true}}, kLayoutFlags)},
       2,
       2,
       "file truncate EXPORT PATH --size N [--policy defer|revoke|refuse] [--grace D]\n"
       "          [--timeout D] [--initiator TEXT]",
       "truncate a file, applying a layout policy to leases in the way",
       Never,
       RunFileTruncate},
      {{"file", "punch", With({{"offset", true}, {"length", true}}, kLayoutFlags)},
       2,
       2,
       "file punch EXPORT PATH --offset N --length N [--policy defer|revoke|refuse]\n"
       "          [--grace D] [--timeout D] [--initiator TEXT]",
       "punch a hole (size unchanged), applying a layout policy",
       Never,
       RunFilePunch},
      {{"file", "describe", {}},
       2,
       2,
       "file describe EXPORT PATH",
       "size, DAX, leases, busy and blocked ranges of a file",
       Never,
       RunFileDescribe},
      {{"info", "", {}},
       0,
       0,
       "info",
       "broker version, epoch, backend and exports",
       Never,
       RunInfo},
      {{"health", "", {{"service", true}}},
       0,
       0,
       "health [--service NAME]",
       "gRPC health check (default service pinbroker.v1.PinBroker); exit 0 if SERVING",
       Never,
       RunHealth},
  };
  return *commands;
}

}  // namespace pinctl
