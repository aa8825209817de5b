#include "clocks/dotted.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "clocks/varint.h"

namespace tally::clocks {

namespace {
constexpr uint8_t kEncodingVersion = 1;
}  // namespace

Order DottedVersion::Compare(const DottedVersion& other) const {
  if (dot == other.dot) return Order::kEqual;
  if (CoveredBy(other.past)) return Order::kBefore;
  if (other.CoveredBy(past)) return Order::kAfter;
  return Order::kConcurrent;
}

VersionVector DvvSet::Context() const {
  VersionVector vv;
  for (const auto& [r, e] : entries_) vv.Observe(r, e.n);
  return vv;
}

std::vector<std::string> DvvSet::Values() const {
  std::vector<std::string> out;
  for (const auto& [r, e] : entries_) {
    out.insert(out.end(), e.values.begin(), e.values.end());
  }
  return out;
}

void DvvSet::Discard(const VersionVector& context) {
  for (auto& [r, e] : entries_) {
    // Keep the events above what the context knows of r.
    const uint64_t seen = context.Get(r);
    const uint64_t keep = e.n > seen ? e.n - seen : 0;
    if (e.values.size() > keep) e.values.resize(keep);
  }
}

void DvvSet::Update(const VersionVector& context, ReplicaId replica,
                    std::string value) {
  Discard(context);
  for (const auto& [r, e] : entries_) {
    if (std::find(e.values.begin(), e.values.end(), value) != e.values.end()) {
      return;  // the same write, retried: already here
    }
  }
  Entry& e = entries_[replica];
  e.n = std::max(e.n, context.Get(replica)) + 1;
  e.values.insert(e.values.begin(), std::move(value));
}

void DvvSet::Sync(const DvvSet& other) {
  for (const auto& [r, theirs] : other.entries_) {
    auto it = entries_.find(r);
    if (it == entries_.end()) {
      entries_[r] = theirs;
      continue;
    }
    Entry& ours = it->second;
    // The side that knows more events of r keeps its values above what the
    // other side has already overwritten.
    const Entry& hi = ours.n >= theirs.n ? ours : theirs;
    const Entry& lo = ours.n >= theirs.n ? theirs : ours;
    const uint64_t keep = hi.n - lo.n + lo.values.size();
    Entry merged{hi.n, std::vector<std::string>(
                           hi.values.begin(),
                           hi.values.begin() +
                               std::min<uint64_t>(keep, hi.values.size()))};
    ours = std::move(merged);
  }
}

std::string DvvSet::Encode() const {
  std::string out(1, static_cast<char>(kEncodingVersion));
  PutVarint(&out, entries_.size());
  for (const auto& [r, e] : entries_) {
    PutVarint(&out, r);
    PutVarint(&out, e.n);
    PutVarint(&out, e.values.size());
    for (const std::string& v : e.values) {
      PutVarint(&out, v.size());
      out += v;
    }
  }
  return out;
}

absl::StatusOr<DvvSet> DvvSet::Decode(const std::string& data) {
  if (data.empty() || static_cast<uint8_t>(data[0]) != kEncodingVersion) {
    return absl::InvalidArgumentError("not a version-1 DVVSet encoding");
  }
  size_t pos = 1;
  uint64_t entries = 0;
  if (!GetVarint(data, &pos, &entries) || entries > data.size()) {
    return absl::InvalidArgumentError("malformed DVVSet size");
  }
  DvvSet out;
  for (uint64_t i = 0; i < entries; ++i) {
    uint64_t r = 0, n = 0, count = 0;
    if (!GetVarint(data, &pos, &r) || !GetVarint(data, &pos, &n) ||
        !GetVarint(data, &pos, &count) || count > n || count > data.size()) {
      return absl::InvalidArgumentError("malformed DVVSet entry");
    }
    Entry e{n, {}};
    for (uint64_t j = 0; j < count; ++j) {
      uint64_t len = 0;
      if (!GetVarint(data, &pos, &len) || len > data.size() - pos) {
        return absl::InvalidArgumentError("truncated DVVSet value");
      }
      e.values.push_back(data.substr(pos, len));
      pos += len;
    }
    if (!out.entries_.emplace(r, std::move(e)).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("DVVSet names replica ", r, " twice"));
    }
  }
  if (pos != data.size()) {
    return absl::InvalidArgumentError("trailing bytes after DVVSet");
  }
  return out;
}

}  // namespace tally::clocks
