#ifndef TALLY_CLIENT_INTERNAL_BEARER_TOKEN_H_
#define TALLY_CLIENT_INTERNAL_BEARER_TOKEN_H_

#include <memory>
#include <string>

#include "grpcpp/grpcpp.h"

namespace tally::client::internal {

// A channel to `address` whose calls carry "authorization: Bearer <token>"
// (none when `token` is empty).
std::shared_ptr<grpc::Channel> DialWithToken(
    const std::string& address,
    const std::shared_ptr<grpc::ChannelCredentials>& credentials,
    const grpc::ChannelArguments& args, const std::string& token);

}  // namespace tally::client::internal

#endif  // TALLY_CLIENT_INTERNAL_BEARER_TOKEN_H_
