#ifndef TALLY_KV_META_META_H_
#define TALLY_KV_META_META_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kv/module.h"
#include "kv/storage/engine.h"

namespace tally::kv {

// The cluster's own records, kept in the metadata group: the member table
// (key space 'm'), the ids of removed members, never to be used again ('t'),
// and the range descriptors ('r', written at bootstrap).
//
// Thread safety: Apply and Committed on the apply thread; reads from any
// thread.
class Meta final : public Module {
 public:
  // Called after an apply pass that changed the member table.
  using MembersChanged = std::function<void()>;
  // Neither is owned.
  Meta(const storage::Engine* engine, const Keyspace* keys)
      : engine_(engine), keys_(keys) {}

  bool Handles(const kvpb::Command& cmd) const override;
  kvpb::CommandResult Apply(ApplyContext& ctx,
                            const kvpb::Command& cmd) override;
  void Committed() override;

  // The initial records of a new cluster, into `b`.
  void Bootstrap(Batch& b, const std::vector<kvpb::Member>& members,
                 const std::vector<kvpb::RangeDescriptor>& ranges) const;
  absl::StatusOr<std::vector<kvpb::Member>> Members() const;
  // Whether member `id` was removed (ids are never reused).
  bool WasRemoved(uint64_t id) const;
  // The range descriptors, in key order.
  absl::StatusOr<std::vector<kvpb::RangeDescriptor>> Ranges() const;
  // REQUIRES: called before the first Apply.
  void set_members_changed(MembersChanged fn) {
    members_changed_ = std::move(fn);
  }

 private:
  template <typename Record>
  absl::StatusOr<std::vector<Record>> Scan(Space space) const;

  const storage::Engine* const engine_;
  const Keyspace* const keys_;
  MembersChanged members_changed_;
  bool changed_ = false;  // by the apply pass in progress
};

}  // namespace tally::kv

#endif  // TALLY_KV_META_META_H_
