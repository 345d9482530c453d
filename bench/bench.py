#!/usr/bin/env python3
"""Benchmark distlock against `etcdctl lock` on the same throwaway etcd (a benchmark, not a test).

Usage: bench/bench.py [--no-build] [--distlock PATH] [--runs N] [--check]

Starts its own etcd on free loopback ports with its data in /dev/shm, builds
target/release/distlock (unless --no-build), then runs both tools alternately, run by run:

  a. uncontended `-- true`: wall time per run (median of --runs, default 30, each tool)
  b. peak memory: max RSS (median of 10 runs per tool, alternating), read by GNU time
     (/usr/bin/time -f %M): a child of this Python process would inherit its memory high-water
     mark, one of GNU time's starts from time's own (about 1 MiB, printed as the floor)
  c. contention: 4 clients x 8 rounds on one lock name, total wall time (median of 5)
  d. etcd requests per acquisition, 10 and 40 simultaneous contenders running `-- true` once
     (all queued up behind a key the benchmark holds, then let go): from etcd's /metrics
     before and after, unary gRPC calls handled plus Watch messages sent, divided by the
     number of acquisitions; lease keep-alive messages are shown apart

and prints a table with the ratio distlock/etcdctl and each goal. Takes about 30 seconds
after the build. Exit status: 0 when it measured everything (with --check: and every goal was met),
1 with --check when a goal was missed, 2 on a usage error, 3 when something could not be run.
Python 3 standard library only.
"""

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PREFIX = "/bench/"

# Goals, as ratios distlock/etcdctl (lower is better).
GOAL_WALL = 0.35
GOAL_RSS = 0.40
GOAL_CONTENTION = 0.70
# "Not growing" from 10 to 40 contenders: at most this factor (room for measurement noise).
GROWTH_TOLERANCE = 1.10


class BenchError(Exception):
    pass


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Etcd:
    """A single-member etcd on loopback, data on /dev/shm, stopped by stop()."""

    def __init__(self):
        base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
        self.dir = tempfile.mkdtemp(prefix="distlock-bench.", dir=base)
        self.proc = None
        self.url = self.metrics_url = None

    def start(self):
        for _ in range(5):
            client, peer, metrics = free_port(), free_port(), free_port()
            if len({client, peer, metrics}) < 3:
                continue
            self.url = f"http://127.0.0.1:{client}"
            self.metrics_url = f"http://127.0.0.1:{metrics}/metrics"
            peer_url = f"http://127.0.0.1:{peer}"
            data = os.path.join(self.dir, "data")
            shutil.rmtree(data, ignore_errors=True)
            self.log = open(os.path.join(self.dir, "etcd.log"), "wb")
            self.proc = subprocess.Popen(
                ["etcd", "--name", "bench", "--data-dir", data,
                 "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
                 "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
                 "--initial-cluster", f"bench={peer_url}",
                 "--listen-metrics-urls", f"http://127.0.0.1:{metrics}"],
                stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    with urllib.request.urlopen(self.url + "/health", timeout=1) as r:
                        if b'"true"' in r.read():
                            return
                except OSError:
                    pass
                time.sleep(0.05)
            self.stop_process()
        with open(os.path.join(self.dir, "etcd.log"), "rb") as f:
            tail = f.read().decode(errors="replace").splitlines()[-5:]
        raise BenchError("could not start etcd:\n  " + "\n  ".join(tail))

    def metrics(self):
        with urllib.request.urlopen(self.metrics_url, timeout=5) as r:
            return parse_metrics(r.read().decode())

    def stop_process(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def stop(self):
        self.stop_process()
        shutil.rmtree(self.dir, ignore_errors=True)


METRIC_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)')
LABEL_RE = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """Prometheus text -> list of (name, {label: value}, float)."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = METRIC_RE.match(line)
        if m:
            out.append((m.group(1), dict(LABEL_RE.findall(m.group(2) or "")), float(m.group(3))))
    return out


def grpc_counts(samples):
    """The counters this benchmark reads, keyed by a short name."""
    c = {}

    def add(key, v):
        c[key] = c.get(key, 0.0) + v

    for name, labels, value in samples:
        method = labels.get("grpc_method", "?")
        if name == "grpc_server_handled_total" and labels.get("grpc_type") == "unary":
            add("unary", value)
            add("unary:" + method, value)
        elif name == "grpc_server_msg_sent_total":
            if labels.get("grpc_service") == "etcdserverpb.Watch":
                add("watch_sent", value)
            elif method == "LeaseKeepAlive":
                add("keepalive_sent", value)
        elif name == "grpc_server_msg_received_total" and method == "LeaseKeepAlive":
            add("keepalive_received", value)
        elif name == "grpc_server_started_total" and labels.get("grpc_type") != "unary":
            add("streams:" + method, value)
    return c


class Failed(Exception):
    """A run of a tool failed; the message says how."""


class Tool:
    def __init__(self, name, argv_for, env):
        self.name = name
        self.argv_for = argv_for  # lock name -> argv
        self.env = env

    def spawn(self, lock):
        return subprocess.Popen(
            self.argv_for(lock), env=self.env, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )

    def run(self, lock, timeout=20.0):
        """One run: (wall seconds, max RSS in KiB). Raises Failed on a non-zero exit."""
        t0 = time.perf_counter()
        p = self.spawn(lock)
        return finish(p, t0, timeout, self.name)


def finish(p, t0, timeout, name):
    """Waits for p (blocking in wait4, so no polling competes with the tools for the CPU) and
    returns (wall seconds since t0, max RSS in KiB). Raises Failed on a non-zero exit or when
    it takes longer than `timeout` (then it is killed)."""
    timer = threading.Timer(timeout, p.kill)
    timer.start()
    try:
        _, status, usage = os.wait4(p.pid, 0)
    finally:
        timer.cancel()
    wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    # The process is gone, so its stderr (a few lines at most) is all in the pipe.
    err = p.stderr.read()
    p.stderr.close()
    if p.returncode == -signal.SIGKILL and wall >= timeout:
        raise Failed(f"{name} did not finish within {timeout:.0f}s: {tail([err])}")
    if p.returncode != 0:
        raise Failed(f"{name} exited with status {p.returncode}: {tail([err])}")
    return wall, usage.ru_maxrss


def peak_rss(argv, env, timeout=20.0):
    """Max RSS in KiB of one run of argv, as GNU time reports it."""
    with tempfile.NamedTemporaryFile(prefix="distlock-bench-rss.") as out:
        p = subprocess.run(["/usr/bin/time", "-o", out.name, "-f", "maxrss=%M"] + argv, env=env,
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, timeout=timeout)
        report = open(out.name).read()
    m = re.search(r"^maxrss=(\d+)$", report, re.M)
    if p.returncode != 0 or not m:
        raise Failed(f"{argv[0]} exited with status {p.returncode}: {tail([p.stderr])}")
    return int(m.group(1))


def tail(err):
    text = b"".join(e for e in err if e).decode(errors="replace").strip()
    return (text.splitlines() or ["(no message)"])[-1][:300]


# --- scenarios -----------------------------------------------------------------------------


def uncontended(tools, runs):
    """a: alternate the tools run by run on an uncontended lock; wall seconds per run."""
    walls = {t.name: [] for t in tools}
    for t in tools:  # warm-up: page cache, first connection
        t.run(f"wall-{t.name}")
    for i in range(runs):
        for t in (tools if i % 2 == 0 else tools[::-1]):
            walls[t.name].append(t.run(f"wall-{t.name}")[0])
    return walls


def memory(tools, runs=10):
    """b: peak RSS per run (KiB), alternating, uncontended."""
    rss = {t.name: [] for t in tools}
    for i in range(runs):
        for t in (tools if i % 2 == 0 else tools[::-1]):
            rss[t.name].append(peak_rss(t.argv_for(f"memory-{t.name}"), t.env))
    return rss


def contention(tool, clients=4, rounds=8, timeout=20.0):
    """c: `clients` loops of `rounds` runs each on one lock name; total wall time."""
    lock = f"contention-{tool.name}"
    errors = []

    def client():
        try:
            for _ in range(rounds):
                tool.run(lock, timeout=timeout)
        except Failed as e:
            errors.append(str(e))

    threads = [threading.Thread(target=client) for _ in range(clients)]
    t0 = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    total = time.perf_counter() - t0
    if errors:
        raise Failed(errors[0])
    return total


def requests_per_acquisition(tool, etcd, etcdctl_bin, contenders, rep):
    """d: `contenders` processes, each `-- true` once, all queued at the same moment: a plain
    key put first under the lock's prefix holds the lock (for both tools it is the oldest
    contender) until every process has queued up behind it, then is deleted. Returns the
    counter deltas per acquisition, less the one DeleteRange of that deletion."""
    lock = f"requests{contenders}-{rep}-{tool.name}"
    blocker = f"{PREFIX}{lock}/0-bench-blocker"
    ctl = [etcdctl_bin, f"--endpoints={etcd.url}"]
    env = dict(tool.env, ETCDCTL_API="3")
    subprocess.run(ctl + ["put", blocker, ""], env=env, check=True, stdout=subprocess.DEVNULL)
    before = grpc_counts(etcd.metrics())
    t0 = time.perf_counter()
    procs = [tool.spawn(lock) for _ in range(contenders)]
    # Every contender takes a lease; once all have and etcd has seen no call for a moment,
    # they are all queued and watching. (/metrics is plain HTTP: reading it adds no calls.)
    last, quiet_since, deadline = None, time.monotonic(), time.monotonic() + 30
    while time.monotonic() < deadline:
        now = grpc_counts(etcd.metrics())
        grants = now.get("unary:LeaseGrant", 0.0) - before.get("unary:LeaseGrant", 0.0)
        calls = (now.get("unary", 0.0), now.get("watch_sent", 0.0), now.get("streams:Watch", 0.0))
        if calls != last:
            last, quiet_since = calls, time.monotonic()
        elif grants >= contenders and time.monotonic() - quiet_since >= 0.3:
            break
        if any(p.poll() is not None for p in procs):
            break  # one gave up or failed: finish() below says why
        time.sleep(0.05)
    subprocess.run(ctl + ["del", blocker], env=env, check=True, stdout=subprocess.DEVNULL)
    errors = []
    for p in procs:
        try:
            finish(p, t0, 20.0, tool.name)
        except Failed as e:
            errors.append(str(e))
    if errors:
        raise Failed(f"{len(errors)} of {contenders} failed; first: {errors[0]}")
    time.sleep(0.2)  # let etcd finish counting the last stream messages
    after = grpc_counts(etcd.metrics())
    delta = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in set(after) | set(before)}
    delta["unary"] -= 1  # our own `etcdctl del` of the blocker
    delta["unary:DeleteRange"] -= 1
    return {k: v / contenders for k, v in delta.items() if v}


def describe_calls(calls):
    """'LeaseGrant 1, Txn 2, ..., Watch stream 1, watch msgs 2' from grpc_counts() numbers."""
    parts = [f"{k.split(':', 1)[1]} {calls[k]:.3g}" for k in sorted(calls)
             if k.startswith("unary:") and calls[k]]
    parts += [f"{k.split(':', 1)[1]} stream {calls[k]:.3g}" for k in sorted(calls)
              if k.startswith("streams:") and calls[k]]
    parts.append(f"watch msgs {calls.get('watch_sent', 0.0):.3g}")
    if calls.get("keepalive_sent"):
        parts.append(f"keep-alive msgs {calls['keepalive_sent']:.3g}")
    return ", ".join(parts)


# --- report --------------------------------------------------------------------------------


def fmt_ms(s):
    return f"{s * 1000:.1f} ms"


def fmt_s(s):
    return f"{s:.2f} s"


def fmt_kib(k):
    return f"{k / 1024:.1f} MiB"


def fmt_n(n):
    return f"{n:.2f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--no-build", action="store_true", help="do not run cargo build --release")
    ap.add_argument("--distlock", default=os.path.join(ROOT, "target/release/distlock"),
                    help="the distlock binary to measure (default: target/release/distlock)")
    ap.add_argument("--runs", type=int, default=30, help="uncontended runs per tool (default 30)")
    ap.add_argument("--check", action="store_true", help="exit 1 if a goal is missed")
    args = ap.parse_args()
    if args.runs < 1:
        ap.error("--runs must be at least 1")

    try:
        subprocess.run(["bash", os.path.join(ROOT, "scripts/setup")], check=True,
                       stdin=subprocess.DEVNULL, env=dict(os.environ, DISTLOCK_SETUP_BENCH="1", DISTLOCK_SETUP_PACKAGING="0"))
    except subprocess.CalledProcessError:
        return 3
    if not args.no_build:
        log("cargo build --release")
        if subprocess.run(["cargo", "build", "--release"], cwd=ROOT).returncode != 0:
            log("the build failed")
            return 3
    if not os.access(args.distlock, os.X_OK):
        log(f"{args.distlock} is missing or not executable (build it, or pass --distlock)")
        return 3
    # Measure a copy, so that a rebuild while the benchmark runs cannot swap the binary.
    copy_dir = os.path.join(ROOT, "target", "bench")
    os.makedirs(copy_dir, exist_ok=True)
    copy = os.path.join(copy_dir, "distlock")
    shutil.copy2(args.distlock, copy + ".tmp")
    os.replace(copy + ".tmp", copy)
    log(f"measuring a copy of {args.distlock}: {copy}")
    args.distlock = copy
    started = time.monotonic()

    etcd = Etcd()
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)

    for s in previous:
        signal.signal(s, on_signal)
    try:
        etcd.start()
        log(f"etcd at {etcd.url}, data in {etcd.dir}")
        return measure(args, etcd, started)
    except BenchError as e:
        log(str(e))
        return 3
    finally:
        etcd.stop()


def measure(args, etcd, started):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISTLOCK_", "ETCDCTL_"))}
    env.update(DISTLOCK_CONFIG="/dev/null", ETCDCTL_API="3")
    distlock = Tool("distlock", lambda lock: [
        args.distlock, f"--endpoints={etcd.url}", f"--prefix={PREFIX}", f"--lock-name={lock}",
        "--", "true"], env)
    etcdctl_bin = shutil.which("etcdctl")
    etcdctl = Tool("etcdctl", lambda lock: [
        etcdctl_bin, f"--endpoints={etcd.url}", "lock", PREFIX + lock, "true"], env)
    tools = [distlock, etcdctl]
    version = subprocess.run([etcdctl_bin, "version"], capture_output=True, text=True).stdout
    log(f"distlock: {args.distlock}; etcdctl: {etcdctl_bin} ({version.split(chr(10))[0]})")

    rows = []     # (metric, distlock, etcdctl, ratio, goal, verdict)
    notes = []
    errors = []

    def ratio(a, b):
        return a / b if b else float("inf")

    def verdict(ok):
        return "PASS" if ok else "FAIL"

    # a
    log(f"a: {args.runs} uncontended runs per tool, alternating")
    try:
        walls = uncontended(tools, args.runs)
        d, e = statistics.median(walls["distlock"]), statistics.median(walls["etcdctl"])
        r = ratio(d, e)
        rows.append((f"a. uncontended wall, median of {args.runs}", fmt_ms(d), fmt_ms(e),
                     f"{r:.2f}", f"<= {GOAL_WALL}", verdict(r <= GOAL_WALL)))
        spawn = []
        for _ in range(10):
            t0 = time.perf_counter()
            subprocess.run(["true"], stdin=subprocess.DEVNULL)
            spawn.append(time.perf_counter() - t0)
        notes.append("a. wall min/max: distlock {} / {}, etcdctl {} / {}; starting and reaping "
                     "`true` alone takes {} (included in both)".format(
                         fmt_ms(min(walls["distlock"])), fmt_ms(max(walls["distlock"])),
                         fmt_ms(min(walls["etcdctl"])), fmt_ms(max(walls["etcdctl"])),
                         fmt_ms(statistics.median(spawn))))
        # What one uncontended run asks of etcd, for whoever wants to make it faster.
        for t in tools:
            before = grpc_counts(etcd.metrics())
            t.run(f"wall-{t.name}")
            time.sleep(0.2)
            after = grpc_counts(etcd.metrics())
            calls = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
            notes.append(f"a. {t.name}, one uncontended run: " + describe_calls(calls))
    except Failed as ex:
        errors.append(f"a: {ex}")
        rows.append((f"a. uncontended wall, median of {args.runs}", "error", "", "", f"<= {GOAL_WALL}", "FAIL"))

    # b
    log("b: peak memory, 10 runs per tool, alternating")
    try:
        rss = memory(tools)
        d, e = statistics.median(rss["distlock"]), statistics.median(rss["etcdctl"])
        r = ratio(d, e)
        rows.append(("b. peak memory (max RSS), median of 10", fmt_kib(d), fmt_kib(e),
                     f"{r:.2f}", f"<= {GOAL_RSS}", verdict(r <= GOAL_RSS)))
        floor = statistics.median(peak_rss(["true"], env) for _ in range(3))
        notes.append(f"b. max RSS min/max: distlock {fmt_kib(min(rss['distlock']))} / "
                     f"{fmt_kib(max(rss['distlock']))}, etcdctl {fmt_kib(min(rss['etcdctl']))} / "
                     f"{fmt_kib(max(rss['etcdctl']))}; GNU time's floor (`true`): {fmt_kib(floor)}")
    except Failed as ex:
        errors.append(f"b: {ex}")
        rows.append(("b. peak memory (max RSS), median of 10", "error", "", "", f"<= {GOAL_RSS}", "FAIL"))

    # c
    log("c: 4 clients x 8 rounds on one lock, 5 times per tool, alternating")
    try:
        totals = {t.name: [] for t in tools}
        for i in range(5):
            for t in (tools if i % 2 == 0 else tools[::-1]):
                totals[t.name].append(contention(t))
        d, e = statistics.median(totals["distlock"]), statistics.median(totals["etcdctl"])
        r = ratio(d, e)
        rows.append(("c. 4 clients x 8 rounds, wall, median of 5", fmt_s(d), fmt_s(e),
                     f"{r:.2f}", f"<= {GOAL_CONTENTION}", verdict(r <= GOAL_CONTENTION)))
    except Failed as ex:
        errors.append(f"c: {ex}")
        rows.append(("c. 4 clients x 8 rounds, wall, median of 5", "error", "", "", f"<= {GOAL_CONTENTION}", "FAIL"))

    # d
    log("d: etcd requests per acquisition, 10 and 40 contenders queued at once, 3 times each")
    per = {}  # (tool, n) -> list of dicts
    try:
        for n in (10, 40):
            for rep in range(3):
                for t in (tools if rep % 2 == 0 else tools[::-1]):
                    per.setdefault((t.name, n), []).append(
                        requests_per_acquisition(t, etcd, etcdctl_bin, n, rep))
    except Failed as ex:
        errors.append(f"d: {ex}")

    def med(tool, n, key):
        samples = per.get((tool, n))
        return statistics.median(s.get(key, 0.0) for s in samples) if samples else None

    def requests(tool, n):
        samples = per.get((tool, n))
        if not samples:
            return None
        return statistics.median(s.get("unary", 0.0) + s.get("watch_sent", 0.0) for s in samples)

    d10, d40 = requests("distlock", 10), requests("distlock", 40)
    for n in (10, 40):
        d, e = requests("distlock", n), requests("etcdctl", n)
        name = f"d. requests/acquisition, {n} contenders"
        if d is None or e is None:
            rows.append((name, "error", "", "", "", "FAIL"))
            continue
        ok = d <= e + 1e-9
        goal = "<= etcdctl"
        if n == 40:
            goal += f", <= {GROWTH_TOLERANCE}x at 10"
            ok = ok and d10 is not None and d40 <= d10 * GROWTH_TOLERANCE + 1e-9
        rows.append((name, fmt_n(d), fmt_n(e), f"{ratio(d, e):.2f}", goal, verdict(ok)))
    for n in (10, 40):
        d, e = med("distlock", n, "keepalive_sent"), med("etcdctl", n, "keepalive_sent")
        if d is not None and e is not None and (d or e):
            rows.append((f"   lease keep-alive msgs/acq, {n}", fmt_n(d), fmt_n(e),
                         f"{ratio(d, e):.2f}" if e else "-", "(info)", ""))
    for tool in ("distlock", "etcdctl"):
        for n in (10, 40):
            samples = per.get((tool, n))
            if samples:
                keys = set().union(*samples)
                calls = {k: statistics.median(s.get(k, 0.0) for s in samples) for k in keys}
                notes.append(f"d. {tool}, {n} contenders, per acquisition: " + describe_calls(calls))

    # table
    headers = ("metric", "distlock", "etcdctl", "ratio", "goal", "")
    widths = [max(len(str(r[i])) for r in rows + [headers]) for i in range(len(headers))]
    print()
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip())
    print("  ".join("-" * w for w in widths[:-1]) + "  ----")
    for r in rows:
        print("  ".join(str(c).ljust(w) if i == 0 or i >= 4 else str(c).rjust(w)
                        for i, (c, w) in enumerate(zip(r, widths))).rstrip())
    print()
    print("ratio = distlock / etcdctl (lower is better); requests = unary gRPC calls handled + "
          "Watch messages sent, from etcd's /metrics")
    for n in notes:
        print(n)
    for e in errors:
        print(f"error: {e}")
    failed = [r for r in rows if r[5] == "FAIL"]
    met = sum(1 for r in rows if r[5] == "PASS")
    print(f"\ngoals: {met} met, {len(failed)} missed; the benchmark took "
          f"{time.monotonic() - started:.0f} s")
    if errors:
        return 3
    return 1 if (args.check and failed) else 0


if __name__ == "__main__":
    sys.exit(main())
