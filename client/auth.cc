// Client::AuthChange and AuthGet, and the interceptor that sends the
// client's bearer token with every call.

#include "client/client.h"
#include "client/internal/bearer_token.h"
#include "client/internal/call.h"

namespace tally::client {

absl::StatusOr<rpc::AuthChangeResponse> Client::AuthChange(
    const rpc::AuthChangeRequest& req) {
  absl::StatusOr<uint64_t> meta = MetaGroup();
  if (!meta.ok()) return meta.status();
  rpc::AuthChangeResponse resp;
  absl::Status st = Call(*meta, false, [&](auto ch, auto& ctx) {
    return rpc::Auth::NewStub(ch)->Change(&ctx, req, &resp);
  });
  if (!st.ok()) return st;
  return resp;
}

absl::StatusOr<rpc::AuthGetResponse> Client::AuthGet() {
  absl::StatusOr<uint64_t> meta = MetaGroup();
  if (!meta.ok()) return meta.status();
  rpc::AuthGetResponse resp;
  absl::Status st = Call(*meta, true, [&](auto ch, auto& ctx) {
    return rpc::Auth::NewStub(ch)->Get(&ctx, rpc::AuthGetRequest(), &resp);
  });
  if (!st.ok()) return st;
  return resp;
}

namespace internal {

namespace {

class BearerToken final : public grpc::experimental::Interceptor {
 public:
  explicit BearerToken(const std::string* header) : header_(header) {}
  void Intercept(grpc::experimental::InterceptorBatchMethods* m) override {
    if (m->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::
                PRE_SEND_INITIAL_METADATA)) {
      m->GetSendInitialMetadata()->emplace("authorization", *header_);
    }
    m->Proceed();
  }

 private:
  const std::string* const header_;
};

class BearerTokenFactory final
    : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  explicit BearerTokenFactory(const std::string& token)
      : header_("Bearer " + token) {}
  grpc::experimental::Interceptor* CreateClientInterceptor(
      grpc::experimental::ClientRpcInfo*) override {
    return new BearerToken(&header_);
  }

 private:
  const std::string header_;
};

}  // namespace

std::shared_ptr<grpc::Channel> DialWithToken(
    const std::string& address,
    const std::shared_ptr<grpc::ChannelCredentials>& credentials,
    const grpc::ChannelArguments& args, const std::string& token) {
  if (token.empty()) {
    return grpc::CreateCustomChannel(address, credentials, args);
  }
  std::vector<
      std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>>
      interceptors;
  interceptors.push_back(std::make_unique<BearerTokenFactory>(token));
  return grpc::experimental::CreateCustomChannelWithInterceptors(
      address, credentials, args, std::move(interceptors));
}

}  // namespace internal

}  // namespace tally::client
