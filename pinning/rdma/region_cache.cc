#include "pinning/rdma/region_cache.h"

#include <algorithm>
#include <utility>

namespace pinbroker::rdma {

std::optional<RegionCache::Id> RegionCache::AcquireExisting(const RegionKey& key, uint64_t end) {
  auto file = files_.find(key.file);
  if (file == files_.end()) return std::nullopt;
  for (Id id : file->second.regions) {
    Region& r = regions_.at(id);
    if (r.key == key && !r.stale && !r.superseded && r.length >= end) {
      ++r.windows;
      return id;
    }
  }
  return std::nullopt;
}

RegionCache::Ticket RegionCache::BeginRegistration(const FileId& file) {
  ++files_[file].registrations_in_progress;
  return Ticket{file, seq_};
}

void RegionCache::Abandon(const Ticket& ticket) {
  auto it = files_.find(ticket.file);
  if (it == files_.end()) return;
  --it->second.registrations_in_progress;
  PruneFile(ticket.file);
}

RegionCache::Id RegionCache::Insert(const Ticket& ticket, const RegionKey& key, uint64_t length,
                                    std::unique_ptr<RegionResources> resources,
                                    Released* released) {
  FileLayout& file = files_[key.file];
  --file.registrations_in_progress;
  const bool overlapped_change = file.changes_in_progress > 0 || file.last_change_seq > ticket.seq;
  const bool stale = key.mode == RegistrationMode::kPinned && overlapped_change;
  if (!stale) {
    // Another pin registered a region that serves this one meanwhile: share it.
    for (Id id : file.regions) {
      Region& r = regions_.at(id);
      if (r.key == key && !r.stale && !r.superseded && r.length >= length) {
        ++r.windows;
        released->push_back(std::move(resources));
        return id;
      }
    }
    // The new region serves every later lease of the key; older ones only keep their windows.
    for (auto it = file.regions.begin(); it != file.regions.end();) {
      auto region = regions_.find(*it);
      if (region->second.key == key && !region->second.superseded) {
        region->second.superseded = true;
        if (region->second.windows == 0) {
          released->push_back(std::move(region->second.resources));
          regions_.erase(region);
          it = file.regions.erase(it);
          continue;
        }
      }
      ++it;
    }
  }
  const Id id = next_id_++;
  Region& r = regions_[id];
  r.key = key;
  r.length = length;
  r.windows = 1;
  r.stale = stale;
  r.resources = std::move(resources);
  file.regions.push_back(id);
  return id;
}

const RegionCache::Region* RegionCache::Get(Id id) const {
  auto it = regions_.find(id);
  return it == regions_.end() ? nullptr : &it->second;
}

void RegionCache::ReleaseWindow(Id id, Released* released) {
  auto it = regions_.find(id);
  if (it == regions_.end() || it->second.windows == 0) return;
  if (--it->second.windows == 0) Erase(it, released);
}

void RegionCache::Erase(absl::btree_map<Id, Region>::iterator it, Released* released) {
  const FileId file = it->second.key.file;
  released->push_back(std::move(it->second.resources));
  auto& ids = files_[file].regions;
  ids.erase(std::remove(ids.begin(), ids.end(), it->first), ids.end());
  regions_.erase(it);
  PruneFile(file);
}

void RegionCache::BeginLayoutChange(const FileId& file, ByteRange changed) {
  FileLayout& layout = files_[file];
  layout.last_change_seq = ++seq_;
  ++layout.changes_in_progress;
  for (Id id : layout.regions) {
    Region& r = regions_.at(id);
    // Every region starts at file offset 0; it covers changed bytes if it reaches past their start.
    if (r.key.mode == RegistrationMode::kPinned && changed.length > 0 &&
        r.length > changed.offset) {
      r.stale = true;
    }
  }
}

void RegionCache::EndLayoutChange(const FileId& file) {
  auto it = files_.find(file);
  if (it == files_.end() || it->second.changes_in_progress == 0) return;
  --it->second.changes_in_progress;
  PruneFile(file);
}

std::vector<RegistrationInfo> RegionCache::List(const FileId& file) const {
  std::vector<RegistrationInfo> out;
  auto it = files_.find(file);
  if (it == files_.end()) return out;
  for (Id id : it->second.regions) {
    const Region& r = regions_.at(id);
    RegistrationInfo info;
    info.device = r.key.device;
    info.mode = r.key.mode;
    info.range = ByteRange{0, r.length};
    info.windows = r.windows;
    info.stale = r.stale;
    out.push_back(std::move(info));
  }
  return out;
}

RegionCache::Released RegionCache::TakeAll() {
  Released out;
  for (auto& [id, region] : regions_) out.push_back(std::move(region.resources));
  regions_.clear();
  files_.clear();
  return out;
}

void RegionCache::PruneFile(const FileId& file) {
  auto it = files_.find(file);
  if (it == files_.end()) return;
  const FileLayout& l = it->second;
  // A file's change history matters only while a registration could have overlapped it.
  if (l.changes_in_progress == 0 && l.registrations_in_progress == 0 && l.regions.empty()) {
    files_.erase(it);
  }
}

}  // namespace pinbroker::rdma
