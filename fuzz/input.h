#ifndef TALLY_FUZZ_INPUT_H_
#define TALLY_FUZZ_INPUT_H_

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "google/protobuf/stubs/logging.h"

// What the fuzz targets share: a reader that cuts the fuzzer's bytes into
// small numbers and length-prefixed pieces, and a check that aborts (so the
// fuzzer keeps the input) with a message.
namespace tally::fuzz {

class Input {
 public:
  Input(const uint8_t* data, size_t size)
      : rest_(reinterpret_cast<const char*>(data), size) {}

  bool empty() const { return rest_.empty(); }
  // The next byte, 0 once the input is used up.
  uint8_t Byte() {
    if (rest_.empty()) return 0;
    const uint8_t b = static_cast<uint8_t>(rest_[0]);
    rest_.remove_prefix(1);
    return b;
  }
  // A piece of up to 65,535 bytes: a two-byte little-endian length, then
  // that many bytes (fewer at the end of the input).
  std::string Piece() {
    const size_t n = Byte() | (static_cast<size_t>(Byte()) << 8);
    const std::string_view p = rest_.substr(0, n);
    rest_.remove_prefix(p.size());
    return std::string(p);
  }
  std::string Rest() {
    std::string r(rest_);
    rest_ = {};
    return r;
  }

 private:
  std::string_view rest_;
};

// Appends `piece` as Input::Piece reads it (for seeds).
inline void AppendPiece(std::string* out, std::string_view piece) {
  out->push_back(static_cast<char>(piece.size() & 0xff));
  out->push_back(static_cast<char>((piece.size() >> 8) & 0xff));
  out->append(piece.substr(0, 0xffff));
}

// Protobuf logs every malformed string field it parses; the fuzzer makes
// millions of them.
inline const bool kProtobufQuiet = [] {
  google::protobuf::SetLogHandler(nullptr);
  return true;
}();

[[noreturn]] inline void Fail(const char* file, int line, const char* what) {
  std::fprintf(stderr, "%s:%d: fuzz check failed: %s\n", file, line, what);
  std::abort();
}

}  // namespace tally::fuzz

#define TALLY_FUZZ_CHECK(cond)                                   \
  do {                                                           \
    if (!(cond)) ::tally::fuzz::Fail(__FILE__, __LINE__, #cond); \
  } while (0)

#endif  // TALLY_FUZZ_INPUT_H_
