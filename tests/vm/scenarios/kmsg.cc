#include "tests/vm/scenarios/kmsg.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace pinbroker::scenarios {

KmsgReader::~KmsgReader() {
  if (fd_ >= 0) close(fd_);
}

absl::Status KmsgReader::Open() {
  fd_ = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd_ < 0) {
    return absl::FailedPreconditionError(absl::StrCat("open /dev/kmsg: ", std::strerror(errno)));
  }
  lseek(fd_, 0, SEEK_END);
  return absl::OkStatus();
}

std::vector<std::string> KmsgReader::ReadNew() {
  std::vector<std::string> out;
  if (fd_ < 0) return out;
  char record[8192];
  while (true) {
    const ssize_t n = read(fd_, record, sizeof(record) - 1);
    if (n < 0) {
      if (errno == EPIPE) continue;  // Overwritten records: go on with the next one.
      break;                         // EAGAIN: nothing more.
    }
    if (n == 0) break;
    std::string line(record, n);
    // "prio,seq,time,flags;message\n" followed by optional " KEY=value" continuation lines.
    const size_t semi = line.find(';');
    if (semi != std::string::npos) line = line.substr(semi + 1);
    const size_t nl = line.find('\n');
    if (nl != std::string::npos) line.resize(nl);
    out.push_back(line);
  }
  return out;
}

bool IsKernelTrouble(const std::string& line) {
  for (const char* bad : {"cleanup failed", "rxe_pool", "WARNING", "BUG", "refcount_t",
                          "use-after-free", "hung_task", "blocked for more than"}) {
    if (absl::StrContains(line, bad)) return true;
  }
  return false;
}

}  // namespace pinbroker::scenarios
