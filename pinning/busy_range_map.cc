#include "pinning/busy_range_map.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

namespace pinbroker {

const BusyRangeMap::ActiveBlock* BusyRangeMap::BlockingLocked(PageRange range) const {
  for (const auto& [id, block] : blocks_) {
    if (block.range.Overlaps(range)) return &block;
  }
  return nullptr;
}

absl::Status BusyRangeMap::Reserve(LeaseId lease, PageRange range, absl::Time wait_until) {
  if (range.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("lease ", lease, ": empty page range ", range.ToString()));
  }
  absl::MutexLock lock(&mu_);
  if (slots_.contains(lease)) {
    return absl::AlreadyExistsError(absl::StrCat("lease ", lease, " already has a range"));
  }
  if (BlockingLocked(range) != nullptr) {
    auto unblocked = [this, range]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return BlockingLocked(range) == nullptr;
    };
    if (!clock_->AwaitWithDeadline(&mu_, absl::Condition(&unblocked), wait_until)) {
      const ActiveBlock* block = BlockingLocked(range);
      return absl::AbortedError(
          absl::StrCat("the range is blocked by a layout change in progress (", block->reason,
                       "); retry when it completes"));
    }
  }
  index_.Insert(lease, range);
  slots_.emplace(lease, range);
  pending_.emplace(lease, false);
  return absl::OkStatus();
}

absl::Status BusyRangeMap::Commit(LeaseId lease, absl::FunctionRef<void()> on_commit) {
  absl::MutexLock lock(&mu_);
  auto it = slots_.find(lease);
  if (it == slots_.end()) {
    return absl::NotFoundError(absl::StrCat("lease ", lease, " has no reservation"));
  }
  auto pending = pending_.find(lease);
  if (pending == pending_.end()) {
    return absl::FailedPreconditionError(absl::StrCat("lease ", lease, " is already held"));
  }
  if (pending->second) {
    const ActiveBlock* block = BlockingLocked(it->second);
    return absl::AbortedError(absl::StrCat(
        "a layout change began on the range while the pin was set up (",
        block != nullptr ? block->reason : std::string("since completed"), "); retry the pin"));
  }
  pending_.erase(pending);
  on_commit();
  return absl::OkStatus();
}

absl::Status BusyRangeMap::Remove(LeaseId lease) {
  std::vector<absl::AnyInvocable<void()>> drained;
  {
    absl::MutexLock lock(&mu_);
    auto it = slots_.find(lease);
    if (it == slots_.end()) {
      return absl::NotFoundError(absl::StrCat("lease ", lease, " holds no range"));
    }
    const PageRange range = it->second;
    index_.Erase(lease, range);
    slots_.erase(it);
    if (!pending_.empty()) pending_.erase(lease);
    for (auto& [id, block] : blocks_) {
      if (block.remaining > 0 && block.range.Overlaps(range) && --block.remaining == 0) {
        for (auto& [wait, fn] : block.on_drained) drained.push_back(std::move(fn));
        block.on_drained.clear();
      }
    }
  }
  for (auto& fn : drained) fn();
  return absl::OkStatus();
}

BusyRangeMap::BlockResult BusyRangeMap::Block(PageRange range, std::string reason) {
  absl::MutexLock lock(&mu_);
  BlockResult result;
  result.id = next_block_++;
  index_.ForEachOverlapping(range,
                            [&](LeaseId lease, PageRange) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
                              auto pending = pending_.find(lease);
                              if (pending == pending_.end()) {
                                result.held.push_back(lease);
                              } else {
                                pending->second = true;
                                result.pending.push_back(lease);
                              }
                            });
  blocks_.emplace(
      result.id,
      ActiveBlock{range, std::move(reason), result.held.size() + result.pending.size(), {}});
  return result;
}

void BusyRangeMap::Unblock(BlockId block) {
  absl::flat_hash_map<DrainWaitId, absl::AnyInvocable<void()>> dropped;  // Destroyed unlocked.
  absl::MutexLock lock(&mu_);
  auto it = blocks_.find(block);
  if (it == blocks_.end()) return;
  dropped = std::move(it->second.on_drained);
  blocks_.erase(it);
}

bool BusyRangeMap::AwaitDrained(BlockId block, absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  auto drained = [this, block]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto it = blocks_.find(block);
    return it != blocks_.end() && it->second.remaining == 0;
  };
  if (!blocks_.contains(block)) return false;
  return clock_->AwaitWithDeadline(&mu_, absl::Condition(&drained), deadline);
}

bool BusyRangeMap::IsDrained(BlockId block) const {
  absl::MutexLock lock(&mu_);
  auto it = blocks_.find(block);
  return it != blocks_.end() && it->second.remaining == 0;
}

BusyRangeMap::DrainWaitId BusyRangeMap::OnDrained(BlockId block, absl::AnyInvocable<void()> fn) {
  {
    absl::MutexLock lock(&mu_);
    auto it = blocks_.find(block);
    if (it == blocks_.end()) return 0;
    if (it->second.remaining > 0) {
      const DrainWaitId wait = next_drain_wait_++;
      it->second.on_drained.emplace(wait, std::move(fn));
      return wait;
    }
  }
  fn();
  return 0;
}

bool BusyRangeMap::CancelOnDrained(BlockId block, DrainWaitId wait) {
  absl::AnyInvocable<void()> withdrawn;  // Destroyed after the lock is released.
  absl::MutexLock lock(&mu_);
  auto it = blocks_.find(block);
  if (it == blocks_.end()) return false;
  auto node = it->second.on_drained.extract(wait);
  if (node.empty()) return false;
  withdrawn = std::move(node.mapped());
  return true;
}

std::vector<BusyRangeMap::Entry> BusyRangeMap::OverlappingLocked(PageRange range) const {
  std::vector<Entry> out;
  index_.ForEachOverlapping(range,
                            [&](LeaseId lease, PageRange r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
                              out.push_back(Entry{lease, r, !pending_.contains(lease)});
                            });
  return out;
}

std::vector<BusyRangeMap::Entry> BusyRangeMap::Overlapping(PageRange range) const {
  absl::MutexLock lock(&mu_);
  return OverlappingLocked(range);
}

bool BusyRangeMap::AnyOverlapping(PageRange range) const {
  absl::MutexLock lock(&mu_);
  return index_.AnyOverlapping(range);
}

std::vector<BusyRangeMap::Entry> BusyRangeMap::Entries() const {
  absl::MutexLock lock(&mu_);
  return OverlappingLocked(PageRange{0, kPageRangeToInfinity});
}

std::vector<BusyRangeMap::BlockInfo> BusyRangeMap::Blocks() const {
  absl::MutexLock lock(&mu_);
  std::vector<BlockInfo> out;
  for (const auto& [id, block] : blocks_) {
    out.push_back(BlockInfo{id, block.range, block.reason, block.remaining});
  }
  std::sort(out.begin(), out.end(),
            [](const BlockInfo& a, const BlockInfo& b) { return a.id < b.id; });
  return out;
}

size_t BusyRangeMap::size() const {
  absl::MutexLock lock(&mu_);
  return slots_.size();
}

bool BusyRangeMap::idle() const {
  absl::MutexLock lock(&mu_);
  return slots_.empty() && blocks_.empty();
}

}  // namespace pinbroker
