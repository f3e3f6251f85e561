// OutOfBandCall: one layout change (or plain write) made behind the broker's back by another
// process: a forked child that makes exactly one change to a file with ordinary system calls
// and exits with the errno of the call that failed (0: success). The guard sees a foreign
// caller it can identify from procfs, as it would an operator's `truncate -s` or a database's
// fallocate(). The parent can tell whether the child is still held inside its system call and
// wait for it to finish.
//
// OobChange also knows what the change does to the file's bytes (Apply), so that a scenario
// keeps a model of the file and compares every byte with it.
//
// Thread-safety: an OutOfBandCall is used by one thread at a time; the rest is plain data.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace pinbroker::scenarios {

enum class OobOp {
  kTruncate,   // truncate(2) by path, to `size`.
  kFtruncate,  // open(O_WRONLY), then ftruncate(2) to `size`.
  kPunch,      // open(O_WRONLY), then fallocate(PUNCH_HOLE | KEEP_SIZE) of [offset, +length).
  kOpenTrunc,  // open(O_WRONLY | O_TRUNC).
  kPwrite,     // open(O_WRONLY), then pwrite(2) of `data` at `offset`: not a layout change.
};

struct OobChange {
  OobOp op = OobOp::kTruncate;
  uint64_t size = 0;    // kTruncate, kFtruncate.
  uint64_t offset = 0;  // kPunch, kPwrite.
  uint64_t length = 0;  // kPunch.
  std::string data;     // kPwrite.
};

// "truncate(2) to 20580", "fallocate(2) PUNCH_HOLE [12288, +4096)", "open(2) O_TRUNC", ...
std::string Describe(const OobChange& change);
// The entry of DescribeFileResponse.unguarded_operations that names this operation when no
// mechanism intercepts it (docs/GUARD.md); empty for kPwrite, which is never a layout change.
absl::string_view UnguardedEntry(OobOp op);
// Applies the change to `file`, the bytes the file holds.
void Apply(const OobChange& change, std::string& file);

class OutOfBandCall {
 public:
  // Forks the child, which makes `change` to `path` at once.
  static absl::StatusOr<std::unique_ptr<OutOfBandCall>> Start(const std::string& path,
                                                              const OobChange& change);
  // Kills and reaps the child if it still runs.
  ~OutOfBandCall();
  OutOfBandCall(const OutOfBandCall&) = delete;
  OutOfBandCall& operator=(const OutOfBandCall&) = delete;

  // Whether the child has not exited yet (it is held in its system call, or about to make it).
  bool Running();
  // Waits up to `timeout` for the child's exit and returns its errno (0: the change was made).
  // DEADLINE_EXCEEDED if it still runs then (it is left running).
  absl::StatusOr<int> Wait(absl::Duration timeout);
  // How long the call took: from Start() until its exit was seen (or until now).
  absl::Duration Elapsed() const;

 private:
  OutOfBandCall(pid_t pid, absl::Time started) : pid_(pid), started_(started) {}
  // Reaps the child without waiting; true once it has exited.
  bool Poll();

  const pid_t pid_;
  const absl::Time started_;
  bool exited_ = false;
  int result_ = 0;  // errno, or -1 if it did not exit normally.
  absl::Time finished_;
};

}  // namespace pinbroker::scenarios
