#!/usr/bin/python3
"""pin_example: a third-party client of pinbrokerd, written from the .proto alone.

It shows the cooperative holder's side of a revoke:

  1. open a session and pin a byte range of a file;
  2. watch the session (the snapshot shows the lease);
  3. from another thread, ask for a truncate with policy revoke (as some other party would);
  4. receive RECALLED for the lease, release it, as a holder must before the recall deadline;
  5. print the truncate's result: the lease is among the released, not the revoked.

Exit status: 0 when the lease was recalled, released in time and reported released by the
truncate; 1 otherwise; 2 for usage errors (missing generated modules, bad arguments).

Usage:
  PYTHONPATH=build/python /usr/bin/python3 clients/python/pin_example.py \\
      --endpoint unix:/tmp/pb/pinbroker.sock --export default --path demo.bin
"""

import argparse
import os
import sys
import threading


def default_endpoint():
    """The same rule as pinctl: $PINBROKER_ENDPOINT, else pinbrokerd's embedded default."""
    if os.environ.get("PINBROKER_ENDPOINT"):
        return os.environ["PINBROKER_ENDPOINT"]
    if os.geteuid() == 0:
        runtime = "/run/pinbroker"
    elif os.environ.get("XDG_RUNTIME_DIR"):
        runtime = os.environ["XDG_RUNTIME_DIR"] + "/pinbroker"
    else:
        runtime = "/tmp/pinbroker-%d" % os.geteuid()
    return "unix:%s/pinbroker.sock" % runtime


def read_pem(what, path):
    with open(path, "rb") as f:
        data = f.read()
    if not data:
        raise ValueError("the TLS %s file '%s' is empty" % (what, path))
    return data


def open_channel(grpc, args):
    """The same rule as pinctl: Unix sockets are plaintext (the broker knows the caller by its
    kernel credentials); a host:port endpoint uses TLS when any --tls-* setting is given (the
    broker requires a client certificate by default), else plaintext."""
    tls = [args.tls_ca, args.tls_cert, args.tls_key, args.tls_server_name]
    if args.endpoint.startswith("unix") or not any(tls):
        return grpc.insecure_channel(args.endpoint)
    if bool(args.tls_cert) != bool(args.tls_key):
        raise ValueError("a TLS client certificate needs both --tls-cert and --tls-key")
    credentials = grpc.ssl_channel_credentials(
        root_certificates=read_pem("CA", args.tls_ca) if args.tls_ca else None,
        private_key=read_pem("key", args.tls_key) if args.tls_key else None,
        certificate_chain=read_pem("certificate", args.tls_cert) if args.tls_cert else None)
    options = []
    if args.tls_server_name:
        options.append(("grpc.ssl_target_name_override", args.tls_server_name))
    return grpc.secure_channel(args.endpoint, credentials, options=options)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--endpoint", default=default_endpoint(),
                   help="unix:/path.sock or host:port (default: %(default)s)")
    p.add_argument("--export", default="default", help="export name (default: %(default)s)")
    p.add_argument("--path", required=True, help="file path relative to the export root")
    p.add_argument("--offset", type=int, default=0, help="first byte to pin (default 0)")
    p.add_argument("--length", type=int, default=65536, help="bytes to pin (default 65536)")
    p.add_argument("--new-size", type=int, default=None,
                   help="size to truncate to (default: --offset, i.e. drop the pinned range)")
    p.add_argument("--grace", type=float, default=5.0,
                   help="revoke grace period in seconds (default 5)")
    p.add_argument("--tls-ca", default=os.environ.get("PINBROKER_TLS_CA"),
                   help="TLS for a host:port endpoint: the CA of the broker's certificate "
                        "(default: $PINBROKER_TLS_CA)")
    p.add_argument("--tls-cert", default=os.environ.get("PINBROKER_TLS_CERT"),
                   help="this client's certificate, PEM (default: $PINBROKER_TLS_CERT)")
    p.add_argument("--tls-key", default=os.environ.get("PINBROKER_TLS_KEY"),
                   help="its private key, PEM (default: $PINBROKER_TLS_KEY)")
    p.add_argument("--tls-server-name", default=os.environ.get("PINBROKER_TLS_SERVER_NAME"),
                   help="the name the broker's certificate carries, if not the endpoint's host")
    p.add_argument("--pythonpath", default=None,
                   help="directory holding the generated pinbroker/v1/*_pb2*.py "
                        "(default: found on PYTHONPATH)")
    return p.parse_args()


def main():
    args = parse_args()
    if args.pythonpath:
        sys.path.insert(0, args.pythonpath)
    try:
        import grpc
        from pinbroker.v1 import pinbroker_pb2 as pb
        from pinbroker.v1 import pinbroker_pb2_grpc as pb_grpc
    except ImportError as e:
        print("pin_example: cannot import grpc or the generated pinbroker modules (%s); "
              "build the pinbroker_python target and pass --pythonpath BUILD/python" % e,
              file=sys.stderr)
        return 2

    try:
        channel = open_channel(grpc, args)
    except (OSError, ValueError) as e:
        print("pin_example: %s" % e, file=sys.stderr)
        return 2
    stub = pb_grpc.PinBrokerStub(channel)
    rpc_timeout = 30

    opened = stub.OpenSession(pb.OpenSessionRequest(client_name="pin_example"),
                              timeout=rpc_timeout)
    creds = opened.credentials
    print("session %s opened (broker epoch %s)" % (creds.session_id, opened.broker_epoch))

    try:
        pinned = stub.Pin(pb.PinRequest(credentials=creds, export_name=args.export,
                                        path=args.path, offset=args.offset,
                                        length=args.length, access=pb.ACCESS_READ),
                          timeout=rpc_timeout).lease
        print("pinned lease %s: %s/%s bytes [%d, %d), expires %s" % (
            pinned.lease_id, pinned.export_name, pinned.path, pinned.range.offset,
            pinned.range.offset + pinned.range.length, pinned.expires_at.ToJsonString()))

        # Watch first, then ask for the truncate: the snapshot proves the stream is live, so
        # the recall cannot be missed.
        stream = stub.Watch(pb.WatchRequest(credentials=creds))
        result = {}

        def truncate():
            request = pb.TruncateRequest(
                export_name=args.export, path=args.path,
                new_size=args.offset if args.new_size is None else args.new_size,
                options=pb.LayoutOptions(policy=pb.LAYOUT_POLICY_REVOKE,
                                         initiator="pin_example"))
            request.options.grace.FromMilliseconds(int(args.grace * 1000))
            try:
                result["response"] = stub.Truncate(request, timeout=rpc_timeout + args.grace)
            except grpc.RpcError as e:
                result["error"] = e
            if not result.get("released"):
                stream.cancel()  # No recall reached us: stop waiting for one.

        truncater = threading.Thread(target=truncate)
        recalled = False
        try:
            for event in stream:
                kind = pb.WatchEvent.Type.Name(event.type)
                if event.type == pb.WatchEvent.SNAPSHOT:
                    print("snapshot: lease %s (%s)" % (
                        event.lease.lease_id, pb.LeaseState.Name(event.lease.state)))
                elif event.type == pb.WatchEvent.SNAPSHOT_COMPLETE:
                    print("snapshot complete; asking for a truncate with policy revoke")
                    truncater.start()
                elif event.lease.lease_id != pinned.lease_id:
                    print("%s: lease %s" % (kind, event.lease.lease_id))
                elif event.type == pb.WatchEvent.RECALLED:
                    recalled = True
                    print("RECALLED lease %s at %s: release before %s (%s)" % (
                        event.lease.lease_id, event.at.ToJsonString(),
                        event.lease.recall_deadline.ToJsonString(), event.lease.reason))
                    stub.Release(pb.ReleaseRequest(credentials=creds,
                                                   lease_id=pinned.lease_id),
                                 timeout=rpc_timeout)
                    result["released"] = True
                    print("released lease %s" % pinned.lease_id)
                    break
                else:
                    print("%s: lease %s (%s)" % (kind, event.lease.lease_id, event.lease.reason))
                    if event.type in (pb.WatchEvent.REVOKED, pb.WatchEvent.EXPIRED):
                        break
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.CANCELLED:
                print("watch failed: %s: %s" % (e.code().name, e.details()), file=sys.stderr)
        finally:
            stream.cancel()
        if truncater.ident is not None:  # Started.
            truncater.join(rpc_timeout + args.grace)

        if "error" in result:
            e = result["error"]
            print("truncate failed: %s: %s" % (e.code().name, e.details()))
            return 1
        if "response" not in result:
            print("truncate did not finish", file=sys.stderr)
            return 1
        r = result["response"]
        print("truncate: policy %s, size %d -> %d, recalled [%s], released [%s], "
              "revoked [%s], waited %.3fs" % (
                  pb.LayoutPolicy.Name(r.policy), r.size_before, r.size_after,
                  ", ".join(r.recalled_lease_ids), ", ".join(r.released_lease_ids),
                  ", ".join(r.revoked_lease_ids), r.waited.ToTimedelta().total_seconds()))
        ok = recalled and pinned.lease_id in r.released_lease_ids
        print("result: %s" % ("lease recalled and released in time" if ok else "UNEXPECTED"))
        return 0 if ok else 1
    except grpc.RpcError as e:
        print("pin_example: %s: %s" % (e.code().name, e.details()), file=sys.stderr)
        return 1
    finally:
        try:
            stub.CloseSession(pb.CloseSessionRequest(credentials=creds), timeout=5)
        except grpc.RpcError:
            pass  # The broker may be gone; the session ends with it.
        channel.close()


if __name__ == "__main__":
    sys.exit(main())
