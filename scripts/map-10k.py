#!/usr/bin/env python3
"""The 10,000-task map flow as a user runs it: no server, then streaming to a local server.

Usage: scripts/map-10k.py [ROUNDS]   (after `cargo build --release --example map_10k` and
`cargo build --release -p flowkit-server`; MAP10K_EXAMPLE and MAP10K_SERVER name other
binaries, to compare builds)

For each round: the example with no server (FLOWKIT_API_URL unset), with the server
unreachable (a port nothing listens on: the events stay in a throwaway spool), then against a
fresh release server on a throwaway SQLite database. Prints the flow's wall time (what its caller
waits for), the process's wall time, and the time from the process's start until the server had
stored every event (polled from /metrics every 10 ms).
"""
import os, re, resource, shutil, socket, subprocess, sys, tempfile, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.environ.get("MAP10K_EXAMPLE", os.path.join(ROOT, "target/release/examples/map_10k"))
SERVER = os.environ.get("MAP10K_SERVER", os.path.join(ROOT, "target/release/flowkit-server"))
ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 3


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stored(url):
    try:
        text = urllib.request.urlopen(url + "/metrics", timeout=1).read().decode()
    except OSError:
        return None
    m = re.search(r"^flowkit_events_ingested_total(?:\{[^}]*\})? (\d+)", text, re.M)
    return int(m.group(1)) if m else 0


def children_cpu_ms():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (usage.ru_utime + usage.ru_stime) * 1e3


def run(env):
    cpu = children_cpu_ms()
    start = time.perf_counter()
    out = subprocess.run([EXAMPLE], env=env, capture_output=True, text=True, check=True).stdout
    wall = time.perf_counter() - start
    flow_ms = float(re.search(r"flow_ms=([\d.]+)", out).group(1))
    return start, wall * 1e3, flow_ms, children_cpu_ms() - cpu


base_env = dict(os.environ, FLOWKIT_CONSOLE="off")
base_env.pop("FLOWKIT_API_URL", None)
for round in range(ROUNDS):
    _, wall, flow_ms, cpu = run(base_env)
    print(f"no server:   flow {flow_ms:6.1f} ms   process {wall:7.1f} ms   cpu {cpu:6.1f} ms")
    work = tempfile.mkdtemp(prefix="flowkit-map10k-")
    try:
        env = dict(base_env, FLOWKIT_API_URL=f"http://127.0.0.1:{free_port()}",
                   FLOWKIT_SPOOL_DIR=os.path.join(work, "spool"))
        _, wall, flow_ms, cpu = run(env)
        print(f"unreachable: flow {flow_ms:6.1f} ms   process {wall:7.1f} ms   cpu {cpu:6.1f} ms")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    work = tempfile.mkdtemp(prefix="flowkit-map10k-")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [SERVER, "--bind", f"127.0.0.1:{port}", "--database-url", f"sqlite://{work}/db.sqlite"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while stored(url) is None:
            time.sleep(0.05)
        before = stored(url)
        env = dict(base_env, FLOWKIT_API_URL=url, FLOWKIT_SPOOL_DIR=os.path.join(work, "spool"))
        cpu = children_cpu_ms()
        start = time.perf_counter()
        proc = subprocess.Popen([EXAMPLE], env=env, stdout=subprocess.PIPE, text=True)
        last, last_change = before, start
        while proc.poll() is None:
            now = stored(url)
            if now is not None and now != last:
                last, last_change = now, time.perf_counter()
            time.sleep(0.01)
        wall = (time.perf_counter() - start) * 1e3
        cpu = children_cpu_ms() - cpu
        flow_ms = float(re.search(r"flow_ms=([\d.]+)", proc.stdout.read()).group(1))
        final = stored(url)
        while final != last:
            last, last_change = final, time.perf_counter()
            final = stored(url)
        stored_ms = (last_change - start) * 1e3
        spooled = len(os.listdir(os.path.join(work, "spool"))) if os.path.isdir(os.path.join(work, "spool")) else 0
        print(f"streaming:   flow {flow_ms:6.1f} ms   process {wall:7.1f} ms   cpu {cpu:6.1f} ms   "
              f"server stored all {final - before} events after {stored_ms:7.1f} ms   "
              f"left in spool: {spooled}")
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)
