#include "kv/meta/meta.h"

#include <memory>

#include "absl/strings/str_cat.h"

namespace tally::kv {

bool Meta::Handles(const kvpb::Command& cmd) const {
  return cmd.has_set_member() || cmd.has_remove_member();
}

kvpb::CommandResult Meta::Apply(ApplyContext& ctx, const kvpb::Command& cmd) {
  Batch& b = ctx.batch;
  if (cmd.has_set_member()) {
    const uint64_t id = cmd.set_member().id();
    if (b.Read(keys_->IdKey(Space::kRemovedMember, id))) {
      // Messages meant for the removed node may still be on their way; a
      // new node under its id would take them for its own.
      return Refusal(
          absl::StatusCode::kFailedPrecondition,
          absl::StrCat("n", id,
                       " was removed from the cluster and its id cannot be "
                       "used again; add the node under a new name"));
    }
    b.Put(keys_->IdKey(Space::kMember, id),
          cmd.set_member().SerializeAsString());
  } else {
    const uint64_t id = cmd.remove_member();
    b.Delete(keys_->IdKey(Space::kMember, id));
    b.Put(keys_->IdKey(Space::kRemovedMember, id), "");
  }
  changed_ = true;
  return {};
}

void Meta::Committed() {
  if (std::exchange(changed_, false) && members_changed_) members_changed_();
}

void Meta::Bootstrap(Batch& b, const std::vector<kvpb::Member>& members,
                     const std::vector<kvpb::RangeDescriptor>& ranges) const {
  for (const kvpb::RangeDescriptor& r : ranges) {
    b.Put(keys_->Key(Space::kRange, r.start()), r.SerializeAsString());
  }
  for (const kvpb::Member& m : members) {
    b.Put(keys_->IdKey(Space::kMember, m.id()), m.SerializeAsString());
  }
}

bool Meta::WasRemoved(uint64_t id) const {
  absl::StatusOr<std::optional<std::string>> v =
      engine_->Get(keys_->IdKey(Space::kRemovedMember, id));
  return v.ok() && v->has_value();
}

template <typename Record>
absl::StatusOr<std::vector<Record>> Meta::Scan(Space space) const {
  std::vector<Record> out;
  const std::string prefix = keys_->Key(space);
  std::unique_ptr<storage::Iterator> it = engine_->NewIterator();
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix);
       it->Next()) {
    Record r;
    if (!r.ParseFromArray(it->value().data(),
                          static_cast<int>(it->value().size()))) {
      return absl::DataLossError(
          absl::StrCat("malformed '", std::string(1, static_cast<char>(space)),
                       "' record of group ", keys_->group()));
    }
    out.push_back(std::move(r));
  }
  if (!it->status().ok()) return it->status();
  return out;
}

absl::StatusOr<std::vector<kvpb::Member>> Meta::Members() const {
  return Scan<kvpb::Member>(Space::kMember);
}

absl::StatusOr<std::vector<kvpb::RangeDescriptor>> Meta::Ranges() const {
  return Scan<kvpb::RangeDescriptor>(Space::kRange);
}

}  // namespace tally::kv
