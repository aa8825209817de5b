#include "client/internal/crdt_batcher.h"

#include <utility>
#include <vector>

#include "rpc/status.h"

namespace tally::client::internal {

struct CrdtBatcher::Flight {
  std::string target;
  grpc::ClientContext ctx;
  rpc::CrdtUpdateBatchRequest req;
  rpc::CrdtUpdateBatchResponse resp;
  std::vector<Done> done;
};

CrdtBatcher::CrdtBatcher(Hooks hooks, std::chrono::milliseconds timeout)
    : hooks_(std::move(hooks)), timeout_(timeout) {}

CrdtBatcher::~CrdtBatcher() {
  absl::MutexLock l(&mu_);
  auto idle = [this] {
    mu_.AssertReaderHeld();
    return in_flight_ == 0;
  };
  mu_.Await(absl::Condition(&idle));
}

void CrdtBatcher::Update(rpc::CrdtUpdateRequest req, Done done) {
  std::unique_ptr<Flight> f;
  {
    absl::MutexLock l(&mu_);
    queue_.push_back({std::move(req), std::move(done)});
    if (in_flight_ >= kMaxInFlight) return;
    f = TakeLocked();
  }
  Launch(std::move(f));
}

std::unique_ptr<CrdtBatcher::Flight> CrdtBatcher::TakeLocked() {
  auto f = std::make_unique<Flight>();
  size_t bytes = 0;
  while (!queue_.empty() && f->req.updates_size() < kMaxUpdates) {
    const size_t size = queue_.front().req.ByteSizeLong();
    if (f->req.updates_size() > 0 && bytes + size > kMaxBytes) break;
    bytes += size;
    *f->req.add_updates() = std::move(queue_.front().req);
    f->done.push_back(std::move(queue_.front().done));
    queue_.pop_front();
  }
  ++in_flight_;
  return f;
}

void CrdtBatcher::Launch(std::unique_ptr<Flight> f) {
  f->target = hooks_.target();
  rpc::Crdt::Stub* stub = nullptr;
  {
    absl::MutexLock l(&mu_);
    auto it = stubs_.find(f->target);
    if (it != stubs_.end()) stub = it->second.get();
  }
  if (stub == nullptr) {
    auto made = rpc::Crdt::NewStub(hooks_.channel(f->target));
    absl::MutexLock l(&mu_);
    stub = stubs_.try_emplace(f->target, std::move(made)).first->second.get();
  }
  f->ctx.set_deadline(std::chrono::system_clock::now() + timeout_);
  Flight* raw = f.release();
  stub->async()->UpdateBatch(
      &raw->ctx, &raw->req, &raw->resp,
      [this, raw](grpc::Status st) { Finished(raw, st); });
}

void CrdtBatcher::Finished(Flight* raw, const grpc::Status& st) {
  {
    std::unique_ptr<Flight> f(raw);
    hooks_.answered(f->target, st);
    Answer(*f, st);
  }  // the call's context is gone before it stops counting
  std::unique_ptr<Flight> next;
  {
    absl::MutexLock l(&mu_);
    --in_flight_;
    if (!queue_.empty()) next = TakeLocked();
  }
  if (next) Launch(std::move(next));
}

void CrdtBatcher::Answer(Flight& f, const grpc::Status& st) {
  absl::Status failed;
  if (!st.ok()) {
    failed = rpc::FromGrpc(st, &f.ctx);
  } else if (f.resp.results_size() != f.req.updates_size()) {
    failed = absl::InternalError(
        "the node's answer does not match the updates sent");
  }
  for (size_t i = 0; i < f.done.size(); ++i) {
    if (!failed.ok()) {
      f.done[i](failed);
      continue;
    }
    const rpc::CrdtUpdateResult& r = f.resp.results(static_cast<int>(i));
    if (r.code() != 0) {
      f.done[i](
          absl::Status(static_cast<absl::StatusCode>(r.code()), r.message()));
      continue;
    }
    rpc::CrdtUpdateResponse out;
    out.set_node(f.resp.node());
    out.set_replica(f.resp.replica());
    f.done[i](std::move(out));
  }
}

}  // namespace tally::client::internal
