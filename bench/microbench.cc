// Micro-benchmarks of the hot paths under a write: the raft core's step and
// ready handling, the LevelDB log store's batch write, and the encoding of
// an append message for the wire. `make microbench` runs them.
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "kv/storage/log_store.h"
#include "kv/storage/segment_log.h"
#include "raft/raw_node.h"
#include "raft/storage.h"
#include "rpc/raft.pb.h"
#include "rpc/raft_codec.h"
#include "util/random.h"

namespace tally {
namespace {

using raft::Entry;
using raft::Message;
using raft::NodeId;

// Three raft cores in memory, messages delivered at once, storage in
// memory: what a write costs the core itself, without I/O.
class Group {
 public:
  Group() {
    for (NodeId id = 1; id <= 3; ++id) {
      auto& n = nodes_[id - 1];
      raft::ConfState conf;
      conf.voters = {1, 2, 3};
      n.storage = std::make_unique<raft::MemoryStorage>(conf);
      n.random = std::make_unique<util::SeededRandom>(id);
      raft::Config c;
      c.id = id;
      c.storage = n.storage.get();
      c.random = n.random.get();
      n.raw = std::move(raft::RawNode::Create(c)).value();
    }
    nodes_[0].raw->Campaign();
    Settle();
  }

  // Handles every node's Ready until nothing is left; returns the entries
  // committed on the leader.
  size_t Settle() {
    size_t committed = 0;
    for (bool busy = true; busy;) {
      busy = false;
      for (int i = 0; i < 3; ++i) {
        auto& n = nodes_[i];
        if (!n.raw->HasReady()) continue;
        busy = true;
        raft::Ready rd = n.raw->GetReady();
        if (rd.hard_state) n.storage->SetHardState(*rd.hard_state);
        n.storage->Append(rd.entries);
        if (i == 0) committed += rd.committed_entries.size();
        std::vector<Message> msgs = std::move(rd.messages);
        n.raw->Advance(rd);
        for (const Message& m : msgs) {
          nodes_[m.to - 1].raw->Step(m).IgnoreError();
        }
      }
    }
    return committed;
  }

  raft::RawNode& leader() { return *nodes_[0].raw; }

 private:
  struct Node {
    std::unique_ptr<raft::MemoryStorage> storage;
    std::unique_ptr<util::SeededRandom> random;
    std::unique_ptr<raft::RawNode> raw;
  };
  Node nodes_[3];
};

void BM_RaftCommit(benchmark::State& state) {
  Group g;
  const std::string payload(256, 'v');
  const int batch = static_cast<int>(state.range(0));
  for (auto _ : state) {
    for (int i = 0; i < batch; ++i) {
      g.leader().Propose(payload).IgnoreError();
    }
    benchmark::DoNotOptimize(g.Settle());
  }
  state.SetItemsProcessed(state.iterations() * batch);
}
BENCHMARK(BM_RaftCommit)->Arg(1)->Arg(16)->Arg(256);

std::vector<Entry> Entries(raft::Index first, int n) {
  std::vector<Entry> out;
  for (int i = 0; i < n; ++i) {
    Entry e;
    e.index = first + i;
    e.term = 1;
    e.data = std::string(256, 'v');
    out.push_back(std::move(e));
  }
  return out;
}

// One Write of `n` entries of 256 bytes to a raft log store; the second
// argument says whether it syncs (one fdatasync per batch).
template <typename Store>
void LogWrite(benchmark::State& state, Store* store) {
  const int n = static_cast<int>(state.range(0));
  const bool sync = state.range(1) != 0;
  raft::Index next = 1;
  for (auto _ : state) {
    raft::host::GroupWrite w;
    w.group = 2;
    w.hard_state = raft::HardState{1, 1, next};
    w.entries = Entries(next, n);
    next += n;
    benchmark::DoNotOptimize(store->Write({w}, sync));
  }
  state.SetItemsProcessed(state.iterations() * n);
}

std::string BenchDir() {
  const std::string dir = std::filesystem::temp_directory_path() /
                          ("tally-microbench-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  return dir;
}

// The LevelDB log store (the simulator's, and old data directories').
void BM_LogStoreWrite(benchmark::State& state) {
  const std::string dir = BenchDir();
  LogWrite(state, kv::storage::LogStore::Open(dir).value().get());
  std::filesystem::remove_all(dir);
}
BENCHMARK(BM_LogStoreWrite)
    ->Args({1, 0})
    ->Args({64, 0})
    ->Args({1, 1})
    ->Args({64, 1})
    ->UseRealTime();

// The segment-file log a node writes.
void BM_SegmentLogWrite(benchmark::State& state) {
  const std::string dir = BenchDir();
  LogWrite(state, kv::storage::SegmentLog::Open(dir).value().get());
  std::filesystem::remove_all(dir);
}
BENCHMARK(BM_SegmentLogWrite)
    ->Args({1, 0})
    ->Args({64, 0})
    ->Args({1, 1})
    ->Args({64, 1})
    ->UseRealTime();

raft::host::GroupMessage AppendMessage(int n) {
  raft::host::GroupMessage gm;
  gm.group = 2;
  gm.msg.type = raft::MessageType::kAppend;
  gm.msg.from = 1;
  gm.msg.to = 2;
  gm.msg.term = 1;
  gm.msg.index = 1;
  gm.msg.entries = Entries(2, n);
  return gm;
}

void BM_EncodeAppend(benchmark::State& state) {
  const raft::host::GroupMessage gm = AppendMessage(state.range(0));
  for (auto _ : state) {
    rpc::RaftMessage pb;
    rpc::ToProto(gm, &pb);
    std::string wire = pb.SerializeAsString();
    benchmark::DoNotOptimize(wire);
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_EncodeAppend)->Arg(1)->Arg(64);

void BM_DecodeAppend(benchmark::State& state) {
  rpc::RaftMessage pb;
  rpc::ToProto(AppendMessage(state.range(0)), &pb);
  const std::string wire = pb.SerializeAsString();
  for (auto _ : state) {
    rpc::RaftMessage in;
    in.ParseFromString(wire);
    benchmark::DoNotOptimize(rpc::FromProto(in));
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_DecodeAppend)->Arg(1)->Arg(64);

}  // namespace
}  // namespace tally

BENCHMARK_MAIN();
