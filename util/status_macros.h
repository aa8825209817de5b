#ifndef TALLY_UTIL_STATUS_MACROS_H_
#define TALLY_UTIL_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

// RETURN_IF_ERROR(expr): evaluates expr (an absl::Status) and returns it from
// the enclosing function when it is not OK.
#define RETURN_IF_ERROR(expr)                      \
  do {                                             \
    ::absl::Status tally_status_ = (expr);         \
    if (!tally_status_.ok()) return tally_status_; \
  } while (false)

#define TALLY_STATUS_CONCAT_INNER_(a, b) a##b
#define TALLY_STATUS_CONCAT_(a, b) TALLY_STATUS_CONCAT_INNER_(a, b)

// ASSIGN_OR_RETURN(lhs, expr): evaluates expr (an absl::StatusOr<T>); on error
// returns its status, otherwise moves the value into lhs, which may be a
// declaration ("auto x") or an existing variable.
#define ASSIGN_OR_RETURN(lhs, expr)                                        \
  TALLY_ASSIGN_OR_RETURN_IMPL_(TALLY_STATUS_CONCAT_(tally_sor_, __LINE__), \
                               lhs, expr)

#define TALLY_ASSIGN_OR_RETURN_IMPL_(sor, lhs, expr) \
  auto sor = (expr);                                 \
  if (!sor.ok()) return std::move(sor).status();     \
  lhs = std::move(sor).value()

#endif  // TALLY_UTIL_STATUS_MACROS_H_
