// BufferImpl: page-aligned anonymous memory registered LOCAL_WRITE on a ConnectionCore's
// protection domain; the memory behind a LocalBuffer (rdma_connection.h). Not part of the
// public API.
//
// Lifetime: holds the core (and so its protection domain) until it is destroyed, after which
// the memory is deregistered and unmapped.
//
// Thread-safety: immutable after construction; the bytes are the user's to synchronize.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "common/verbs/owners.h"

namespace pinbroker::client::rdma_internal {

class ConnectionCore;

class BufferImpl {
 public:
  // INVALID_ARGUMENT for 0 bytes or a size that cannot be page-rounded; the mmap or
  // ibv_reg_mr error otherwise.
  static absl::StatusOr<std::shared_ptr<BufferImpl>> Create(std::shared_ptr<ConnectionCore> core,
                                                            size_t size);
  ~BufferImpl();
  BufferImpl(const BufferImpl&) = delete;
  BufferImpl& operator=(const BufferImpl&) = delete;

  uint8_t* data() const { return static_cast<uint8_t*>(addr_); }
  size_t size() const { return size_; }
  uint32_t lkey() const { return mr_->lkey; }
  const ConnectionCore* core() const { return core_.get(); }

 private:
  BufferImpl(std::shared_ptr<ConnectionCore> core, void* addr, size_t size, size_t mapped,
             verbs::MemoryRegion mr)
      : core_(std::move(core)), addr_(addr), size_(size), mapped_(mapped), mr_(std::move(mr)) {}

  const std::shared_ptr<ConnectionCore> core_;  // Keeps the protection domain alive.
  void* const addr_;
  const size_t size_;
  const size_t mapped_;
  verbs::MemoryRegion mr_;  // Deregistered first by ~BufferImpl, then the memory is unmapped.
};

}  // namespace pinbroker::client::rdma_internal
