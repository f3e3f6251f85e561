// pb_oob: one out-of-band operation on a file, done the way an operator's tool or another
// program would, for the file guard's tests to run as a separate process.
//
//   pb_oob truncate PATH SIZE          truncate(2) by path
//   pb_oob ftruncate PATH SIZE         open(O_WRONLY) + ftruncate(2)
//   pb_oob punch PATH OFFSET LENGTH    open(O_RDWR) + fallocate(PUNCH_HOLE|KEEP_SIZE)
//   pb_oob otrunc PATH                 open(O_WRONLY|O_TRUNC)
//   pb_oob rdonly-otrunc PATH          open(O_RDONLY|O_TRUNC)
//   pb_oob openat2-otrunc PATH         openat2(O_WRONLY|O_TRUNC)
//   pb_oob openat2-otrunc-raced PATH   openat2(O_WRONLY|O_TRUNC) whose how.flags a second thread
//                                      sets to O_WRONLY after the kernel has copied them: the
//                                      path lies on a page that is not there yet, so the kernel
//                                      faults on it (userfaultfd) right after copying the open_how
//                                      and before the open; the fault handler changes the flags,
//                                      then supplies the page. Exits 95 (EOPNOTSUPP), printing
//                                      "unsupported ...", where userfaultfd is not available
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
#include <linux/openat2.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

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

int Openat2(const char* path, open_how* how) {
  const long fd = syscall(SYS_openat2, AT_FDCWD, path, how, sizeof(*how));
  return fd < 0 ? Fail("openat2") : 0;
}

// openat2(O_WRONLY|O_TRUNC) of `path`, with how.flags cleared of O_TRUNC while the call runs
// (see the usage above).
int Openat2Raced(const char* path) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  if (std::strlen(path) >= page) {
    errno = ENAMETOOLONG;
    return Fail("path");
  }
  const int uffd = static_cast<int>(syscall(SYS_userfaultfd, O_CLOEXEC));
  if (uffd < 0) {
    std::printf("unsupported userfaultfd: %s\n", std::strerror(errno));
    return EOPNOTSUPP;
  }
  uffdio_api api = {.api = UFFD_API, .features = 0, .ioctls = 0};
  if (ioctl(uffd, UFFDIO_API, &api) != 0) return Fail("UFFDIO_API");
  void* name = mmap(nullptr, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (name == MAP_FAILED) return Fail("mmap");
  uffdio_register reg = {};
  reg.range = {.start = reinterpret_cast<uint64_t>(name), .len = page};
  reg.mode = UFFDIO_REGISTER_MODE_MISSING;
  if (ioctl(uffd, UFFDIO_REGISTER, &reg) != 0) return Fail("UFFDIO_REGISTER");
  std::string source(page, '\0');
  std::memcpy(source.data(), path, std::strlen(path));

  static open_how how = {};
  how.flags = O_WRONLY | O_TRUNC | O_CLOEXEC;
  std::atomic<int> handler_error{0};
  std::thread handler([&] {
    pollfd pfd = {.fd = uffd, .events = POLLIN, .revents = 0};
    uffd_msg msg;
    if (poll(&pfd, 1, -1) != 1 || read(uffd, &msg, sizeof(msg)) != sizeof(msg) ||
        msg.event != UFFD_EVENT_PAGEFAULT) {
      handler_error = errno == 0 ? EIO : errno;
      return;
    }
    // The kernel copied `how` before it began reading the path: this store comes too late to
    // change what it does, but not for anyone who reads the flags from this memory now.
    __atomic_store_n(&how.flags, static_cast<uint64_t>(O_WRONLY | O_CLOEXEC), __ATOMIC_SEQ_CST);
    uffdio_copy copy = {};
    copy.dst = reinterpret_cast<uint64_t>(name);
    copy.src = reinterpret_cast<uint64_t>(source.data());
    copy.len = page;
    if (ioctl(uffd, UFFDIO_COPY, &copy) != 0) handler_error = errno;
  });
  const long fd = syscall(SYS_openat2, AT_FDCWD, static_cast<const char*>(name), &how, sizeof(how));
  const int err = errno;
  handler.join();
  if (handler_error != 0) {
    errno = handler_error;
    return Fail("userfaultfd handler");
  }
  errno = err;
  return fd < 0 ? Fail("openat2") : 0;
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
  } else if (op == "openat2-otrunc" && argc == 3) {
    open_how how = {};
    how.flags = O_WRONLY | O_TRUNC | O_CLOEXEC;
    if (int rc = Openat2(path, &how); rc != 0) return rc;
  } else if (op == "openat2-otrunc-raced" && argc == 3) {
    if (int rc = Openat2Raced(path); rc != 0) return rc;
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
