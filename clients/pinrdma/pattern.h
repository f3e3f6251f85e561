// The byte pattern pinrdma writes and verifies: a function of a seed and the absolute file
// offset, so a read verifies a write whatever the chunking, lease offset or pin range was.
// Also a checksum for reads without a pattern.
//
// Thread-safety: stateless; safe from any thread.
#pragma once

#include <cstddef>
#include <cstdint>

namespace pinrdma {

// The 8 bytes of the pattern at file offset `word * 8` (little-endian order in memory).
uint64_t PatternWord(uint64_t seed, uint64_t word);
// Fills `out[0, n)` with the pattern of the file bytes [file_offset, file_offset + n).
void FillPattern(uint64_t seed, uint64_t file_offset, uint8_t* out, size_t n);
// The pattern byte at one file offset.
uint8_t PatternByte(uint64_t seed, uint64_t file_offset);

// How `data[0, n)` (the file bytes from `file_offset`) compares with the pattern.
struct Mismatch {
  size_t first = 0;  // Index of the first differing byte (valid if count > 0).
  size_t count = 0;  // Differing bytes.
};
Mismatch CompareWithPattern(uint64_t seed, uint64_t file_offset, const uint8_t* data, size_t n);

// FNV-1a, 64 bit; chain calls with `h` to checksum data in pieces.
inline constexpr uint64_t kFnvBasis = 0xcbf29ce484222325ull;
uint64_t Fnv1a64(const uint8_t* data, size_t n, uint64_t h = kFnvBasis);

}  // namespace pinrdma
