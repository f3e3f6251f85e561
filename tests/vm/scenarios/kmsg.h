// KmsgReader: the kernel log lines written after it was opened (/dev/kmsg, positioned at the
// end), so a scenario can check that the kernel logged no warning while it ran (e.g. rxe's
// "cleanup failed" after destroying a queue pair with a bound memory window).
//
// Thread-safety: not thread-safe; one thread uses it.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"

namespace pinbroker::scenarios {

class KmsgReader {
 public:
  KmsgReader() = default;
  ~KmsgReader();
  KmsgReader(const KmsgReader&) = delete;
  KmsgReader& operator=(const KmsgReader&) = delete;

  // Opens /dev/kmsg at its end.
  absl::Status Open();
  // The messages logged since Open() or the previous call (without the record prefix).
  std::vector<std::string> ReadNew();

 private:
  int fd_ = -1;
};

// Kernel lines that mean the RDMA stack or memory management went wrong.
bool IsKernelTrouble(const std::string& line);

}  // namespace pinbroker::scenarios
