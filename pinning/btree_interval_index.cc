#include "pinning/btree_interval_index.h"

#include <algorithm>
#include <cstring>

namespace pinbroker {

// Every array has one spare slot: an insert may overfill a node by one, and Repair() splits it
// on the way up.
struct BTreeIntervalIndex::Leaf : Node {
  Leaf() { leaf = true; }
  uint64_t first[kLeafCapacity + 1];
  Id id[kLeafCapacity + 1];
  uint64_t end[kLeafCapacity + 1];
};

struct BTreeIntervalIndex::Inner : Node {
  Inner() { leaf = false; }
  // For each child: its smallest key and the largest range end in its subtree.
  uint64_t key_first[kInnerCapacity + 1];
  Id key_id[kInnerCapacity + 1];
  uint64_t max_end[kInnerCapacity + 1];
  Node* child[kInnerCapacity + 1];
};

namespace {

constexpr int Capacity(bool leaf) {
  return leaf ? BTreeIntervalIndex::kLeafCapacity : BTreeIntervalIndex::kInnerCapacity;
}

template <typename T>
void MoveWithin(T* array, int from, int count, int delta) {
  std::memmove(array + from + delta, array + from, static_cast<size_t>(count) * sizeof(T));
}

template <typename T>
void CopyAcross(T* dst, int di, const T* src, int si, int k) {
  std::memcpy(dst + di, src + si, static_cast<size_t>(k) * sizeof(T));
}

}  // namespace

BTreeIntervalIndex::~BTreeIntervalIndex() { Clear(); }

void BTreeIntervalIndex::Clear() {
  if (root_ != nullptr) Destroy(root_);
  root_ = nullptr;
  size_ = 0;
}

void BTreeIntervalIndex::Destroy(Node* n) {
  if (n->leaf) {
    delete static_cast<Leaf*>(n);
    return;
  }
  Inner* in = static_cast<Inner*>(n);
  for (int i = 0; i < in->count; ++i) Destroy(in->child[i]);
  delete in;
}

BTreeIntervalIndex::Key BTreeIntervalIndex::MinKey(const Node* n) {
  if (n->leaf) {
    const Leaf* l = static_cast<const Leaf*>(n);
    return Key{l->first[0], l->id[0]};
  }
  const Inner* in = static_cast<const Inner*>(n);
  return Key{in->key_first[0], in->key_id[0]};
}

uint64_t BTreeIntervalIndex::MaxEnd(const Node* n) {
  uint64_t max = 0;
  if (n->leaf) {
    const Leaf* l = static_cast<const Leaf*>(n);
    for (int j = 0; j < l->count; ++j) max = std::max(max, l->end[j]);
  } else {
    const Inner* in = static_cast<const Inner*>(n);
    for (int i = 0; i < in->count; ++i) max = std::max(max, in->max_end[i]);
  }
  return max;
}

int BTreeIntervalIndex::ChooseChild(const Inner* n, uint64_t first, Id id) {
  // The last child whose smallest key is <= (first, id); the first child for smaller keys.
  int lo = 1, hi = n->count;  // Answer in [lo - 1, hi - 1].
  while (lo < hi) {
    const int mid = (lo + hi) / 2;
    if (Less(first, id, n->key_first[mid], n->key_id[mid])) {
      hi = mid;
    } else {
      lo = mid + 1;
    }
  }
  return lo - 1;
}

void BTreeIntervalIndex::SetChild(Inner* parent, int index, Node* child) {
  const Key min = MinKey(child);
  parent->key_first[index] = min.first;
  parent->key_id[index] = min.id;
  parent->max_end[index] = MaxEnd(child);
  parent->child[index] = child;
}

namespace {

template <typename LeafT, typename InnerT, typename Node>
void ShiftAny(Node* n, int from, int delta) {
  const int moved = n->count - from;
  if (moved > 0) {
    if (n->leaf) {
      auto* l = static_cast<LeafT*>(n);
      MoveWithin(l->first, from, moved, delta);
      MoveWithin(l->id, from, moved, delta);
      MoveWithin(l->end, from, moved, delta);
    } else {
      auto* in = static_cast<InnerT*>(n);
      MoveWithin(in->key_first, from, moved, delta);
      MoveWithin(in->key_id, from, moved, delta);
      MoveWithin(in->max_end, from, moved, delta);
      MoveWithin(in->child, from, moved, delta);
    }
  }
  n->count += delta;
}

template <typename LeafT, typename InnerT, typename Node>
void CopyAny(Node* dst, int di, const Node* src, int si, int k) {
  if (k <= 0) return;
  if (dst->leaf) {
    auto* d = static_cast<LeafT*>(dst);
    auto* s = static_cast<const LeafT*>(src);
    CopyAcross(d->first, di, s->first, si, k);
    CopyAcross(d->id, di, s->id, si, k);
    CopyAcross(d->end, di, s->end, si, k);
  } else {
    auto* d = static_cast<InnerT*>(dst);
    auto* s = static_cast<const InnerT*>(src);
    CopyAcross(d->key_first, di, s->key_first, si, k);
    CopyAcross(d->key_id, di, s->key_id, si, k);
    CopyAcross(d->max_end, di, s->max_end, si, k);
    CopyAcross(d->child, di, s->child, si, k);
  }
}

}  // namespace

#define PB_SHIFT(n, from, delta) ShiftAny<Leaf, Inner, Node>((n), (from), (delta))
#define PB_COPY(dst, di, src, si, k) CopyAny<Leaf, Inner, Node>((dst), (di), (src), (si), (k))

BTreeIntervalIndex::Node* BTreeIntervalIndex::Split(Node* full) {
  Node* right = full->leaf ? static_cast<Node*>(new Leaf) : static_cast<Node*>(new Inner);
  const int half = full->count / 2;
  const int moved = full->count - half;
  PB_COPY(right, 0, full, half, moved);
  right->count = moved;
  full->count = half;
  return right;
}

void BTreeIntervalIndex::Absorb(Node* left, Node* right) {
  PB_COPY(left, left->count, right, 0, right->count);
  left->count += right->count;
  right->count = 0;
}

void BTreeIntervalIndex::EraseChild(Inner* parent, int index) { PB_SHIFT(parent, index + 1, -1); }

BTreeIntervalIndex::Leaf* BTreeIntervalIndex::Descend(uint64_t first, Id id, Step* path,
                                                      int* depth) const {
  Node* n = root_;
  int d = 0;
  while (!n->leaf) {
    Inner* in = static_cast<Inner*>(n);
    const int i = ChooseChild(in, first, id);
    path[d++] = Step{in, i};
    n = in->child[i];
  }
  *depth = d;
  return static_cast<Leaf*>(n);
}

namespace {

// Position of the first entry of `l` not less than (first, id).
template <typename LeafT>
int LowerBound(const LeafT* l, uint64_t first, uint64_t id) {
  int lo = 0, hi = l->count;
  while (lo < hi) {
    const int mid = (lo + hi) / 2;
    if (l->first[mid] < first || (l->first[mid] == first && l->id[mid] < id)) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo;
}

}  // namespace

bool BTreeIntervalIndex::Insert(Id id, PageRange range) {
  if (range.empty()) return false;
  if (root_ == nullptr) root_ = new Leaf;
  Step path[kMaxDepth];
  int depth = 0;
  Leaf* leaf = Descend(range.first, id, path, &depth);
  const int pos = LowerBound(leaf, range.first, id);
  if (pos < leaf->count && leaf->first[pos] == range.first && leaf->id[pos] == id) {
    if (size_ == 0) Clear();  // Never leave an empty root behind.
    return false;
  }
  PB_SHIFT(leaf, pos, +1);
  leaf->first[pos] = range.first;
  leaf->id[pos] = id;
  leaf->end[pos] = range.end;
  ++size_;
  Repair(path, depth, leaf);
  return true;
}

bool BTreeIntervalIndex::Erase(Id id, PageRange range) {
  if (root_ == nullptr) return false;
  Step path[kMaxDepth];
  int depth = 0;
  Leaf* leaf = Descend(range.first, id, path, &depth);
  const int pos = LowerBound(leaf, range.first, id);
  if (pos == leaf->count || leaf->first[pos] != range.first || leaf->id[pos] != id ||
      leaf->end[pos] != range.end) {
    return false;
  }
  PB_SHIFT(leaf, pos + 1, -1);
  --size_;
  Repair(path, depth, leaf);
  return true;
}

void BTreeIntervalIndex::Repair(Step* path, int depth, Node* changed) {
  Node* node = changed;
  for (int level = depth - 1; level >= 0; --level) {
    Inner* parent = path[level].node;
    const int i = path[level].index;
    const int cap = Capacity(node->leaf);
    if (node->count > cap) {
      Node* right = Split(node);
      PB_SHIFT(parent, i + 1, +1);
      SetChild(parent, i + 1, right);
      SetChild(parent, i, node);
    } else if (node->count == 0) {
      Destroy(node);
      EraseChild(parent, i);
    } else if (node->count < cap / 4 && parent->count > 1) {
      // Merge with a neighbour if both fit in one node, else even them out.
      const int li = i > 0 ? i - 1 : i;
      Node* left = parent->child[li];
      Node* right = parent->child[li + 1];
      if (left->count + right->count <= cap) {
        Absorb(left, right);
        Destroy(right);
        EraseChild(parent, li + 1);
        SetChild(parent, li, left);
      } else {
        if (left->count > right->count) {
          const int k = (left->count - right->count) / 2;
          PB_SHIFT(right, 0, +k);
          PB_COPY(right, 0, left, left->count - k, k);
          left->count -= k;
        } else {
          const int k = (right->count - left->count) / 2;
          PB_COPY(left, left->count, right, 0, k);
          left->count += k;
          PB_SHIFT(right, k, -k);
        }
        SetChild(parent, li, left);
        SetChild(parent, li + 1, right);
      }
    } else {
      SetChild(parent, i, node);
    }
    node = parent;
  }
  // `node` is the root now.
  if (root_->count > Capacity(root_->leaf)) {
    Node* right = Split(root_);
    Inner* top = new Inner;
    top->count = 2;
    SetChild(top, 0, root_);
    SetChild(top, 1, right);
    root_ = top;
  } else if (root_->count == 0) {
    Destroy(root_);
    root_ = nullptr;
  } else {
    while (!root_->leaf && root_->count == 1) {
      Inner* old = static_cast<Inner*>(root_);
      root_ = old->child[0];
      old->count = 0;
      delete old;
    }
  }
}

void BTreeIntervalIndex::Visit(const Node* n, PageRange query,
                               absl::FunctionRef<void(Id, PageRange)> fn) {
  if (n->leaf) {
    const Leaf* l = static_cast<const Leaf*>(n);
    for (int j = 0; j < l->count; ++j) {
      if (l->first[j] >= query.end) break;
      if (l->end[j] > query.first) fn(l->id[j], PageRange{l->first[j], l->end[j]});
    }
    return;
  }
  const Inner* in = static_cast<const Inner*>(n);
  for (int i = 0; i < in->count; ++i) {
    if (in->key_first[i] >= query.end) break;
    if (in->max_end[i] > query.first) Visit(in->child[i], query, fn);
  }
}

bool BTreeIntervalIndex::Any(const Node* n, PageRange query) {
  if (n->leaf) {
    const Leaf* l = static_cast<const Leaf*>(n);
    for (int j = 0; j < l->count; ++j) {
      if (l->first[j] >= query.end) return false;
      if (l->end[j] > query.first) return true;
    }
    return false;
  }
  const Inner* in = static_cast<const Inner*>(n);
  for (int i = 0; i < in->count; ++i) {
    if (in->key_first[i] >= query.end) return false;
    if (in->max_end[i] > query.first && Any(in->child[i], query)) return true;
  }
  return false;
}

void BTreeIntervalIndex::ForEachOverlapping(PageRange query,
                                            absl::FunctionRef<void(Id, PageRange)> fn) const {
  if (root_ == nullptr || query.empty()) return;
  Visit(root_, query, fn);
}

bool BTreeIntervalIndex::AnyOverlapping(PageRange query) const {
  if (root_ == nullptr || query.empty()) return false;
  return Any(root_, query);
}

void BTreeIntervalIndex::ForEach(absl::FunctionRef<void(Id, PageRange)> fn) const {
  if (root_ == nullptr) return;
  Visit(root_, PageRange{0, kPageRangeToInfinity}, fn);
}

bool BTreeIntervalIndex::CheckNode(const Node* n, int depth, int* leaf_depth, bool is_root,
                                   Key* prev, bool* has_prev, size_t* count) const {
  const int cap = Capacity(n->leaf);
  if (n->count < 1 || n->count > cap) return false;
  if (!is_root && n->count < cap / 4) return false;
  if (n->leaf) {
    if (*leaf_depth == -1) *leaf_depth = depth;
    if (*leaf_depth != depth) return false;
    const Leaf* l = static_cast<const Leaf*>(n);
    for (int j = 0; j < l->count; ++j) {
      if (l->end[j] <= l->first[j]) return false;
      if (*has_prev && !Less(prev->first, prev->id, l->first[j], l->id[j])) return false;
      *prev = Key{l->first[j], l->id[j]};
      *has_prev = true;
    }
    *count += static_cast<size_t>(l->count);
    return true;
  }
  const Inner* in = static_cast<const Inner*>(n);
  if (is_root && in->count < 2) return false;
  for (int i = 0; i < in->count; ++i) {
    const Node* c = in->child[i];
    if (!CheckNode(c, depth + 1, leaf_depth, false, prev, has_prev, count)) return false;
    const Key min = MinKey(c);
    if (in->key_first[i] != min.first || in->key_id[i] != min.id) return false;
    if (in->max_end[i] != MaxEnd(c)) return false;
  }
  return true;
}

bool BTreeIntervalIndex::CheckInvariants() const {
  if (root_ == nullptr) return size_ == 0;
  int leaf_depth = -1;
  Key prev{};
  bool has_prev = false;
  size_t count = 0;
  return CheckNode(root_, 0, &leaf_depth, true, &prev, &has_prev, &count) && count == size_;
}

}  // namespace pinbroker
