// crdt_metadata: the bytes a CRDT set costs beyond its elements, after
// many adds and removes on three replicas.
//
//   build/bin/crdt_metadata [--ops 1000000] [--rows 100] [--pool 200000]
//
// Three CrdtReplicas (kv/crdt_table/replica.h, over in-memory engines) take
// adds and removes of random elements of a pool (each element in a row of
// its own among --rows), each on a random replica; about half the
// elements are present at any time. Deltas reach the
// other two in batches of 1,000 operations, 1% of them lost on the way;
// every 50,000 operations a round of anti-entropy repairs what was lost,
// each replica records what the others had seen, and garbage collection
// runs: the cut every replica has seen (what raft commits in a cluster,
// crdt_table/members.h) is collected on each.
// At the end, after a last round, the replicas are compared and the
// stored bytes (keys and values, before LevelDB's prefix compression and
// Snappy) are split into the elements themselves and the rest: metadata
// per live element = (stored bytes - element bytes) / live elements.
#include <algorithm>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "clocks/clock.h"
#include "kv/crdt_table/replica.h"
#include "kv/storage/memory_engine.h"

namespace tally::kv {
namespace {

int Run(uint64_t ops, int rows, int pool) {
  kvpb::CrdtTable table;
  table.set_name("bench");
  table.set_id(1);
  kvpb::CrdtColumn* c = table.add_columns();
  c->set_name("items");
  c->set_type(kvpb::CRDT_AW_SET);
  clocks::SystemClock clock;
  storage::MemoryEngine engines[3];
  std::unique_ptr<CrdtReplica> r[3];
  for (int i = 0; i < 3; ++i) {
    auto opened = CrdtReplica::Open(&engines[i], &clock, 32 << 20);  // kvd's
    if (!opened.ok()) {
      std::fprintf(stderr, "%s\n", opened.status().ToString().c_str());
      return 1;
    }
    r[i] = *std::move(opened);
  }
  std::mt19937_64 rng(42);
  std::vector<std::vector<CrdtRowChange>> outbox(3);
  uint64_t lost = 0;
  auto deliver = [&] {
    for (int from = 0; from < 3; ++from) {
      for (int to = 0; to < 3; ++to) {
        if (to == from) continue;
        std::vector<CrdtReplica::Incoming> in;
        for (const CrdtRowChange& ch : outbox[from]) {
          if (rng() % 100 == 0) {
            ++lost;
            continue;
          }
          in.push_back({&table, &ch});
        }
        r[to]->MergeAll(in);
      }
      outbox[from].clear();
    }
  };
  uint64_t collected = 0;
  auto anti_entropy = [&] {
    for (int to = 0; to < 3; ++to) {
      for (int from = 0; from < 3; ++from) {
        if (to == from) continue;
        const CrdtVector seen = r[from]->Seen();
        const CrdtVector floor = r[from]->floor();
        std::vector<uint64_t> a = r[from]->Digest(table.id());
        std::vector<uint64_t> b = r[to]->Digest(table.id());
        std::vector<uint32_t> differ;
        for (uint32_t i = 0; i < kCrdtBuckets; ++i) {
          if (a[i] != b[i]) differ.push_back(i);
        }
        auto got = r[from]->RowsNotIn(table.id(), differ, {});
        if (!got.ok()) return;
        std::vector<CrdtReplica::Incoming> in;
        for (const CrdtRowChange& ch : *got) {
          in.push_back({&table, &ch, &floor});
        }
        for (const absl::Status& s : r[to]->MergeAll(in)) {
          if (!s.ok()) return;  // an incomplete pull records nothing
        }
        if (!r[to]->RecordPull(seen).ok()) return;
      }
    }
    CrdtVector cut = r[0]->Seen();
    for (auto& [replica, n] : cut) {
      for (int i = 1; i < 3; ++i) {
        const CrdtVector s = r[i]->Seen();
        auto it = s.find(replica);
        n = std::min(n, it == s.end() ? 0 : it->second);
      }
    }
    for (int i = 0; i < 3; ++i) {
      absl::StatusOr<uint64_t> n = r[i]->Collect(cut);
      if (n.ok()) collected += *n;
    }
  };
  for (uint64_t n = 1; n <= ops; ++n) {
    const int at = static_cast<int>(rng() % 3);
    const uint64_t e = rng() % pool;
    const std::string row = "r" + std::to_string(e % rows);
    CrdtOp op;
    op.column = "items";
    op.kind = rng() % 2 == 0 ? CrdtOp::kAdd : CrdtOp::kRemove;
    op.elements = {"e" + std::to_string(e)};
    auto change = r[at]->Update(table, row, {op});
    if (!change.ok()) {
      std::fprintf(stderr, "%s\n", change.status().ToString().c_str());
      return 1;
    }
    outbox[at].push_back(*std::move(change));
    if (n % 1000 == 0) deliver();
    if (n % 50000 == 0) anti_entropy();
  }
  deliver();
  anti_entropy();
  anti_entropy();
  bool equal = true;
  for (int i = 1; i < 3; ++i) {
    equal = equal && r[i]->Digest(table.id()) == r[0]->Digest(table.id());
  }
  std::printf(
      "{\"ops\":%llu,\"rows\":%d,\"pool\":%d,\"deltas_lost\":%llu,"
      "\"converged\":%s,\"collected\":%llu",
      static_cast<unsigned long long>(ops), rows, pool,
      static_cast<unsigned long long>(lost), equal ? "true" : "false",
      static_cast<unsigned long long>(collected));
  for (int i = 0; i < 3; ++i) {
    const CrdtReplica::Stats s = r[i]->stats();
    const double meta = s.elements == 0
                            ? 0
                            : static_cast<double>(s.bytes - s.element_bytes) /
                                  static_cast<double>(s.elements);
    std::printf(
        ",\"replica%d\":{\"live_elements\":%llu,\"tombstones\":%llu,"
        "\"stored_bytes\":%llu,"
        "\"element_bytes\":%llu,\"metadata_bytes_per_element\":%.1f}",
        i, static_cast<unsigned long long>(s.elements),
        static_cast<unsigned long long>(s.tombstones),
        static_cast<unsigned long long>(s.bytes),
        static_cast<unsigned long long>(s.element_bytes), meta);
  }
  std::printf("}\n");
  return equal ? 0 : 1;
}

}  // namespace
}  // namespace tally::kv

int main(int argc, char** argv) {
  CLI::App app("crdt_metadata: metadata bytes per live element of a CRDT set");
  uint64_t ops = 1'000'000;
  int rows = 100, pool = 200'000;
  app.add_option("--ops", ops, "adds and removes in all");
  app.add_option("--rows", rows, "rows the set column is spread over");
  app.add_option("--pool", pool, "distinct elements that may be added");
  CLI11_PARSE(app, argc, argv);
  return tally::kv::Run(ops, rows, pool);
}
