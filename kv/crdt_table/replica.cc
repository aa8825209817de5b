#include "kv/crdt_table/replica.h"

#include <random>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "clocks/varint.h"
#include "crdt/codec.h"
#include "kv/crdt_table/causal_entry.h"
#include "kv/crdt_table/schema.h"
#include "kv/storage/leveldb_util.h"
#include "util/hash.h"
#include "util/thread_name.h"

namespace tally::kv {

namespace {

using crdt::Causal;
using crdt::DotContext;
using crdt::DotSet;
using crdt::FlagStore;
using crdt::RegisterStore;
using crdt_entry::AboveFloor;
using crdt_entry::DecodeFlag;
using crdt_entry::DecodeVector;
using crdt_entry::EncodeCausal;
using crdt_entry::EncodeFlag;
using crdt_entry::EncodeVector;
using crdt_entry::Event;
using crdt_entry::HasTombstones;
using crdt_entry::JoinCausal;
using crdt_entry::LiveElement;
using crdt_entry::VisitCausal;

// Keys of the replica's engine:
//   "Mreplica"   the replica id (8 bytes, big-endian)
//   "Mhlc"       the hybrid clock's persisted limit (ms, 8 bytes)
//   "Mdot"       the dot counter's persisted limit (8 bytes)
//   "Mseen"      what the replica has seen (EncodeVector)
//   "Mfloor"     the stability cut it collected below (EncodeVector)
//   'V' table(varint) bucket(2) row length(varint) row, then the entry
//   within the row:
//     column \0 's'          a column's state (a crdt/ encoding; a flag's
//                            as EncodeFlag has it)
//     column \0 'e' element  one element of a set: an enable-wins flag
//                            (EncodeFlag)
// Varints are prefix-free, so a table's or a row's prefix is never the
// prefix of another's.
constexpr char kReplicaKey[] = "Mreplica";
constexpr char kHlcKey[] = "Mhlc";
constexpr char kDotKey[] = "Mdot";
constexpr char kSeenKey[] = "Mseen";
constexpr char kFloorKey[] = "Mfloor";
constexpr char kRows = 'V';
constexpr char kState = 's';
constexpr char kElement = 'e';
// How far ahead of the wall clock the persisted hybrid-clock limit is set.
constexpr int64_t kHlcWindowMs = 10'000;
// Remote hybrid timestamps further ahead than this are not followed.
constexpr int64_t kHlcMaxOffsetMs = 60'000;
// How far ahead of the last issued dot the persisted counter limit is set.
constexpr uint64_t kDotBlock = 100'000;

std::string Be(uint64_t v, int bytes) {
  std::string out(bytes, '\0');
  for (int i = bytes - 1; i >= 0; --i, v >>= 8) out[i] = static_cast<char>(v);
  return out;
}
uint64_t ReadBe(std::string_view in, size_t at, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) {
    v = (v << 8) | static_cast<unsigned char>(in[at + i]);
  }
  return v;
}

std::string TablePrefix(uint64_t table) {
  std::string p(1, kRows);
  clocks::PutVarint(&p, table);
  return p;
}
std::string BucketPrefix(uint64_t table, uint32_t bucket) {
  return TablePrefix(table) + Be(bucket, 2);
}
std::string RowPrefix(uint64_t table, const std::string& row) {
  std::string p = BucketPrefix(table, CrdtReplica::BucketOf(row));
  clocks::PutVarint(&p, row.size());
  return p + row;
}
std::string Entry(const std::string& column, char kind,
                  const std::string& element = "") {
  std::string e = column;
  e.push_back('\0');
  e.push_back(kind);
  e.append(element);
  return e;
}

struct KeyParts {
  uint64_t table = 0;
  std::string row;
  std::string_view entry;  // within the row
};
// nullopt for a key that is not a row's entry.
std::optional<KeyParts> ParseKey(std::string_view key) {
  if (key.empty() || key[0] != kRows) return std::nullopt;
  const std::string k(key);
  size_t at = 1;
  KeyParts p;
  uint64_t len = 0;
  if (!clocks::GetVarint(k, &at, &p.table) || at + 2 > k.size()) {
    return std::nullopt;
  }
  at += 2;  // the bucket
  if (!clocks::GetVarint(k, &at, &len) || k.size() - at < len) {
    return std::nullopt;
  }
  p.row = k.substr(at, len);
  p.entry = key.substr(at + len);
  return p;
}

struct EntryParts {
  std::string column;
  char kind = 0;
  std::string element;
};
std::optional<EntryParts> ParseEntry(std::string_view e) {
  const size_t nul = e.find('\0');
  if (nul == std::string_view::npos || nul + 1 >= e.size()) return std::nullopt;
  EntryParts p{std::string(e.substr(0, nul)), e[nul + 1],
               std::string(e.substr(nul + 2))};
  if ((p.kind == kElement) == false && !p.element.empty()) return std::nullopt;
  if (p.kind != kState && p.kind != kElement) {
    return std::nullopt;
  }
  return p;
}

uint64_t Mix(uint64_t x) {  // splitmix64's finalizer
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}
// What an entry adds to its bucket's digest (XOR: updated in place).
uint64_t EntryHash(std::string_view key, std::string_view value) {
  return Mix(util::Fnv1a64(key) ^ Mix(util::Fnv1a64(value) + 1));
}

const kvpb::CrdtColumn* FindColumn(const kvpb::CrdtTable& t,
                                   const std::string& name) {
  for (const kvpb::CrdtColumn& c : t.columns()) {
    if (c.name() == name) return &c;
  }
  return nullptr;
}

// Columns stored as one entry per element (a set's) or key (a map's).
bool IsKeyed(kvpb::CrdtColumnType t) {
  return t == kvpb::CRDT_AW_SET || t == kvpb::CRDT_AW_MAP;
}

// A map column's shape: the levels of keys leading to its values, and what
// those are (mv-registers, flags or sets).
struct MapShape {
  size_t depth = 1;
  kvpb::CrdtColumnType values = kvpb::CRDT_MV_REGISTER;
};
MapShape ShapeOf(const kvpb::CrdtColumn& c) {
  MapShape shape;
  for (int t : c.value_types()) {
    if (t == kvpb::CRDT_AW_MAP) {
      ++shape.depth;
    } else {
      shape.values = static_cast<kvpb::CrdtColumnType>(t);
    }
  }
  return shape;
}
// How a column's stored entries are encoded: a map's as its values are (an
// mv-register; a flag, also for a set's elements).
kvpb::CrdtColumnType StoredType(const kvpb::CrdtColumn& c) {
  if (c.type() != kvpb::CRDT_AW_MAP) return c.type();
  return ShapeOf(c).values == kvpb::CRDT_MV_REGISTER ? kvpb::CRDT_AW_MAP
                                                     : kvpb::CRDT_EW_FLAG;
}
// The keys leading to a keyed entry: a set's element, or a map's keys (and
// a set's element inside). How many a column's entries have.
size_t PathParts(const kvpb::CrdtColumn& c) {
  if (c.type() != kvpb::CRDT_AW_MAP) return 1;
  const MapShape shape = ShapeOf(c);
  return shape.depth + (shape.values == kvpb::CRDT_AW_SET ? 1 : 0);
}
// A keyed entry's element from its path: each part but the last
// length-prefixed, the last as is (so a set's element, or the key of a map
// one level deep, is itself).
std::string PathElement(const std::vector<std::string>& parts) {
  std::string out;
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    clocks::PutVarint(&out, parts[i].size());
    out += parts[i];
  }
  if (!parts.empty()) out += parts.back();
  return out;
}
// What the elements of the entries below the path `parts` begin with.
std::string PathPrefix(const std::vector<std::string>& parts) {
  std::string out;
  for (const std::string& p : parts) {
    clocks::PutVarint(&out, p.size());
    out += p;
  }
  return out;
}
// PathElement's inverse, for an element of `n` parts.
std::optional<std::vector<std::string>> SplitPath(const std::string& element,
                                                  size_t n) {
  std::vector<std::string> out;
  size_t at = 0;
  for (size_t i = 0; i + 1 < n; ++i) {
    uint64_t len = 0;
    if (!clocks::GetVarint(element, &at, &len) || element.size() - at < len) {
      return std::nullopt;
    }
    out.push_back(element.substr(at, len));
    at += len;
  }
  out.push_back(element.substr(at));
  return out;
}

absl::Status CheckElements(const std::vector<std::string>& elements,
                           const char* what) {
  if (elements.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("no ", what, "s given"));
  }
  for (const std::string& e : elements) {
    if (e.size() > kMaxCrdtElementBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, " of ", e.size(), " bytes exceeds the ",
                       kMaxCrdtElementBytes, "-byte limit"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckValue(const std::string& value) {
  if (value.size() > kMaxCrdtValueBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("value of ", value.size(), " bytes exceeds the ",
                     kMaxCrdtValueBytes, "-byte limit"));
  }
  return absl::OkStatus();
}

absl::Status Refuse(const kvpb::CrdtColumn& c, const char* use) {
  return absl::InvalidArgumentError(absl::StrCat(
      "column ", c.name(), " is a ", CrdtColumnTypeName(c), ": use ", use));
}

// Whether `op` fits its column; the column's type.
absl::StatusOr<kvpb::CrdtColumnType> CheckOp(const kvpb::CrdtTable& t,
                                             const CrdtOp& op) {
  const kvpb::CrdtColumn* c = FindColumn(t, op.column);
  if (c == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("CRDT table ", t.name(), " has no column ", op.column));
  }
  const kvpb::CrdtColumnType type = c->type();
  switch (type) {
    case kvpb::CRDT_G_COUNTER:
      if (op.kind != CrdtOp::kIncrement) return Refuse(*c, "incr");
      if (op.amount <= 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            "column ", op.column,
            " is a g_counter, which only grows: increment by a positive "
            "amount (a pn_counter also decrements)"));
      }
      break;
    case kvpb::CRDT_PN_COUNTER:
      if (op.kind != CrdtOp::kIncrement) return Refuse(*c, "incr");
      if (op.amount == INT64_MIN) {
        return absl::InvalidArgumentError("increment out of range");
      }
      break;
    case kvpb::CRDT_LWW_REGISTER:
    case kvpb::CRDT_MV_REGISTER:
      if (op.kind != CrdtOp::kSet) return Refuse(*c, "set");
      if (absl::Status s = CheckValue(op.value); !s.ok()) return s;
      if (type == kvpb::CRDT_LWW_REGISTER && !op.context.empty()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "column ", op.column,
            " is an lww_register: the last write wins, it takes no context"));
      }
      break;
    case kvpb::CRDT_EW_FLAG:
      if (op.kind != CrdtOp::kEnable && op.kind != CrdtOp::kDisable) {
        return Refuse(*c, "enable or disable");
      }
      break;
    case kvpb::CRDT_AW_SET:
      if (op.kind != CrdtOp::kAdd && op.kind != CrdtOp::kRemove) {
        return Refuse(*c, "add or remove");
      }
      if (absl::Status s = CheckElements(op.elements, "element"); !s.ok()) {
        return s;
      }
      break;
    case kvpb::CRDT_AW_MAP: {
      const MapShape shape = ShapeOf(*c);
      if (op.path.size() > shape.depth) {
        return absl::InvalidArgumentError(
            absl::StrCat("column ", op.column, " is a ", CrdtColumnTypeName(*c),
                         ": a path of at most ", shape.depth, " keys"));
      }
      for (const std::string& key : op.path) {
        if (key.empty()) {
          return absl::InvalidArgumentError(absl::StrCat(
              "column ", op.column, ": a map's key is 1 byte or more"));
        }
      }
      if (!op.path.empty()) {
        if (absl::Status s = CheckElements(op.path, "key"); !s.ok()) return s;
      }
      if (op.path.size() < shape.depth) {
        // A map inside (the column itself for an empty path).
        if (op.kind != CrdtOp::kRemove) {
          return absl::InvalidArgumentError(absl::StrCat(
              "column ", op.column, " is a ", CrdtColumnTypeName(*c), ": name ",
              shape.depth, " key", shape.depth > 1 ? "s" : "",
              " (--key) to reach a value, or remove keys"));
        }
        if (absl::Status s = CheckElements(op.elements, "key"); !s.ok()) {
          return s;
        }
        break;
      }
      switch (shape.values) {
        case kvpb::CRDT_EW_FLAG:
          if (op.kind != CrdtOp::kEnable && op.kind != CrdtOp::kDisable) {
            return Refuse(*c, "enable or disable on a key");
          }
          break;
        case kvpb::CRDT_AW_SET:
          if (op.kind != CrdtOp::kAdd && op.kind != CrdtOp::kRemove) {
            return Refuse(*c, "add or remove on a key");
          }
          if (absl::Status s = CheckElements(op.elements, "element"); !s.ok()) {
            return s;
          }
          break;
        default:
          if (op.kind != CrdtOp::kSet) {
            return Refuse(*c, "set KEY VALUE or remove KEY");
          }
          if (absl::Status s = CheckValue(op.value); !s.ok()) return s;
          break;
      }
      break;
    }
    case kvpb::CRDT_CAS_REGISTER:
      return absl::InvalidArgumentError(absl::StrCat(
          "column ", op.column,
          " is a cas_register, kept through raft: change it with a "
          "compare-and-set (kvctl crdt cas)"));
    default:
      return absl::DataLossError(
          absl::StrCat("column ", op.column, " has an unknown type"));
  }
  return type;
}

// Stores a decoded value in *out; the decoder's status.
template <typename T>
absl::Status Into(absl::StatusOr<T> v, T* out) {
  if (v.ok()) *out = *std::move(v);
  return v.status();
}

// An mv-register write of `value` as dot `dot`: it replaces the siblings
// `read` (the writer's context) names; none for a blind write.
Causal<RegisterStore> RegisterWrite(const std::optional<DotContext>& read,
                                    const crdt::Dot& dot,
                                    const std::string& value) {
  Causal<RegisterStore> d;
  if (read) d.context = *read;
  d.store.emplace(dot, value);
  d.context.Insert(dot);
  return d;
}

// An mv-register as read: its siblings, and the context to write back.
void ReadRegister(const Causal<RegisterStore>& r,
                  std::vector<std::string>* values, std::string* context) {
  for (const auto& [dot, val] : r.store) values->push_back(val);
  Causal<RegisterStore> ctx;
  ctx.context = r.context;
  *context = crdt::Encode(ctx);
}

// Decodes a stored or received value of a column (state or entry).
template <typename T>
absl::StatusOr<T> DecodeOr(const std::optional<std::string>& v,
                           absl::StatusOr<T> (*decode)(const std::string&)) {
  if (!v) return T{};
  return decode(*v);
}

}  // namespace

size_t CrdtRowChange::bytes() const {
  size_t n = row.size() + 16;
  for (const auto& [k, v] : entries) n += k.size() + v.size() + 4;
  return n;
}

uint32_t CrdtReplica::BucketOf(const std::string& row) {
  return static_cast<uint32_t>(Mix(util::Fnv1a64(row)) % kCrdtBuckets);
}

CrdtReplica::CrdtReplica(storage::Engine* engine, const clocks::Clock* clock,
                         size_t cache_bytes)
    : engine_(engine),
      clock_(clock),
      hlc_(clock, kHlcMaxOffsetMs),
      cache_(cache_bytes) {}

absl::StatusOr<std::unique_ptr<CrdtReplica>> CrdtReplica::Open(
    storage::Engine* engine, const clocks::Clock* clock, size_t cache_bytes) {
  std::unique_ptr<CrdtReplica> r(new CrdtReplica(engine, clock, cache_bytes));
  if (absl::Status s = r->Load(); !s.ok()) return s;
  r->committer_ = std::thread([p = r.get()] {
    util::NameThisThread("crdt-commit");
    p->CommitLoop();
  });
  return r;
}

CrdtReplica::~CrdtReplica() { Close(); }

void CrdtReplica::Close() {
  {
    absl::MutexLock l(&mu_);
    stop_ = true;
  }
  if (committer_.joinable()) committer_.join();
}

absl::Status CrdtReplica::Load() {
  absl::MutexLock l(&mu_);
  storage::WriteBatch b;
  absl::StatusOr<std::optional<std::string>> id = engine_->Get(kReplicaKey);
  if (!id.ok()) return id.status();
  if (id->has_value() && (*id)->size() == 8) {
    id_ = ReadBe(**id, 0, 8);
  } else {
    std::random_device rd;
    while (id_ == 0) {
      id_ = ((uint64_t{rd()} << 32) | rd()) >> 1;  // 63 bits: short varints
    }
    b.Put(kReplicaKey, Be(id_, 8));
  }
  absl::StatusOr<std::optional<std::string>> limit = engine_->Get(kHlcKey);
  if (!limit.ok()) return limit.status();
  const int64_t persisted = limit->has_value() && (*limit)->size() == 8
                                ? static_cast<int64_t>(ReadBe(**limit, 0, 8))
                                : 0;
  hlc_.Restore(persisted);
  const int64_t next = std::max(clock_->NowMillis(), persisted) + kHlcWindowMs;
  hlc_.SetLimit(next);
  b.Put(kHlcKey, Be(static_cast<uint64_t>(next), 8));
  // Dots up to the old limit may have been issued: start above it. What
  // was issued and not written exists nowhere, so counting it as durable
  // (seen) is harmless.
  absl::StatusOr<std::optional<std::string>> dots = engine_->Get(kDotKey);
  if (!dots.ok()) return dots.status();
  if (dots->has_value() && (*dots)->size() == 8) {
    counter_ = ReadBe(**dots, 0, 8);
  }
  durable_counter_ = counter_;
  counter_limit_ = counter_ + kDotBlock;
  b.Put(kDotKey, Be(counter_limit_, 8));
  for (auto [key, into] : {std::pair{kSeenKey, &seen_}, {kFloorKey, &floor_}}) {
    absl::StatusOr<std::optional<std::string>> v = engine_->Get(key);
    if (!v.ok()) return v.status();
    absl::StatusOr<CrdtVector> decoded = DecodeVector(*v);
    if (!decoded.ok()) return decoded.status();
    *into = *std::move(decoded);
  }
  delta_floor_ = floor_;
  if (absl::Status s = engine_->Write(b, /*sync=*/true); !s.ok()) return s;

  std::unique_ptr<storage::Iterator> it = engine_->NewIterator();
  const std::string rows(1, kRows);
  for (it->Seek(rows); it->Valid() && it->key().starts_with(rows); it->Next()) {
    std::optional<KeyParts> p = ParseKey(it->key());
    if (!p) {
      return absl::DataLossError("malformed key in the CRDT replica's store");
    }
    std::vector<uint64_t>& d = digests_[p->table];
    if (d.empty()) d.resize(kCrdtBuckets);
    d[BucketOf(p->row)] ^= EntryHash(it->key(), it->value());
    ++stats_.entries;
    stats_.bytes += it->key().size() + it->value().size();
    std::optional<EntryParts> e = ParseEntry(p->entry);
    if (!e) continue;
    VisitCausal(std::string(it->value()), [&](const auto& state) {
      if (HasTombstones(state)) tombstones_.emplace(it->key());
      if (e->kind == kElement && !state.store.empty()) {
        ++stats_.elements;
        stats_.element_bytes += e->element.size();
      }
    });
  }
  return it->status();
}

absl::StatusOr<std::optional<std::string>> CrdtReplica::ReadLocked(
    const std::string& key) const {
  auto it = overlay_.find(key);
  if (it != overlay_.end()) return it->second.second;
  std::optional<std::string> value;
  if (cache_.Find(key, &value)) return value;
  absl::StatusOr<std::optional<std::string>> stored = engine_->Get(key);
  if (stored.ok()) cache_.Put(key, *stored);
  return stored;
}

absl::StatusOr<std::map<std::string, std::string>> CrdtReplica::ScanLocked(
    const std::string& prefix) const {
  std::map<std::string, std::string> out;
  std::unique_ptr<storage::Iterator> it = engine_->NewIterator();
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix);
       it->Next()) {
    out.emplace(std::string(it->key()), std::string(it->value()));
  }
  if (!it->status().ok()) return it->status();
  for (auto o = overlay_.lower_bound(prefix);
       o != overlay_.end() && o->first.starts_with(prefix); ++o) {
    if (o->second.second) {
      out[o->first] = *o->second.second;
    } else {
      out.erase(o->first);
    }
  }
  return out;
}

void CrdtReplica::StageLocked(const std::string& key,
                              std::optional<std::string> value,
                              const std::optional<std::string>& old,
                              bool tombstone) {
  if (value == old) return;
  std::optional<KeyParts> p = ParseKey(key);
  if (p) {
    std::vector<uint64_t>& d = digests_[p->table];
    if (d.empty()) d.resize(kCrdtBuckets);
    uint64_t& h = d[BucketOf(p->row)];
    std::optional<EntryParts> e = ParseEntry(p->entry);
    const bool element = e && e->kind == kElement;
    if (old) {
      h ^= EntryHash(key, *old);
      --stats_.entries;
      stats_.bytes -= key.size() + old->size();
      if (element && LiveElement(old)) {
        --stats_.elements;
        stats_.element_bytes -= e->element.size();
      }
    }
    if (value) {
      h ^= EntryHash(key, *value);
      ++stats_.entries;
      stats_.bytes += key.size() + value->size();
      if (element && LiveElement(value)) {
        ++stats_.elements;
        stats_.element_bytes += e->element.size();
      }
    }
    if (tombstone) {
      tombstones_.insert(key);
    } else {
      tombstones_.erase(key);
    }
  }
  if (value) {
    pending_.Put(key, *value);
  } else {
    pending_.Delete(key);
  }
  overlay_[key] = {staged_ + 1, std::move(value)};
}

template <typename S>
void CrdtReplica::StageCausalLocked(const std::string& key,
                                    crdt::Causal<S>& state,
                                    const std::optional<std::string>& old) {
  state.context = AboveFloor(state, floor_);
  if (state.store.empty() && state.context.empty()) {
    StageLocked(key, std::nullopt, old);
    return;
  }
  StageLocked(key, EncodeCausal(state), old, HasTombstones(state));
}

crdt::Dot CrdtReplica::NextDotLocked() {
  if (counter_ >= counter_limit_) {
    // Durable with the write that uses the dot (staged with it).
    counter_limit_ = counter_ + kDotBlock;
    absl::StatusOr<std::optional<std::string>> old = ReadLocked(kDotKey);
    StageLocked(kDotKey, Be(counter_limit_, 8), old.ok() ? *old : std::nullopt);
  }
  return crdt::Dot{id_, ++counter_};
}

void CrdtReplica::EnqueueLocked(std::function<void(absl::Status)> done) {
  // What was staged since the last enqueue has sequence staged_ + 1.
  if (!pending_.empty()) ++staged_;
  waiters_.push_back({staged_, std::move(done)});
}

void CrdtReplica::CommitLoop() {
  absl::MutexLock l(&mu_);
  while (true) {
    auto ready = [this] {
      mu_.AssertReaderHeld();
      return stop_ || !waiters_.empty();
    };
    mu_.Await(absl::Condition(&ready));
    if (stop_ && waiters_.empty()) return;
    storage::WriteBatch batch = std::move(pending_);
    pending_ = storage::WriteBatch();
    const uint64_t upto = staged_;
    const uint64_t issued = counter_;
    const bool sync = std::exchange(need_sync_, false);
    if (!batch.empty() && broken_.ok()) {
      mu_.Unlock();
      absl::Status s = engine_->Write(batch, sync);
      mu_.Lock();
      if (s.ok()) {
        durable_counter_ = std::max(durable_counter_, issued);
      } else {
        broken_ = absl::Status(
            s.code(), absl::StrCat("CRDT replica store write failed (restart "
                                   "the node once the cause is fixed): ",
                                   s.message()));
      }
    }
    // What was written leaves the overlay for the cache. A key staged
    // again since stays in the overlay, which has its newest value, until
    // that is written too. After a failed write nothing is known.
    const bool written = broken_.ok();
    if (!written) cache_.Clear();
    for (auto it = overlay_.begin(); it != overlay_.end();) {
      if (it->second.first > upto) {
        ++it;
        continue;
      }
      auto node = overlay_.extract(it++);
      if (written) {
        cache_.Put(std::move(node.key()), std::move(node.mapped().second));
      }
    }
    std::vector<std::function<void(absl::Status)>> done;
    while (!waiters_.empty() && waiters_.front().seq <= upto) {
      done.push_back(std::move(waiters_.front().done));
      waiters_.pop_front();
    }
    const absl::Status status = broken_;
    mu_.Unlock();
    for (auto& fn : done) fn(status);
    mu_.Lock();
  }
}

absl::StatusOr<clocks::HlcTimestamp> CrdtReplica::NowLocked() {
  absl::StatusOr<clocks::HlcTimestamp> ts = hlc_.Now();
  if (ts.ok()) return ts;
  // Past the persisted limit: raise it, durably before any use (it is
  // staged with the write that uses the timestamp).
  const int64_t next =
      std::max(clock_->NowMillis(), hlc_.last().physical_ms) + kHlcWindowMs;
  absl::StatusOr<std::optional<std::string>> old = ReadLocked(kHlcKey);
  if (!old.ok()) return old.status();
  StageLocked(kHlcKey, Be(static_cast<uint64_t>(next), 8), *old);
  hlc_.SetLimit(next);
  return hlc_.Now();
}

absl::StatusOr<CrdtRowChange> CrdtReplica::Update(
    const kvpb::CrdtTable& table, const std::string& row,
    const std::vector<CrdtOp>& ops) {
  absl::StatusOr<CrdtRowChange> out;
  absl::Notification done;
  UpdateAsync(table, row, ops, [&](absl::StatusOr<CrdtRowChange> r) {
    out = std::move(r);
    done.Notify();
  });
  done.WaitForNotification();
  return out;
}

void CrdtReplica::UpdateAsync(const kvpb::CrdtTable& table,
                              const std::string& row,
                              const std::vector<CrdtOp>& ops, UpdateDone done) {
  absl::StatusOr<CrdtRowChange> staged = StageUpdate(table, row, ops, done);
  if (!staged.ok()) done(staged.status());
}

absl::StatusOr<CrdtRowChange> CrdtReplica::StageUpdate(
    const kvpb::CrdtTable& table, const std::string& row,
    const std::vector<CrdtOp>& ops, UpdateDone& done) {
  if (row.empty() || row.size() > kMaxCrdtRowBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("a row key must be 1 to ", kMaxCrdtRowBytes, " bytes"));
  }
  if (ops.empty()) return absl::InvalidArgumentError("no operations given");
  // Checked in full before anything is staged: all or none.
  std::vector<kvpb::CrdtColumnType> types;
  std::vector<std::optional<DotContext>> contexts;
  size_t elements = 0;
  for (const CrdtOp& op : ops) {
    absl::StatusOr<kvpb::CrdtColumnType> t = CheckOp(table, op);
    if (!t.ok()) return t.status();
    types.push_back(*t);
    elements += op.elements.size();
    contexts.emplace_back();
    if ((*t == kvpb::CRDT_MV_REGISTER || *t == kvpb::CRDT_AW_MAP) &&
        op.kind == CrdtOp::kSet && !op.context.empty()) {
      absl::StatusOr<Causal<RegisterStore>> c =
          crdt::DecodeMVRegister(op.context);
      if (!c.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "context of column ", op.column,
            " is not one this store gave out: ", c.status().message()));
      }
      contexts.back() = c->context;
    }
  }
  if (elements > kMaxCrdtOpElements) {
    return absl::InvalidArgumentError(absl::StrCat(
        "at most ", kMaxCrdtOpElements, " elements in one update"));
  }

  absl::MutexLock l(&mu_);
  if (!broken_.ok()) return broken_;
  if (!stopped_.ok()) return stopped_;
  const std::string prefix = RowPrefix(table.id(), row);
  CrdtRowChange change;
  change.table = table.id();
  change.row = row;
  // Stages one entry of the row: its new stored value, and what to ship.
  auto stage = [&](const std::string& entry, std::optional<std::string> value,
                   const std::optional<std::string>& old, std::string delta) {
    StageLocked(prefix + entry, std::move(value), old);
    change.entries.emplace_back(entry, std::move(delta));
  };
  for (size_t i = 0; i < ops.size(); ++i) {
    const CrdtOp& op = ops[i];
    const std::string state_entry = Entry(op.column, kState);
    absl::StatusOr<std::optional<std::string>> old =
        ReadLocked(prefix + state_entry);
    if (!old.ok()) return old.status();
    switch (types[i]) {
      case kvpb::CRDT_G_COUNTER: {
        absl::StatusOr<crdt::GCounter> c =
            DecodeOr<crdt::GCounter>(*old, crdt::DecodeGCounter);
        if (!c.ok()) return c.status();
        crdt::GCounter d = c->Increment(id_, static_cast<uint64_t>(op.amount));
        stage(state_entry, crdt::Encode(*c), *old, crdt::Encode(d));
        break;
      }
      case kvpb::CRDT_PN_COUNTER: {
        absl::StatusOr<crdt::PNCounter> c =
            DecodeOr<crdt::PNCounter>(*old, crdt::DecodePNCounter);
        if (!c.ok()) return c.status();
        if (op.amount == 0) break;
        crdt::PNCounter d = c->Add(id_, op.amount);
        stage(state_entry, crdt::Encode(*c), *old, crdt::Encode(d));
        break;
      }
      case kvpb::CRDT_LWW_REGISTER: {
        absl::StatusOr<crdt::LwwRegister> r =
            DecodeOr<crdt::LwwRegister>(*old, crdt::DecodeLwwRegister);
        if (!r.ok()) return r.status();
        absl::StatusOr<clocks::HlcTimestamp> ts = NowLocked();
        if (!ts.ok()) return ts.status();
        crdt::LwwRegister d = r->Set(*ts, id_, op.value);
        stage(state_entry, crdt::Encode(*r), *old, crdt::Encode(d));
        break;
      }
      case kvpb::CRDT_MV_REGISTER: {
        absl::StatusOr<Causal<RegisterStore>> r =
            DecodeOr<Causal<RegisterStore>>(*old, crdt::DecodeMVRegister);
        if (!r.ok()) return r.status();
        // Replaces the siblings the writer read (its context), nothing else.
        const Causal<RegisterStore> d =
            RegisterWrite(contexts[i], NextDotLocked(), op.value);
        JoinCausal(*r, floor_, d, nullptr);
        change.entries.emplace_back(state_entry, crdt::Encode(d));
        StageCausalLocked(prefix + state_entry, *r, *old);
        break;
      }
      case kvpb::CRDT_EW_FLAG: {
        absl::StatusOr<Causal<FlagStore>> f =
            DecodeOr<Causal<FlagStore>>(*old, DecodeFlag);
        if (!f.ok()) return f.status();
        if (op.kind == CrdtOp::kDisable && f->store.empty()) break;
        const Causal<FlagStore> d = op.kind == CrdtOp::kEnable
                                        ? Event(f->store, NextDotLocked())
                                        : crdt::RemoveAll(f->store);
        JoinCausal(*f, floor_, d, nullptr);
        change.entries.emplace_back(state_entry, EncodeFlag(d));
        StageCausalLocked(prefix + state_entry, *f, *old);
        break;
      }
      case kvpb::CRDT_AW_SET:
      case kvpb::CRDT_AW_MAP: {
        // Keyed entries, each a flag (a set's element, a map's flag) or an
        // mv-register (a map's register) of its own. An add or an enable
        // puts one new dot in place of the entry's old ones, a register's
        // write replaces the siblings its context names, and a removal
        // takes the dots seen here (a concurrent add or write elsewhere
        // stays).
        const kvpb::CrdtColumn& col = *FindColumn(table, op.column);
        absl::StatusOr<std::vector<std::string>> entries =
            EntriesOfLocked(prefix, col, op);
        if (!entries.ok()) return entries.status();
        const bool removal =
            op.kind == CrdtOp::kRemove || op.kind == CrdtOp::kDisable;
        for (const std::string& entry : *entries) {
          absl::StatusOr<std::optional<std::string>> old_e =
              ReadLocked(prefix + entry);
          if (!old_e.ok()) return old_e.status();
          if (StoredType(col) == kvpb::CRDT_AW_MAP) {
            absl::StatusOr<Causal<RegisterStore>> r =
                DecodeOr<Causal<RegisterStore>>(*old_e, crdt::DecodeMVRegister);
            if (!r.ok()) return r.status();
            if (removal && r->store.empty()) continue;
            const Causal<RegisterStore> d =
                removal ? crdt::RemoveAll(r->store)
                        : RegisterWrite(contexts[i], NextDotLocked(), op.value);
            JoinCausal(*r, floor_, d, nullptr);
            change.entries.emplace_back(entry, crdt::Encode(d));
            StageCausalLocked(prefix + entry, *r, *old_e);
          } else {
            absl::StatusOr<Causal<FlagStore>> f =
                DecodeOr<Causal<FlagStore>>(*old_e, DecodeFlag);
            if (!f.ok()) return f.status();
            if (removal && f->store.empty()) continue;
            const Causal<FlagStore> d = removal
                                            ? crdt::RemoveAll(f->store)
                                            : Event(f->store, NextDotLocked());
            JoinCausal(*f, floor_, d, nullptr);
            change.entries.emplace_back(entry, EncodeFlag(d));
            StageCausalLocked(prefix + entry, *f, *old_e);
          }
        }
        break;
      }
      default:
        break;
    }
  }
  need_sync_ = true;  // acknowledged once on disk
  EnqueueLocked([change, done = std::move(done)](absl::Status s) {
    if (s.ok()) {
      done(change);
    } else {
      done(s);
    }
  });
  return change;
}

absl::StatusOr<std::vector<std::string>> CrdtReplica::EntriesOfLocked(
    const std::string& prefix, const kvpb::CrdtColumn& col,
    const CrdtOp& op) const {
  std::vector<std::string> out;
  if (col.type() == kvpb::CRDT_AW_SET) {
    for (const std::string& e : op.elements) {
      out.push_back(Entry(col.name(), kElement, e));
    }
    return out;
  }
  const MapShape shape = ShapeOf(col);
  if (op.path.size() == shape.depth) {  // a value of the map
    if (shape.values != kvpb::CRDT_AW_SET) {
      out.push_back(Entry(col.name(), kElement, PathElement(op.path)));
      return out;
    }
    std::vector<std::string> parts = op.path;
    for (const std::string& e : op.elements) {
      parts.push_back(e);
      out.push_back(Entry(col.name(), kElement, PathElement(parts)));
      parts.pop_back();
    }
    return out;
  }
  // Keys of a map inside: each one's entry, or every entry below it.
  std::vector<std::string> parts = op.path;
  for (const std::string& key : op.elements) {
    parts.push_back(key);
    if (parts.size() == PathParts(col)) {
      out.push_back(Entry(col.name(), kElement, PathElement(parts)));
    } else {
      const std::string below =
          prefix + Entry(col.name(), kElement, PathPrefix(parts));
      absl::StatusOr<std::map<std::string, std::string>> found =
          ScanLocked(below);
      if (!found.ok()) return found.status();
      for (const auto& [key_below, value] : *found) {
        out.push_back(key_below.substr(prefix.size()));
      }
    }
    parts.pop_back();
  }
  return out;
}

absl::Status CrdtReplica::Merge(const kvpb::CrdtTable& table,
                                const CrdtRowChange& change) {
  return MergeAll({{&table, &change}}).front();
}

std::vector<absl::Status> CrdtReplica::MergeAll(
    const std::vector<Incoming>& changes) {
  std::vector<absl::Status> out;
  out.reserve(changes.size());
  absl::Status written;
  absl::Notification done;
  {
    absl::MutexLock l(&mu_);
    for (const Incoming& in : changes) {
      out.push_back(broken_.ok() ? MergeLocked(*in.table, *in.change, in.floor)
                                 : broken_);
    }
    // Written, not synced: the sender holds the change durably, and
    // anti-entropy brings back whatever a crash here loses.
    EnqueueLocked([&](absl::Status s) {
      written = s;
      done.Notify();
    });
  }
  done.WaitForNotification();
  if (!written.ok()) {
    for (absl::Status& st : out) {
      if (st.ok()) st = written;
    }
  }
  return out;
}

absl::Status CrdtReplica::MergeLocked(const kvpb::CrdtTable& table,
                                      const CrdtRowChange& change,
                                      const CrdtVector* sender_floor) {
  if (change.table != table.id()) {
    return absl::InvalidArgumentError("change of another table");
  }
  if (change.row.empty() || change.row.size() > kMaxCrdtRowBytes) {
    return absl::InvalidArgumentError("malformed row key");
  }
  // Decoded and checked in full before anything is staged.
  struct Decoded {
    std::string entry;
    kvpb::CrdtColumnType type;
    crdt::GCounter g;
    crdt::PNCounter pn;
    crdt::LwwRegister lww;
    Causal<RegisterStore> mv;
    Causal<FlagStore> flag;  // flags and set elements
  };
  std::vector<Decoded> in;
  in.reserve(change.entries.size());
  for (const auto& [entry, value] : change.entries) {
    std::optional<EntryParts> at = ParseEntry(entry);
    if (!at) return absl::InvalidArgumentError("malformed entry key");
    const kvpb::CrdtColumn* col = FindColumn(table, at->column);
    if (col == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          "CRDT table ", table.name(), " has no column ", at->column));
    }
    if (col->type() == kvpb::CRDT_CAS_REGISTER) {
      return absl::InvalidArgumentError(absl::StrCat(
          "column ", at->column, " is a cas_register, kept through raft"));
    }
    if (IsKeyed(col->type()) != (at->kind == kElement) ||
        (at->kind == kElement &&
         !SplitPath(at->element, PathParts(*col)).has_value())) {
      return absl::InvalidArgumentError(
          absl::StrCat("entry does not fit column ", at->column, " (a ",
                       CrdtColumnTypeName(*col), ")"));
    }
    Decoded d{entry, StoredType(*col), {}, {}, {}, {}, {}};
    absl::Status s;
    switch (d.type) {
      case kvpb::CRDT_G_COUNTER:
        s = Into(crdt::DecodeGCounter(value), &d.g);
        break;
      case kvpb::CRDT_PN_COUNTER:
        s = Into(crdt::DecodePNCounter(value), &d.pn);
        break;
      case kvpb::CRDT_LWW_REGISTER:
        s = Into(crdt::DecodeLwwRegister(value), &d.lww);
        break;
      case kvpb::CRDT_MV_REGISTER:
      case kvpb::CRDT_AW_MAP:
        s = Into(crdt::DecodeMVRegister(value), &d.mv);
        break;
      default:
        s = Into(DecodeFlag(value), &d.flag);
        break;
    }
    if (!s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "entry of column ", at->column, " does not decode: ", s.message()));
    }
    in.push_back(std::move(d));
  }

  // A full state names every entry of the row the sender holds: a causal
  // entry here that it lacks is joined with nothing, against its floor
  // (what it has seen at or below its floor and no longer holds, it
  // removed). A delta speaks only of the dots in its contexts.
  static const CrdtVector kNoFloor;
  const CrdtVector* fb =
      change.full ? (sender_floor != nullptr ? sender_floor : &kNoFloor)
                  : nullptr;
  // What is old news here: below the floor; for a delta, also below the
  // committed cut not yet taken (a replica that is catching up): every
  // active replica has seen those dots, so what is still live of them
  // comes in full states, while a late delta may add what was removed.
  const CrdtVector& old_news = change.full ? floor_ : delta_floor_;
  const std::string prefix = RowPrefix(table.id(), change.row);
  if (change.full) {
    std::set<std::string> named;
    for (const Decoded& d : in) named.insert(d.entry);
    absl::StatusOr<std::map<std::string, std::string>> local =
        ScanLocked(prefix);
    if (!local.ok()) return local.status();
    for (const auto& [key, value] : *local) {
      std::string entry = key.substr(prefix.size());
      if (named.contains(entry)) continue;
      std::optional<EntryParts> at = ParseEntry(entry);
      const kvpb::CrdtColumn* col =
          at ? FindColumn(table, at->column) : nullptr;
      if (col == nullptr) continue;
      const kvpb::CrdtColumnType t = StoredType(*col);
      if (t == kvpb::CRDT_EW_FLAG || t == kvpb::CRDT_AW_SET ||
          t == kvpb::CRDT_MV_REGISTER || t == kvpb::CRDT_AW_MAP) {
        in.push_back(Decoded{std::move(entry), t, {}, {}, {}, {}, {}});
      }
    }
  }

  for (const Decoded& d : in) {
    const std::string key = prefix + d.entry;
    absl::StatusOr<std::optional<std::string>> old = ReadLocked(key);
    if (!old.ok()) return old.status();
    switch (d.type) {
      case kvpb::CRDT_G_COUNTER: {
        auto v = DecodeOr<crdt::GCounter>(*old, crdt::DecodeGCounter);
        if (!v.ok()) return v.status();
        v->Merge(d.g);
        StageLocked(key, crdt::Encode(*v), *old);
        break;
      }
      case kvpb::CRDT_PN_COUNTER: {
        auto v = DecodeOr<crdt::PNCounter>(*old, crdt::DecodePNCounter);
        if (!v.ok()) return v.status();
        v->Merge(d.pn);
        StageLocked(key, crdt::Encode(*v), *old);
        break;
      }
      case kvpb::CRDT_LWW_REGISTER: {
        auto v = DecodeOr<crdt::LwwRegister>(*old, crdt::DecodeLwwRegister);
        if (!v.ok()) return v.status();
        v->Merge(d.lww);
        // Later local writes order after what was seen (a timestamp too far
        // ahead is merged all the same, but not followed).
        (void)hlc_.Update(d.lww.timestamp());
        StageLocked(key, crdt::Encode(*v), *old);
        break;
      }
      case kvpb::CRDT_MV_REGISTER:
      case kvpb::CRDT_AW_MAP: {
        auto v = DecodeOr<Causal<RegisterStore>>(*old, crdt::DecodeMVRegister);
        if (!v.ok()) return v.status();
        JoinCausal(*v, old_news, d.mv, fb);
        StageCausalLocked(key, *v, *old);
        break;
      }
      default: {
        auto v = DecodeOr<Causal<FlagStore>>(*old, DecodeFlag);
        if (!v.ok()) return v.status();
        JoinCausal(*v, old_news, d.flag, fb);
        StageCausalLocked(key, *v, *old);
        break;
      }
    }
  }
  return absl::OkStatus();
}

namespace {

// A map's keys as read (stored in another order), each with what it holds.
struct KeyTree {
  std::map<std::string, KeyTree> keys;
  CrdtValue::Entry value;

  std::vector<CrdtValue::Entry> Entries() {
    std::vector<CrdtValue::Entry> out;
    for (auto& [key, below] : keys) {
      CrdtValue::Entry e = std::move(below.value);
      e.key = key;
      e.entries = below.Entries();
      out.push_back(std::move(e));
    }
    return out;
  }
};

}  // namespace

absl::StatusOr<std::vector<CrdtValue>> CrdtReplica::Read(
    const kvpb::CrdtTable& table, const std::string& row) const {
  const std::string prefix = RowPrefix(table.id(), row);
  std::unique_ptr<storage::Snapshot> snap = engine_->GetSnapshot();
  std::unique_ptr<storage::Iterator> it = snap->NewIterator();
  std::map<std::string, CrdtValue> out;
  std::map<std::string, KeyTree> maps;  // by column
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix);
       it->Next()) {
    std::optional<EntryParts> at = ParseEntry(it->key().substr(prefix.size()));
    if (!at) return absl::DataLossError("malformed key in the CRDT store");
    const kvpb::CrdtColumn* col = FindColumn(table, at->column);
    if (col == nullptr) continue;  // not in this table's schema
    const std::string value(it->value());
    CrdtValue& v = out[at->column];
    v.column = at->column;
    v.type = col->type();
    absl::Status s;
    switch (col->type()) {
      case kvpb::CRDT_G_COUNTER: {
        auto c = crdt::DecodeGCounter(value);
        s = c.status();
        if (c.ok()) v.count = static_cast<int64_t>(c->Value());
        break;
      }
      case kvpb::CRDT_PN_COUNTER: {
        auto c = crdt::DecodePNCounter(value);
        s = c.status();
        if (c.ok()) v.count = c->Value();
        break;
      }
      case kvpb::CRDT_LWW_REGISTER: {
        auto r = crdt::DecodeLwwRegister(value);
        s = r.status();
        if (r.ok() && r->is_set()) {
          v.values = {r->value()};
          v.timestamp = r->timestamp().Pack();
          v.writer = r->replica();
        }
        break;
      }
      case kvpb::CRDT_MV_REGISTER: {
        auto r = crdt::DecodeMVRegister(value);
        s = r.status();
        if (r.ok()) ReadRegister(*r, &v.values, &v.context);
        break;
      }
      case kvpb::CRDT_EW_FLAG: {
        auto f = DecodeFlag(value);
        s = f.status();
        if (f.ok()) v.enabled = !f->store.empty();
        break;
      }
      case kvpb::CRDT_AW_SET: {
        auto f = DecodeFlag(value);
        s = f.status();
        if (f.ok() && !f->store.empty()) v.values.push_back(at->element);
        break;
      }
      case kvpb::CRDT_AW_MAP: {
        // The live values only, under the keys that lead to them.
        std::optional<std::vector<std::string>> parts =
            SplitPath(at->element, PathParts(*col));
        if (!parts) {
          s = absl::DataLossError("malformed map key");
          break;
        }
        const MapShape shape = ShapeOf(*col);
        std::string element;
        if (shape.values == kvpb::CRDT_AW_SET) {
          element = std::move(parts->back());
          parts->pop_back();
        }
        auto at_path = [&] {
          KeyTree* node = &maps[at->column];
          for (const std::string& p : *parts) node = &node->keys[p];
          return &node->value;
        };
        if (shape.values == kvpb::CRDT_MV_REGISTER) {
          auto r = crdt::DecodeMVRegister(value);
          s = r.status();
          if (r.ok() && !r->store.empty()) {
            CrdtValue::Entry* e = at_path();
            ReadRegister(*r, &e->values, &e->context);
          }
          break;
        }
        auto f = DecodeFlag(value);
        s = f.status();
        if (!f.ok() || f->store.empty()) break;
        if (shape.values == kvpb::CRDT_AW_SET) {
          at_path()->elements.push_back(std::move(element));
        } else {
          at_path()->enabled = true;
        }
        break;
      }
      default:
        break;
    }
    if (!s.ok()) {
      return absl::DataLossError(absl::StrCat("stored state of column ",
                                              at->column, ": ", s.message()));
    }
  }
  if (!it->status().ok()) return it->status();
  for (auto& [column, tree] : maps) out[column].entries = tree.Entries();
  std::vector<CrdtValue> values;
  for (auto& [c, v] : out) values.push_back(std::move(v));
  return values;
}

std::vector<uint64_t> CrdtReplica::Digest(uint64_t table) const {
  absl::MutexLock l(&mu_);
  auto it = digests_.find(table);
  if (it == digests_.end()) return std::vector<uint64_t>(kCrdtBuckets);
  return it->second;
}

uint64_t CrdtReplica::Root(uint64_t table) const {
  absl::MutexLock l(&mu_);
  auto it = digests_.find(table);
  if (it == digests_.end()) return 0;
  uint64_t h = 0;
  for (size_t i = 0; i < it->second.size(); ++i) {
    h ^= Mix(it->second[i] + i);
  }
  return h;
}

std::vector<uint64_t> CrdtReplica::Tables() const {
  absl::MutexLock l(&mu_);
  std::vector<uint64_t> out;
  for (const auto& [t, d] : digests_) out.push_back(t);
  return out;
}

absl::StatusOr<std::vector<std::pair<std::string, uint64_t>>>
CrdtReplica::RowHashes(uint64_t table,
                       const std::vector<uint32_t>& buckets) const {
  std::vector<std::pair<std::string, uint64_t>> out;
  std::unique_ptr<storage::Snapshot> snap = engine_->GetSnapshot();
  for (uint32_t bucket : buckets) {
    if (bucket >= kCrdtBuckets) {
      return absl::InvalidArgumentError("no such digest bucket");
    }
    const std::string prefix = BucketPrefix(table, bucket);
    std::unique_ptr<storage::Iterator> it = snap->NewIterator();
    for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix);
         it->Next()) {
      std::optional<KeyParts> p = ParseKey(it->key());
      if (!p) return absl::DataLossError("malformed key in the CRDT store");
      if (out.empty() || out.back().first != p->row)
        out.emplace_back(p->row, 0);
      out.back().second ^= EntryHash(it->key(), it->value());
    }
    if (!it->status().ok()) return it->status();
  }
  return out;
}

absl::StatusOr<std::vector<CrdtRowChange>> CrdtReplica::RowsNotIn(
    uint64_t table, const std::vector<uint32_t>& buckets,
    const std::unordered_set<uint64_t>& have) const {
  std::vector<CrdtRowChange> out;
  std::unique_ptr<storage::Snapshot> snap = engine_->GetSnapshot();
  for (uint32_t bucket : buckets) {
    if (bucket >= kCrdtBuckets) {
      return absl::InvalidArgumentError("no such digest bucket");
    }
    const std::string prefix = BucketPrefix(table, bucket);
    std::unique_ptr<storage::Iterator> it = snap->NewIterator();
    CrdtRowChange row{table, "", true, {}};
    uint64_t hash = 0;
    auto emit = [&] {
      if (!row.entries.empty() && !have.contains(hash)) {
        out.push_back(std::move(row));
      }
      row = CrdtRowChange{table, "", true, {}};
      hash = 0;
    };
    for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix);
         it->Next()) {
      std::optional<KeyParts> p = ParseKey(it->key());
      if (!p) return absl::DataLossError("malformed key in the CRDT store");
      if (p->row != row.row) {
        emit();
        row.row = p->row;
      }
      hash ^= EntryHash(it->key(), it->value());
      row.entries.emplace_back(std::string(p->entry), std::string(it->value()));
    }
    if (!it->status().ok()) return it->status();
    emit();
  }
  return out;
}

absl::StatusOr<std::vector<CrdtRowChange>> CrdtReplica::RowStates(
    uint64_t table, const std::vector<std::string>& rows) const {
  std::vector<CrdtRowChange> out;
  std::unique_ptr<storage::Snapshot> snap = engine_->GetSnapshot();
  for (const std::string& row : rows) {
    const std::string prefix = RowPrefix(table, row);
    std::unique_ptr<storage::Iterator> it = snap->NewIterator();
    CrdtRowChange c{table, row, true, {}};
    for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix);
         it->Next()) {
      c.entries.emplace_back(std::string(it->key().substr(prefix.size())),
                             std::string(it->value()));
    }
    if (!it->status().ok()) return it->status();
    if (!c.entries.empty()) out.push_back(std::move(c));
  }
  return out;
}

CrdtReplica::Stats CrdtReplica::stats() const {
  absl::MutexLock l(&mu_);
  Stats s = stats_;
  s.tombstones = tombstones_.size();
  return s;
}

CrdtVector CrdtReplica::SeenLocked() const {
  CrdtVector out = seen_;
  uint64_t& own = out[id_];
  own = std::max(own, durable_counter_);
  if (own == 0) out.erase(id_);
  return out;
}

CrdtVector CrdtReplica::Seen() const {
  absl::MutexLock l(&mu_);
  return SeenLocked();
}

CrdtVector CrdtReplica::floor() const {
  absl::MutexLock l(&mu_);
  return floor_;
}

absl::Status CrdtReplica::Flush(bool sync) {
  absl::Status written;
  absl::Notification done;
  {
    absl::MutexLock l(&mu_);
    if (sync) need_sync_ = true;
    EnqueueLocked([&](absl::Status s) {
      written = s;
      done.Notify();
    });
  }
  done.WaitForNotification();
  return written;
}

absl::Status CrdtReplica::RecordPull(const CrdtVector& peer_seen) {
  CrdtVector next;
  {
    absl::MutexLock l(&mu_);
    if (!broken_.ok()) return broken_;
    next = seen_;
    bool grew = false;
    for (const auto& [r, n] : peer_seen) {
      if (r == id_ || n <= next[r]) continue;
      next[r] = n;
      grew = true;
    }
    std::erase_if(next, [](const auto& rn) { return rn.second == 0; });
    if (!grew) return absl::OkStatus();
    absl::StatusOr<std::optional<std::string>> old = ReadLocked(kSeenKey);
    if (!old.ok()) return old.status();
    StageLocked(kSeenKey, EncodeVector(next), *old);
  }
  // Synced: with it, everything merged before (the engine's log is
  // written in order).
  if (absl::Status s = Flush(/*sync=*/true); !s.ok()) return s;
  absl::MutexLock l(&mu_);
  for (const auto& [r, n] : next) seen_[r] = std::max(seen_[r], n);
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> CrdtReplica::Collect(const CrdtVector& cut) {
  uint64_t collected = 0;
  {
    absl::MutexLock l(&mu_);
    if (!broken_.ok()) return broken_;
    for (const auto& [r, n] : cut) {
      delta_floor_[r] = std::max(delta_floor_[r], n);
    }
    const CrdtVector seen = SeenLocked();
    for (const auto& [r, n] : cut) {
      auto it = seen.find(r);
      if (it == seen.end() || it->second < n) {
        return absl::FailedPreconditionError(
            absl::StrCat("the stability cut has dots of replica ", absl::Hex(r),
                         " up to ", n, "; this replica has seen them up to ",
                         it == seen.end() ? 0 : it->second));
      }
    }
    bool moved = false;
    for (const auto& [r, n] : cut) {
      if (n > floor_[r]) {
        floor_[r] = n;
        moved = true;
      }
    }
    std::erase_if(floor_, [](const auto& rn) { return rn.second == 0; });
    if (!moved) return 0;
    absl::StatusOr<std::optional<std::string>> old = ReadLocked(kFloorKey);
    if (!old.ok()) return old.status();
    StageLocked(kFloorKey, EncodeVector(floor_), *old);
    const std::vector<std::string> keys(tombstones_.begin(), tombstones_.end());
    for (const std::string& key : keys) {
      absl::StatusOr<std::optional<std::string>> v = ReadLocked(key);
      if (!v.ok()) return v.status();
      if (!v->has_value()) {
        tombstones_.erase(key);
        continue;
      }
      if (!VisitCausal(
              **v, [&](auto state) { StageCausalLocked(key, state, *v); })) {
        tombstones_.erase(key);
        continue;
      }
      absl::StatusOr<std::optional<std::string>> now = ReadLocked(key);
      if (now.ok() && !now->has_value()) ++collected;
    }
    stats_.collected += collected;
  }
  if (absl::Status s = Flush(/*sync=*/false); !s.ok()) return s;
  return collected;
}

absl::Status CrdtReplica::StopUpdates(absl::Status why) {
  {
    absl::MutexLock l(&mu_);
    stopped_ = std::move(why);
  }
  return Flush(/*sync=*/true);
}

void CrdtReplica::ResumeUpdates() {
  absl::MutexLock l(&mu_);
  stopped_ = absl::OkStatus();
}

absl::Status CrdtReplica::Reset() {
  {
    absl::MutexLock l(&mu_);
    if (!broken_.ok()) return broken_;
    absl::StatusOr<std::map<std::string, std::string>> all =
        ScanLocked(std::string(1, kRows));
    if (!all.ok()) return all.status();
    for (const auto& [key, value] : *all) StageLocked(key, std::nullopt, value);
    for (const char* key : {kSeenKey, kFloorKey}) {
      absl::StatusOr<std::optional<std::string>> old = ReadLocked(key);
      if (!old.ok()) return old.status();
      StageLocked(key, std::nullopt, *old);
    }
    const clocks::ReplicaId old_id = id_;
    std::random_device rd;
    while (id_ == 0 || id_ == old_id) {
      id_ = ((uint64_t{rd()} << 32) | rd()) >> 1;
    }
    absl::StatusOr<std::optional<std::string>> old = ReadLocked(kReplicaKey);
    if (!old.ok()) return old.status();
    StageLocked(kReplicaKey, Be(id_, 8), *old);
    digests_.clear();
    tombstones_.clear();
    seen_.clear();
    floor_.clear();
    stats_ = Stats{};
  }
  return Flush(/*sync=*/true);
}

}  // namespace tally::kv
