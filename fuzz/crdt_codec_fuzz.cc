// Every CRDT decoder (crdt/codec.h) on bytes from a peer or from disk. What
// decodes must encode back to what decodes the same, and the join laws must
// hold on any two decoded states: idempotent, commutative.
#include <cstddef>
#include <cstdint>
#include <string>

#include "crdt/codec.h"
#include "fuzz/input.h"

namespace {

using namespace tally::crdt;  // NOLINT(build/namespaces): one type per case

// T's decoder, by type; Encode and Merge are overloaded already.
template <typename T>
struct Codec;
template <>
struct Codec<GCounter> {
  static absl::StatusOr<GCounter> Decode(const std::string& d) {
    return DecodeGCounter(d);
  }
};
template <>
struct Codec<PNCounter> {
  static absl::StatusOr<PNCounter> Decode(const std::string& d) {
    return DecodePNCounter(d);
  }
};
template <>
struct Codec<LwwRegister> {
  static absl::StatusOr<LwwRegister> Decode(const std::string& d) {
    return DecodeLwwRegister(d);
  }
};
template <>
struct Codec<Causal<FlagStore>> {
  static auto Decode(const std::string& d) { return DecodeEWFlag(d); }
};
template <>
struct Codec<Causal<RegisterStore>> {
  static auto Decode(const std::string& d) { return DecodeMVRegister(d); }
};
template <>
struct Codec<Causal<SetStore>> {
  static auto Decode(const std::string& d) { return DecodeAWSet(d); }
};
template <>
struct Codec<Causal<MapStore<SetStore>>> {
  static auto Decode(const std::string& d) { return DecodeAWMap<SetStore>(d); }
};
template <>
struct Codec<Causal<MapStore<RegisterStore>>> {
  static auto Decode(const std::string& d) {
    return DecodeAWMap<RegisterStore>(d);
  }
};

template <typename T>
void Check(const std::string& a_bytes, const std::string& b_bytes) {
  absl::StatusOr<T> a = Codec<T>::Decode(a_bytes);
  if (!a.ok()) return;
  const std::string encoded = Encode(*a);
  absl::StatusOr<T> again = Codec<T>::Decode(encoded);
  TALLY_FUZZ_CHECK(again.ok());
  TALLY_FUZZ_CHECK(*again == *a);
  TALLY_FUZZ_CHECK(Encode(*again) == encoded);

  T self = *a;
  self.Merge(*a);
  TALLY_FUZZ_CHECK(self == *a);

  absl::StatusOr<T> b = Codec<T>::Decode(b_bytes);
  if (!b.ok()) return;
  T ab = *a;
  ab.Merge(*b);
  T ba = *b;
  ba.Merge(*a);
  TALLY_FUZZ_CHECK(ab == ba);
  TALLY_FUZZ_CHECK(Codec<T>::Decode(Encode(ab)).ok());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tally::fuzz::Input in(data, size);
  const uint8_t type = in.Byte();
  const std::string a = in.Piece();
  const std::string b = in.Rest();
  switch (type % 8) {
    case 0:
      Check<GCounter>(a, b);
      break;
    case 1:
      Check<PNCounter>(a, b);
      break;
    case 2:
      Check<LwwRegister>(a, b);
      break;
    case 3:
      Check<Causal<FlagStore>>(a, b);
      break;
    case 4:
      Check<Causal<RegisterStore>>(a, b);
      break;
    case 5:
      Check<Causal<SetStore>>(a, b);
      break;
    case 6:
      Check<Causal<MapStore<SetStore>>>(a, b);
      break;
    case 7:
      Check<Causal<MapStore<RegisterStore>>>(a, b);
      break;
  }
  return 0;
}
