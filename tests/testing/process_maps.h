// MapCountOf: how many of this process's memory mappings (VMAs, the lines of /proc/self/maps)
// map a given file. Tests of the host backend count only their own file's mappings, so that
// allocator and sanitizer mappings, which come and go, stay out of the check.
//
// Thread-safety: safe to call from any thread.
#pragma once

#include <cstddef>
#include <fstream>
#include <string>

namespace pinbroker::testing {

// The VMAs of this process that map `path` (an absolute path, as /proc/self/maps shows it).
inline size_t MapCountOf(const std::string& path) {
  std::ifstream maps("/proc/self/maps");
  size_t n = 0;
  for (std::string line; std::getline(maps, line);) {
    if (line.size() > path.size() &&
        line.compare(line.size() - path.size(), path.size(), path) == 0 &&
        line[line.size() - path.size() - 1] == ' ') {
      ++n;
    }
  }
  return n;
}

}  // namespace pinbroker::testing
