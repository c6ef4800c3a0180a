"""Calls piauthd from Python grpcio over the Unix socket: GetToken, Status,
and a streamed completion.

usage: grpc_client_check.py SOCKET PROTO_DIR OUT_DIR

Generates the stubs from proto/ with grpc_tools, then connects with the one
channel option a non-Rust client needs (see README, "Other languages").
Prints "OK <call>" per successful check and exits non-zero on any failure.
"""

import json
import os
import sys

from grpc_tools import protoc
import grpc


def main() -> int:
    socket, proto_dir, out_dir = sys.argv[1:4]
    os.makedirs(out_dir, exist_ok=True)
    rc = protoc.main([
        "protoc", f"-I{proto_dir}", f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}", "piauth/v1/piauth.proto",
    ])
    if rc != 0:
        print("protoc failed", file=sys.stderr)
        return 1
    sys.path.insert(0, out_dir)
    from piauth.v1 import piauth_pb2, piauth_pb2_grpc  # noqa: E402

    target = f"unix:{socket}"

    # What grpcio does with no options: report it, for the README.
    with grpc.insecure_channel(target) as ch:
        try:
            piauth_pb2_grpc.AuthStub(ch).Status(piauth_pb2.StatusRequest(), timeout=5)
            print("default authority: accepted")
        except grpc.RpcError as e:
            print(f"default authority: refused ({e.code().name}: {e.details()})")

    # The documented option: a host-name authority instead of the socket path.
    options = [("grpc.default_authority", "localhost")]
    with grpc.insecure_channel(target, options=options) as ch:
        auth = piauth_pb2_grpc.AuthStub(ch)
        token = auth.GetToken(piauth_pb2.GetTokenRequest(min_valid_secs=60), timeout=5)
        if token.access_token != os.environ["EXPECT_ACCESS"] or token.account_id != "acc-py":
            print("GetToken returned the wrong token", file=sys.stderr)
            return 1
        print("OK get_token")
        status = auth.Status(piauth_pb2.StatusRequest(), timeout=5)
        codex = [p for p in status.providers if p.provider == "openai-codex"]
        if not codex or codex[0].state != piauth_pb2.PROVIDER_STATE_VALID:
            print(f"unexpected status: {status}", file=sys.stderr)
            return 1
        if codex[0].email != "py@example.com":
            print(f"unexpected email: {codex[0].email}", file=sys.stderr)
            return 1
        print("OK status")
        try:
            auth.GetToken(piauth_pb2.GetTokenRequest(provider="nobody"), timeout=5)
            print("GetToken for an unknown provider succeeded", file=sys.stderr)
            return 1
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.UNAUTHENTICATED:
                print(f"unexpected error code {e.code()}", file=sys.stderr)
                return 1
        print("OK errors")

        # A streamed completion: the text arrives as delta events.
        completions = piauth_pb2_grpc.CompletionsStub(ch)
        request = piauth_pb2.CompletionRequest(
            model="gpt-5.1-codex-mini",
            instructions="Be brief.",
            input_json=json.dumps([{"role": "user", "content": [{"type": "input_text", "text": "hi"}]}]),
        )
        text, last = "", None
        for event in completions.Stream(request, timeout=20):
            if event.type == "response.output_text.delta":
                text += json.loads(event.data_json)["delta"]
            last = event
        if text != os.environ["EXPECT_TEXT"] or last is None or last.type != "response.completed":
            print(f"unexpected completion: {text!r}, last {last and last.type}", file=sys.stderr)
            return 1
        if last.usage.output_tokens == 0:
            print("the terminal event lacks usage", file=sys.stderr)
            return 1
        print("OK stream")

        # Garbage and oversized requests: clear statuses, and the daemon lives on.
        raw = ch.unary_unary("/piauth.v1.Auth/GetToken")
        for body, want in [
            (b"\xff\xff\xff\xff", grpc.StatusCode.INVALID_ARGUMENT),
            (b"\x0a" * (17 * 1024 * 1024), grpc.StatusCode.RESOURCE_EXHAUSTED),
        ]:
            try:
                raw(body, timeout=20)
                print(f"a malformed request of {len(body)} bytes succeeded", file=sys.stderr)
                return 1
            except grpc.RpcError as e:
                if e.code() != want:
                    print(f"{len(body)} bytes: expected {want}, got {e.code()}: {e.details()}", file=sys.stderr)
                    return 1
        auth.Status(piauth_pb2.StatusRequest(), timeout=5)
        print("OK codec")
    return 0


if __name__ == "__main__":
    sys.exit(main())
