#include "clocks/version_vector.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "clocks/varint.h"

namespace tally::clocks {

namespace {
constexpr uint8_t kEncodingVersion = 1;
}  // namespace

const char* OrderName(Order o) {
  switch (o) {
    case Order::kBefore:
      return "before";
    case Order::kAfter:
      return "after";
    case Order::kEqual:
      return "equal";
    case Order::kConcurrent:
      return "concurrent";
  }
  return "?";
}

VersionVector::VersionVector(std::map<ReplicaId, uint64_t> counts)
    : counts_(std::move(counts)) {
  std::erase_if(counts_, [](const auto& kv) { return kv.second == 0; });
}

uint64_t VersionVector::Get(ReplicaId r) const {
  auto it = counts_.find(r);
  return it == counts_.end() ? 0 : it->second;
}

uint64_t VersionVector::Increment(ReplicaId r) { return ++counts_[r]; }

void VersionVector::Observe(ReplicaId r, uint64_t n) {
  if (n == 0) return;
  uint64_t& c = counts_[r];
  c = std::max(c, n);
}

void VersionVector::Merge(const VersionVector& other) {
  for (const auto& [r, n] : other.counts_) Observe(r, n);
}

bool VersionVector::Dominates(const VersionVector& other) const {
  for (const auto& [r, n] : other.counts_) {
    if (Get(r) < n) return false;
  }
  return true;
}

Order VersionVector::Compare(const VersionVector& other) const {
  const bool ge = Dominates(other), le = other.Dominates(*this);
  if (ge && le) return Order::kEqual;
  if (le) return Order::kBefore;
  if (ge) return Order::kAfter;
  return Order::kConcurrent;
}

std::string VersionVector::Encode() const {
  std::string out(1, static_cast<char>(kEncodingVersion));
  PutVarint(&out, counts_.size());
  ReplicaId prev = 0;
  for (const auto& [r, n] : counts_) {
    PutVarint(&out, r - prev);  // ascending: deltas stay small
    PutVarint(&out, n);
    prev = r;
  }
  return out;
}

absl::StatusOr<VersionVector> VersionVector::Decode(const std::string& data) {
  if (data.empty()) return absl::InvalidArgumentError("empty version vector");
  if (static_cast<uint8_t>(data[0]) != kEncodingVersion) {
    return absl::InvalidArgumentError(absl::StrCat(
        "unknown version vector encoding ", static_cast<int>(data[0])));
  }
  size_t pos = 1;
  uint64_t size = 0;
  if (!GetVarint(data, &pos, &size) || size > data.size()) {
    return absl::InvalidArgumentError("malformed version vector length");
  }
  std::map<ReplicaId, uint64_t> counts;
  ReplicaId prev = 0;
  for (uint64_t i = 0; i < size; ++i) {
    uint64_t delta = 0, n = 0;
    if (!GetVarint(data, &pos, &delta) || !GetVarint(data, &pos, &n)) {
      return absl::InvalidArgumentError("truncated version vector");
    }
    if ((i > 0 && delta == 0) || n == 0 || prev + delta < prev) {
      return absl::InvalidArgumentError(
          "version vector entries must be ascending and non-zero");
    }
    prev += delta;
    counts[prev] = n;
  }
  if (pos != data.size()) {
    return absl::InvalidArgumentError("trailing bytes after version vector");
  }
  return VersionVector(std::move(counts));
}

std::string VersionVector::ToString() const {
  std::string out = "{";
  for (const auto& [r, n] : counts_) {
    absl::StrAppend(&out, out.size() > 1 ? " " : "", r, ":", n);
  }
  return out + "}";
}

}  // namespace tally::clocks
