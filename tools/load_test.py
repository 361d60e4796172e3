r"""Load test of `main.py serve` on loopback: requests/s and latency at 1, 8, 32 clients.

    .venv/bin/python tools/load_test.py                       # starts its own server
    .venv/bin/python tools/load_test.py --url=http://127.0.0.1:8080 --server_pid=1234
    .venv/bin/python tools/load_test.py --write               # + rows in docs/benchmarks.md

Each client is a thread with one keep-alive HTTP connection that sends
`translate_bytes` requests (one face PNG, the target emotion cycling) back to back, as a
TF Serving client would. Every level is bounded in requests (--requests) and time
(--max_seconds). The server's resident memory (VmRSS) is read before (after a warm-up
pass at every level, so first-use allocations are not counted as growth) and after.
Exits 1 when a request failed or memory grew by more than --max_rss_growth.
"""

import base64
import datetime
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.parse

import numpy as np
from absl import app
from absl import flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHMARKS = os.path.join(REPO, "docs", "benchmarks.md")
SECTION = "## serve load test"
INTRO = ("`tools/load_test.py` (details: [web.md](web.md)): `main.py serve` with the shipped "
         "generator on 127.0.0.1; clients are threads on the same machine, each with one "
         "keep-alive connection sending `translate_bytes` requests (one face PNG) back to "
         "back; each level is bounded in requests and time; the server's memory (VmRSS) is "
         "read after a warm-up pass at every level and after the test.")
HEADER = ("| date | machine | CPU flags | clients | requests ok | failed | req/s | p50 ms | "
          "p99 ms | mean batch | server RSS before -> after MB | note |")
FACE = os.path.join(REPO, "faceexpr_tf", "assets", "examples", "astronaut_gray.png")
EMOTIONS = ("Angry", "Happy", "Sad", "Surprise")

_URL = flags.DEFINE_string("url", None, "A running server (default: start `main.py "
                           "serve` on a free port and stop it afterwards).")
_SERVER_PID = flags.DEFINE_integer("server_pid", None, "With --url: the server's pid, "
                                   "to read its memory.")
_CLIENTS = flags.DEFINE_list("clients", ["1", "8", "32"], "Concurrency levels.")
_REQUESTS = flags.DEFINE_integer("requests", 400, "Requests per level (at most).")
_MAX_SECONDS = flags.DEFINE_float("max_seconds", 60.0, "Time limit per level.")
_WARMUP = flags.DEFINE_integer("warmup", 64, "Requests per level before measuring.")
_MAX_RSS_GROWTH = flags.DEFINE_float("max_rss_growth", 0.10, "Allowed memory growth.")
_WRITE = flags.DEFINE_bool("write", False, f"Append the rows to {BENCHMARKS}.")
_NOTE = flags.DEFINE_string("note", "", "Free text for the rows (conditions).")


def rss_mb(pid: int) -> float:
  with open(f"/proc/{pid}/status") as f:
    for line in f:
      if line.startswith("VmRSS:"):
        return int(line.split()[1]) / 1024
  raise RuntimeError(f"no VmRSS for pid {pid}")


def start_server() -> tuple[subprocess.Popen, str]:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  process = subprocess.Popen([sys.executable, os.path.join(REPO, "main.py"), "serve",
                              f"--port={port}"], cwd=REPO, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
  url = f"http://127.0.0.1:{port}"
  deadline = time.monotonic() + 180
  while time.monotonic() < deadline:
    if process.poll() is not None:
      raise SystemExit(f"main.py serve exited with {process.returncode}")
    try:
      status, _ = request(http.client.HTTPConnection("127.0.0.1", port, timeout=5), "GET",
                          "/healthz")
      if status == 200:
        return process, url
    except OSError:
      time.sleep(0.5)
  process.kill()
  raise SystemExit("main.py serve did not start within 180 s")


def request(conn, method, path, body=None):
  conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
  response = conn.getresponse()
  return response.status, response.read()


def bodies() -> list[bytes]:
  with open(FACE, "rb") as f:
    data = base64.b64encode(f.read()).decode()
  return [json.dumps({"signature_name": "translate_bytes", "instances": [
      {"image_bytes": {"b64": data}, "target": e}]}).encode() for e in EMOTIONS]


def run_level(url: str, clients: int, total: int, max_seconds: float) -> dict:
  """`clients` threads share `total` requests; returns counts and latencies."""
  parsed = urllib.parse.urlparse(url)
  payloads = bodies()
  lock = threading.Lock()
  state = {"left": total, "failed": 0, "errors": []}
  latencies = []
  deadline = time.monotonic() + max_seconds

  def client(index: int):
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=60)
    i = index
    while time.monotonic() < deadline:
      with lock:
        if state["left"] <= 0:
          break
        state["left"] -= 1
      start = time.perf_counter()
      try:
        status, body = request(conn, "POST", "/v1/models/faceexpr:predict",
                               payloads[i % len(payloads)])
        ok = status == 200 and b'"predictions"' in body
      except (OSError, http.client.HTTPException) as e:
        status, body, ok = None, repr(e).encode(), False
        conn.close()
        conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=60)
      elapsed = time.perf_counter() - start
      with lock:
        if ok:
          latencies.append(elapsed)
        else:
          state["failed"] += 1
          state["errors"].append(f"{status}: {body[:200]!r}")
      i += 1
    conn.close()

  threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
  start = time.perf_counter()
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  wall = time.perf_counter() - start
  lat = np.array(latencies) * 1000
  return {"clients": clients, "ok": len(lat), "failed": state["failed"], "seconds": wall,
          "rps": len(lat) / wall if wall else 0.0,
          "p50_ms": float(np.percentile(lat, 50)) if len(lat) else float("nan"),
          "p99_ms": float(np.percentile(lat, 99)) if len(lat) else float("nan"),
          "errors": state["errors"][:3]}


def health(url: str) -> dict:
  parsed = urllib.parse.urlparse(url)
  _, body = request(http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=10),
                    "GET", "/healthz")
  return json.loads(body)


def append_rows(rows: list[dict], rss: tuple, note: str):
  """Adds dated rows to the "serve load test" table of docs/benchmarks.md.

  The section sits before "## Results": `main.py benchmark` appends its rows at the end
  of the file, so this table must not be last.
  """
  # Imported after the test, so that TensorFlow's import is not part of the client's load.
  from faceexpr_tf.benchmark import hardware  # pylint: disable=g-import-not-at-top
  from faceexpr_tf.benchmark import tables  # pylint: disable=g-import-not-at-top
  today = datetime.date.today().isoformat()
  where = f"{hardware.machine()} | {hardware.cpu_flags()}"
  new_rows = [f"| {today} | {where} | {r['clients']} | {r['ok']} | {r['failed']} | "
              f"{r['rps']:.1f} | {r['p50_ms']:.0f} | {r['p99_ms']:.0f} | "
              f"{r['mean_batch']:.1f} | {rss[0]:.0f} -> {rss[1]:.0f} | {note} |"
              for r in rows]
  tables.append_to_section(BENCHMARKS, SECTION, INTRO, HEADER, new_rows)


def main(argv):
  del argv
  process = None
  if _URL.value:
    url, pid = _URL.value.rstrip("/"), _SERVER_PID.value
  else:
    process, url = start_server()
    pid = process.pid
  try:
    levels = [int(c) for c in _CLIENTS.value]
    idle = rss_mb(pid) if pid else float("nan")
    for clients in levels:   # warm-up: first-use allocations at every batch size
      warm = run_level(url, clients, _WARMUP.value, _MAX_SECONDS.value)
      if warm["failed"]:
        print(f"warm-up at {clients} clients: {warm['failed']} failed: {warm['errors']}")
    before = rss_mb(pid) if pid else float("nan")
    rows = []
    for clients in levels:
      h0 = health(url)
      row = run_level(url, clients, _REQUESTS.value, _MAX_SECONDS.value)
      h1 = health(url)
      batches = h1["batches"] - h0["batches"]
      row["mean_batch"] = (h1["examples"] - h0["examples"]) / batches if batches else 0.0
      rows.append(row)
      print(f"{clients:3d} clients: {row['ok']} ok, {row['failed']} failed in "
            f"{row['seconds']:.1f} s: {row['rps']:.1f} req/s, p50 {row['p50_ms']:.0f} ms, "
            f"p99 {row['p99_ms']:.0f} ms, mean batch {row['mean_batch']:.1f}"
            + (f"; errors: {row['errors']}" if row["errors"] else ""))
    after = rss_mb(pid) if pid else float("nan")
    growth = after / before - 1 if pid else 0.0
    print(f"server RSS: {idle:.0f} MB idle, {before:.0f} MB after warm-up, {after:.0f} MB "
          f"after the test ({100 * growth:+.1f}%)")
    if _WRITE.value:
      append_rows(rows, (before, after), _NOTE.value)
    failed = sum(r["failed"] for r in rows)
    if failed or growth > _MAX_RSS_GROWTH.value:
      print(f"FAIL: {failed} failed requests, memory growth {100 * growth:+.1f}%")
      return 1
    return 0
  finally:
    if process is not None:
      process.terminate()
      try:
        process.wait(timeout=20)
      except subprocess.TimeoutExpired:
        process.kill()


if __name__ == "__main__":
  app.run(main)
