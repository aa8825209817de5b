#ifndef TALLY_UTIL_HASH_H_
#define TALLY_UTIL_HASH_H_

#include <cstdint>
#include <string_view>

namespace tally::util {

// 64-bit FNV-1a: the same value for the same bytes on every build and
// machine (unlike std::hash), for ids and fingerprints that are stored or
// sent. Not for anything an adversary chooses.
inline uint64_t Fnv1a64(std::string_view bytes) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : bytes) h = (h ^ c) * 1099511628211ull;
  return h;
}

}  // namespace tally::util

#endif  // TALLY_UTIL_HASH_H_
