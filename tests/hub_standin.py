"""A local stand-in for the Hugging Face hub's upload endpoints, on 127.0.0.1.

It answers the calls huggingface-hub's `create_repo` and `upload_folder`
make (repo creation, pre-upload, an NDJSON commit with base64 files) and
keeps what was committed, so a test can run the real client code offline.
"""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class HubStandIn:
    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.repos: list[str] = []
        self.auth: list[str] = []
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _json(self, code: int, obj: dict) -> None:
                body = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                self._json(404, {"error": "not here"})

            def do_POST(self):
                data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                standin.auth.append(self.headers.get("Authorization", ""))
                base = f"http://127.0.0.1:{self.server.server_address[1]}"
                if self.path == "/api/repos/create":
                    req = json.loads(data)
                    name = "/".join(p for p in (req.get("organization"), req["name"]) if p)
                    standin.repos.append(name)
                    return self._json(200, {"url": f"{base}/{name}"})
                if self.path == "/api/validate-yaml":  # model cards' front matter is checked first
                    return self._json(200, {"errors": [], "warnings": []})
                if "/preupload/" in self.path:
                    files = json.loads(data)["files"]
                    return self._json(200, {"files": [{"path": f["path"], "uploadMode": "regular",
                                                       "shouldIgnore": False} for f in files]})
                if "/commit/" in self.path:
                    for line in data.splitlines():
                        item = json.loads(line)
                        if item["key"] == "file":
                            standin.files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                    repo = self.path.split("/api/models/")[1].split("/commit/")[0]
                    return self._json(200, {"commitUrl": f"{base}/{repo}/commit/{'a' * 40}",
                                            "commitOid": "a" * 40})
                self._json(404, {"error": "not here"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> "HubStandIn":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
