#include "tests/testing/run_command.h"

#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"

namespace pinbroker::testing {

int RunLogged(const std::string& command, std::string* log) {
  const std::string out = absl::StrCat("/tmp/pinbroker-test-", getpid(), ".log");
  const int rc = std::system((command + " >" + out + " 2>&1").c_str());
  std::ifstream in(out);
  std::stringstream s;
  s << in.rdbuf();
  *log += command + ": " + s.str();
  unlink(out.c_str());
  return rc;
}

}  // namespace pinbroker::testing
