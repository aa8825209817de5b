#include "kv/storage/internal/log_record.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "rpc/raft_codec.h"
#include "util/crc32c.h"

namespace tally::kv::storage::internal {

namespace {

using raft::host::GroupWrite;

enum Flags : uint8_t { kHardState = 1, kSnapshot = 2, kCompact = 4 };

// The smallest encodings: an entry (term, type, length) and a group write
// (group, flags, entry count).
constexpr size_t kMinEntryBytes = 8 + 1 + 4;
constexpr size_t kMinWriteBytes = 8 + 1 + 4;

template <typename T>
void Put(std::string* out, T v) {
  char buf[sizeof(T)];
  std::memcpy(buf, &v, sizeof(T));  // little-endian hosts only (x86, arm64)
  out->append(buf, sizeof(T));
}

void PutSnapshot(std::string* out, const raft::Snapshot& s) {
  rpc::RaftSnapshot p;
  rpc::ToProto(s, &p);
  Put<uint32_t>(out, p.ByteSizeLong());
  p.AppendToString(out);
}

void AppendPayload(const std::vector<GroupWrite>& writes, std::string* out) {
  Put<uint32_t>(out, writes.size());
  for (const GroupWrite& w : writes) {
    Put<uint64_t>(out, w.group);
    Put<uint8_t>(out, (w.hard_state ? kHardState : 0) |
                          (w.snapshot ? kSnapshot : 0) |
                          (w.compact ? kCompact : 0));
    if (w.hard_state) {
      Put<uint64_t>(out, w.hard_state->term);
      Put<uint64_t>(out, w.hard_state->vote);
      Put<uint64_t>(out, w.hard_state->commit);
    }
    if (w.snapshot) PutSnapshot(out, *w.snapshot);
    if (w.compact) {
      PutSnapshot(out, *w.compact);
      Put<uint64_t>(out, w.compact_to);
    }
    Put<uint32_t>(out, w.entries.size());
    if (w.entries.empty()) continue;
    Put<uint64_t>(out, w.entries.front().index);
    for (const raft::Entry& e : w.entries) {
      Put<uint64_t>(out, e.term);
      Put<uint8_t>(out, static_cast<uint8_t>(e.type));
      Put<uint32_t>(out, e.data.size());
      out->append(e.data);
    }
  }
}

// Bounds-checked reads of a payload whose checksum held.
class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}

  template <typename T>
  bool Get(T* v) {
    if (in_.size() < sizeof(T)) return false;
    std::memcpy(v, in_.data(), sizeof(T));
    in_.remove_prefix(sizeof(T));
    return true;
  }
  bool Bytes(size_t n, std::string_view* v) {
    if (in_.size() < n) return false;
    *v = in_.substr(0, n);
    in_.remove_prefix(n);
    return true;
  }
  bool Snapshot(raft::Snapshot* s) {
    uint32_t n;
    std::string_view bytes;
    rpc::RaftSnapshot p;
    if (!Get(&n) || !Bytes(n, &bytes) ||
        !p.ParseFromArray(bytes.data(), bytes.size())) {
      return false;
    }
    *s = rpc::FromProto(p);
    return true;
  }
  bool done() const { return in_.empty(); }
  size_t left() const { return in_.size(); }

 private:
  std::string_view in_;
};

bool ReadWrite(Reader& r, bool keep_entries, GroupWrite* w) {
  uint8_t flags;
  if (!r.Get(&w->group) || !r.Get(&flags)) return false;
  if (flags & kHardState) {
    raft::HardState& hs = w->hard_state.emplace();
    if (!r.Get(&hs.term) || !r.Get(&hs.vote) || !r.Get(&hs.commit)) {
      return false;
    }
  }
  if ((flags & kSnapshot) && !r.Snapshot(&w->snapshot.emplace())) return false;
  if ((flags & kCompact) &&
      (!r.Snapshot(&w->compact.emplace()) || !r.Get(&w->compact_to))) {
    return false;
  }
  uint32_t n;
  if (!r.Get(&n)) return false;
  if (n == 0) return true;
  raft::Index index;
  if (!r.Get(&index)) return false;
  // Each entry takes at least kMinEntryBytes: a count the payload cannot
  // hold is refused before anything is allocated for it.
  if (n > r.left() / kMinEntryBytes) return false;
  w->entries.resize(n);
  for (raft::Entry& e : w->entries) {
    uint8_t type;
    uint32_t size;
    std::string_view data;
    if (!r.Get(&e.term) || !r.Get(&type) || !r.Get(&size) ||
        !r.Bytes(size, &data) || type > 1) {
      return false;
    }
    e.index = index++;
    e.type = static_cast<raft::EntryType>(type);
    if (keep_entries) e.data.assign(data);
  }
  return true;
}

uint64_t Align8(uint64_t n) { return (n + 7) & ~uint64_t{7}; }

struct Header {
  uint32_t header_crc, payload_crc, length, kind;
  uint64_t synced;
};
static_assert(sizeof(Header) == kRecordHeaderSize);

// The record at `offset` if its checksums hold.
bool ReadRecordAt(std::string_view file, uint64_t offset, Header* h,
                  std::string_view* payload) {
  if (file.size() - offset < kRecordHeaderSize) return false;
  std::memcpy(h, file.data() + offset, kRecordHeaderSize);
  if (h->header_crc !=
      util::Crc32c(file.substr(offset + 4, kRecordHeaderSize - 4))) {
    return false;
  }
  if (file.size() - offset - kRecordHeaderSize < h->length) return false;
  *payload = file.substr(offset + kRecordHeaderSize, h->length);
  return h->payload_crc == util::Crc32c(*payload);
}

bool AllZero(std::string_view bytes) {
  return std::all_of(bytes.begin(), bytes.end(), [](char c) { return c == 0; });
}

}  // namespace

void AppendRecord(RecordKind kind, uint64_t synced,
                  const std::vector<GroupWrite>& writes, uint64_t seq,
                  std::string* out) {
  const size_t start = out->size();
  out->append(kRecordHeaderSize, '\0');
  if (kind == RecordKind::kCheckpoint) Put<uint64_t>(out, seq);
  AppendPayload(writes, out);
  FrameRecord(kind, synced, start, out);
}

void FrameRecord(RecordKind kind, uint64_t synced, size_t start,
                 std::string* out) {
  const std::string_view payload =
      std::string_view(*out).substr(start + kRecordHeaderSize);
  Header h{0, util::Crc32c(payload), static_cast<uint32_t>(payload.size()),
           static_cast<uint32_t>(kind), synced};
  char* header = out->data() + start;
  std::memcpy(header, &h, kRecordHeaderSize);
  h.header_crc =
      util::Crc32c(std::string_view(header + 4, kRecordHeaderSize - 4));
  std::memcpy(header, &h.header_crc, 4);
  out->resize(start + Align8(out->size() - start), '\0');
}

absl::StatusOr<SegmentScan> ScanSegment(std::string_view file,
                                        bool keep_entries) {
  SegmentScan scan;
  uint64_t offset = 0;
  Header h;
  std::string_view payload;
  while (offset < file.size() && ReadRecordAt(file, offset, &h, &payload)) {
    Record& rec = scan.records.emplace_back();
    rec.kind = static_cast<RecordKind>(h.kind);
    rec.offset = offset;
    rec.synced = h.synced;
    Reader r(payload);
    bool ok = h.kind == static_cast<uint32_t>(RecordKind::kBatch) ||
              h.kind == static_cast<uint32_t>(RecordKind::kRewrite) ||
              (h.kind == static_cast<uint32_t>(RecordKind::kCheckpoint) &&
               r.Get(&rec.seq));
    uint32_t n = 0;
    ok = ok && r.Get(&n);
    ok = ok && n <= r.left() / kMinWriteBytes;
    for (uint32_t i = 0; ok && i < n; ++i) {
      ok = ReadWrite(r, keep_entries, &rec.writes.emplace_back());
    }
    if (!ok || !r.done()) {
      return absl::DataLossError(absl::StrCat(
          "the raft log record at offset ", offset,
          " has good checksums but cannot be decoded (kind ", h.kind, ")"));
    }
    // Past the padding even when a crash left it out, so that the next
    // record is written where a later scan looks for it.
    offset = Align8(offset + kRecordHeaderSize + h.length);
  }
  scan.end = offset;
  if (offset >= file.size() || AllZero(file.substr(offset))) return scan;
  scan.damaged = true;
  // Look for a good record further on that was written after the bytes at
  // `end` had been synced. Records start at multiples of 8.
  for (uint64_t at = offset + 8; at + kRecordHeaderSize <= file.size();
       at += 8) {
    if (ReadRecordAt(file, at, &h, &payload) && h.synced > offset) {
      scan.synced_damage = true;
      break;
    }
  }
  return scan;
}

}  // namespace tally::kv::storage::internal
