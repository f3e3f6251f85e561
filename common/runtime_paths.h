// Runtime paths: where the broker's sockets live and which endpoint a client uses by default.
// Shared by pinbrokerd and every client, so that both sides follow one rule. The Python example
// client (clients/python/pin_example.py) follows the same rule in its own few lines.
//
// Thread-safety: stateless functions (they read the environment and the file system).
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace pinbroker {

// The system socket a root broker serves by default.
inline constexpr char kSystemSocket[] = "/run/pinbroker/pinbroker.sock";

// Where this user's broker puts its socket: root uses /run/pinbroker; others
// $XDG_RUNTIME_DIR/pinbroker, or /tmp/pinbroker-<uid> without XDG_RUNTIME_DIR.
std::string DefaultRuntimeDir();

// OK if `dir` is a directory (not a symlink) that the calling user owns and nobody else may
// enter (mode & 077 == 0). FAILED_PRECONDITION otherwise, saying what is wrong: a directory
// under a world-writable place that someone else made first could hold a fake broker's socket.
absl::Status CheckPrivateDir(const std::string& dir);

// The endpoint a client uses when none is given: the per-user socket
// (DefaultRuntimeDir()/pinbroker.sock) if it exists, after CheckPrivateDir of its directory
// (for a non-root user); else the system socket kSystemSocket when it exists; else the per-user
// one (for the error message of a failed connect).
absl::StatusOr<std::string> DefaultClientEndpoint();

}  // namespace pinbroker
