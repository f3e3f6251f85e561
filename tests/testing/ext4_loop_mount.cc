#include "tests/testing/ext4_loop_mount.h"

#include <sys/stat.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/testing/run_command.h"

namespace pinbroker::testing {

std::string Ext4LoopMount::Mount() {
  if (geteuid() != 0) return "mounting an ext4 image on a loop device needs root";
  std::string log;
  image_ = tmp_.Join("ext4.img");
  mount_ = tmp_.Join("mnt");
  if (RunLogged(absl::StrCat("truncate -s 64M ", image_, " && mkfs.ext4 -q -F ", image_,
                             " && mkdir ", mount_),
                &log) != 0) {
    return "could not make an ext4 image (mkfs.ext4 from e2fsprogs): " + log;
  }
  if (RunLogged(absl::StrCat("mount -o loop ", image_, " ", mount_), &log) != 0) {
    return "could not mount an ext4 image on a loop device (no loop devices or no "
           "CAP_SYS_ADMIN here): " +
           log;
  }
  mounted_ = true;
  chmod(mount_.c_str(), 0777);
  return "";
}

Ext4LoopMount::~Ext4LoopMount() {
  std::string log;
  if (mounted_ && RunLogged("umount " + mount_, &log) != 0) ADD_FAILURE() << log;
}

}  // namespace pinbroker::testing
