// Status propagation macros.
//
// abseil 20220623 (Debian 12) ships neither RETURN_IF_ERROR nor ASSIGN_OR_RETURN, so pinbroker
// carries these two. Both evaluate their expression exactly once. Thread-safety: n/a (macros).
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define PB_STATUS_CONCAT_INNER_(a, b) a##b
#define PB_STATUS_CONCAT_(a, b) PB_STATUS_CONCAT_INNER_(a, b)

// Returns the status from the enclosing function if `expr` is not OK.
#define RETURN_IF_ERROR(expr)                                   \
  do {                                                          \
    if (::absl::Status pb_status_ = (expr); !pb_status_.ok()) { \
      return pb_status_;                                        \
    }                                                           \
  } while (false)

// `ASSIGN_OR_RETURN(auto x, Foo());` assigns the value of an absl::StatusOr<T> or returns its
// status from the enclosing function.
#define ASSIGN_OR_RETURN(lhs, expr) \
  PB_ASSIGN_OR_RETURN_IMPL_(PB_STATUS_CONCAT_(pb_statusor_, __LINE__), lhs, expr)

#define PB_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                              \
  if (!statusor.ok()) {                                \
    return std::move(statusor).status();               \
  }                                                    \
  lhs = *std::move(statusor)
