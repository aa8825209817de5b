#ifndef TALLY_UTIL_CRC32C_H_
#define TALLY_UTIL_CRC32C_H_

#include <cstdint>
#include <string_view>

namespace tally::util {

// CRC-32C (Castagnoli), the checksum of the raft log's records: the SSE4.2
// instruction where the CPU has it, a table otherwise (same values).
// Extend(Crc32c(a), b) == Crc32c(a + b).
uint32_t Crc32cExtend(uint32_t crc, std::string_view bytes);
inline uint32_t Crc32c(std::string_view bytes) {
  return Crc32cExtend(0, bytes);
}

}  // namespace tally::util

#endif  // TALLY_UTIL_CRC32C_H_
