#include "common/build_info.h"

#include "absl/strings/str_cat.h"
#include "pinbroker_git_commit.h"

namespace pinbroker {

const BuildInfo& GetBuildInfo() {
  static const BuildInfo info{
      PINBROKER_VERSION_STRING,
      PINBROKER_GIT_COMMIT,
      PINBROKER_BUILD_TYPE,
      PINBROKER_SANITIZERS,
#ifdef NDEBUG
      false,
#else
      true,
#endif
  };
  return info;
}

std::string VersionLine(absl::string_view program) {
  const BuildInfo& b = GetBuildInfo();
  std::string line = absl::StrCat(program, " ", b.version, " (commit ", b.commit, ", ",
                                  b.build_type.empty() ? "no build type" : b.build_type,
                                  b.assertions ? ", assertions on" : ", assertions off");
  if (!b.sanitizers.empty()) absl::StrAppend(&line, ", sanitizers ", b.sanitizers);
  absl::StrAppend(&line, ")");
  return line;
}

}  // namespace pinbroker
