// Writes a starting corpus for every fuzz target: valid inputs of each kind,
// so that the fuzzer mutates real messages instead of finding Protobuf's
// framing from nothing. Usage: fuzz_seeds DIR (makes DIR/<target>/).
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "crdt/codec.h"
#include "fuzz/input.h"
#include "google/protobuf/text_format.h"
#include "kv/kvpb/kvpb.pb.h"
#include "kv/storage/internal/log_record.h"
#include "kv/storage/leveldb_util.h"
#include "kv/storage/memory_file_system.h"
#include "kv/storage/segment_log.h"
#include "rpc/raft.pb.h"

namespace {

using tally::fuzz::AppendPiece;

template <typename M>
std::string FromText(std::string_view text) {
  M m;
  if (!google::protobuf::TextFormat::ParseFromString(std::string(text), &m)) {
    std::fprintf(stderr, "bad seed: %.*s\n", static_cast<int>(text.size()),
                 text.data());
    std::exit(1);
  }
  return m.SerializeAsString();
}

// One command of each kind, a few of them depending on one another (a lock
// on a granted lease, a saga step after its creation).
const std::vector<std::string_view> kCommands = {
    R"(time_ms: 1000 put { key: "a" value: "1" })",
    R"(time_ms: 1000 put { key: "b" value: "2" lease: 2 })",
    R"(time_ms: 1000 delete { key: "a" range_end: "c" limit: 10 })",
    R"(time_ms: 1000 txn { compare { key: "a" target: VERSION op: EQUAL
         version: 0 } success { put { key: "a" value: "x" } }
         failure { get { key: "a" } } })",
    R"(time_ms: 1000 open_session { ttl_ms: 60000 })",
    R"(time_ms: 1000 session { client_id: 5 sequence: 1 group: 2 }
         put { key: "s" value: "once" })",
    R"(time_ms: 1000 lease_grant { ttl_ms: 5000 })",
    R"(time_ms: 1200 lease_renew { ids: 2 })",
    R"(time_ms: 1500 lock_acquire { name: "job" lease: 2 request_id: 7
         wait_ms: 1000 value: "me" })",
    R"(time_ms: 1600 lock_release { name: "job" token: 3 })",
    R"(time_ms: 1700 lease_revoke { id: 2 })",
    R"(time_ms: 9000 lease_expire { ids: 2 })",
    R"(time_ms: 1000 fence_bind { prefix: "f/" lock: "job" })",
    R"(time_ms: 1000 lock_proclaim { name: "job" token: 3 value: "v" })",
    R"(time_ms: 1000 fence_token: 3 put { key: "f/x" value: "1" })",
    R"(time_ms: 1000 lease_keys_end { leases: 2 })",
    R"(time_ms: 1000 idem_begin { scope: "pay" key: "k1" fingerprint: "fp"
         ttl_ms: 5000 retention_ms: 60000 attempt_id: 9 })",
    R"(time_ms: 1100 idem_finish { scope: "pay" key: "k1" token: 2
         outcome: COMPLETED response: "ok"
         effects { success { put { key: "paid" value: "1" } } } })",
    R"(time_ms: 1100 idem_renew { scope: "pay" key: "k1" token: 2
         ttl_ms: 5000 })",
    R"(time_ms: 90000 idem_reap { refs { scope: "pay" key: "k1" } })",
    R"(time_ms: 1000 saga_create { id: "o1" definition { name: "order"
         steps { name: "reserve" kind: COMPENSABLE timeout_ms: 1000
                 max_attempts: 3 }
         steps { name: "charge" kind: PIVOT timeout_ms: 1000 }
         steps { name: "ship" kind: RETRIABLE } }
         input: "in" deadline_ms: 60000 retention_ms: 60000 })",
    R"(time_ms: 1100 saga_transition { id: "o1" version: 1 action: START
         step: 0 })",
    R"(time_ms: 1200 saga_transition { id: "o1" version: 2 action: SUCCEED
         step: 0 output: "r" })",
    R"(time_ms: 5000 saga_tick { ids: "o1" })",
    R"(time_ms: 1000 crdt_table_create { name: "carts" columns { name: "n"
         type: CRDT_PN_COUNTER } columns { name: "items"
         type: CRDT_AW_SET } columns { name: "m" type: CRDT_AW_MAP
         value_types: CRDT_MV_REGISTER } columns { name: "c"
         type: CRDT_CAS_REGISTER } })",
    R"(time_ms: 1000 crdt_table_alter { name: "carts" add_columns {
         name: "flag" type: CRDT_EW_FLAG } })",
    R"(time_ms: 1000 crdt_reports { reports { node: 1 replica: 11
         seen { replica: 11 counter: 4 } } })",
    R"(time_ms: 1000 crdt_cas { table_id: 1 row: "r" sets { column: "c"
         value: "v" } })",
    R"(time_ms: 1000 crdt_retire: 11)",
    R"(time_ms: 1000 crdt_table_drop: "carts")",
    R"(time_ms: 1000 watch_compact { revision: 2 enable: true })",
    R"(time_ms: 1000 set_member { id: 4 name: "n4" peer_address: "p"
         client_address: "c" })",
    R"(time_ms: 1000 remove_member: 4)",
};

std::string Commands(size_t first, size_t count, uint8_t group) {
  std::string in(1, static_cast<char>(group));
  for (size_t i = first; i < first + count && i < kCommands.size(); ++i) {
    in.push_back(static_cast<char>(i % 3 == 0 ? 3 : 2));  // duties, time
    AppendPiece(&in, FromText<tally::kvpb::Command>(kCommands[i]));
  }
  return in;
}

class Corpus {
 public:
  explicit Corpus(std::filesystem::path dir) : dir_(std::move(dir)) {}
  void Add(const std::string& target, const std::string& input) {
    const std::filesystem::path d = dir_ / target;
    std::filesystem::create_directories(d);
    std::ofstream(d / ("seed-" + std::to_string(n_[target]++)),
                  std::ios::binary)
        << input;
  }

 private:
  const std::filesystem::path dir_;
  std::map<std::string, int> n_;
};

void StateMachineSeeds(Corpus& c) {
  for (uint8_t group : {0, 1}) {
    c.Add("state_machine", Commands(0, kCommands.size(), group));
    for (size_t i = 0; i < kCommands.size(); i += 4) {
      c.Add("state_machine", Commands(i, 4, group));
    }
  }
}

void SnapshotSeeds(Corpus& c) {
  // The state a replica exports after a few commands, as its keys.
  std::string in(1, '\1');
  tally::kvpb::AppliedState applied;
  applied.set_index(5);
  applied.set_revision(3);
  applied.set_log_time_ms(1000);
  AppendPiece(&in, "a");  // Space::kApplied
  AppendPiece(&in, applied.SerializeAsString());
  AppendPiece(&in, "");
  for (size_t i = 0; i < 6; ++i) {
    in.push_back(2);
    AppendPiece(&in, FromText<tally::kvpb::Command>(kCommands[i]));
  }
  c.Add("snapshot_import", in);
}

void RaftMessageSeeds(Corpus& c) {
  c.Add("raft_message", FromText<tally::rpc::MessageBatch>(R"(
      cluster_id: "c" from: 1 to: 2
      messages { group: 2 type: 3 from: 1 to: 2 term: 4 log_term: 4 index: 9
                 commit: 9 entries { term: 4 index: 10 type: 0 data: "x" }
                 entries { term: 4 index: 11 type: 1 data: "" } }
      messages { group: 1 type: 8 from: 1 to: 2 term: 4 commit: 9
                 context: 3 quiesce: true }
      messages { group: 2 type: 7 from: 1 to: 2 term: 4
                 snapshot { index: 20 term: 4 conf_state {
                   voters: 1 voters: 2 voters: 3 learners: 4 } } })"));
  for (int type = 0; type < 20; ++type) {
    c.Add("raft_message",
          FromText<tally::rpc::MessageBatch>(
              "messages { group: 2 from: 1 to: 2 term: 1 type: " +
              std::to_string(type) + " }"));
  }
}

void LogStoreSeeds(Corpus& c) {
  std::string in;
  auto record = [&](char kind, uint8_t group, uint8_t index,
                    const std::string& value) {
    in.push_back(kind == 'e' ? 0 : kind == 'h' ? 1 : kind == 's' ? 2 : 3);
    in.push_back(static_cast<char>(group));
    if (kind == 'e') in.push_back(static_cast<char>(index));
    AppendPiece(&in, value);
  };
  std::string hs;
  tally::kv::storage::AppendBigEndian64(&hs, 3);  // term
  tally::kv::storage::AppendBigEndian64(&hs, 1);  // vote
  tally::kv::storage::AppendBigEndian64(&hs, 6);  // commit
  record('h', 2, 0, hs);
  record('s', 2, 0,
         FromText<tally::rpc::RaftSnapshot>(
             "index: 4 term: 2 conf_state { voters: 1 voters: 2 "
             "voters: 3 }"));
  for (uint8_t i = 3; i <= 8; ++i) {
    record('e', 2, i,
           FromText<tally::rpc::RaftEntry>(
               "term: 3 index: " + std::to_string(i) + " data: \"x\""));
  }
  record('m', 0, 0, "identity");
  c.Add("log_store", in);
}

void SegmentLogSeeds(Corpus& c) {
  namespace storage = tally::kv::storage;
  using tally::raft::host::GroupWrite;
  tally::raft::Snapshot snap;
  snap.metadata = {.index = 4, .term = 2};
  snap.metadata.conf_state.voters = {1, 2, 3};
  std::vector<std::vector<GroupWrite>> batches(3);
  batches[0].push_back({2, tally::raft::HardState{3, 1, 4}, snap, {}});
  batches[1].push_back({2, tally::raft::HardState{3, 1, 6}, {}, {}});
  for (tally::raft::Index i = 5; i <= 8; ++i) {
    batches[1][0].entries.push_back(
        {3, i, tally::raft::EntryType::kNormal, "x"});
  }
  batches[2].push_back({.group = 2, .compact = snap, .compact_to = 3});

  // The raw segment, as SegmentLog writes it.
  storage::MemoryFileSystem fs;
  {
    auto log = storage::SegmentLog::Open("/log", {.fs = &fs});
    for (const auto& b : batches) (*log)->Write(b, true).IgnoreError();
  }
  c.Add("segment_log",
        std::string(1, '\0') + fs.Read("/log/0000000000000001.log").value());

  // The same records' payloads, to be framed by the target.
  std::string framed(1, '\1');
  auto add = [&](storage::internal::RecordKind kind,
                 const std::vector<GroupWrite>& writes) {
    std::string record;
    storage::internal::AppendRecord(kind, 0, writes, 1, &record);
    uint32_t length;
    std::memcpy(&length, record.data() + 8, 4);
    framed.push_back(static_cast<char>(kind));
    framed.push_back(0);  // synced
    AppendPiece(&framed,
                record.substr(storage::internal::kRecordHeaderSize, length));
  };
  add(storage::internal::RecordKind::kCheckpoint, {});
  for (const auto& b : batches) add(storage::internal::RecordKind::kBatch, b);
  c.Add("segment_log", framed);
}

void CrdtSeeds(Corpus& c) {
  using namespace tally::crdt;  // NOLINT(build/namespaces)
  auto add = [&](uint8_t type, const std::string& a, const std::string& b) {
    std::string in(1, static_cast<char>(type));
    AppendPiece(&in, a);
    in += b;
    c.Add("crdt_codec", in);
  };
  GCounter g1, g2;
  g1.Increment(1, 3);
  g2.Increment(2, 5);
  add(0, Encode(g1), Encode(g2));
  PNCounter p1, p2;
  p1.Add(1, 4);
  p2.Add(2, -7);
  add(1, Encode(p1), Encode(p2));
  LwwRegister r1, r2;
  r1.Set({10, 0}, 1, "a");
  r2.Set({10, 1}, 2, "b");
  add(2, Encode(r1), Encode(r2));
  EWFlag f1, f2;
  f1.Enable(1);
  f2.Enable(2);
  f2.Disable();
  add(3, Encode(f1.state()), Encode(f2.state()));
  MVRegister m1, m2;
  m1.Assign(1, "x");
  m2.Assign(2, "y");
  add(4, Encode(m1.state()), Encode(m2.state()));
  AWSet s1, s2;
  s1.Add(1, "apple");
  s2.Add(2, "pear");
  s2.Remove("pear");
  add(5, Encode(s1.state()), Encode(s2.state()));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: fuzz_seeds DIR\n");
    return 2;
  }
  Corpus c{std::filesystem::path(argv[1])};
  StateMachineSeeds(c);
  SnapshotSeeds(c);
  RaftMessageSeeds(c);
  LogStoreSeeds(c);
  SegmentLogSeeds(c);
  CrdtSeeds(c);
  return 0;
}
