#include "client/internal/crdt_batcher.h"

#include <algorithm>
#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"

namespace tally::client::internal {
namespace {

static_assert(CrdtBatcher::kMaxInFlight == 2, "the tests below count on it");

// A node's Crdt.UpdateBatch on 127.0.0.1 that records the calls it gets:
// a row named "bad" is refused, every other update applied. While `hold`
// is set, calls wait until it is cleared.
class FakeNode final : public rpc::Crdt::Service {
 public:
  grpc::Status UpdateBatch(grpc::ServerContext*,
                           const rpc::CrdtUpdateBatchRequest* req,
                           rpc::CrdtUpdateBatchResponse* resp) override {
    absl::MutexLock l(&mu_);
    sizes_.push_back(req->updates_size());
    auto released = [this] {
      mu_.AssertReaderHeld();
      return !hold_;
    };
    mu_.Await(absl::Condition(&released));
    if (unavailable_) {
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, "node is down");
    }
    resp->set_node(7);
    resp->set_replica(42);
    for (const rpc::CrdtUpdateRequest& u : req->updates()) {
      rpc::CrdtUpdateResult* r = resp->add_results();
      if (u.row() == "bad") {
        r->set_code(grpc::StatusCode::INVALID_ARGUMENT);
        r->set_message("bad row");
      }
    }
    return grpc::Status::OK;
  }

  void Hold(bool hold) {
    absl::MutexLock l(&mu_);
    hold_ = hold;
  }
  void Unavailable() {
    absl::MutexLock l(&mu_);
    unavailable_ = true;
  }
  std::vector<int> sizes() {
    absl::MutexLock l(&mu_);
    return sizes_;
  }
  // Waits until `n` calls have arrived.
  void AwaitCalls(size_t n) {
    absl::MutexLock l(&mu_);
    auto arrived = [this, n] {
      mu_.AssertReaderHeld();
      return sizes_.size() >= n;
    };
    mu_.Await(absl::Condition(&arrived));
  }

 private:
  absl::Mutex mu_;
  bool hold_ ABSL_GUARDED_BY(mu_) = false;
  bool unavailable_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<int> sizes_ ABSL_GUARDED_BY(mu_);
};

class CrdtBatcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder b;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                       &port_);
    b.RegisterService(&node_);
    server_ = b.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    address_ = "127.0.0.1:" + std::to_string(port_);
    CrdtBatcher::Hooks hooks;
    hooks.target = [this] { return address_; };
    hooks.channel = [](const std::string& a) {
      return grpc::CreateChannel(a, grpc::InsecureChannelCredentials());
    };
    hooks.answered = [this](const std::string&, const grpc::Status& st) {
      if (!st.ok()) ++failed_calls_;
    };
    batcher_ = std::make_unique<CrdtBatcher>(std::move(hooks),
                                             std::chrono::seconds(10));
  }

  void TearDown() override {
    node_.Hold(false);
    batcher_.reset();
    server_->Shutdown();
  }

  static rpc::CrdtUpdateRequest Incr(const std::string& row) {
    rpc::CrdtUpdateRequest r;
    r.set_table("t");
    r.set_row(row);
    rpc::CrdtOp* op = r.add_ops();
    op->set_kind(rpc::CrdtOp::INCREMENT);
    op->set_column("n");
    op->set_amount(1);
    return r;
  }

  // Sends `rows` without waiting; their outcomes land in `out`.
  void Send(const std::vector<std::string>& rows,
            std::vector<absl::StatusOr<rpc::CrdtUpdateResponse>>* out,
            std::atomic<int>* answered) {
    out->resize(rows.size(), absl::UnknownError("not answered"));
    for (size_t i = 0; i < rows.size(); ++i) {
      batcher_->Update(Incr(rows[i]), [out, answered, i](auto r) {
        (*out)[i] = std::move(r);
        ++*answered;
      });
    }
  }

  static void AwaitAnswers(const std::atomic<int>& answered, int n) {
    for (int i = 0; i < 1000 && answered.load() < n; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ASSERT_EQ(answered.load(), n);
  }

  FakeNode node_;
  int port_ = 0;
  std::string address_;
  std::unique_ptr<grpc::Server> server_;
  std::atomic<int> failed_calls_{0};
  std::unique_ptr<CrdtBatcher> batcher_;
};

TEST_F(CrdtBatcherTest,
       UpdatesWaitingForACallLeaveTogetherAndAreAnsweredOneByOne) {
  node_.Hold(true);
  std::vector<absl::StatusOr<rpc::CrdtUpdateResponse>> out;
  std::atomic<int> answered{0};
  // The first kMaxInFlight go at once, alone; the rest wait for them.
  std::vector<std::string> rows;
  for (int i = 0; i < 50; ++i) rows.push_back(i == 30 ? "bad" : "r");
  Send(rows, &out, &answered);
  node_.AwaitCalls(CrdtBatcher::kMaxInFlight);
  EXPECT_EQ(answered.load(), 0);
  node_.Hold(false);
  AwaitAnswers(answered, 50);

  std::vector<int> sizes = node_.sizes();
  ASSERT_EQ(sizes.size(), CrdtBatcher::kMaxInFlight + 1);
  EXPECT_EQ(sizes[0], 1);
  EXPECT_EQ(sizes[1], 1);
  EXPECT_EQ(sizes[2], 48);  // all that waited, in one call
  for (size_t i = 0; i < out.size(); ++i) {
    if (i == 30) {
      EXPECT_EQ(out[i].status().code(), absl::StatusCode::kInvalidArgument);
      EXPECT_EQ(out[i].status().message(), "bad row");
    } else {
      ASSERT_TRUE(out[i].ok()) << i << ": " << out[i].status();
      EXPECT_EQ(out[i]->node(), 7u);
      EXPECT_EQ(out[i]->replica(), 42u);
    }
  }
}

TEST_F(CrdtBatcherTest, UnderLightLoadEachUpdateGoesAtOnceAlone) {
  for (int i = 0; i < 5; ++i) {
    std::vector<absl::StatusOr<rpc::CrdtUpdateResponse>> out;
    std::atomic<int> answered{0};
    Send({"r"}, &out, &answered);
    AwaitAnswers(answered, 1);
    EXPECT_TRUE(out[0].ok());
  }
  EXPECT_EQ(node_.sizes(), std::vector<int>(5, 1));
}

TEST_F(CrdtBatcherTest, AFailedCallFailsEachOfItsUpdatesAndIsReported) {
  node_.Unavailable();
  std::vector<absl::StatusOr<rpc::CrdtUpdateResponse>> out;
  std::atomic<int> answered{0};
  Send({"a", "b", "c"}, &out, &answered);
  AwaitAnswers(answered, 3);
  for (const auto& r : out) {
    EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  }
  EXPECT_EQ(failed_calls_.load(), static_cast<int>(node_.sizes().size()));
}

TEST_F(CrdtBatcherTest, BatchesStopAtTheirCountLimit) {
  node_.Hold(true);
  std::vector<absl::StatusOr<rpc::CrdtUpdateResponse>> out;
  std::atomic<int> answered{0};
  const int n = CrdtBatcher::kMaxInFlight + CrdtBatcher::kMaxUpdates + 10;
  Send(std::vector<std::string>(n, "r"), &out, &answered);
  node_.AwaitCalls(CrdtBatcher::kMaxInFlight);
  node_.Hold(false);
  AwaitAnswers(answered, n);
  std::vector<int> sizes = node_.sizes();
  // The two calls after the first ones may arrive in either order.
  std::sort(sizes.begin(), sizes.end());
  EXPECT_EQ(sizes, (std::vector<int>{1, 1, 10, CrdtBatcher::kMaxUpdates}));
}

}  // namespace
}  // namespace tally::client::internal
