// TempDir: a fresh directory for one test, removed with everything in it on destruction.
//
// Thread-compatible. Paths stay short (Unix socket paths must fit in 108 bytes).
#pragma once

#include <string>

#include "absl/strings/string_view.h"

namespace pinbroker::testing {

class TempDir {
 public:
  // Creates a directory under `parent` (default: $TMPDIR or /tmp). Aborts the test binary if it
  // cannot: a test without its scratch directory has nothing honest to report.
  explicit TempDir(absl::string_view parent = "");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string Join(absl::string_view relative) const;

  // Writes `contents` to path()/relative (creating or truncating it).
  void WriteFile(absl::string_view relative, absl::string_view contents) const;
  // Reads path()/relative whole.
  std::string ReadFile(absl::string_view relative) const;

 private:
  std::string path_;
};

}  // namespace pinbroker::testing
