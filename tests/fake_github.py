"""A small GitHub REST server on 127.0.0.1 for the real PyGithub client.

It keeps pulls, their files and patches (paginated), reviews and review comments; every `url` it
returns points back at itself under a GitHub Enterprise style prefix, so the client must honour
`base_url`. It answers 422 for a comment outside the diff, 403 in read-only mode, and injected
5xx or rate-limit answers. Every request is checked against GitHub's OpenAPI description.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from openapi_github import Operations

from redzone_check.model import BuildInfo, BuildLocation, Finding, Instruction, Reach, Source

PREFIX = "/api/v3"
BOT = {"login": "github-actions[bot]", "id": 41898282, "type": "Bot"}


def diff_lines(patch: str | None) -> set[int]:
    """New-side line numbers shown in a patch's hunks (written apart from hooks/github_diff.py)."""
    lines: set[int] = set()
    current = None
    for row in (patch or "").splitlines():
        header = re.match(r"@@ -[0-9,]+ \+([0-9]+)", row)
        if header:
            current = int(header.group(1))
        elif current is not None and row[:1] in (" ", "+"):
            lines.add(current)
            current += 1
    return lines


@dataclass
class Pull:
    number: int
    head_sha: str
    files: list[dict[str, Any]]
    head_repo: str


@dataclass
class Fake:
    ops: Operations
    repo: str = "octo/widgets"
    pulls: dict[int, Pull] = field(default_factory=dict)
    comments: dict[int, dict[str, Any]] = field(default_factory=dict)
    reviews: dict[int, dict[str, Any]] = field(default_factory=dict)
    read_only: bool = False
    inject: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    requests: list[tuple[str, str, Any]] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    base_url: str = ""
    _next_id: int = 1000

    def add_pull(
        self,
        number: int,
        head_sha: str,
        files: list[tuple[str, str, str | None]],
        head_repo: str | None = None,
    ) -> None:
        rows = []
        for name, status, patch in files:
            row: dict[str, Any] = {
                "sha": "0" * 40,
                "filename": name,
                "status": status,
                "additions": 1,
                "deletions": 0,
                "changes": 1,
                "blob_url": f"{self.base_url}/blob/{name}",
                "raw_url": f"{self.base_url}/raw/{name}",
                "contents_url": f"{self.base_url}/repos/{self.repo}/contents/{name}",
            }
            if patch is not None:
                row["patch"] = patch
            rows.append(row)
        self.pulls[number] = Pull(number, head_sha, rows, head_repo or self.repo)

    def new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def writes(self, method: str) -> list[tuple[str, str, Any]]:
        return [r for r in self.requests if r[0] == method]

    # --- JSON documents -------------------------------------------------------------------------
    def repo_json(self) -> dict[str, Any]:
        owner, name = self.repo.split("/")
        return {
            "id": 1,
            "name": name,
            "full_name": self.repo,
            "owner": {"login": owner},
            "url": f"{self.base_url}/repos/{self.repo}",
            "private": False,
        }

    def pull_json(self, pull: Pull) -> dict[str, Any]:
        url = f"{self.base_url}/repos/{self.repo}/pulls/{pull.number}"
        head_repo = {"full_name": pull.head_repo, "url": f"{self.base_url}/repos/{pull.head_repo}"}
        return {
            "id": pull.number,
            "number": pull.number,
            "state": "open",
            "url": url,
            "head": {"sha": pull.head_sha, "ref": "topic", "repo": head_repo},
            "base": {"sha": "b" * 40, "ref": "main", "repo": self.repo_json()},
            "comments_url": f"{url}/comments",
            "review_comments_url": f"{url}/comments",
        }


class Handler(BaseHTTPRequestHandler):
    fake: Fake

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _page(self, items: list[dict[str, Any]], query: dict[str, list[str]], path: str) -> None:
        per_page = int(query.get("per_page", ["30"])[0])
        page = int(query.get("page", ["1"])[0])
        chunk = items[(page - 1) * per_page : page * per_page]
        headers = {}
        if page * per_page < len(items):
            headers["Link"] = f'<{self.fake.base_url}{path}?per_page={per_page}&page={page + 1}>; rel="next"'
        self._send(200, chunk, headers)

    def _handle(self, method: str) -> None:
        fake = self.fake
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        fake.requests.append((method, url.path, body))
        if not (self.headers.get("Authorization") or "").startswith(("token ", "Bearer ")):
            fake.violations.append(f"{method} {url.path} without a token")
            return self._send(401, {"message": "Requires authentication"})
        if not url.path.startswith(PREFIX + "/"):
            fake.violations.append(f"{method} {url.path} ignores the API base URL {PREFIX}")
            return self._send(404, {"message": "Not Found"})
        path = url.path[len(PREFIX) :]
        problems = fake.ops.check(path, method, body)
        if problems:
            fake.violations += problems
            return self._send(422, {"message": "Invalid request.", "errors": problems})
        if fake.inject:
            status, headers = fake.inject.pop(0)
            message = "API rate limit exceeded" if status in (403, 429) else "Server Error"
            return self._send(status, {"message": message}, headers)
        if method != "GET" and fake.read_only:
            return self._send(403, {"message": "Resource not accessible by integration"})
        with LOCK:
            self._route(method, path, parse_qs(url.query), body)

    def _route(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> None:
        fake = self.fake
        base = f"/repos/{fake.repo}"
        if path == base and method == "GET":
            return self._send(200, fake.repo_json())
        if m := re.fullmatch(base + r"/commits/([0-9a-f]+)", path):
            return self._send(200, {"sha": m.group(1), "url": f"{fake.base_url}{path}"})
        if m := re.fullmatch(base + r"/pulls/comments/(\d+)", path):
            comment = fake.comments.get(int(m.group(1)))
            if comment is None:
                return self._send(404, {"message": "Not Found"})
            if method == "PATCH":
                comment["body"] = body["body"]
                return self._send(200, comment)
            if method == "DELETE":
                del fake.comments[comment["id"]]
                return self._send(204)
            return self._send(200, comment)
        m = re.fullmatch(base + r"/pulls/(\d+)(/.*)?", path)
        pull = fake.pulls.get(int(m.group(1))) if m else None
        if m is None or pull is None:
            return self._send(404, {"message": "Not Found"})
        rest = m.group(2) or ""
        if rest == "":
            return self._send(200, fake.pull_json(pull))
        if rest == "/files":
            return self._page(pull.files, query, path)
        if rest == "/comments" and method == "GET":
            mine = [c for c in fake.comments.values() if c["pull"] == pull.number]
            return self._page(mine, query, path)
        if rest == "/comments" and method == "POST":
            error = self._check_position(pull, body)
            if error:
                return self._send(422, {"message": "Unprocessable Entity", "errors": [error]})
            return self._send(201, self._add_comment(pull, body, review_id=None))
        if rest == "/reviews" and method == "GET":
            return self._page([r for r in fake.reviews.values() if r["pull"] == pull.number], query, path)
        if rest == "/reviews" and method == "POST":
            for comment in body.get("comments", []):
                error = self._check_position(pull, comment)
                if error:
                    return self._send(422, {"message": "Unprocessable Entity", "errors": [error]})
            review_id = fake.new_id()
            review = {
                "id": review_id,
                "pull": pull.number,
                "body": body.get("body", ""),
                "state": "COMMENTED",
                "user": BOT,
                "commit_id": body.get("commit_id", pull.head_sha),
                "html_url": f"{fake.base_url}/reviews/{review_id}",
                "pull_request_url": f"{fake.base_url}{base}/pulls/{pull.number}",
            }
            fake.reviews[review_id] = review
            for comment in body.get("comments", []):
                self._add_comment(pull, {**comment, "commit_id": review["commit_id"]}, review_id)
            return self._send(200, review)
        if (r := re.fullmatch(r"/reviews/(\d+)", rest)) and method == "PUT":
            review = fake.reviews[int(r.group(1))]
            review["body"] = body["body"]
            return self._send(200, review)
        return self._send(404, {"message": "Not Found"})

    def _check_position(self, pull: Pull, comment: dict[str, Any]) -> str | None:
        files = {f["filename"]: f for f in pull.files}
        if comment["path"] not in files:
            return f"path {comment['path']} is not part of the pull request"
        if comment.get("subject_type") == "file":
            return "line must not be given for a file comment" if "line" in comment else None
        if comment.get("line") not in diff_lines(files[comment["path"]].get("patch")):
            return "pull_request_review_thread.line must be part of the diff"
        return None

    def _add_comment(self, pull: Pull, body: dict[str, Any], review_id: int | None) -> dict[str, Any]:
        fake = self.fake
        cid = fake.new_id()
        comment = {
            "id": cid,
            "pull": pull.number,
            "body": body["body"],
            "path": body["path"],
            "line": body.get("line"),
            "side": body.get("side", "RIGHT"),
            "subject_type": body.get("subject_type", "line"),
            "commit_id": body["commit_id"],
            "pull_request_review_id": review_id or fake.new_id(),
            "user": BOT,
            "url": f"{fake.base_url}/repos/{fake.repo}/pulls/comments/{cid}",
            "html_url": f"{fake.base_url}/comments/{cid}",
        }
        fake.comments[cid] = comment
        return comment

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")


LOCK = threading.Lock()


class FakeServer:
    def __init__(self, ops: Operations) -> None:
        self.fake = Fake(ops)
        handler = type("BoundHandler", (Handler,), {"fake": self.fake})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.fake.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}{PREFIX}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def rate_limited() -> tuple[int, dict[str, str]]:
    return 403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(time.time()) + 2)}


def make_finding(
    function: str = "leaf",
    source: tuple[str, int] | None = ("src/leaf.c", 12),
    path: str = "build/leaf.o",
    build_location: BuildLocation | None = None,
    reached_from: tuple[Reach, ...] = (),
    level: str = "error",
) -> Finding:
    """A finding made by hand, shaped like the engine's for `gcc -O2 -g` on a small leaf function."""
    return Finding(
        rule="RZ001",
        level=level,  # type: ignore[arg-type]
        message=f"`{function}` keeps data in the red zone (1 instruction, down to %rsp-40)",
        path=path,
        member=None,
        section=".text",
        section_offset=0x11,
        function_offset=0x11,
        symbol=function,
        aliases=(),
        function=function,
        language="c",
        instructions=(Instruction(0x11, 0x11, "movl %ecx, -0x28(%rsp, %rdx, 4)", "write", -40, 4),),
        source=Source(*source) if source else None,
        build=BuildInfo("GNU C17 12.2.0 -O2 -g", "GCC 12.2.0", ("-O2", "-g"), ("-mno-red-zone",)),
        build_location=build_location,
        reached_from=reached_from,
    ).with_fingerprint()


STUB = Path(__file__).resolve().parent.parent / ".github" / "self-test" / "stub.c"


def build_workspace(root: Path, flags: tuple[str, ...] = ()) -> Path:
    """A checkout with src/stub.c compiled by gcc -O2 -g into build/stub.o, as a build step would."""
    (root / "src").mkdir(parents=True, exist_ok=True)
    (root / "build").mkdir(exist_ok=True)
    shutil.copy(STUB, root / "src" / "stub.c")
    subprocess.run(
        ["gcc", "-c", "-O2", "-g", *flags, "-o", "build/stub.o", "src/stub.c"], cwd=root, check=True
    )
    return root


def added_file_patch(path: Path) -> str:
    """The patch of a file that the pull request adds: every line is an added line."""
    lines = path.read_text().splitlines()
    return f"@@ -0,0 +1,{len(lines)} @@\n" + "\n".join(f"+{line}" for line in lines)


def write_event(path: Path, number: int, head_sha: str, repo: str, head_repo: str | None = None) -> Path:
    event = {
        "action": "synchronize",
        "number": number,
        "pull_request": {
            "number": number,
            "head": {"sha": head_sha, "repo": {"full_name": head_repo or repo}},
            "base": {"sha": "b" * 40, "repo": {"full_name": repo}},
        },
        "repository": {"full_name": repo},
    }
    path.write_text(json.dumps(event))
    return path
