#include "crdt/codec.h"

#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"

namespace tally::crdt {

namespace codec_internal {

namespace {

absl::Status DotFromProto(const proto::Dot& in, Dot* out) {
  if (in.replica() == 0 || in.counter() == 0) {
    return absl::InvalidArgumentError("a dot needs a replica and a counter");
  }
  *out = {in.replica(), in.counter()};
  return absl::OkStatus();
}

}  // namespace

void ToProto(const DotContext& c, proto::DotContext* out) {
  for (const auto& [r, n] : c.compact()) (*out->mutable_compact())[r] = n;
  for (const Dot& d : c.cloud()) {
    proto::Dot* pd = out->add_cloud();
    pd->set_replica(d.replica);
    pd->set_counter(d.counter);
  }
}

absl::Status FromProto(const proto::DotContext& in, DotContext* out) {
  std::map<ReplicaId, uint64_t> compact(in.compact().begin(),
                                        in.compact().end());
  if (compact.contains(0)) {
    return absl::InvalidArgumentError("causal context names replica 0");
  }
  std::set<Dot> cloud;
  for (const proto::Dot& pd : in.cloud()) {
    Dot d;
    if (absl::Status st = DotFromProto(pd, &d); !st.ok()) return st;
    cloud.insert(d);
  }
  *out = DotContext::FromParts(std::move(compact), std::move(cloud));
  return absl::OkStatus();
}

void ToProto(const DotSet& s, proto::DotStore* out) {
  proto::DotSet* ps = out->mutable_set();
  for (const Dot& d : s) {
    proto::Dot* pd = ps->add_dots();
    pd->set_replica(d.replica);
    pd->set_counter(d.counter);
  }
}

void ToProto(const DotFun<std::string>& s, proto::DotStore* out) {
  proto::DotFun* pf = out->mutable_fun();
  for (const auto& [d, v] : s) {
    proto::Dot* pd = pf->add_dots();
    pd->set_replica(d.replica);
    pd->set_counter(d.counter);
    pf->add_values(v);
  }
}

absl::Status FromProto(const proto::DotStore& in, DotSet* out) {
  if (in.kind_case() != proto::DotStore::kSet) {
    return absl::InvalidArgumentError("expected a dot set");
  }
  for (const proto::Dot& pd : in.set().dots()) {
    Dot d;
    if (absl::Status st = DotFromProto(pd, &d); !st.ok()) return st;
    out->insert(d);
  }
  return absl::OkStatus();
}

absl::Status FromProto(const proto::DotStore& in, DotFun<std::string>* out) {
  if (in.kind_case() != proto::DotStore::kFun) {
    return absl::InvalidArgumentError("expected a dot function");
  }
  const proto::DotFun& pf = in.fun();
  if (pf.dots_size() != pf.values_size()) {
    return absl::InvalidArgumentError("dots and values differ in number");
  }
  for (int i = 0; i < pf.dots_size(); ++i) {
    Dot d;
    if (absl::Status st = DotFromProto(pf.dots(i), &d); !st.ok()) return st;
    if (!out->emplace(d, pf.values(i)).second) {
      return absl::InvalidArgumentError("a dot carries two values");
    }
  }
  return absl::OkStatus();
}

absl::Status CheckCovered(const DotContext& store_dots, const DotContext& c) {
  for (const auto& [r, n] : store_dots.compact()) {
    if (c.Max(r) < n) {
      return absl::InvalidArgumentError(
          "the store holds dots its causal context has not seen");
    }
  }
  for (const Dot& d : store_dots.cloud()) {
    if (!c.Contains(d)) {
      return absl::InvalidArgumentError(
          "the store holds dots its causal context has not seen");
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<proto::Envelope> Open(const std::string& data,
                                     proto::Type type) {
  proto::Envelope e;
  if (!e.ParseFromString(data)) {
    return absl::InvalidArgumentError("not a CRDT encoding");
  }
  if (e.version() != kEncodingVersion) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown CRDT encoding version ", e.version()));
  }
  if (e.type() != type) {
    return absl::InvalidArgumentError(
        absl::StrCat("expected a ", proto::Type_Name(type), ", got a ",
                     proto::Type_Name(e.type())));
  }
  return e;
}

std::string Seal(proto::Envelope& e, proto::Type type) {
  e.set_version(kEncodingVersion);
  e.set_type(type);
  // Deterministic: map entries in key order, so that equal states encode
  // to equal bytes (replicas compare digests of encodings).
  std::string out;
  google::protobuf::io::StringOutputStream stream(&out);
  google::protobuf::io::CodedOutputStream coded(&stream);
  coded.SetSerializationDeterministic(true);
  e.SerializeToCodedStream(&coded);
  coded.Trim();
  return out;
}

}  // namespace codec_internal

using codec_internal::DecodeCausal;
using codec_internal::EncodeCausal;

namespace {

void ToProto(const GCounter& c, proto::GCounter* out) {
  for (const auto& [r, n] : c.counts()) (*out->mutable_counts())[r] = n;
}

absl::StatusOr<GCounter> FromProto(const proto::GCounter& in) {
  std::map<ReplicaId, uint64_t> counts;
  for (const auto& [r, n] : in.counts()) {
    if (r == 0) return absl::InvalidArgumentError("counter of replica 0");
    if (n != 0) counts[r] = n;
  }
  return GCounter::FromCounts(std::move(counts));
}

}  // namespace

std::string Encode(const GCounter& c) {
  proto::Envelope e;
  ToProto(c, e.mutable_increments());
  return codec_internal::Seal(e, proto::G_COUNTER);
}

std::string Encode(const PNCounter& c) {
  proto::Envelope e;
  ToProto(c.increments(), e.mutable_increments());
  ToProto(c.decrements(), e.mutable_decrements());
  return codec_internal::Seal(e, proto::PN_COUNTER);
}

std::string Encode(const LwwRegister& r) {
  proto::Envelope e;
  proto::LwwRegister* p = e.mutable_lww();
  p->set_timestamp(r.timestamp().Pack());
  p->set_replica(r.replica());
  p->set_value(r.value());
  p->set_set(r.is_set());
  return codec_internal::Seal(e, proto::LWW_REGISTER);
}

absl::StatusOr<GCounter> DecodeGCounter(const std::string& data) {
  absl::StatusOr<proto::Envelope> e =
      codec_internal::Open(data, proto::G_COUNTER);
  if (!e.ok()) return e.status();
  return FromProto(e->increments());
}

absl::StatusOr<PNCounter> DecodePNCounter(const std::string& data) {
  absl::StatusOr<proto::Envelope> e =
      codec_internal::Open(data, proto::PN_COUNTER);
  if (!e.ok()) return e.status();
  absl::StatusOr<GCounter> p = FromProto(e->increments());
  if (!p.ok()) return p.status();
  absl::StatusOr<GCounter> n = FromProto(e->decrements());
  if (!n.ok()) return n.status();
  return PNCounter::FromParts(std::move(*p), std::move(*n));
}

absl::StatusOr<LwwRegister> DecodeLwwRegister(const std::string& data) {
  absl::StatusOr<proto::Envelope> e =
      codec_internal::Open(data, proto::LWW_REGISTER);
  if (!e.ok()) return e.status();
  LwwRegister r;
  const proto::LwwRegister& p = e->lww();
  if (p.set()) {
    if (p.replica() == 0) {
      return absl::InvalidArgumentError("register written by replica 0");
    }
    r.Set(clocks::HlcTimestamp::Unpack(p.timestamp()), p.replica(), p.value());
  }
  return r;
}

std::string Encode(const Causal<FlagStore>& s) {
  return EncodeCausal(s, proto::EW_FLAG);
}
std::string Encode(const Causal<RegisterStore>& s) {
  return EncodeCausal(s, proto::MV_REGISTER);
}
std::string Encode(const Causal<SetStore>& s) {
  return EncodeCausal(s, proto::AW_SET);
}
absl::StatusOr<Causal<FlagStore>> DecodeEWFlag(const std::string& data) {
  return DecodeCausal<FlagStore>(data, proto::EW_FLAG);
}
absl::StatusOr<Causal<RegisterStore>> DecodeMVRegister(
    const std::string& data) {
  return DecodeCausal<RegisterStore>(data, proto::MV_REGISTER);
}
absl::StatusOr<Causal<SetStore>> DecodeAWSet(const std::string& data) {
  return DecodeCausal<SetStore>(data, proto::AW_SET);
}

}  // namespace tally::crdt
