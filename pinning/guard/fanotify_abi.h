// fanotify definitions pinbroker's guard needs that Debian 12's kernel headers (linux-libc-dev
// 6.1) lack. They are the stable user-space ABI of Linux >= 6.14 (include/uapi/linux/fanotify.h);
// each is defined only when the system headers do not define it, so newer headers win.
//
// Header-only; constants and a plain struct.
#pragma once

#include <linux/types.h>
#include <sys/fanotify.h>

// Pre-content access hook (Linux 6.14): reported before a read, write, mmap, truncate or
// fallocate reaches the file, with the byte range (FAN_EVENT_INFO_TYPE_RANGE). Needs a
// FAN_CLASS_PRE_CONTENT group; older kernels refuse the mark with EINVAL.
#ifndef FAN_PRE_ACCESS
#define FAN_PRE_ACCESS 0x00100000
#endif

// Info record carrying the (offset, count) of a pre-content event.
#ifndef FAN_EVENT_INFO_TYPE_RANGE
#define FAN_EVENT_INFO_TYPE_RANGE 6
struct fanotify_event_info_range {
  struct fanotify_event_info_header hdr;
  __u32 pad;
  __u64 offset;
  __u64 count;
};
#endif

// A deny response may carry an errno (Linux 6.14; pre-content groups only; the kernel accepts
// EPERM, EIO, EBUSY, ETXTBSY, EAGAIN, ENOSPC and EDQUOT).
#ifndef FAN_DENY_ERRNO
#define FAN_ERRNO_BITS 8
#define FAN_ERRNO_SHIFT (32 - FAN_ERRNO_BITS)
#define FAN_ERRNO_MASK ((1 << FAN_ERRNO_BITS) - 1)
#define FAN_DENY_ERRNO(err) (FAN_DENY | ((((__u32)(err)) & FAN_ERRNO_MASK) << FAN_ERRNO_SHIFT))
#endif
