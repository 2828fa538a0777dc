"""Retries through a loopback proxy in front of the real server that loses answers on purpose."""

import http.client
import os
import socket
import threading
import unittest
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Dict, List, Optional, Tuple
from urllib.parse import urlsplit

from support import SUITE, SandboxTestCase

import sandpit
from sandpit import ConnectionConfig, Sandbox


class LossyProxy:
    """Forwards every request to the Sandpit server; for the requests ``lose`` picks, it lets the server
    run the request and then answers 502 instead of the server's answer, as a gateway whose upstream
    connection broke would. Records each forwarded request's method, path and Idempotency-Key."""

    def __init__(self, upstream: str, lose: Callable[[str, str, int], bool]) -> None:
        self.requests: List[Tuple[str, str, Optional[str]]] = []
        self.lost: List[bytes] = []
        target = urlsplit(upstream)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base's name
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else None
                seen = sum(1 for m, p, _ in proxy.requests if (m, p) == (self.command, self.path))
                proxy.requests.append((self.command, self.path, self.headers.get("idempotency-key")))
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                upstream_conn = http.client.HTTPConnection(target.netloc, timeout=120)
                upstream_conn.request(self.command, self.path, body=body, headers=headers)
                answer = upstream_conn.getresponse()
                data = answer.read()
                upstream_conn.close()
                if lose(self.command, self.path, seen):
                    proxy.lost.append(data)
                    self.send_response(502)
                    payload = b'{"error":{"code":"upstream_unavailable","message":"lost on purpose"}}'
                else:
                    self.send_response(answer.status)
                    payload = data
                    for key, value in answer.getheaders():
                        if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                            self.send_header(key, value)
                self.send_header("content-length", str(len(payload)))
                self.send_header("connection", "close")
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def no_wait(config: ConnectionConfig) -> sandpit.ApiClient:
    return sandpit.ApiClient(config, sleep=lambda _seconds: None)


class RetriesTest(SandboxTestCase):
    def _through(self, lose: Callable[[str, str, int], bool]) -> LossyProxy:
        proxy = LossyProxy(os.environ["SANDPIT_URL"], lose)
        self.addCleanup(proxy.close)
        return proxy

    def test_a_retried_background_command_runs_once(self) -> None:
        # The first exec reaches the server and starts the command; its answer is lost. The SDK retries
        # with the same Idempotency-Key and gets the stored answer: the command ran once.
        proxy = self._through(lambda method, path, seen: path.endswith("/exec") and seen == 0)
        sandbox = Sandbox(self.sandbox.info, no_wait(ConnectionConfig.resolve(api_url=proxy.url)))
        handle = sandbox.commands.run("echo ran >> /tmp/runs", background=True)
        handle.wait()

        self.assertEqual(self.sandbox.files.read("/tmp/runs"), "ran\n")
        started = [c for c in self.sandbox.commands.list() if "echo ran >> /tmp/runs" in " ".join(c.command)]
        self.assertEqual([c.command_id for c in started], [handle.command_id])
        self.assertIn(handle.command_id.encode(), proxy.lost[0])
        execs = [r for r in proxy.requests if r[1].endswith("/exec")]
        self.assertEqual(len(execs), 2)
        keys = {key for _, _, key in execs}
        self.assertEqual(len(keys), 1)
        self.assertIsNotNone(next(iter(keys)))

    def test_a_retried_create_makes_one_sandbox(self) -> None:
        proxy = self._through(lambda method, path, seen: method == "POST" and path == "/v1/sandboxes" and seen == 0)
        config = ConnectionConfig.resolve(api_url=proxy.url)
        sandbox = Sandbox.create(config=config, metadata={**SUITE, "kind": "retried"})
        listed = self.track(Sandbox.list(metadata={"kind": "retried"}))
        self.assertEqual([s.id for s in listed], [sandbox.id])
        created = [r for r in proxy.requests if r[:2] == ("POST", "/v1/sandboxes")]
        self.assertEqual(len(created), 2)
        self.assertIsNotNone(created[0][2])
        self.assertEqual(created[0][2], created[1][2])

    def test_a_streamed_command_whose_answer_is_lost_is_not_run_again(self) -> None:
        # A foreground command streams its output live and the server cannot replay it: the SDK raises
        # instead of starting the command a second time.
        proxy = self._through(lambda method, path, seen: path.endswith("/exec"))
        sandbox = Sandbox(self.sandbox.info, no_wait(ConnectionConfig.resolve(api_url=proxy.url)))
        with self.assertRaises(sandpit.ServerError) as raised:
            sandbox.commands.run("echo once >> /tmp/streamed")
        self.assertEqual(raised.exception.status, 502)
        self.assertEqual(len([r for r in proxy.requests if r[1].endswith("/exec")]), 1)
        self.assertEqual(self.sandbox.files.read("/tmp/streamed"), "once\n")

    def test_idempotent_requests_are_retried_after_a_lost_answer(self) -> None:
        proxy = self._through(lambda method, path, seen: method == "GET" and seen < 2)
        sandbox = Sandbox.connect(self.sandbox.id, config=ConnectionConfig.resolve(api_url=proxy.url))
        self.assertEqual(sandbox.id, self.sandbox.id)
        self.assertEqual(len(proxy.requests), 3)


#: An answer of the scripted server: status, headers, body.
Answer = Tuple[int, Dict[str, str], bytes]


class ScriptedServer:
    """A loopback HTTP server that answers each request with the next of ``answers`` (status, headers,
    body): the client's retry logic on its own, without a Sandpit server."""

    def __init__(self, answers: List[Answer]) -> None:
        self.seen: List[Tuple[str, Optional[str]]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base's name
                pass

            def _answer(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                server.seen.append((self.command, self.headers.get("idempotency-key")))
                status, headers, body = answers[len(server.seen) - 1]
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class RetryPolicyTest(unittest.TestCase):
    def _client(self, answers: List[Answer]) -> Tuple[sandpit.ApiClient, List[float], ScriptedServer]:
        server = ScriptedServer(answers)
        self.addCleanup(server.close)
        slept: List[float] = []
        client = sandpit.ApiClient(ConnectionConfig.resolve(api_url=server.url, api_key="k"), sleep=slept.append)
        return client, slept, server

    def test_429_and_503_wait_as_long_as_retry_after_says(self) -> None:
        busy = b'{"error":{"code":"rate_limited","message":"slow down"}}'
        client, slept, server = self._client(
            [(429, {"retry-after": "7"}, busy), (503, {"retry-after": "2"}, b"{}"), (200, {}, b'{"ok":true}')]
        )
        self.assertEqual(client.json("POST", "/sandboxes", json={}), {"ok": True})
        self.assertEqual(slept, [7.0, 2.0])
        keys = {key for _, key in server.seen}
        self.assertEqual(len(server.seen), 3)
        self.assertEqual(len(keys), 1)
        self.assertIsNotNone(keys.pop())

    def test_a_retry_after_beyond_a_minute_is_not_waited_for(self) -> None:
        later = b'{"error":{"code":"rate_limited","message":"later"}}'
        client, slept, _ = self._client([(429, {"retry-after": "3600"}, later)])
        with self.assertRaises(sandpit.RateLimitError) as raised:
            client.json("GET", "/sandboxes")
        self.assertEqual((raised.exception.retry_after, slept), (3600.0, []))

    def test_other_4xx_are_not_retried_and_keep_the_apis_fields(self) -> None:
        body = b'{"error":{"code":"quota_exceeded","message":"too many","details":{"limit":"maxSandboxes"}}}'
        client, slept, server = self._client([(409, {}, body)])
        with self.assertRaises(sandpit.ConflictError) as raised:
            client.json("POST", "/sandboxes", json={})
        error = raised.exception
        self.assertEqual((error.code, error.message), ("quota_exceeded", "too many"))
        self.assertEqual(error.details, {"limit": "maxSandboxes"})
        self.assertEqual((len(server.seen), slept), (1, []))

    def test_retries_stop_after_max_retries(self) -> None:
        client, slept, server = self._client([(500, {}, b"")] * 4)
        with self.assertRaises(sandpit.ServerError):
            client.json("GET", "/sandboxes")
        self.assertEqual((len(server.seen), len(slept)), (4, 3))


class ClientTimeoutTest(unittest.TestCase):
    def test_a_server_that_does_not_answer_in_time_is_a_timeout_error(self) -> None:
        # A socket that accepts connections and never answers.
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        self.addCleanup(listener.close)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        config = ConnectionConfig.resolve(api_url=url, api_key="k", request_timeout=0.2, max_retries=3)
        with self.assertRaises(sandpit.TimeoutError) as raised:
            Sandbox.connect("sbx_aaaaaaaaaaaaaaaaaaaa", config=config)
        self.assertEqual(raised.exception.code, "request_timeout")
        self.assertIsInstance(raised.exception, TimeoutError)

    def test_environment_gives_url_and_key(self) -> None:
        config = ConnectionConfig.resolve(env={"SANDPIT_URL": "http://sandpit:9000/", "SANDPIT_API_KEY": "sk_x"})
        self.assertEqual((config.api_url, config.api_key), ("http://sandpit:9000", "sk_x"))
        self.assertEqual(ConnectionConfig.resolve(env={}).api_url, "http://127.0.0.1:8080")


if __name__ == "__main__":
    unittest.main()
