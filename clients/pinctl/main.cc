// pinctl: the command-line client of pinbrokerd. Parses the command line, prints help, and
// runs one command from the table in commands_table.cc.
#include <cstdio>
#include <iostream>
#include <string>

#include "absl/strings/str_cat.h"
#include "clients/pinctl/cli.h"
#include "clients/pinctl/commands.h"
#include "clients/pinctl/connection.h"
#include "clients/pinctl/output.h"
#include "clients/pinctl/signals.h"
#include "common/build_info.h"

namespace pinctl {
namespace {

constexpr char kGlobalHelp[] =
    R"(Global options (before the command; after it too, unless the command has an option
of the same name):
  --endpoint ADDR   unix:/path.sock, /path.sock or host:port. Default: $PINBROKER_ENDPOINT,
                    else the daemon's embedded default socket (DEFAULT_ENDPOINT)
  -o table|json     output format (default table). json: one object per line; errors also
                    as {"error":{"code":"NOT_FOUND","message":"..."}} on stdout
  --timeout D       per-RPC deadline (default 30s; not for watch and --hold streams; layout
                    changes get their own bound added)
  --session ID      session credentials for commands acting on a session's leases
  --token T         (default: $PINBROKER_SESSION and $PINBROKER_TOKEN)
  --tls-ca FILE     TLS for a host:port endpoint: the CA that signed the broker's certificate
  --tls-cert FILE   this client's certificate (the broker requires one by default) and its
  --tls-key FILE    key, PEM. Default: $PINBROKER_TLS_CA, $PINBROKER_TLS_CERT, $PINBROKER_TLS_KEY
  --tls-server-name NAME  the name the broker's certificate must carry, when it is not the
                    endpoint's host ($PINBROKER_TLS_SERVER_NAME). Without any TLS setting a
                    host:port endpoint is plaintext (brokers accept that only with insecure_tcp)
  -h, --help        help; "pinctl help lease pin" or "pinctl lease pin --help" for one command
  --version         the version, git commit and build type
Durations: 500ms, 2s, 1m30s or a number of seconds. Sizes: bytes, or with K, M, G, T suffix.
)";

constexpr char kExitHelp[] = R"(Exit status:
  0       success
  1       local failure (not an RPC error)
  2       usage error
  3       health: the broker answered but is not SERVING
  4       lease pin --hold: the held lease was revoked or expired
  10 + N  the RPC failed with gRPC status code N:
          11 CANCELLED  12 UNKNOWN  13 INVALID_ARGUMENT  14 DEADLINE_EXCEEDED  15 NOT_FOUND
          16 ALREADY_EXISTS  17 PERMISSION_DENIED  18 RESOURCE_EXHAUSTED
          19 FAILED_PRECONDITION  20 ABORTED  21 OUT_OF_RANGE  22 UNIMPLEMENTED  23 INTERNAL
          24 UNAVAILABLE  25 DATA_LOSS  26 UNAUTHENTICATED
)";

std::string GlobalHelp() {
  std::string text = kGlobalHelp;
  const std::string placeholder = "DEFAULT_ENDPOINT";
  text.replace(text.find(placeholder), placeholder.size(), DefaultEndpoint());
  return text;
}

void PrintHelp(const CommandLine& line) {
  std::string text;
  if (line.command >= 0) {
    const Command& c = Commands()[line.command];
    text = absl::StrCat("Usage: pinctl [GLOBAL OPTIONS] ", c.usage, "\n\n", c.summary, "\n\n",
                        GlobalHelp(), "\n", kExitHelp);
  } else {
    text =
        "pinctl: the command-line client of pinbrokerd, which brokers DMA/RDMA pins of file\n"
        "ranges and mediates truncate and punch-hole with the policies defer, revoke and\n"
        "refuse.\n\nUsage: pinctl [GLOBAL OPTIONS] NOUN VERB [ARGS] [OPTIONS]\n\nCommands:\n";
    for (const Command& c : Commands()) {
      if (!line.words.empty() && c.syntax.noun != line.words[0]) continue;
      absl::StrAppend(&text, "  ", c.usage, "\n      ", c.summary, "\n");
    }
    absl::StrAppend(&text, "\n", GlobalHelp(), "\n", kExitHelp);
  }
  std::fwrite(text.data(), 1, text.size(), stdout);
}

int Main(int argc, char** argv) {
  std::vector<CommandSyntax> syntax;
  for (const Command& c : Commands()) syntax.push_back(c.syntax);
  auto line = ParseCommandLine(argc, argv, syntax);
  if (!line.ok()) {
    // -o json may not have been parsed; look for it so scripts still get JSON.
    OutputFormat format = OutputFormat::kTable;
    for (int i = 1; i + 1 < argc; ++i) {
      const std::string a = argv[i];
      if ((a == "-o" || a == "--output") && std::string(argv[i + 1]) == "json") {
        format = OutputFormat::kJson;
      }
    }
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      if (a == "-o=json" || a == "--output=json") format = OutputFormat::kJson;
    }
    Output out(format);
    return out.UsageError(line.status().message());
  }
  if (line->global.help) {
    PrintHelp(*line);
    return kExitOk;
  }
  if (line->global.version) {
    const std::string text = pinbroker::VersionLine("pinctl") + "\n";
    std::fwrite(text.data(), 1, text.size(), stdout);
    return kExitOk;
  }
  const Command& command = Commands()[line->command];
  Output out(line->global.output);
  const int positional = static_cast<int>(line->args.positional().size());
  if (positional < command.min_positional || positional > command.max_positional) {
    return out.UsageError(absl::StrCat("usage: pinctl ", command.usage));
  }
  // Before the first gRPC thread exists, so that only the signal waiter receives them.
  if (command.streaming(line->args)) SignalWaiter::BlockTerminationSignals();
  if (line->global.endpoint.empty()) {
    if (absl::Status s = CheckDefaultEndpoint(); !s.ok()) {
      std::cerr << "pinctl: " << s.message() << "\n";
      return 19;  // 10 + FAILED_PRECONDITION, as for any refusal with that code.
    }
  }
  auto connection = Connection::Create(line->global);
  if (!connection.ok()) return out.UsageError(connection.status().message());
  out.set_endpoint((*connection)->endpoint());
  Invocation inv{line->global, line->args, **connection, out};
  return command.run(inv);
}

}  // namespace
}  // namespace pinctl

int main(int argc, char** argv) { return pinctl::Main(argc, argv); }
