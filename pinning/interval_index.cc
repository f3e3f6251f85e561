#include "pinning/interval_index.h"

#include <algorithm>
#include <cassert>
#include <tuple>

namespace pinbroker {

namespace {
// Strict (first, id) order.
bool KeyLess(uint64_t a_first, uint64_t a_id, uint64_t b_first, uint64_t b_id) {
  return std::tie(a_first, a_id) < std::tie(b_first, b_id);
}
}  // namespace

uint32_t IntervalIndex::NewNode(Id id, PageRange range) {
  Node node{range.first, range.end, range.end, id, kNil, kNil, 1};
  if (!free_.empty()) {
    const uint32_t n = free_.back();
    free_.pop_back();
    nodes_[n] = node;
    return n;
  }
  nodes_.push_back(node);
  return static_cast<uint32_t>(nodes_.size() - 1);
}

void IntervalIndex::FreeNode(uint32_t n) { free_.push_back(n); }

void IntervalIndex::Clear() {
  nodes_.clear();
  free_.clear();
  root_ = kNil;
  size_ = 0;
}

void IntervalIndex::Update(uint32_t n) {
  Node& node = nodes_[n];
  node.height = 1 + std::max(Height(node.left), Height(node.right));
  node.max_end = std::max({node.end, MaxEnd(node.left), MaxEnd(node.right)});
}

uint32_t IntervalIndex::RotateLeft(uint32_t n) {
  const uint32_t r = nodes_[n].right;
  nodes_[n].right = nodes_[r].left;
  nodes_[r].left = n;
  Update(n);
  Update(r);
  return r;
}

uint32_t IntervalIndex::RotateRight(uint32_t n) {
  const uint32_t l = nodes_[n].left;
  nodes_[n].left = nodes_[l].right;
  nodes_[l].right = n;
  Update(n);
  Update(l);
  return l;
}

uint32_t IntervalIndex::Rebalance(uint32_t n) {
  Update(n);
  const int32_t balance = Height(nodes_[n].left) - Height(nodes_[n].right);
  if (balance > 1) {
    const uint32_t l = nodes_[n].left;
    if (Height(nodes_[l].left) < Height(nodes_[l].right)) nodes_[n].left = RotateLeft(l);
    return RotateRight(n);
  }
  if (balance < -1) {
    const uint32_t r = nodes_[n].right;
    if (Height(nodes_[r].right) < Height(nodes_[r].left)) nodes_[n].right = RotateRight(r);
    return RotateLeft(n);
  }
  return n;
}

uint32_t IntervalIndex::InsertAt(uint32_t n, uint32_t fresh, bool* inserted) {
  if (n == kNil) {
    *inserted = true;
    return fresh;
  }
  const Node& f = nodes_[fresh];
  const Node& node = nodes_[n];
  if (KeyLess(f.first, f.id, node.first, node.id)) {
    const uint32_t child = InsertAt(node.left, fresh, inserted);
    nodes_[n].left = child;
  } else if (KeyLess(node.first, node.id, f.first, f.id)) {
    const uint32_t child = InsertAt(node.right, fresh, inserted);
    nodes_[n].right = child;
  } else {
    return n;  // Duplicate key.
  }
  return *inserted ? Rebalance(n) : n;
}

bool IntervalIndex::Insert(Id id, PageRange range) {
  if (range.empty()) return false;
  const uint32_t fresh = NewNode(id, range);
  bool inserted = false;
  root_ = InsertAt(root_, fresh, &inserted);
  if (!inserted) {
    FreeNode(fresh);
    return false;
  }
  ++size_;
  return true;
}

uint32_t IntervalIndex::DetachMin(uint32_t n, uint32_t* min) {
  if (nodes_[n].left == kNil) {
    *min = n;
    return nodes_[n].right;
  }
  const uint32_t child = DetachMin(nodes_[n].left, min);
  nodes_[n].left = child;
  return Rebalance(n);
}

uint32_t IntervalIndex::EraseAt(uint32_t n, uint64_t first, Id id, uint64_t end, bool* erased) {
  if (n == kNil) return kNil;
  const Node& node = nodes_[n];
  if (KeyLess(first, id, node.first, node.id)) {
    const uint32_t child = EraseAt(node.left, first, id, end, erased);
    nodes_[n].left = child;
  } else if (KeyLess(node.first, node.id, first, id)) {
    const uint32_t child = EraseAt(node.right, first, id, end, erased);
    nodes_[n].right = child;
  } else {
    if (node.end != end) return n;
    *erased = true;
    const uint32_t left = node.left;
    const uint32_t right = node.right;
    FreeNode(n);
    if (left == kNil) return right;
    if (right == kNil) return left;
    uint32_t successor = kNil;
    const uint32_t rest = DetachMin(right, &successor);
    nodes_[successor].left = left;
    nodes_[successor].right = rest;
    return Rebalance(successor);
  }
  return *erased ? Rebalance(n) : n;
}

bool IntervalIndex::Erase(Id id, PageRange range) {
  bool erased = false;
  root_ = EraseAt(root_, range.first, id, range.end, &erased);
  if (erased) --size_;
  return erased;
}

void IntervalIndex::Visit(uint32_t n, PageRange query,
                          absl::FunctionRef<void(Id, PageRange)> fn) const {
  // Iterative in-order walk with pruning: a subtree is skipped when nothing in it ends after the
  // query starts; a right subtree is skipped once keys reach the query end.
  uint32_t stack[96];
  int depth = 0;
  while (n != kNil || depth > 0) {
    while (n != kNil && nodes_[n].max_end > query.first) {
      stack[depth++] = n;
      n = nodes_[n].left;
    }
    if (depth == 0) return;
    n = stack[--depth];
    const Node& node = nodes_[n];
    if (node.first >= query.end) return;  // Every later key starts at or after the query end.
    if (node.end > query.first) fn(node.id, PageRange{node.first, node.end});
    n = node.right;
  }
}

void IntervalIndex::ForEachOverlapping(PageRange query,
                                       absl::FunctionRef<void(Id, PageRange)> fn) const {
  if (query.empty()) return;
  Visit(root_, query, fn);
}

bool IntervalIndex::AnyOverlapping(PageRange query) const {
  if (query.empty()) return false;
  // Descend toward the leftmost entry that ends after query.first; it overlaps iff it starts
  // before query.end. Any entry further right starts no earlier.
  uint32_t n = root_;
  while (n != kNil) {
    const Node& node = nodes_[n];
    if (node.max_end <= query.first) return false;
    if (MaxEnd(node.left) > query.first) {
      n = node.left;
    } else if (node.end > query.first) {
      return node.first < query.end;
    } else {
      n = node.right;
    }
  }
  return false;
}

void IntervalIndex::ForEach(absl::FunctionRef<void(Id, PageRange)> fn) const {
  Visit(root_, PageRange{0, kPageRangeToInfinity}, fn);
}

bool IntervalIndex::CheckSubtree(uint32_t n, int32_t* height, uint64_t* max_end,
                                 size_t* count) const {
  if (n == kNil) {
    *height = 0;
    *max_end = 0;
    *count = 0;
    return true;
  }
  const Node& node = nodes_[n];
  int32_t lh, rh;
  uint64_t lm, rm;
  size_t lc, rc;
  if (!CheckSubtree(node.left, &lh, &lm, &lc) || !CheckSubtree(node.right, &rh, &rm, &rc)) {
    return false;
  }
  if (node.first >= node.end) return false;
  if (node.left != kNil &&
      !KeyLess(nodes_[node.left].first, nodes_[node.left].id, node.first, node.id)) {
    return false;
  }
  if (node.right != kNil &&
      !KeyLess(node.first, node.id, nodes_[node.right].first, nodes_[node.right].id)) {
    return false;
  }
  if (std::abs(lh - rh) > 1) return false;
  *height = 1 + std::max(lh, rh);
  *max_end = std::max({node.end, lm, rm});
  *count = 1 + lc + rc;
  return node.height == *height && node.max_end == *max_end;
}

bool IntervalIndex::CheckInvariants() const {
  int32_t height;
  uint64_t max_end;
  size_t count;
  // Ordering of non-adjacent nodes follows from in-order adjacency; check that too.
  bool ordered = true;
  bool have_prev = false;
  uint64_t prev_first = 0, prev_id = 0;
  ForEach([&](Id id, PageRange r) {
    if (have_prev && !KeyLess(prev_first, prev_id, r.first, id)) ordered = false;
    have_prev = true;
    prev_first = r.first;
    prev_id = id;
  });
  return ordered && CheckSubtree(root_, &height, &max_end, &count) && count == size_ &&
         nodes_.size() == size_ + free_.size();
}

}  // namespace pinbroker
