#ifndef TALLY_CLOCKS_VARINT_H_
#define TALLY_CLOCKS_VARINT_H_

#include <cstdint>
#include <string>

namespace tally::clocks {

// LEB128 varints, for compact encodings.
inline void PutVarint(std::string* out, uint64_t v) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

// Reads a varint at *pos; false if truncated or over 10 bytes.
inline bool GetVarint(const std::string& in, size_t* pos, uint64_t* v) {
  *v = 0;
  for (int shift = 0; shift < 64 && *pos < in.size(); shift += 7) {
    const uint8_t b = static_cast<uint8_t>(in[(*pos)++]);
    *v |= static_cast<uint64_t>(b & 0x7f) << shift;
    if ((b & 0x80) == 0) return true;
  }
  return false;
}

}  // namespace tally::clocks

#endif  // TALLY_CLOCKS_VARINT_H_
