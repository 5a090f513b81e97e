"""A seeded fuzzer of the HTTP ingress over a real socket (issue 12, "done when").

It generates connections of one to four pipelined requests: random methods (real, unknown,
lowercase), paths (every route of the ingress with random keys, ids, handlers, percent
escapes, over-long and non-UTF-8 segments, junk), queries (``?delay=`` of any kind),
headers (idempotency keys, tokens, ``expect: 100-continue``, junk, invalid ones), bodies
(JSON of every type, deep nesting, huge numbers, invalid JSON, binary) and framing
(content-length, random chunking, malformed chunks, lengths that lie, bytes written in
random pieces). It sends them and reads every answer, and reports a *finding* for:

* an answer of status 500 or more (the server is not stopping while it runs);
* an error answer whose body is not JSON ``{"code", "message"}`` with the status as code
  (an invocation's own failure adds ``"source": "invocation"``, as Restate's does);
* a success whose body is neither empty nor JSON;
* bytes from the server that are not an HTTP/1.1 response;
* a well-framed request left without an answer, or a malformed one without a 4xx.

The generator knows which requests it framed correctly: a request it broke on purpose
must get a 4xx and nothing after it is expected. ``Script`` bytes are the exact bytes
sent, so a finding can be replayed by hand.
"""

from __future__ import annotations

import json
import random
import string
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from typing import Final, Literal

import anyio
from raw_http import RawResponse, ResponseError, connect

Framing = Literal["good", "bad", "uncertain"]

#: Keys the fuzzer never generates: the test writes its state under them beforehand.
RESERVED_PREFIX: Final = "pre-"
ANSWER_SECONDS: Final = 10.0


@dataclass
class Request:
    data: bytes
    framing: Framing  # bad: broken on purpose (a 4xx, then nothing); uncertain: may be either
    head: bool = False


@dataclass
class Script:
    requests: list[Request]
    pieces: list[int]  # the write sizes, in order


@dataclass
class FuzzReport:
    requests: int = 0
    connections: int = 0
    answers: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    findings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        top = ", ".join(f"{status}: {n}" for status, n in sorted(self.statuses.items()))
        return (
            f"{self.requests} requests on {self.connections} connections, "
            f"{self.answers} answers ({top}), {len(self.findings)} findings"
        )


class Generator:
    def __init__(self, seed: int) -> None:
        self.r = random.Random(seed)
        self.invocation_ids: list[str] = []  # learned from 202 answers

    # --- pieces ---

    def text(self, low: int = 1, high: int = 12) -> str:
        alphabet = string.ascii_letters + string.digits + "-_.~"
        return "".join(self.r.choice(alphabet) for _ in range(self.r.randint(low, high)))

    def key(self) -> bytes:
        r = self.r
        match r.randrange(12):
            case 0:
                return b""
            case 1:
                return b"%FF%FE"  # not UTF-8
            case 2:
                return ("%2F" + self.text()).encode()
            case 3:
                return urllib.parse.quote("é☃ /?").encode()
            case 4:
                return b"k" * r.choice([255, 256, 257, 300, 511, 512, 700])
            case 5:
                return b"caf\xc3\xa9"  # raw non-ASCII in the path
            case 6:
                return r.choice([b".", b"..", b"%20", b"a%00b", b"%", b"%zz"])
            case _:
                value = self.text()
                while value.startswith(RESERVED_PREFIX):
                    value = self.text()
                return value.encode()

    def invocation_id(self) -> bytes:
        # The same draws whatever was learned, so that a seed gives the same stream.
        known, pick = self.r.random() < 0.5, self.r.randrange(1 << 16)
        if known and self.invocation_ids:
            return self.invocation_ids[pick % len(self.invocation_ids)].encode()
        alphabet = "abcdefghijklmnopqrstuvwxyz234567"
        return ("inv_" + "".join(self.r.choice(alphabet) for _ in range(13))).encode()

    def delay(self) -> bytes:
        r = self.r
        return r.choice(
            [
                b"500ms",
                b"1s",
                b"1m%2030s",
                b"PT1S",
                b"P1DT2H",
                b"10d",
                b"99999999999999999999d",
                b"PT99999999999999999999S",
                b"36501d",
                b"soon",
                b"",
                b"1e3s",
                b"-1s",
                b"%FF",
                str(r.randint(0, 10**6)).encode(),
                f"{r.random() * 1000:.3f}s".encode(),
            ]
        )

    def path(self) -> bytes:
        """A request target. Never an attach that could wait (on a delayed invocation or
        a workflow that may run): only ids that cannot exist are attached to."""
        r = self.r
        send = b"/send" if r.random() < 0.4 else b""
        match r.randrange(16):
            case 0 | 1 | 2:
                path = b"/Counter/" + self.key() + r.choice([b"/add", b"/value", b"/nope", b""])
                path += send
            case 3:
                path = b"/Counter/add" + send
            case 4 | 5:
                handler = r.choice([b"/echo", b"/typed", b"/nothing", b"/fail", b"/nope"])
                path = b"/Echo" + (b"/" + self.key() if r.random() < 0.2 else b"") + handler
                path += send
            case 6:
                path = b"/Flow/" + self.key() + r.choice([b"/run", b"/get", b""]) + send
            case 7:
                path = b"/restate/health"
            case 8 | 9:
                what = r.choice([b"output", b"cancel", b"kill", b"resume"])
                path = b"/restate/invocation/" + self.invocation_id() + b"/" + what
            case 10:
                # attach waits: only on ids that cannot exist, so it answers at once
                path = b"/restate/invocation/inv_" + self.text(13, 13).encode() + b"x/attach"
            case 11:
                workflow_key = r.choice([b"att-" + self.text().encode(), self.key()])
                path = b"/restate/workflow/" + r.choice([b"Flow", b"Counter", b"Nope"])
                path += b"/" + workflow_key + r.choice([b"/output", b"/attach"])
                if path.endswith(b"/attach") and not workflow_key.startswith(b"att-"):
                    path = path[: -len(b"attach")] + b"output"
            case 12:
                awakeable = r.choice([b"awk_" + self.text(10, 40).encode(), self.key()])
                path = b"/restate/awakeables/" + awakeable + r.choice([b"/resolve", b"/reject"])
            case 13:
                path = b"/restate/" + self.text().encode()
            case 14:
                path = r.choice([b"/", b"*", b"http://x/Counter/a/add", b"//", b"/Nobody/x/y"])
            case _:
                path = b"/" + bytes(r.randrange(33, 127) for _ in range(r.randint(1, 30)))
                path = path.replace(b"?", b"").replace(b"#", b"")
        if r.random() < 0.25:
            path += b"?delay=" + self.delay()
        elif r.random() < 0.05:
            path += r.choice([b"?", b"?x=1&x=2", b"?%%%", b"?delay=1s&delay=2s"])
        return path

    def json_value(self, depth: int = 0) -> object:
        r = self.r
        kind = r.randrange(9 if depth < 3 else 6)
        if kind == 0:
            return r.choice([0, 1, -1, 2**31, 2**63 - 1, 2**63, -(2**64), 10**40])
        if kind == 1:
            return r.choice([0.5, -1e300, 1e-300, 3.25])
        if kind == 2:
            return self.text(0, 20)
        if kind == 3:
            return r.choice(["é☃\U0001f600", "\\u0000", '"quoted"', "a\nb", "[{"])
        if kind == 4:
            return r.choice([True, False])
        if kind == 5:
            return None
        if kind in (6, 7):
            return [self.json_value(depth + 1) for _ in range(r.randint(0, 4))]
        return {self.text(1, 6): self.json_value(depth + 1) for _ in range(r.randint(0, 4))}

    def body(self, path: bytes) -> bytes:
        r = self.r
        match r.randrange(14):
            case 0 | 1:
                return b""
            case 2 | 3 | 4:
                if b"/typed" in path:
                    return json.dumps({"name": self.text(), "n": r.randint(-5, 5)}).encode()
                return str(r.randint(-100, 100)).encode()
            case 5 | 6 | 7:
                return json.dumps(self.json_value()).encode()
            case 8:
                depth = r.choice([100, 128, 129, 500, 999, 1000, 5000])
                return b"[" * depth + b"]" * depth
            case 9:
                depth = r.choice([127, 129, 2000])
                return b'{"a":' * depth + b"1" + b"}" * depth
            case 10:
                return r.choice([b"{", b"[1,", b'"unterminated', b"nul", b"\xff\xfe", b"1 2"])
            case 11:
                return bytes(r.randrange(256) for _ in range(r.randint(1, 64)))
            case 12:
                return json.dumps("x" * r.randint(1_000, 60_000)).encode()
            case _:
                return r.choice([b"1" * 400, b"-" + b"9" * 5000, b"1e99999", b"  7  "])

    def headers(self) -> tuple[list[bytes], Framing]:
        r = self.r
        lines = [b"Host: fuzz"] if r.random() < 0.97 else []
        framing: Framing = "good"
        if r.random() < 0.2:
            length = r.choice([0, 1, 255, 256, 257, 511, 600])
            lines.append(b"idempotency-key: " + b"i" * length)
        if r.random() < 0.1:
            lines.append(b"Authorization: Bearer " + self.text().encode())
        if r.random() < 0.1:
            lines.append(b"Content-Type: " + r.choice([b"application/json", b"text/plain", b"x"]))
        if r.random() < 0.05:
            lines.append(b"Expect: 100-continue")
        for _ in range(r.choice([0, 0, 0, 1, 2])):
            lines.append(self.text().encode() + b": " + self.text(0, 30).encode())
        if r.random() < 0.03:
            lines.append(b"x-big: " + b"v" * r.choice([1_000, 40_000, 70_000]))
            framing = "uncertain"  # over the 64 KiB head limit: 431
        if r.random() < 0.04:
            lines.append(r.choice([b"bad header", b": empty", b"x:\x00y", b"\xffname: v"]))
            framing = "bad"
        elif r.random() < 0.01:
            lines.append(b" folded: v")  # obsolete line folding: h11 takes it
            framing = "uncertain"
        return lines, framing

    # --- a request and a connection ---

    def sane(self) -> tuple[bytes, bytes, bytes]:
        """(method, target, body) of a request the ingress accepts, so that the fuzz
        reaches the runtime and not only the parser."""
        r = self.r
        key = b"fz-" + self.text(1, 4).encode()
        send = b"/send" if r.random() < 0.3 else b""
        delay = (
            b"?delay=" + r.choice([b"1s", b"10ms", b"PT1M"]) if send and r.random() < 0.3 else b""
        )
        value = json.dumps(self.json_value()).encode()
        match r.randrange(10):
            case 0 | 1:
                return b"POST", b"/Counter/" + key + b"/add" + send + delay, b"1"
            case 2:
                return b"POST", b"/Counter/" + key + b"/value", b""
            case 3 | 4:
                return b"POST", b"/Echo/echo" + send + delay, value
            case 5:
                item = json.dumps({"name": self.text(), "n": r.randint(-9, 9)}).encode()
                return b"POST", b"/Echo/typed" + send, item
            case 6:
                return b"POST", b"/Flow/" + key + r.choice([b"/run/send", b"/get"]), b'"n"'
            case 7:
                return b"GET", b"/restate/invocation/" + self.invocation_id() + b"/output", b""
            case 8:
                target = (
                    b"/restate/invocation/"
                    + self.invocation_id()
                    + r.choice([b"/cancel", b"/kill"])
                )
                return b"PATCH", target, b""
            case _:
                return b"GET", b"/restate/health", b""

    def request(self, last: bool) -> Request:
        r = self.r
        sane = r.random() < 0.4
        method = r.choice(
            [b"POST"] * 8
            + [b"GET"] * 4
            + [b"PATCH"] * 2
            + [b"HEAD", b"PUT", b"DELETE"]
            + [b"OPTIONS", b"BREW", b"get", b"POST "]
        )
        path = self.path()
        version = b"HTTP/1.1" if r.random() < 0.97 else r.choice([b"HTTP/1.0", b"HTTP/1.1x"])
        headers, framing = self.headers()
        if sane:
            method, path, sane_body = self.sane()
            version, headers, framing = b"HTTP/1.1", [b"Host: fuzz"], "good"
        no_host = not headers or headers[0] != b"Host: fuzz"
        if method == b"POST " or version == b"HTTP/1.1x" or not path or max(path) > 126:
            framing = "bad"  # not a request line h11 takes
        elif no_host and version == b"HTTP/1.1":
            framing = "bad"  # HTTP/1.1 requires a Host header
        if version == b"HTTP/1.0" and framing == "good":
            framing = "uncertain"  # 1.0 closes after its answer unless kept alive
        # Whether the server can read the request line and headers (then it knows a HEAD).
        head_readable = framing != "bad"
        body = sane_body if sane else self.body(path)
        encoded = body
        style = r.random() * (0.88 if sane else 1.0)
        if style < 0.75:
            if body or method in (b"POST", b"PUT", b"PATCH") or r.random() < 0.3:
                headers.append(b"Content-Length: " + str(len(body)).encode())
        elif style < 0.88:
            headers.append(b"Transfer-Encoding: chunked")
            encoded = self.chunked(body)
        elif style < 0.95:
            headers.append(b"Transfer-Encoding: chunked")
            encoded = self.bad_chunks(body)
            framing = "bad"
        else:
            lie = r.choice([-1, 1]) * r.randint(1, 10)
            headers.append(b"Content-Length: " + str(max(len(body) + lie, 0)).encode())
            # Longer and last: the server waits out its read timeout (408). Otherwise the
            # next request's bytes are read as this body, or the rest of it as the next.
            framing = "bad" if lie > 0 and last else "uncertain"
        if last:
            headers.append(b"Connection: close")
        head = method + b" " + path + b" " + version + b"\r\n" + b"\r\n".join(headers)
        data = head + b"\r\n\r\n" + encoded
        return Request(data, framing, head=method == b"HEAD" and head_readable)

    def chunked(self, body: bytes) -> bytes:
        out, i = b"", 0
        while i < len(body):
            size = self.r.randint(1, max(1, len(body) - i))
            chunk = body[i : i + size]
            ext = b";x=y" if self.r.random() < 0.1 else b""
            out += f"{len(chunk):x}".encode() + ext + b"\r\n" + chunk + b"\r\n"
            i += size
        return out + b"0\r\n\r\n"

    def bad_chunks(self, body: bytes) -> bytes:
        chunk = body or b"abc"
        return self.r.choice(
            [
                b"ZZ\r\n" + chunk + b"\r\n0\r\n\r\n",
                f"{max(len(chunk) - 1, 1):x}".encode() + b"\r\n" + chunk + b"x\r\n0\r\n\r\n",
                b"-1\r\n" + chunk + b"\r\n0\r\n\r\n",
                b"1" * 40 + b"\r\n",
                f"{len(chunk):x}".encode() + b"\r\n" + chunk + b"0\r\n\r\n",
            ]
        )

    def script(self) -> Script:
        count = self.r.choice([1, 1, 1, 2, 2, 3, 4])
        requests = [self.request(last=i == count - 1) for i in range(count)]
        total = sum(len(request.data) for request in requests)
        pieces: list[int] = []
        while sum(pieces) < total:
            left = total - sum(pieces)
            pieces.append(left if self.r.random() < 0.6 else self.r.randint(1, left))
        return Script(requests, pieces)


def expected_answers(script: Script) -> tuple[int, bool]:
    """(how many answers at least, whether the last of those must be a 4xx)."""
    count = 0
    for request in script.requests:
        if request.framing == "good":
            count += 1
        elif request.framing == "bad":
            return count + 1, True
        else:
            return count, False
    return count, False


async def run_script(port: int, script: Script, generator: Generator, report: FuzzReport) -> None:
    data = b"".join(request.data for request in script.requests)
    report.connections += 1
    report.requests += len(script.requests)
    connection = await connect(port)
    answers: list[RawResponse] = []
    problem = ""
    try:
        with anyio.move_on_after(ANSWER_SECONDS) as deadline:
            offset = 0
            for size in script.pieces:
                try:
                    await connection.send(data[offset : offset + size])
                except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                    break  # the server answered a broken request and closed
                offset += size
            # Answers are read up to the first request not framed for sure: what follows
            # it may be parsed as other requests than the ones written.
            readable = next(
                (i + 1 for i, r in enumerate(script.requests) if r.framing != "good"),
                len(script.requests),
            )
            while len(answers) < readable:
                head = script.requests[len(answers)].head
                answer = await connection.response(head=head)
                if answer is None:
                    break
                if 100 <= answer.status < 200:
                    continue
                answers.append(answer)
        if deadline.cancelled_caught:
            problem = f"no answer within {ANSWER_SECONDS} s"
    except ResponseError as exc:
        problem = f"not an HTTP response: {exc}"
    finally:
        await connection.aclose()

    def finding(text: str) -> None:
        report.findings.append(f"{text}; sent {data[:600]!r}")

    if problem:
        finding(problem)
    for request, answer in zip(script.requests, answers, strict=False):
        report.answers += 1
        report.statuses[answer.status] += 1
        if answer.status >= 500:
            finding(f"status {answer.status}: {answer.body[:300]!r}")
        if answer.status >= 400 and not request.head:
            try:
                value = json.loads(answer.body)
                ok = (
                    isinstance(value, dict)
                    and set(value) - {"source"} == {"code", "message"}
                    and value.get("source", "invocation") == "invocation"
                    and value["code"] == answer.status
                    and isinstance(value["message"], str)
                )
            except ValueError:
                ok = False
            if not ok:
                finding(
                    f"status {answer.status} with a body that is not an error: {answer.body[:300]!r}"
                )
        elif 200 <= answer.status < 300 and answer.body:
            try:
                value = json.loads(answer.body)
            except ValueError:
                finding(
                    f"status {answer.status} with a body that is not JSON: {answer.body[:300]!r}"
                )
            else:
                learned = isinstance(value, dict) and isinstance(value.get("invocationId"), str)
                if learned and len(generator.invocation_ids) < 200:
                    generator.invocation_ids.append(value["invocationId"])
    least, must_refuse = expected_answers(script)
    if len(answers) < least:
        finding(f"{len(answers)} answers to {least} requests that needed one")
    elif must_refuse and not 400 <= answers[least - 1].status < 500:
        finding(f"a malformed request answered {answers[least - 1].status}")


async def fuzz(port: int, *, seed: int, requests: int, concurrency: int = 8) -> FuzzReport:
    """Send about ``requests`` generated requests to 127.0.0.1:``port``."""
    generator = Generator(seed)  # one stream of scripts: the run is the same for a seed
    report = FuzzReport()
    generated = 0

    async def worker() -> None:
        nonlocal generated
        while generated < requests:
            script = generator.script()
            generated += len(script.requests)
            await run_script(port, script, generator, report)

    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(worker)
    return report
