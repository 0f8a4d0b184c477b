#!/usr/bin/env python3
"""Protocol stand-in for moe-serve, used only by moectl's end-to-end tests.

It speaks the moe-serve HTTP contract with canned data so that the client can be tested without a
model; it is NOT the real server (that one is tested in its own package). Standard library only.

Usage: fake_server.py [--token TOKEN] [--job-step N]
On start it prints one JSON line to stdout: {"port": P, "refused_port": R}, where P is the port it
serves on (127.0.0.1) and R a port that is bound but never listens, so connecting to it is refused.
It exits when its standard input closes (the test process ended) or after a hard time limit.

Special prompts (POST /v1/completions):
  "__429__"     -> 429 with Retry-After: 7
  "__500__"     -> 500 with a non-JSON body
  "__garbage__" -> 200 with JSON that is not a completion
  "__slow__"    -> the first chunk, then nothing until GET /_debug/continue (or 60 s): a client that buffered
                   the body could not see the first chunk before asking to continue; /_debug/continued tells
  "__nodone__"  -> stream closes without [DONE]
Special prompts inside a job: "__fail__" makes the job end "failed", "__cancel__" makes it end "cancelled".

Debug endpoints (not part of the contract): GET /_debug/requests lists the requests seen so far
(method, path, authorization header, parsed JSON body).
"""

import json
import socket
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODEL = "demo-mixtral"
CREATED = 1764000000
PIECES = ["Silicon", " routers", " hum", ",", " packets", " find", " their", " way", " home", "."]
HARD_LIMIT_S = 300

STATE_LOCK = threading.Lock()
JOBS = {}          # id -> job dict (plus private keys starting with "_")
JOB_ORDER = []     # ids, oldest first
REQUESTS = []      # debug log
CONFIG = {"token": None, "job_step": 2}


CONTINUE = threading.Event()
CONTINUED = [False]


def public_job(job):
    return {k: v for k, v in job.items() if not k.startswith("_")}


def error_body(message, kind, param=None, code=None):
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def advance(job):
    """Each status read moves a job forward, so tests are deterministic and never sleep long."""
    if job["status"] in ("completed", "cancelled", "failed"):
        return
    if job["status"] == "queued":
        job["status"] = "running"
        return
    done = job["completed"] + job["failed"]
    step = min(CONFIG["job_step"], job["total"] - done)
    job["completed"] += step
    if job["completed"] + job["failed"] >= job["total"]:
        end = job["_end"]
        if end == "failed":
            job["completed"] -= 1
            job["failed"] += 1
        job["status"] = end
        job["finished_at"] = CREATED + 60


class Handler(BaseHTTPRequestHandler):
    # HTTP/1.0: the connection closes after each answer, which is how the stream's end is signalled.
    protocol_version = "HTTP/1.0"

    def log_message(self, fmt, *args):  # keep test output clean
        pass

    # -- helpers -------------------------------------------------------------------------------
    def send_json(self, status, obj, headers=None):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def send_raw(self, status, body, content_type):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def read_body(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return "<invalid json>"

    def record(self, body):
        with STATE_LOCK:
            REQUESTS.append({
                "method": self.command,
                "path": self.path,
                "authorization": self.headers.get("Authorization"),
                "body": body,
            })

    def authorized(self):
        token = CONFIG["token"]
        if token is None or self.path == "/health" or self.path.startswith("/_debug"):
            return True
        if self.headers.get("Authorization") == "Bearer " + token:
            return True
        self.send_json(401, error_body("invalid or missing API token", "authentication_error"))
        return False

    # -- routing -------------------------------------------------------------------------------
    def do_GET(self):
        self.route("GET")

    def do_POST(self):
        self.route("POST")

    def do_DELETE(self):
        self.route("DELETE")

    def route(self, method):
        body = self.read_body() if method == "POST" else None
        if not self.path.startswith("/_debug"):
            self.record(body)
        if not self.authorized():
            return
        parts = [p for p in self.path.split("?")[0].split("/") if p]
        if method == "GET" and parts == ["health"]:
            return self.send_json(200, {"status": "ok", "model": MODEL, "workers": 2, "draft": False,
                                        "running": 1, "waiting": 0, "uptime_s": 12.5})
        if method == "GET" and parts == ["_debug", "continue"]:
            CONTINUE.set()
            return self.send_json(200, {"ok": True})
        if method == "GET" and parts == ["_debug", "continued"]:
            return self.send_json(200, {"continued": CONTINUED[0]})
        if method == "GET" and parts == ["_debug", "requests"]:
            with STATE_LOCK:
                return self.send_json(200, list(REQUESTS))
        if method == "GET" and parts == ["v1", "models"]:
            return self.send_json(200, {"object": "list", "data": [
                {"id": MODEL, "object": "model", "created": CREATED, "owned_by": "moe-serve",
                 "max_model_len": 1024}]})
        if method == "POST" and parts == ["v1", "completions"]:
            return self.completions(body)
        if method == "POST" and parts == ["v1", "jobs"]:
            return self.create_job(body)
        if method == "GET" and parts == ["v1", "jobs"]:
            with STATE_LOCK:
                jobs = [public_job(JOBS[i]) for i in reversed(JOB_ORDER)]
            return self.send_json(200, {"object": "list", "data": jobs})
        if len(parts) >= 3 and parts[:2] == ["v1", "jobs"]:
            with STATE_LOCK:
                job = JOBS.get(parts[2])
                if job is None:
                    return self.send_json(404, error_body("job '%s' not found" % parts[2],
                                                          "invalid_request_error", "job_id", "job_not_found"))
                if method == "GET" and len(parts) == 3:
                    advance(job)
                    return self.send_json(200, public_job(job))
                if method == "DELETE" and len(parts) == 3:
                    if job["status"] in ("queued", "running"):
                        job["status"] = "cancelled"
                        job["finished_at"] = CREATED + 30
                    return self.send_json(200, public_job(job))
                if method == "GET" and parts[3:] == ["results"]:
                    lines = []
                    for index, item in enumerate(job["_prompts"][:job["completed"]]):
                        text = "".join(PIECES[:3])
                        lines.append(json.dumps({
                            "index": index, "prompt": item["prompt"], "text": text, "finish_reason": "stop",
                            "usage": {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7}}))
                    payload = "".join(line + "\n" for line in lines).encode()
                    return self.send_raw(200, payload, "application/x-ndjson")
        return self.send_json(404, error_body("no route for %s %s" % (method, self.path), "invalid_request_error"))

    # -- completions ---------------------------------------------------------------------------
    def completions(self, body):
        if not isinstance(body, dict) or not isinstance(body.get("prompt"), str):
            return self.send_json(400, error_body("'prompt' is required", "invalid_request_error", "prompt"))
        prompt = body["prompt"]
        if prompt == "__429__":
            return self.send_json(429, error_body("server overloaded, too many waiting requests",
                                                  "rate_limit_error"), {"Retry-After": "7"})
        if prompt == "__500__":
            return self.send_raw(500, b"Internal Server Error\n", "text/plain")
        if prompt == "__garbage__":
            return self.send_json(200, {"unexpected": True})
        max_tokens = int(body.get("max_tokens") or 16)
        pieces = PIECES[:max_tokens]
        finish = "length" if max_tokens <= len(PIECES) else "stop"
        usage = {"prompt_tokens": 5, "completion_tokens": len(pieces), "total_tokens": 5 + len(pieces)}
        base = {"id": "cmpl-test1", "object": "text_completion", "created": CREATED, "model": MODEL}
        if not body.get("stream"):
            return self.send_json(200, dict(base, choices=[{"index": 0, "text": "".join(pieces), "logprobs": None,
                                                            "finish_reason": finish}], usage=usage))
        delay = 0.02
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        self.wfile.write(b": stream opened\n\n")
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1
            chunk = dict(base, choices=[{"index": 0, "text": piece, "logprobs": None,
                                         "finish_reason": finish if last else None}])
            event = ("data: " + json.dumps(chunk) + "\n\n").encode()
            # Split each event in two writes so the client sees events cut across reads.
            half = len(event) // 2
            self.wfile.write(event[:half])
            self.wfile.flush()
            time.sleep(delay / 2)
            self.wfile.write(event[half:])
            self.wfile.flush()
            time.sleep(delay / 2)
            if prompt == "__slow__" and i == 0:
                CONTINUED[0] = CONTINUE.wait(60)
        if (body.get("stream_options") or {}).get("include_usage"):
            self.wfile.write(("data: " + json.dumps(dict(base, choices=[], usage=usage)) + "\r\n\r\n").encode())
        if prompt != "__nodone__":
            self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()

    # -- jobs ----------------------------------------------------------------------------------
    def create_job(self, body):
        prompts = body.get("prompts") if isinstance(body, dict) else None
        if not isinstance(prompts, list) or not prompts:
            return self.send_json(400, error_body("'prompts' must be a non-empty list", "invalid_request_error",
                                                  "prompts"))
        texts = [p.get("prompt") if isinstance(p, dict) else None for p in prompts]
        if not all(isinstance(t, str) for t in texts):
            return self.send_json(400, error_body("each prompt needs a 'prompt' string", "invalid_request_error",
                                                  "prompts"))
        end = "failed" if "__fail__" in texts else "cancelled" if "__cancel__" in texts else "completed"
        with STATE_LOCK:
            job_id = "job_" + uuid.uuid4().hex[:12]
            job = {"id": job_id, "object": "job", "status": "queued", "total": len(prompts), "completed": 0,
                   "failed": 0, "created": CREATED + len(JOB_ORDER), "finished_at": None,
                   "_prompts": prompts, "_end": end}
            JOBS[job_id] = job
            JOB_ORDER.append(job_id)
            return self.send_json(202, public_job(job))


def main():
    args = sys.argv[1:]
    while args:
        flag = args.pop(0)
        if flag == "--token":
            CONFIG["token"] = args.pop(0)
        elif flag == "--job-step":
            CONFIG["job_step"] = int(args.pop(0))
        else:
            sys.exit("unknown argument: " + flag)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    refused = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    refused.bind(("127.0.0.1", 0))  # bound, never listening: connections to it are refused
    print(json.dumps({"port": server.server_address[1], "refused_port": refused.getsockname()[1]}), flush=True)

    threading.Thread(target=server.serve_forever, daemon=True).start()

    def exit_when_parent_goes():
        sys.stdin.read()  # returns at EOF: the test closed our stdin or died
        server.shutdown()

    watcher = threading.Thread(target=exit_when_parent_goes, daemon=True)
    watcher.start()
    watcher.join(HARD_LIMIT_S)


if __name__ == "__main__":
    main()
