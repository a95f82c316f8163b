"""One function's Lambda runtime: a parent that imports the handler once, and a worker per
concurrent invocation forked from it.

The gateway runs this file as a script (``python -u worker.py CONTROL_FD CONFIG``), never
imports it, so a worker's ``sys.modules`` holds nothing of the gateway's; stdlib only.

The parent (the function's "zygote") imports the handler (the cold start), reports
``{"ready": true}`` or ``{"ready": false, "error": ...}`` on the control socket, then
waits for requests for a worker: each is one packet carrying one end of a socket pair.
It forks; the child serves invocations on that socket one at a time, as a Lambda
execution environment does, with the handler already imported and module state
starting as the parent left it. The parent answers the child's pid.

Frames on a worker's socket are a 4-byte big-endian length and JSON:
``{"event", "request_id", "timeout_ms"}`` in, ``{"ok": true, "result"}`` or
``{"ok": false, "errorType", "errorMessage"}`` out. An answer over Lambda's 6 MB
response limit is the error ``Function.ResponseSizeTooLarge``, as Lambda gives it.

Nothing outlives the gateway: the parent exits when its control socket closes, and
every process here is killed by the kernel when its parent dies.
"""

import ctypes
import importlib
import json
import os
import signal
import socket
import struct
import sys
import time
import traceback

MAX_RESPONSE_BYTES = 6 * 1024 * 1024 + 100  # Lambda: 6,291,556 bytes of synchronous response
_PR_SET_PDEATHSIG = 1


def die_with_parent():
    """Ask the kernel to kill this process when its parent exits (Linux; a no-op elsewhere)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def send_frame(sock, payload):
    sock.sendall(struct.pack(">I", len(payload)) + payload)


def read_frame(rfile):
    head = rfile.read(4)
    if len(head) < 4:
        return None
    (size,) = struct.unpack(">I", head)
    data = rfile.read(size)
    return json.loads(data) if len(data) == size else None


class LambdaContext:
    def __init__(self, account, request_id, timeout_ms):
        name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
        region = os.environ.get("AWS_REGION", "us-east-1")
        self.function_name = name
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.invoked_function_arn = "arn:aws:lambda:%s:%s:function:%s" % (region, account, name)
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        self.aws_request_id = request_id
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME")
        self.identity = None
        self.client_context = None
        self._deadline = time.monotonic() + timeout_ms / 1000.0

    def get_remaining_time_in_millis(self):
        return max(0, int((self._deadline - time.monotonic()) * 1000))

    def __repr__(self):
        return "LambdaContext(%s, %s)" % (self.function_name, self.aws_request_id)


def _error(error_type, message):
    return json.dumps({"ok": False, "errorType": error_type, "errorMessage": message}).encode()


def invoke(handler, account, message):
    context = LambdaContext(account, message["request_id"], message["timeout_ms"])
    try:
        result = handler(message["event"], context)
    except Exception as exc:
        sys.stderr.write("[ERROR] %s\n" % traceback.format_exc())
        return _error(type(exc).__name__, str(exc))
    try:
        body = json.dumps(result).encode()
    except (TypeError, ValueError) as exc:
        sys.stderr.write("Runtime.MarshalError: %s\n" % exc)
        return _error("Runtime.MarshalError", str(exc))
    if len(body) > MAX_RESPONSE_BYTES:
        text = "Response payload size (%d bytes) exceeded maximum allowed payload size (%d bytes)." % (len(body), MAX_RESPONSE_BYTES)
        sys.stderr.write("Function.ResponseSizeTooLarge: %s\n" % text)
        return _error("Function.ResponseSizeTooLarge", text)
    return b'{"ok":true,"result":' + body + b"}"


def serve(sock, handler, account):
    """A worker: one invocation at a time until the gateway closes the socket. After its
    first, it tells the gateway what it imported on the way (lazy imports inside the
    handler), so the parent imports those too and later workers start with them."""
    rfile = sock.makefile("rb")
    known, read = set(sys.modules), set(_parsed)
    while True:
        message = read_frame(rfile)
        if message is None:
            return
        payload = invoke(handler, account, message)
        sys.stdout.flush()
        sys.stderr.flush()
        if known is not None:
            learned = {"modules": [name for name in sys.modules if name not in known],
                       "files": [path for path in _parsed if path not in read]}
            payload = payload[:-1] + b',"learned":' + json.dumps(learned).encode() + b"}"
            known = None
        send_frame(sock, payload)


_parsed = {}  # botocore data file -> its parsed JSON, shared by every worker forked after it is read


def share_botocore_data():
    """botocore reads its data files (endpoints, service models, rules) and lists its data
    directories afresh for every client it creates: most of a cold start here. Keep what
    it read in this process, so workers forked later start with it done, as they start
    with the handler imported. (A local shortcut: Lambda gives each environment its own
    CPU for this.)"""
    try:
        from botocore import loaders
    except ImportError:
        return
    if getattr(loaders.JSONFileLoader.load_file, "shared", False):
        return
    load_file, list_services = loaders.JSONFileLoader.load_file, loaders.Loader.list_available_services
    listed = {}

    def shared_load_file(self, file_path):
        if file_path not in _parsed:
            _parsed[file_path] = load_file(self, file_path)
        return _parsed[file_path]

    def shared_list_services(self, type_name):
        key = (tuple(self.search_paths), type_name)
        if key not in listed:
            listed[key] = list_services(self, type_name)
        return list(listed[key])

    shared_load_file.shared = True
    loaders.JSONFileLoader.load_file = shared_load_file
    loaders.Loader.list_available_services = shared_list_services


def warm(learned):
    """Import what a worker imported lazily and read the data files it read, so the next
    workers are forked with that done."""
    done = 0
    for name in learned.get("modules", []):
        try:
            importlib.import_module(name)
            done += 1
        except BaseException:  # noqa: BLE001 - a module that will not import here is imported by the worker itself
            pass
    share_botocore_data()
    if "botocore.loaders" in sys.modules:
        loaders = sys.modules["botocore.loaders"]
        for type_name in ("service-2", "endpoint-rule-set-1"):
            loaders.Loader().list_available_services(type_name)
        for path in learned.get("files", []):
            try:
                loaders.JSONFileLoader().load_file(path)
            except (OSError, ValueError):
                pass
    return done


def fork_worker(control, fd, handler, account):
    pid = os.fork()
    if pid:
        os.close(fd)
        return pid
    try:  # the child: a worker
        control.close()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        die_with_parent()
        if os.getppid() == 1:
            os._exit(0)
        serve(socket.socket(fileno=fd), handler, account)
    except BaseException:  # noqa: BLE001 - a worker never returns into the parent's loop
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def main():
    control = socket.socket(fileno=int(sys.argv[1]))
    config = json.loads(sys.argv[2])
    sys.argv = ["lambda"]
    sys.path[:] = config["path"] + [p for p in sys.path if p and p not in config["path"] and p != os.path.dirname(__file__)]
    die_with_parent()
    try:
        handler = getattr(importlib.import_module(config["module"]), config["function"])
    except BaseException as exc:  # noqa: BLE001 - an init error is reported, not raised
        sys.stderr.write("init error: " + traceback.format_exc())
        sys.stderr.flush()
        control.send(json.dumps({"ready": False, "error": "%s: %s" % (type(exc).__name__, exc)}).encode())
        return 1
    if "botocore" in sys.modules:
        share_botocore_data()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps workers that exit
    control.send(json.dumps({"ready": True, "pid": os.getpid()}).encode())
    while True:
        try:
            data, fds, _, _ = socket.recv_fds(control, 1 << 20, 1)
        except OSError:
            return 0
        if not data:
            return 0  # the gateway closed the control socket: stop (workers die with us)
        if not fds:  # what a worker imported and read while it ran: do it here too
            control.send(json.dumps({"imported": warm(json.loads(data)["learned"])}).encode())
            continue
        try:
            pid = fork_worker(control, fds[0], handler, config["account"])
        except OSError as exc:
            control.send(json.dumps({"error": "fork failed: %s" % exc}).encode())
            continue
        control.send(json.dumps({"pid": pid}).encode())


if __name__ == "__main__":
    sys.exit(main())
