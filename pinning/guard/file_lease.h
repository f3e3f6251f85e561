// File leases (fcntl F_SETLEASE) as a guard: a read lease on the guard's own read-only
// descriptor of a leased file. The kernel breaks it, and holds the breaker, when another
// process calls truncate(2) on the path or opens the file for writing (O_TRUNC included), and
// tells the guard with a real-time signal carrying the descriptor (F_SETSIG), sent to one
// thread (F_SETOWN_EX). The breaker waits until the guard gives the lease up (F_UNLCK) or
// /proc/sys/fs/lease-break-time passes, then proceeds: a lease can delay a change, never fail it.
//
// A read lease can only be taken while nobody has the file open for writing, the broker's own
// read-write descriptors and mappings included (EAGAIN otherwise), and needs the file's owner
// or CAP_LEASE. It does not catch ftruncate(2) or fallocate(2) on descriptors already open, nor
// open(O_RDONLY | O_TRUNC), which truncates without breaking a read lease.
//
// Stateless functions; thread-safe.
#pragma once

#include <sys/types.h>

#include "absl/status/status.h"

namespace pinbroker::guard {

// Takes a read lease on `fd` (open O_RDONLY) whose breaks arrive as `signal` at thread `tid`.
// FAILED_PRECONDITION if someone has the file open for writing (EAGAIN), PERMISSION_DENIED
// without ownership or CAP_LEASE.
absl::Status ArmReadLease(int fd, int signal, pid_t tid);

// Gives the lease on `fd` up (lets a breaker proceed). No-op without one.
void ReleaseLease(int fd);

// True if the lease on `fd` is being broken (the kernel holds a breaker until it is released).
bool LeaseBreaking(int fd);

// /proc/sys/fs/lease-break-time in seconds (45 if unreadable).
int LeaseBreakSeconds();

}  // namespace pinbroker::guard
