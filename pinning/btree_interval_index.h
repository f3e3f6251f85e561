// BTreeIntervalIndex: a set of (id, page range) entries that answers "which entries overlap this
// range" without scanning, laid out for the cache.
//
// A B+tree keyed by (range.first, id). Leaves hold up to kLeafCapacity entries in three parallel
// sorted arrays; inner nodes hold up to kInnerCapacity children, and for each child the smallest
// key and the largest range end in its subtree (the max-end augmentation of an interval tree).
// All leaves are at the same depth: about four levels at a million entries, against about twenty
// nodes, each on its own cache line, on the path of a binary tree.
//
// Insert and Erase are O(B log_B n) (B = node capacity: a node's augmentation is recomputed by
// scanning it); nodes split when full and merge with a neighbour when under a quarter full, so
// every node but the root stays at least a quarter full. An overlap query descends only into
// children whose largest end passes the query start and whose smallest key starts before the
// query end: O(B log_B n + k) when the k results are adjacent in start order. Memory: at most
// 96 bytes per entry (leaves a quarter full), 24-48 bytes in the common case.
//
// Same interface and results as IntervalIndex (pinning/interval_index.h), which the tests and
// benchmarks keep as the model and the baseline.
//
// Thread-safety: thread-compatible (const methods may run concurrently; anything else needs
// external synchronization). BusyRangeMap wraps it with a mutex.
#pragma once

#include <cstddef>
#include <cstdint>

#include "absl/functional/function_ref.h"
#include "pinning/page_range.h"

namespace pinbroker {

class BTreeIntervalIndex {
 public:
  using Id = uint64_t;

  BTreeIntervalIndex() = default;
  ~BTreeIntervalIndex();
  BTreeIntervalIndex(const BTreeIntervalIndex&) = delete;
  BTreeIntervalIndex& operator=(const BTreeIntervalIndex&) = delete;

  // Adds (id, range). Returns false (and changes nothing) if an entry with the same id and
  // range.first is present or the range is empty.
  bool Insert(Id id, PageRange range);

  // Removes the entry (id, range). Returns false if there is no entry with that id and
  // range.first, or its end differs.
  bool Erase(Id id, PageRange range);

  // Calls `fn` for every entry whose range overlaps `query`, in ascending (first, id) order.
  void ForEachOverlapping(PageRange query, absl::FunctionRef<void(Id, PageRange)> fn) const;

  // True if any entry overlaps `query`.
  bool AnyOverlapping(PageRange query) const;

  // Every entry in ascending (first, id) order.
  void ForEach(absl::FunctionRef<void(Id, PageRange)> fn) const;

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  void Clear();

  // Verifies key order, uniform leaf depth, node fill, every child's smallest key and largest
  // end as recorded in its parent, and the size; returns false on the first violation. For tests.
  bool CheckInvariants() const;

  static constexpr int kLeafCapacity = 32;
  static constexpr int kInnerCapacity = 32;

 private:
  struct Key {
    uint64_t first;
    Id id;
  };
  struct Node {
    bool leaf;
    int count = 0;
  };
  struct Leaf;
  struct Inner;
  // One step of a root-to-leaf path: the inner node and which child was taken.
  struct Step {
    Inner* node;
    int index;
  };
  static constexpr int kMaxDepth = 32;  // Far beyond any reachable height (B^32 entries).

  static bool Less(uint64_t af, Id aid, uint64_t bf, Id bid) {
    return af < bf || (af == bf && aid < bid);
  }
  static Key MinKey(const Node* n);
  static uint64_t MaxEnd(const Node* n);
  static int ChooseChild(const Inner* n, uint64_t first, Id id);
  static void Destroy(Node* n);
  // Splits `full` in two halves and returns the new right half.
  static Node* Split(Node* full);
  // Moves every entry or child of `right` to the end of `left` (same level, adjacent, fits).
  static void Absorb(Node* left, Node* right);
  static void EraseChild(Inner* parent, int index);
  static void SetChild(Inner* parent, int index, Node* child);
  static void Visit(const Node* n, PageRange query, absl::FunctionRef<void(Id, PageRange)> fn);
  static bool Any(const Node* n, PageRange query);
  bool CheckNode(const Node* n, int depth, int* leaf_depth, bool is_root, Key* prev, bool* has_prev,
                 size_t* count) const;

  // Descends to the leaf where (first, id) is or would be, recording the path.
  Leaf* Descend(uint64_t first, Id id, Step* path, int* depth) const;
  // After the leaf at the bottom of `path` changed: splits or merges nodes as needed and brings
  // every recorded key and max end on the path up to date.
  void Repair(Step* path, int depth, Node* changed);

  Node* root_ = nullptr;
  size_t size_ = 0;
};

}  // namespace pinbroker
