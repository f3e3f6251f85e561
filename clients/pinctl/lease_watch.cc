// lease watch: the session's snapshot and events, one line each, until SIGINT/SIGTERM (exit 0)
// or the end of the stream (exit by its status).
#include "clients/pinctl/commands.h"
#include "clients/pinctl/signals.h"
#include "clients/pinctl/views.h"
#include "clients/pinctl/watch_stream.h"

namespace pinctl {

int RunLeaseWatch(Invocation& inv) {
  auto credentials = RequireCredentials(inv, "lease watch");
  if (!credentials) return kExitUsage;
  WatchStream stream(inv.connection.broker(), *credentials);
  SignalWaiter signals([&stream](int) { stream.Interrupt(); });
  for (;;) {
    auto item = stream.Next(absl::InfiniteFuture());
    if (!item.has_value()) {
      if (stream.interrupted()) return kExitOk;
      continue;
    }
    if (!item->event.has_value()) {
      if (item->end.ok()) return kExitOk;
      return inv.out.RpcError(item->end, "watch");
    }
    if (inv.out.json()) {
      inv.out.Json(*item->event);
    } else {
      inv.out.Line(EventLine(*item->event));
    }
  }
}

}  // namespace pinctl
