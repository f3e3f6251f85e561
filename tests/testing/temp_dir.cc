#include "tests/testing/temp_dir.h"

#include <fcntl.h>
#include <ftw.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"

namespace pinbroker::testing {

TempDir::TempDir(absl::string_view parent) {
  std::string base(parent);
  if (base.empty()) {
    const char* tmp = std::getenv("TMPDIR");
    base = (tmp != nullptr && *tmp != '\0') ? tmp : "/tmp";
  }
  std::string templ = absl::StrCat(base, "/pb.XXXXXX");
  if (mkdtemp(templ.data()) == nullptr) {
    std::perror(("mkdtemp " + templ).c_str());
    std::abort();
  }
  path_ = templ;
}

TempDir::~TempDir() {
  nftw(
      path_.c_str(),
      [](const char* p, const struct stat*, int, struct FTW*) { return ::remove(p); }, 16,
      FTW_DEPTH | FTW_PHYS);
}

std::string TempDir::Join(absl::string_view relative) const {
  return absl::StrCat(path_, "/", relative);
}

void TempDir::WriteFile(absl::string_view relative, absl::string_view contents) const {
  std::ofstream out(Join(relative), std::ios::binary | std::ios::trunc);
  out.write(contents.data(), static_cast<std::streamsize>(contents.size()));
  if (!out) {
    std::perror(("write " + Join(relative)).c_str());
    std::abort();
  }
}

std::string TempDir::ReadFile(absl::string_view relative) const {
  std::ifstream in(Join(relative), std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

}  // namespace pinbroker::testing
