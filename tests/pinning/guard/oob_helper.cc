// pb_oob: one out-of-band operation on a file, done the way an operator's tool or another
// program would, for the file guard's tests to run as a separate process.
//
//   pb_oob truncate PATH SIZE          truncate(2) by path
//   pb_oob ftruncate PATH SIZE         open(O_WRONLY) + ftruncate(2)
//   pb_oob punch PATH OFFSET LENGTH    open(O_RDWR) + fallocate(PUNCH_HOLE|KEEP_SIZE)
//   pb_oob otrunc PATH                 open(O_WRONLY|O_TRUNC)
//   pb_oob rdonly-otrunc PATH          open(O_RDONLY|O_TRUNC)
//   pb_oob pwrite PATH OFFSET LENGTH   open(O_WRONLY) + pwrite(2) of LENGTH bytes 'W'
//   pb_oob mmap-write PATH OFFSET LENGTH
//                                      open(O_RDWR) + mmap(MAP_SHARED) + store LENGTH bytes
//                                      'M' at OFFSET through the mapping (page faults) + msync
//   pb_oob unlink PATH                 unlink(2)
//   pb_oob open-then-punch PATH OFFSET LENGTH
//                                      open(O_RDWR), print "opened", wait for a line on stdin,
//                                      then punch through that (early) descriptor
//
// Prints "ok" and exits 0, or prints "error <errno> <message>" and exits with the errno.
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

int Fail(const char* what) {
  const int err = errno;
  std::printf("error %d %s: %s\n", err, what, std::strerror(err));
  return err == 0 ? 1 : err;
}

int Punch(int fd, const char* offset, const char* length) {
  if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, std::atoll(offset),
                std::atoll(length)) != 0) {
    return Fail("fallocate");
  }
  return 0;
}

int Main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: pb_oob OP PATH [ARGS]\n");
    return 2;
  }
  const std::string op = argv[1];
  const char* path = argv[2];
  if (op == "truncate" && argc == 4) {
    if (truncate(path, std::atoll(argv[3])) != 0) return Fail("truncate");
  } else if (op == "ftruncate" && argc == 4) {
    const int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return Fail("open");
    if (ftruncate(fd, std::atoll(argv[3])) != 0) return Fail("ftruncate");
  } else if (op == "punch" && argc == 5) {
    const int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) return Fail("open");
    if (int rc = Punch(fd, argv[3], argv[4]); rc != 0) return rc;
  } else if (op == "otrunc" && argc == 3) {
    if (open(path, O_WRONLY | O_TRUNC | O_CLOEXEC) < 0) return Fail("open");
  } else if (op == "rdonly-otrunc" && argc == 3) {
    if (open(path, O_RDONLY | O_TRUNC | O_CLOEXEC) < 0) return Fail("open");
  } else if (op == "pwrite" && argc == 5) {
    const int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return Fail("open");
    const std::string bytes(static_cast<size_t>(std::atoll(argv[4])), 'W');
    if (pwrite(fd, bytes.data(), bytes.size(), std::atoll(argv[3])) !=
        static_cast<ssize_t>(bytes.size())) {
      return Fail("pwrite");
    }
  } else if (op == "mmap-write" && argc == 5) {
    const int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) return Fail("open");
    const off_t size = lseek(fd, 0, SEEK_END);
    void* map = mmap(nullptr, static_cast<size_t>(size), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) return Fail("mmap");
    std::memset(static_cast<char*>(map) + std::atoll(argv[3]), 'M',
                static_cast<size_t>(std::atoll(argv[4])));
    if (msync(map, static_cast<size_t>(size), MS_SYNC) != 0) return Fail("msync");
  } else if (op == "unlink" && argc == 3) {
    if (unlink(path) != 0) return Fail("unlink");
  } else if (op == "open-then-punch" && argc == 5) {
    const int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) return Fail("open");
    std::printf("opened\n");
    std::fflush(stdout);
    char line[16];
    if (std::fgets(line, sizeof(line), stdin) == nullptr) return Fail("reading stdin");
    if (int rc = Punch(fd, argv[3], argv[4]); rc != 0) return rc;
  } else {
    std::fprintf(stderr, "pb_oob: bad arguments for '%s'\n", op.c_str());
    return 2;
  }
  std::printf("ok\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return Main(argc, argv); }
