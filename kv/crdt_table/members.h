#ifndef TALLY_KV_CRDT_TABLE_MEMBERS_H_
#define TALLY_KV_CRDT_TABLE_MEMBERS_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "kv/module.h"
#include "kv/storage/engine.h"

namespace tally::kv {

// Per origin replica, every dot up to the counter.
using CrdtVector = std::map<uint64_t, uint64_t>;
CrdtVector FromCounts(
    const google::protobuf::RepeatedPtrField<kvpb::CrdtCount>& counts);
void ToCounts(const CrdtVector& v,
              google::protobuf::RepeatedPtrField<kvpb::CrdtCount>* out);

// The CRDT replicas and their stability cut, kept in the metadata group
// (key spaces 'w' and 'y'): which replica each node runs, what each has
// seen (reported by the group's leader, which hears it from every node
// during anti-entropy), and the cut: per origin replica, the lowest counter
// every active replica has seen. Below the cut, tombstones and causal
// metadata carry nothing a replica could still need, and each replica
// collects them (crdt_table/replica.h).
//
// A node that comes with a new replica (its disk was wiped) retires its
// old one; an operator retires the replica of a node that is gone for
// good (kvctl crdt retire), so that the cut stops waiting for it. A retired
// replica's dots are folded into the cut as far as every active replica
// has them. A retired replica is never active again: a node that comes
// back with it resyncs from scratch under a new one.
//
// Thread safety: Apply on the apply thread; reads from any thread.
class CrdtMembers final : public Module {
 public:
  // Neither is owned.
  CrdtMembers(const storage::Engine* engine, const Keyspace* keys)
      : engine_(engine), keys_(keys) {}

  bool Handles(const kvpb::Command& cmd) const override;
  kvpb::CommandResult Apply(ApplyContext& ctx,
                            const kvpb::Command& cmd) override;
  void Committed() override;
  void Reloaded() override { generation_.fetch_add(1); }

  // Grows after every stored change of the replicas or the cut.
  uint64_t generation() const { return generation_.load(); }

  // nullopt for a replica never registered.
  absl::StatusOr<std::optional<kvpb::CrdtReplicaRecord>> Replica(
      uint64_t replica) const;
  // Every replica, retired ones included, by id.
  absl::StatusOr<std::vector<kvpb::CrdtReplicaRecord>> Replicas() const;
  absl::StatusOr<kvpb::CrdtCut> Cut() const;

 private:
  // Recomputes the cut from the active replicas' reports into `b`; whether
  // it moved.
  bool UpdateCut(ApplyContext& ctx,
                 const std::map<uint64_t, kvpb::CrdtReplicaRecord>& all,
                 bool members_changed, kvpb::CrdtCut* cut);
  absl::StatusOr<std::map<uint64_t, kvpb::CrdtReplicaRecord>> ReadAll(
      ApplyContext& ctx) const;

  const storage::Engine* const engine_;
  const Keyspace* const keys_;
  bool changed_ = false;  // by the apply pass in progress
  std::atomic<uint64_t> generation_{0};
};

}  // namespace tally::kv

#endif  // TALLY_KV_CRDT_TABLE_MEMBERS_H_
