// IntervalIndex: a set of (id, page range) entries that answers "which entries overlap this
// range" without scanning.
//
// An AVL tree keyed by (range.first, id), each node augmented with the largest range end in its
// subtree, stored in one contiguous node pool with 32-bit links (no allocation per operation once
// the pool has grown). Insert and Erase are O(log n). An overlap query visits only subtrees whose
// largest end passes the query start and whose keys start before the query end: O(log n + k) when
// the k results are adjacent in start order, O(log n + k log(n/k)) in the worst case.
//
// Thread-safety: thread-compatible (const methods may run concurrently; anything else needs
// external synchronization). BusyRangeMap wraps it with a mutex.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/functional/function_ref.h"
#include "pinning/page_range.h"

namespace pinbroker {

class IntervalIndex {
 public:
  using Id = uint64_t;

  IntervalIndex() = default;
  IntervalIndex(const IntervalIndex&) = delete;
  IntervalIndex& operator=(const IntervalIndex&) = delete;

  // Adds (id, range). Returns false (and changes nothing) if an entry with the same id and
  // range.first is present or the range is empty.
  bool Insert(Id id, PageRange range);

  // Removes the entry (id, range). Returns false if there is no entry with that id and
  // range.first, or its end differs.
  bool Erase(Id id, PageRange range);

  // Calls `fn` for every entry whose range overlaps `query`, in ascending (first, id) order.
  void ForEachOverlapping(PageRange query, absl::FunctionRef<void(Id, PageRange)> fn) const;

  // True if any entry overlaps `query`; O(log n).
  bool AnyOverlapping(PageRange query) const;

  // Every entry in ascending (first, id) order.
  void ForEach(absl::FunctionRef<void(Id, PageRange)> fn) const;

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  void Clear();

  // Verifies ordering, AVL balance, heights, subtree max-ends and the size; returns false on the
  // first violation. For tests.
  bool CheckInvariants() const;

 private:
  static constexpr uint32_t kNil = 0xffffffffu;
  struct Node {
    uint64_t first;
    uint64_t end;
    uint64_t max_end;  // max(end) over this subtree.
    Id id;
    uint32_t left;
    uint32_t right;
    int32_t height;
  };

  uint32_t NewNode(Id id, PageRange range);
  void FreeNode(uint32_t n);
  int32_t Height(uint32_t n) const { return n == kNil ? 0 : nodes_[n].height; }
  uint64_t MaxEnd(uint32_t n) const { return n == kNil ? 0 : nodes_[n].max_end; }
  void Update(uint32_t n);
  uint32_t RotateLeft(uint32_t n);
  uint32_t RotateRight(uint32_t n);
  uint32_t Rebalance(uint32_t n);
  uint32_t InsertAt(uint32_t n, uint32_t fresh, bool* inserted);
  uint32_t EraseAt(uint32_t n, uint64_t first, Id id, uint64_t end, bool* erased);
  uint32_t DetachMin(uint32_t n, uint32_t* min);
  void Visit(uint32_t n, PageRange query, absl::FunctionRef<void(Id, PageRange)> fn) const;
  bool CheckSubtree(uint32_t n, int32_t* height, uint64_t* max_end, size_t* count) const;

  std::vector<Node> nodes_;
  std::vector<uint32_t> free_;
  uint32_t root_ = kNil;
  size_t size_ = 0;
};

}  // namespace pinbroker
