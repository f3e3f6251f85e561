// Build information of the binary it is linked into: the release version, the git commit it was
// built from, and the build type (CMake build type, NDEBUG, sanitizers). Every program prints it
// for --version; the daemon also reports the version in GetInfo and its start-up log.
//
// Constant data; thread-safe.
#pragma once

#include <string>

#include "absl/strings/string_view.h"

namespace pinbroker {

struct BuildInfo {
  absl::string_view version;     // "0.1.0"
  absl::string_view commit;      // "729c3e4abcd1", "729c3e4abcd1-dirty" or "unknown"
  absl::string_view build_type;  // CMake's build type: "RelWithDebInfo", "Debug", ...
  absl::string_view sanitizers;  // "" or e.g. "address+undefined"
  bool assertions;               // NDEBUG not defined (debug checks on)
};

const BuildInfo& GetBuildInfo();

// "PROGRAM 0.1.0 (commit 729c3e4abcd1, RelWithDebInfo, assertions off)" — one line, no newline;
// sanitizers are named when present.
std::string VersionLine(absl::string_view program);

}  // namespace pinbroker
