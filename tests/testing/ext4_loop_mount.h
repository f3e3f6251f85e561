// Ext4LoopMount: a fresh 64 MiB ext4 image mounted on a loop device in a temporary directory, for
// tests that need a real ext4 filesystem on a machine without one to spare. Unmounted (and the
// image removed) on destruction.
//
// Thread-compatible.
#pragma once

#include <string>

#include "tests/testing/temp_dir.h"

namespace pinbroker::testing {

class Ext4LoopMount {
 public:
  Ext4LoopMount() = default;
  // Unmounts if mounted; a failing umount is a test failure (ADD_FAILURE).
  ~Ext4LoopMount();
  Ext4LoopMount(const Ext4LoopMount&) = delete;
  Ext4LoopMount& operator=(const Ext4LoopMount&) = delete;

  // Makes and mounts the image. Empty on success, else why it cannot be done here (not root, no
  // mkfs.ext4, no loop devices): the reason for a test's skip.
  std::string Mount();
  // The mount point, world-writable (for helper processes running as other users).
  const std::string& dir() const { return mount_; }

 private:
  TempDir tmp_;
  std::string image_, mount_;
  bool mounted_ = false;
};

}  // namespace pinbroker::testing
