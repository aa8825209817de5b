#include "kv/crdt_table/causal_entry.h"

#include <algorithm>
#include <iterator>
#include <map>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "clocks/varint.h"
#include "crdt/codec.h"

namespace tally::kv::crdt_entry {

std::string EncodeVector(const CrdtVector& v) {
  std::string out;
  clocks::PutVarint(&out, v.size());
  for (const auto& [r, n] : v) {
    clocks::PutVarint(&out, r);
    clocks::PutVarint(&out, n);
  }
  return out;
}
absl::StatusOr<CrdtVector> DecodeVector(const std::optional<std::string>& in) {
  CrdtVector v;
  if (!in) return v;
  size_t at = 0;
  uint64_t n = 0;
  if (!clocks::GetVarint(*in, &at, &n) || n > in->size()) {
    return absl::DataLossError("malformed version vector in the CRDT store");
  }
  for (uint64_t i = 0; i < n; ++i) {
    uint64_t r = 0, c = 0;
    if (!clocks::GetVarint(*in, &at, &r) || !clocks::GetVarint(*in, &at, &c)) {
      return absl::DataLossError("malformed version vector in the CRDT store");
    }
    v[r] = c;
  }
  return v;
}

bool Below(const CrdtVector& f, const crdt::Dot& d) {
  auto it = f.find(d.replica);
  return it != f.end() && d.counter <= it->second;
}

DotContext AboveOnly(const DotContext& c, const CrdtVector& floor) {
  std::map<crdt::ReplicaId, uint64_t> compact = c.compact();
  std::erase_if(compact, [&](const auto& rn) {
    return Below(floor, crdt::Dot{rn.first, rn.second});
  });
  std::set<crdt::Dot> cloud = c.cloud();
  std::erase_if(cloud, [&](const crdt::Dot& d) { return Below(floor, d); });
  return DotContext::FromParts(std::move(compact), std::move(cloud));
}

Causal<FlagStore> Event(const FlagStore& store, const crdt::Dot& dot) {
  Causal<FlagStore> d;
  d.store.insert(dot);
  crdt::CollectDots(store, &d.context);
  d.context.Insert(dot);
  return d;
}

namespace {

void PutDots(std::string* out, const std::set<crdt::Dot>& dots) {
  clocks::PutVarint(out, dots.size());
  for (const crdt::Dot& d : dots) {
    clocks::PutVarint(out, d.replica);
    clocks::PutVarint(out, d.counter);
  }
}
}  // namespace

std::string EncodeFlag(const Causal<FlagStore>& f) {
  std::string out(1, '\x02');
  PutDots(&out, f.store);
  clocks::PutVarint(&out, f.context.compact().size());
  for (const auto& [r, n] : f.context.compact()) {
    clocks::PutVarint(&out, r);
    clocks::PutVarint(&out, n);
  }
  std::set<crdt::Dot> others;
  std::set_difference(f.context.cloud().begin(), f.context.cloud().end(),
                      f.store.begin(), f.store.end(),
                      std::inserter(others, others.end()));
  PutDots(&out, others);
  return out;
}
absl::StatusOr<Causal<FlagStore>> DecodeFlag(const std::string& in) {
  auto bad = [](const char* why) {
    return absl::InvalidArgumentError(
        absl::StrCat("flag does not decode: ", why));
  };
  if (in.empty() || in[0] != '\x02') return bad("unknown version");
  size_t at = 1;
  auto dots = [&](std::set<crdt::Dot>* out) {
    uint64_t n = 0;
    if (!clocks::GetVarint(in, &at, &n) || n > in.size()) return false;
    for (uint64_t i = 0; i < n; ++i) {
      crdt::Dot d;
      if (!clocks::GetVarint(in, &at, &d.replica) ||
          !clocks::GetVarint(in, &at, &d.counter) || d.replica == 0 ||
          d.counter == 0 || (!out->empty() && !(*out->rbegin() < d))) {
        return false;
      }
      out->insert(d);
    }
    return true;
  };
  Causal<FlagStore> f;
  if (!dots(&f.store)) return bad("bad dots");
  uint64_t n = 0;
  std::map<crdt::ReplicaId, uint64_t> compact;
  if (!clocks::GetVarint(in, &at, &n) || n > in.size()) return bad("bad count");
  for (uint64_t i = 0; i < n; ++i) {
    uint64_t r = 0, c = 0;
    if (!clocks::GetVarint(in, &at, &r) || !clocks::GetVarint(in, &at, &c)) {
      return bad("bad context");
    }
    compact[r] = c;
  }
  std::set<crdt::Dot> cloud;
  if (!dots(&cloud)) return bad("bad context");
  if (at != in.size()) return bad("trailing bytes");
  cloud.insert(f.store.begin(), f.store.end());
  f.context = DotContext::FromParts(std::move(compact), std::move(cloud));
  return f;
}
std::string EncodeCausal(const Causal<FlagStore>& f) { return EncodeFlag(f); }
std::string EncodeCausal(const Causal<RegisterStore>& r) {
  return crdt::Encode(r);
}

bool LiveElement(const std::optional<std::string>& v) {
  bool live = false;
  if (v) VisitCausal(*v, [&](const auto& s) { live = !s.store.empty(); });
  return live;
}

}  // namespace tally::kv::crdt_entry
