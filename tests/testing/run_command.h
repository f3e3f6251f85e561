// RunLogged: runs a shell command for a test (mkfs, mount, ...) and appends the command and its
// combined output to a log for the failure or skip message.
//
// Thread-compatible: one caller at a time per process (the output goes through a file named
// after the process).
#pragma once

#include <string>

namespace pinbroker::testing {

// std::system(command) with stdout and stderr captured; appends "command: output" to *log.
// Returns std::system's status (0: success).
int RunLogged(const std::string& command, std::string* log);

}  // namespace pinbroker::testing
