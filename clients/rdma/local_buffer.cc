#include "clients/rdma/local_buffer.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "clients/rdma/connection_core.h"
#include "common/errno_status.h"
#include "common/log.h"

namespace pinbroker::client::rdma_internal {
namespace {

// As an int: the ibv_reg_mr macro mixes it with another enum type otherwise.
constexpr int kLocalWrite = IBV_ACCESS_LOCAL_WRITE;

}  // namespace

absl::StatusOr<std::shared_ptr<BufferImpl>> BufferImpl::Create(std::shared_ptr<ConnectionCore> core,
                                                               size_t size) {
  if (size == 0) return absl::InvalidArgumentError("a local buffer needs at least one byte");
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  if (size > SIZE_MAX - page) return absl::InvalidArgumentError("local buffer too large");
  const size_t mapped = (size + page - 1) / page * page;
  void* addr = mmap(nullptr, mapped, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (addr == MAP_FAILED) return ErrnoToStatus(errno, absl::StrCat("mmap of ", mapped, " bytes"));
  absl::StatusOr<verbs::MemoryRegion> mr =
      verbs::RegisterMr(core->pd(), addr, mapped, kLocalWrite,
                        absl::StrCat("ibv_reg_mr of a ", mapped, "-byte local buffer"));
  if (!mr.ok()) {
    munmap(addr, mapped);
    return mr.status();
  }
  return std::shared_ptr<BufferImpl>(
      new BufferImpl(std::move(core), addr, size, mapped, std::move(*mr)));
}

BufferImpl::~BufferImpl() {
  if (int rc = ibv_dereg_mr(mr_.release()); rc != 0) {
    PB_LOG(WARNING) << "ibv_dereg_mr of a local buffer: " << std::strerror(rc);
  }
  munmap(addr_, mapped_);
}

}  // namespace pinbroker::client::rdma_internal
