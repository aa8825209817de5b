#ifndef TALLY_CRDT_CODEC_H_
#define TALLY_CRDT_CODEC_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "crdt/causal_types.h"
#include "crdt/counters.h"
#include "crdt/crdt.pb.h"
#include "crdt/lww_register.h"

// Binary encoding of CRDT states and deltas (crdt.proto). Decoding checks
// the version, the type and the shape and returns INVALID_ARGUMENT naming
// what is wrong; malformed input never crashes.
namespace tally::crdt {

inline constexpr uint32_t kEncodingVersion = 1;

std::string Encode(const GCounter& c);
std::string Encode(const PNCounter& c);
std::string Encode(const LwwRegister& r);
absl::StatusOr<GCounter> DecodeGCounter(const std::string& data);
absl::StatusOr<PNCounter> DecodePNCounter(const std::string& data);
absl::StatusOr<LwwRegister> DecodeLwwRegister(const std::string& data);

// The causal types, states or deltas alike.
std::string Encode(const Causal<FlagStore>& s);
std::string Encode(const Causal<RegisterStore>& s);
std::string Encode(const Causal<SetStore>& s);
absl::StatusOr<Causal<FlagStore>> DecodeEWFlag(const std::string& data);
absl::StatusOr<Causal<RegisterStore>> DecodeMVRegister(const std::string& data);
absl::StatusOr<Causal<SetStore>> DecodeAWSet(const std::string& data);

// Maps of any nested store.
template <typename S>
std::string Encode(const Causal<MapStore<S>>& s);
template <typename S>
absl::StatusOr<Causal<MapStore<S>>> DecodeAWMap(const std::string& data);

// ---- Building blocks, exposed for the templates above.
namespace codec_internal {

void ToProto(const DotContext& c, proto::DotContext* out);
absl::Status FromProto(const proto::DotContext& in, DotContext* out);
void ToProto(const DotSet& s, proto::DotStore* out);
void ToProto(const DotFun<std::string>& s, proto::DotStore* out);
absl::Status FromProto(const proto::DotStore& in, DotSet* out);
absl::Status FromProto(const proto::DotStore& in, DotFun<std::string>* out);
// Every dot of the store is in the context: a causal state's invariant.
absl::Status CheckCovered(const DotContext& store_dots, const DotContext& c);
absl::StatusOr<proto::Envelope> Open(const std::string& data, proto::Type type);
std::string Seal(proto::Envelope& e, proto::Type type);

template <typename S>
void ToProto(const DotMap<std::string, S>& m, proto::DotStore* out) {
  proto::DotMap* pm = out->mutable_map();
  for (const auto& [k, v] : m) {
    pm->add_keys(k);
    ToProto(v, pm->add_values());
  }
}

template <typename S>
absl::Status FromProto(const proto::DotStore& in, DotMap<std::string, S>* out) {
  if (in.kind_case() != proto::DotStore::kMap) {
    return absl::InvalidArgumentError("expected a map of dot stores");
  }
  const proto::DotMap& pm = in.map();
  if (pm.keys_size() != pm.values_size()) {
    return absl::InvalidArgumentError("map keys and values differ in number");
  }
  for (int i = 0; i < pm.keys_size(); ++i) {
    S v;
    if (absl::Status st = FromProto(pm.values(i), &v); !st.ok()) return st;
    if (IsEmpty(v)) continue;  // an empty value is an absent key
    if (!out->emplace(pm.keys(i), std::move(v)).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("map key \"", pm.keys(i), "\" appears twice"));
    }
  }
  return absl::OkStatus();
}

template <typename S>
std::string EncodeCausal(const Causal<S>& s, proto::Type type) {
  proto::Envelope e;
  ToProto(s.store, e.mutable_store());
  ToProto(s.context, e.mutable_context());
  return Seal(e, type);
}

template <typename S>
absl::StatusOr<Causal<S>> DecodeCausal(const std::string& data,
                                       proto::Type type) {
  absl::StatusOr<proto::Envelope> e = Open(data, type);
  if (!e.ok()) return e.status();
  Causal<S> out;
  if (absl::Status st = FromProto(e->store(), &out.store); !st.ok()) return st;
  if (absl::Status st = FromProto(e->context(), &out.context); !st.ok()) {
    return st;
  }
  DotContext dots;
  CollectDots(out.store, &dots);
  if (absl::Status st = CheckCovered(dots, out.context); !st.ok()) return st;
  return out;
}

}  // namespace codec_internal

template <typename S>
std::string Encode(const Causal<MapStore<S>>& s) {
  return codec_internal::EncodeCausal(s, proto::AW_MAP);
}
template <typename S>
absl::StatusOr<Causal<MapStore<S>>> DecodeAWMap(const std::string& data) {
  return codec_internal::DecodeCausal<MapStore<S>>(data, proto::AW_MAP);
}

}  // namespace tally::crdt

#endif  // TALLY_CRDT_CODEC_H_
