// pinrdma: RDMA through pinbrokerd leases, for operators checking a node and for the VM suite.
// Parses the command line (options.h) and runs one command (commands.h).
#include <signal.h>

#include <cstdio>
#include <string>

#include "clients/pinrdma/commands.h"
#include "clients/pinrdma/options.h"
#include "clients/pinrdma/output.h"
#include "common/build_info.h"
#include "common/log.h"

int main(int argc, char** argv) {
  auto options = pinrdma::ParseOptions(argc, argv);
  if (!options.ok()) {
    bool json = false;
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      if (a == "-o=json" || a == "--output=json" ||
          ((a == "-o" || a == "--output") && i + 1 < argc && std::string(argv[i + 1]) == "json")) {
        json = true;
      }
    }
    pinrdma::Printer out(json);
    out.Error("usage", options.status());
    out.Note("see pinrdma --help");
    return pinrdma::kExitUsage;
  }
  if (options->help) {
    const std::string text = pinrdma::HelpText();
    std::fwrite(text.data(), 1, text.size(), stdout);
    return pinrdma::kExitOk;
  }
  if (options->version) {
    const std::string text = pinbroker::VersionLine("pinrdma") + "\n";
    std::fwrite(text.data(), 1, text.size(), stdout);
    return pinrdma::kExitOk;
  }
  // hold handles SIGINT/SIGTERM on a thread of its own: block them before any thread starts.
  if (options->command == pinrdma::Command::kHold) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
  }
  // The library's warnings go to stderr; stdout stays machine-readable.
  pinrdma::Printer out(options->json);
  switch (options->command) {
    case pinrdma::Command::kCheck:
      return pinrdma::RunCheck(*options, out);
    case pinrdma::Command::kWrite:
      return pinrdma::RunWrite(*options, out);
    case pinrdma::Command::kRead:
      return pinrdma::RunRead(*options, out);
    case pinrdma::Command::kHold:
      return pinrdma::RunHold(*options, out);
    case pinrdma::Command::kInfo:
      return pinrdma::RunInfo(*options, out);
    case pinrdma::Command::kHelp:
      break;
  }
  return pinrdma::kExitOk;
}
