"""An HTTP proxy process on 127.0.0.1 in front of a real server (moto's S3, an LLM
endpoint) that injects faults at the transport, on a schedule: a dropped connection, an error
status (503 SlowDown, 500, 429 with ``Retry-After: 0``, 401), a 3-second stall, a response
cut short, or a 200 whose body is not the API's (an HTML page, as a misconfigured gateway
sends). Requests it does not fault pass through unchanged.

Run as ``python -m tests.helpers.fault_proxy UPSTREAM_PORT SCHEDULE_JSON``; it prints its port.
A schedule is a list of rules ``{"method": "PUT", "query": "partNumber", "nth": [1, 2],
"fault": "drop" | "503" | "500" | "429" | "401" | "stall" | "truncate" | "html"}``: the rule's
``nth`` requests (counted from 1) that match the method and contain ``query`` in the URL get
the fault. ``GET /__faults__`` returns what was injected (and when, in monotonic seconds); ``GET /__forwarded__`` how many requests
the server answered, per method and path; ``GET /__arrivals__`` when requests were passed on
(monotonic seconds). When the server is gone, the client's connection is dropped.
"""

from __future__ import annotations

import http.client
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Lock

SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)
INTERNAL = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code>'
    b"<Message>We encountered an internal error. Please try again.</Message></Error>"
)

UNAUTHORIZED = b'{"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}}'
GATEWAY_PAGE = b"<html><body><h1>Welcome</h1><p>The service is starting.</p></body></html>"
TOO_MANY = b'{"error": {"message": "Rate limit reached, retry after 0 s", "type": "rate_limit_error"}}'


class FaultProxy(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream_port: int, schedule: list[dict]) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.upstream_port = upstream_port
        self.schedule = schedule
        self.seen = [0] * len(schedule)
        self.injected: list[dict] = []
        self.forwarded: dict[str, int] = {}
        self.arrivals: list[float] = []
        self.lock = Lock()

    def fault_for(self, method: str, path: str) -> str | None:
        """Every rule counts the requests it matches; the first rule due injects its fault."""
        fault = None
        with self.lock:
            for number, rule in enumerate(self.schedule):
                if rule.get("method", method) == method and rule.get("query", "") in path:
                    self.seen[number] += 1
                    if fault is None and self.seen[number] in rule["nth"]:
                        fault = rule["fault"]
            if fault is not None:
                self.injected.append({"method": method, "path": path, "fault": fault, "at": time.monotonic()})
        return fault


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FaultProxy

    def log_message(self, *args) -> None:
        pass

    def _handle(self) -> None:
        if self.path in ("/__faults__", "/__forwarded__", "/__arrivals__"):
            with self.server.lock:
                state = {
                    "/__faults__": self.server.injected,
                    "/__forwarded__": self.server.forwarded,
                    "/__arrivals__": self.server.arrivals,
                }[self.path]
                body = json.dumps(state).encode()
            self._reply(200, {"Content-Type": "application/json"}, body)
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        fault = self.server.fault_for(self.command, self.path)
        if fault == "drop":
            self.close_connection = True
            self.connection.close()
            return
        if fault in ("503", "500"):
            self._reply(int(fault), {"Content-Type": "application/xml"}, SLOW_DOWN if fault == "503" else INTERNAL)
            return
        if fault == "429":
            self._reply(429, {"Content-Type": "application/json", "Retry-After": "0"}, TOO_MANY)
            return
        if fault == "stall":  # longer than the client waits; then passes the request on
            time.sleep(3)
        if fault == "401":
            self._reply(401, {"Content-Type": "application/json"}, UNAUTHORIZED)
            return
        if fault == "html":
            self._reply(200, {"Content-Type": "text/html"}, GATEWAY_PAGE)
            return
        with self.server.lock:
            self.server.arrivals.append(time.monotonic())
        upstream = http.client.HTTPConnection("127.0.0.1", self.server.upstream_port, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
        upstream.request(self.command, self.path, body=body, headers=headers)
        response = upstream.getresponse()
        data = response.read()
        upstream.close()
        with self.server.lock:  # answered by the server (a server that is gone drops the connection)
            route = f"{self.command} {self.path}"
            self.server.forwarded[route] = self.server.forwarded.get(route, 0) + 1
        out = {k: v for k, v in response.getheaders() if k.lower() not in ("transfer-encoding", "connection")}
        if self.command != "HEAD":
            out["Content-Length"] = str(len(data))
        if fault == "truncate" and len(data) > 1:
            self.send_response(response.status)
            for key, value in out.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.close()
            return
        self._reply(response.status, out, data, head=self.command == "HEAD")

    def _reply(self, status: int, headers: dict, body: bytes, head: bool = False) -> None:
        self.send_response(status)
        for key, value in headers.items():
            if key.lower() != "content-length":
                self.send_header(key, value)
        # A HEAD reply carries the object's length and no body.
        length = next((v for k, v in headers.items() if k.lower() == "content-length"), None) if head else None
        self.send_header("Content-Length", length if length is not None else str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle


def main() -> None:
    proxy = FaultProxy(int(sys.argv[1]), json.loads(sys.argv[2]))
    print(proxy.server_address[1], flush=True)
    proxy.serve_forever()


if __name__ == "__main__":
    main()
