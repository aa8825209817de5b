#include "kv/lock/lock.h"

#include <algorithm>
#include <memory>

#include "absl/strings/str_cat.h"
#include "kv/storage/leveldb_util.h"
#include "rpc/reasons.h"

namespace tally::kv {

namespace {

kvpb::CommandResult Answer(const ApplyContext& ctx, bool acquired,
                           uint32_t queued_at, const kvpb::LockRecord& rec) {
  kvpb::CommandResult r;
  kvpb::LockResult* out = r.mutable_lock();
  out->set_acquired(acquired);
  out->set_queued_at(queued_at);
  if (rec.has_holder()) *out->mutable_holder() = rec.holder();
  ctx.Header(out->mutable_header());
  return r;
}

bool Involves(const kvpb::LockRecord& rec, uint64_t lease) {
  if (rec.has_holder() && rec.holder().lease() == lease) return true;
  return std::any_of(
      rec.waiters().begin(), rec.waiters().end(),
      [&](const kvpb::LockWaiter& w) { return w.lease() == lease; });
}

// Whether waiter `w` still waits at log time `now_ms`.
bool StillWaiting(const kvpb::LockWaiter& w, int64_t now_ms) {
  return w.give_up_ms() >= now_ms;
}

size_t WaitingBytes(const kvpb::LockRecord& rec) {
  size_t bytes = 0;
  for (const kvpb::LockWaiter& w : rec.waiters()) bytes += w.value().size();
  return bytes;
}

// Whether the queue of `rec` has room for one more waiter with a value of
// `value_size` bytes.
bool HasRoom(const kvpb::LockRecord& rec, size_t value_size) {
  return static_cast<size_t>(rec.waiters_size()) < kMaxLockWaiters &&
         WaitingBytes(rec) + value_size <= kMaxLockWaitingBytes;
}

}  // namespace

Locks::Locks(const storage::Engine* engine, const Keyspace* keys,
             Leases* leases)
    : engine_(engine), keys_(keys), leases_(leases) {
  leases_->set_ended(
      [this](ApplyContext& ctx, uint64_t id) { LeaseEnded(ctx, id); });
}

bool Locks::Handles(const kvpb::Command& cmd) const {
  return cmd.has_lock_acquire() || cmd.has_lock_release() ||
         cmd.has_lock_proclaim();
}

std::string Locks::LeaseKey(uint64_t lease, const std::string& name) const {
  std::string k = keys_->IdKey(Space::kLockOfLease, lease);
  k.append(name);
  return k;
}

std::optional<kvpb::LockRecord> Locks::Read(Batch& b, const std::string& name) {
  std::optional<std::string> raw = b.Read(keys_->Key(Space::kLock, name));
  if (!raw) return std::nullopt;
  kvpb::LockRecord rec;
  if (!rec.ParseFromString(*raw)) {
    b.Fail(absl::DataLossError(absl::StrCat("malformed lock \"", name, "\"")));
    return std::nullopt;
  }
  return rec;
}

void Locks::Write(Batch& b, const std::string& name,
                  const kvpb::LockRecord& rec) {
  b.Put(keys_->Key(Space::kLock, name), rec.SerializeAsString());
  changed_.insert(name);
}

kvpb::CommandResult Locks::Apply(ApplyContext& ctx, const kvpb::Command& cmd) {
  if (cmd.has_lock_acquire()) return Acquire(ctx, cmd.lock_acquire());
  if (cmd.has_lock_release()) return Release(ctx, cmd.lock_release());
  return Proclaim(ctx, cmd.lock_proclaim());
}

kvpb::CommandResult Locks::Acquire(ApplyContext& ctx,
                                   const kvpb::LockAcquire& req) {
  // First, because a lease found due ends here, and that may change this
  // very lock.
  if (!req.cancel() && !leases_->Live(ctx, req.lease())) {
    return Refusal(absl::StatusCode::kNotFound,
                   absl::StrCat("lease ", req.lease(),
                                " not found (ended or never granted)"),
                   rpc::kReasonLeaseNotFound);
  }
  kvpb::LockRecord rec =
      Read(ctx.batch, req.name()).value_or(kvpb::LockRecord());
  if (rec.has_holder() && rec.holder().request_id() == req.request_id()) {
    return Answer(ctx, true, 0, rec);  // a retry of the request that got it
  }
  auto* waiters = rec.mutable_waiters();
  auto w = std::find_if(waiters->begin(), waiters->end(),
                        [&](const kvpb::LockWaiter& x) {
                          return x.request_id() == req.request_id();
                        });
  if (req.cancel()) {
    if (w != waiters->end()) {
      const uint64_t lease = w->lease();
      waiters->erase(w);
      if (!Involves(rec, lease)) ctx.batch.Delete(LeaseKey(lease, req.name()));
      Write(ctx.batch, req.name(), rec);
    }
    return Answer(ctx, false, 0, rec);
  }
  if (w != waiters->end()) {
    return Answer(ctx, false, static_cast<uint32_t>(w - waiters->begin()) + 1,
                  rec);
  }
  if (!rec.has_holder()) {
    Take(ctx, req.name(), rec, req.lease(), req.request_id(), req.value());
    Write(ctx.batch, req.name(), rec);
    return Answer(ctx, true, 0, rec);
  }
  if (req.wait_ms() <= 0) return Answer(ctx, false, 0, rec);
  if (!HasRoom(rec, req.value().size()) && DropGivenUp(ctx, req.name(), rec)) {
    Write(ctx.batch, req.name(), rec);
  }
  if (!HasRoom(rec, req.value().size())) {
    return Refusal(
        absl::StatusCode::kResourceExhausted,
        absl::StrCat("lock \"", req.name(), "\" has ", rec.waiters_size(),
                     " waiters already, with ", WaitingBytes(rec),
                     " bytes of values (at most ", kMaxLockWaiters,
                     " waiters and ", kMaxLockWaitingBytes,
                     " bytes per lock); retry later, or try without waiting"),
        rpc::kReasonLockQueueFull);
  }
  kvpb::LockWaiter* added = rec.add_waiters();
  added->set_lease(req.lease());
  added->set_request_id(req.request_id());
  added->set_give_up_ms(AddMs(ctx.state.log_time_ms(), req.wait_ms()));
  added->set_value(req.value());
  ctx.batch.Put(LeaseKey(req.lease(), req.name()), "");
  Write(ctx.batch, req.name(), rec);
  return Answer(ctx, false, static_cast<uint32_t>(rec.waiters_size()), rec);
}

std::optional<kvpb::LockRecord> Locks::Held(Batch& b, const std::string& name,
                                            uint64_t token,
                                            kvpb::CommandResult* refusal) {
  std::optional<kvpb::LockRecord> rec = Read(b, name);
  if (!rec || !rec->has_holder()) {
    *refusal = Refusal(absl::StatusCode::kFailedPrecondition,
                       absl::StrCat("lock \"", name, "\" is not held"),
                       rpc::kReasonLockNotHeld);
    return std::nullopt;
  }
  if (rec->holder().token() != token) {
    *refusal = Refusal(absl::StatusCode::kFailedPrecondition,
                       absl::StrCat("lock \"", name, "\" is held under token ",
                                    rec->holder().token(), ", not ", token),
                       rpc::kReasonLockNotHeld);
    return std::nullopt;
  }
  return rec;
}

kvpb::CommandResult Locks::Release(ApplyContext& ctx,
                                   const kvpb::LockRelease& req) {
  kvpb::CommandResult refusal;
  std::optional<kvpb::LockRecord> rec =
      Held(ctx.batch, req.name(), req.token(), &refusal);
  if (!rec) return refusal;
  const uint64_t lease = rec->holder().lease();
  rec->clear_holder();
  PassOn(ctx, req.name(), *rec);
  if (!Involves(*rec, lease)) ctx.batch.Delete(LeaseKey(lease, req.name()));
  Write(ctx.batch, req.name(), *rec);
  return Answer(ctx, false, 0, *rec);
}

kvpb::CommandResult Locks::Proclaim(ApplyContext& ctx,
                                    const kvpb::LockProclaim& req) {
  kvpb::CommandResult refusal;
  std::optional<kvpb::LockRecord> rec =
      Held(ctx.batch, req.name(), req.token(), &refusal);
  if (!rec) return refusal;
  // A holder whose lease is due has lost the lock, even before the expiry
  // entry says so.
  if (!leases_->IsLive(ctx, rec->holder().lease())) {
    return Refusal(
        absl::StatusCode::kFailedPrecondition,
        absl::StrCat("lock \"", req.name(), "\": the lease of token ",
                     req.token(), " has ended"),
        rpc::kReasonLockNotHeld);
  }
  rec->mutable_holder()->set_value(req.value());
  Write(ctx.batch, req.name(), *rec);
  return Answer(ctx, true, 0, *rec);
}

void Locks::Take(ApplyContext& ctx, const std::string& name,
                 kvpb::LockRecord& rec, uint64_t lease, uint64_t request_id,
                 const std::string& value) {
  const std::string last_key = keys_->Key(Space::kLastToken);
  std::optional<std::string> last = ctx.batch.Read(last_key);
  const uint64_t token = std::max<uint64_t>(
      ctx.index,
      last && last->size() == 8 ? storage::ReadBigEndian64(*last) + 1 : 0);
  std::string encoded;
  storage::AppendBigEndian64(&encoded, token);
  ctx.batch.Put(last_key, std::move(encoded));
  rec.set_generation(rec.generation() + 1);
  kvpb::LockGrant* h = rec.mutable_holder();
  h->set_lease(lease);
  h->set_token(token);
  h->set_generation(rec.generation());
  h->set_request_id(request_id);
  h->set_granted_ms(ctx.state.log_time_ms());
  h->set_value(value);
  ctx.batch.Put(LeaseKey(lease, name), "");
}

void Locks::PassOn(ApplyContext& ctx, const std::string& name,
                   kvpb::LockRecord& rec) {
  auto* waiters = rec.mutable_waiters();
  while (!rec.has_holder() && !waiters->empty()) {
    const kvpb::LockWaiter w = waiters->Get(0);
    waiters->erase(waiters->begin());
    // IsLive, not Live: ending a lease here would change `rec` underneath.
    // A due lease is skipped now and ended by its expiry entry.
    if (StillWaiting(w, ctx.state.log_time_ms()) &&
        leases_->IsLive(ctx, w.lease())) {
      Take(ctx, name, rec, w.lease(), w.request_id(), w.value());
      pending_.push_back({name, rec.holder()});
    } else if (!Involves(rec, w.lease())) {
      ctx.batch.Delete(LeaseKey(w.lease(), name));
    }
  }
}

bool Locks::DropGivenUp(ApplyContext& ctx, const std::string& name,
                        kvpb::LockRecord& rec) {
  std::vector<uint64_t> gone;
  auto* waiters = rec.mutable_waiters();
  waiters->erase(std::remove_if(waiters->begin(), waiters->end(),
                                [&](const kvpb::LockWaiter& w) {
                                  if (StillWaiting(w, ctx.state.log_time_ms()))
                                    return false;
                                  gone.push_back(w.lease());
                                  return true;
                                }),
                 waiters->end());
  for (uint64_t lease : gone) {
    if (!Involves(rec, lease)) ctx.batch.Delete(LeaseKey(lease, name));
  }
  return !gone.empty();
}

void Locks::LeaseEnded(ApplyContext& ctx, uint64_t lease) {
  const std::string prefix = keys_->IdKey(Space::kLockOfLease, lease);
  ctx.batch.ForEach(prefix, [&](const std::string& key, const std::string&) {
    const std::string name = key.substr(prefix.size());
    ctx.batch.Delete(key);
    std::optional<kvpb::LockRecord> rec = Read(ctx.batch, name);
    if (!rec) return;
    auto* waiters = rec->mutable_waiters();
    waiters->erase(std::remove_if(waiters->begin(), waiters->end(),
                                  [&](const kvpb::LockWaiter& w) {
                                    return w.lease() == lease;
                                  }),
                   waiters->end());
    if (rec->has_holder() && rec->holder().lease() == lease) {
      rec->clear_holder();
      PassOn(ctx, name, *rec);
    }
    Write(ctx.batch, name, *rec);
  });
}

void Locks::Committed() {
  if (!pending_.empty() && granted_) granted_(pending_);
  pending_.clear();
  if (!changed_.empty() && changed_fn_) changed_fn_(changed_);
  changed_.clear();
}

absl::StatusOr<Locks::Counts> Locks::Count() const {
  Counts c;
  const std::string prefix = keys_->Key(Space::kLock);
  std::unique_ptr<storage::Iterator> it = engine_->NewIterator();
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix);
       it->Next()) {
    kvpb::LockRecord rec;
    if (!rec.ParseFromArray(it->value().data(),
                            static_cast<int>(it->value().size()))) {
      return absl::DataLossError("malformed lock record");
    }
    c.held += rec.has_holder();
    c.waiting += rec.waiters_size();
  }
  if (!it->status().ok()) return it->status();
  return c;
}

absl::StatusOr<std::optional<kvpb::LockRecord>> Locks::Get(
    const std::string& name, const storage::Snapshot* snapshot) const {
  const std::string key = keys_->Key(Space::kLock, name);
  absl::StatusOr<std::optional<std::string>> raw =
      snapshot != nullptr ? snapshot->Get(key) : engine_->Get(key);
  if (!raw.ok()) return raw.status();
  if (!raw->has_value()) return std::optional<kvpb::LockRecord>();
  kvpb::LockRecord rec;
  if (!rec.ParseFromString(**raw)) {
    return absl::DataLossError(absl::StrCat("malformed lock \"", name, "\""));
  }
  return std::optional<kvpb::LockRecord>(rec);
}

}  // namespace tally::kv
