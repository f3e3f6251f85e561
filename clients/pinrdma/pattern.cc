#include "clients/pinrdma/pattern.h"

#include <cstring>

namespace pinrdma {
namespace {

uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

}  // namespace

uint64_t PatternWord(uint64_t seed, uint64_t word) { return SplitMix64(SplitMix64(seed) ^ word); }

uint8_t PatternByte(uint64_t seed, uint64_t file_offset) {
  return static_cast<uint8_t>(PatternWord(seed, file_offset / 8) >> (8 * (file_offset % 8)));
}

void FillPattern(uint64_t seed, uint64_t file_offset, uint8_t* out, size_t n) {
  size_t i = 0;
  while (i < n && (file_offset + i) % 8 != 0) {
    out[i] = PatternByte(seed, file_offset + i);
    ++i;
  }
  for (; i + 8 <= n; i += 8) {
    const uint64_t w = PatternWord(seed, (file_offset + i) / 8);
    std::memcpy(out + i, &w, 8);  // Little-endian hosts: byte k is bits 8k..8k+7.
  }
  for (; i < n; ++i) out[i] = PatternByte(seed, file_offset + i);
}

Mismatch CompareWithPattern(uint64_t seed, uint64_t file_offset, const uint8_t* data, size_t n) {
  Mismatch m;
  uint8_t want[4096];
  for (size_t done = 0; done < n;) {
    const size_t piece = n - done < sizeof(want) ? n - done : sizeof(want);
    FillPattern(seed, file_offset + done, want, piece);
    if (std::memcmp(want, data + done, piece) != 0) {
      for (size_t i = 0; i < piece; ++i) {
        if (want[i] != data[done + i]) {
          if (m.count == 0) m.first = done + i;
          ++m.count;
        }
      }
    }
    done += piece;
  }
  return m;
}

uint64_t Fnv1a64(const uint8_t* data, size_t n, uint64_t h) {
  for (size_t i = 0; i < n; ++i) {
    h ^= data[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

}  // namespace pinrdma
