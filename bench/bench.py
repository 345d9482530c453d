#!/usr/bin/env python3
"""Benchmark distlock against `etcdctl lock` on the same throwaway etcd (a benchmark, not a test).

Usage: bench/bench.py [--no-build] [--distlock PATH] [--runs N] [--check]
                      [--only a,b,c,d,queue,semaphore,nowait,fleet] [--queues 10,50,200]
                      [--hold 0.3] [--history-size 20] [--semaphores 30,60] [--holders 3]
                      [--nowait-runs 1000] [--fleet 1000]

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

  queue. queues of --queues contenders started at once, each holding the lock --hold seconds
     (a helper that stamps its start and end into a file): etcd requests per acquisition
     (as in d), the hand-over gap (end of one holder's command to the start of the next's,
     median and p99), total wall time, and the most holders ever seen at once (must be 1).
     distlock runs three times, as is and with -q (both with --history-size, default 20) and
     with --history-size=0 (the history's cost: requests and gap side by side); etcdctl once;
     a queue is run again until each
     tool has about GAPS_PER_TOOL gaps (a median of 40 moved by +-0.07 of the ratio from one
     run to the next). `holders` in queue_run() pairs each start with the end that
     freed its slot, so a semaphore of N holders fits as is.
  semaphore. queues of --semaphores contenders (default 30 and 60) holding --hold seconds, as
     a semaphore of --holders (default 3) and as the mutex beside it: requests per acquisition
     (goal: as many at 60 as at 30, i.e. flat), the most holders at once (must be N), the
     slot hand-over gap (end of a holder to the start of the one that took its slot).
  nowait. --nowait-runs `distlock --nowait` processes started at once against a held lock:
     raft proposals committed per loser (etcd_server_proposals_committed_total), time until
     all have exited, etcd's peak RSS meanwhile, keys left behind. etcdctl lock has no
     try-lock, so there is nothing to run side by side: the goal is absolute.
  fleet. --fleet waiters queued behind a held lock for 20 s (capacity, no goal): what they
     cost etcd per second (requests, keep-alives, bytes, CPU) and etcd's memory.

and prints a table with the ratio distlock/etcdctl and each goal. Takes about 6 minutes
after the build with the default queues (a queue of 200 holding 0.3 s lasts a minute per run). Exit status: 0 when it measured everything (with --check: and every goal was met),
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
# Queues of contenders that each hold the lock a while (issue 11).
GOAL_QUEUE_REQUESTS = 7.0   # etcd requests per acquisition, at every queue length
GOAL_GAP = 0.80             # median hand-over gap, distlock / etcdctl
GAPS_PER_TOOL = 120         # hand-overs measured per tool and queue length, at least
GOAL_NOWAIT_PROPOSALS = 0.1  # raft proposals committed per --nowait loser
# A semaphore's requests/acquisition, longest queue / shortest. Not 1.0: a contender that
# starts more than N places back costs a watch and a read more than one near the head, and
# their share grows with the queue (26 of 30, 56 of 60); the cost of each kind stays the same.
GOAL_FLAT = 1.15

# A command that stamps its start and end (ns since the epoch) into a file and holds the
# lock in between: compiled once when a C compiler is there, else bash (whose own start, about
# a millisecond, then counts in every gap of both tools).
HOLD_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static void stamp(const char *path, char tag) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    FILE *f = fopen(path, "a");
    if (!f) exit(2);
    fprintf(f, "%c %lld\n", tag, (long long)t.tv_sec * 1000000000LL + t.tv_nsec);
    fclose(f);
}
int main(int argc, char **argv) {
    if (argc != 3) return 2;
    stamp(argv[1], 's');
    double s = atof(argv[2]);
    struct timespec d = {(time_t)s, (long)((s - (time_t)s) * 1e9)};
    nanosleep(&d, NULL);
    stamp(argv[1], 'e');
    return 0;
}
"""


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
                start_new_session=True, preexec_fn=raise_fd_limit,
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


def raise_fd_limit():
    """etcd needs a descriptor per client: a thousand contenders exceed the usual 1024."""
    import resource
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def proc_status(pid, field):
    """A field of /proc/PID/status in KiB (VmRSS, VmHWM), or None."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak_rss(pid):
    """Resets VmHWM (Linux 4.0+: `5` to clear_refs); False where that is not allowed."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def cpu_seconds(pid):
    """User + system CPU seconds the process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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
        elif name == "etcd_server_proposals_committed_total":
            add("proposals", value)
        elif name == "etcd_network_client_grpc_received_bytes_total":
            add("bytes_received", value)
        elif name == "etcd_network_client_grpc_sent_bytes_total":
            add("bytes_sent", value)
    return c


def requests(calls):
    """What this benchmark counts as etcd requests: unary calls handled plus Watch messages
    sent (created, events, canceled). Lease keep-alive messages are counted apart: they go
    with the time spent waiting, not with hand-overs (see docs/benchmark.md, "Capacity")."""
    return calls.get("unary", 0.0) + calls.get("watch_sent", 0.0)


def delta(after, before):
    return {k: after.get(k, 0.0) - before.get(k, 0.0) for k in set(after) | set(before)}


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


def hold_command(workdir):
    """argv prefix of the stamping command (see HOLD_C); append LOG and SECONDS."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc:
        src, exe = os.path.join(workdir, "hold.c"), os.path.join(workdir, "hold")
        with open(src, "w") as f:
            f.write(HOLD_C)
        if subprocess.run([cc, "-O2", "-o", exe, src], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode == 0:
            return [exe]
    return ["bash", "--norc", "--noprofile", "-c",
            'echo "s ${EPOCHREALTIME/./}000" >> "$0"; sleep "$1"; echo "e ${EPOCHREALTIME/./}000" >> "$0"']


def queue_run(etcd, argv_for, lock, contenders, hold, hold_cmd, workdir, holders=1, timeout=None):
    """`contenders` processes started at once on one lock, each running the stamping command
    for `hold` seconds. Returns requests and keep-alive messages per acquisition, the
    hand-over gaps in seconds, the wall time and the most holders seen at once. With
    `holders` > 1 (a semaphore), start i pairs with the end that freed its slot."""
    log = os.path.join(workdir, lock + ".log")
    argv = argv_for(lock, hold_cmd + [log, str(hold)])
    timeout = timeout or 30 + contenders * (hold + 0.2) * 2
    before = grpc_counts(etcd.metrics())
    t0 = time.perf_counter()
    procs = [subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, env=QUEUE_ENV) for _ in range(contenders)]
    errors = []
    for p in procs:
        try:
            finish(p, t0, max(1.0, timeout - (time.perf_counter() - t0)), argv[0])
        except Failed as e:
            errors.append(str(e))
    wall = time.perf_counter() - t0
    if errors:
        raise Failed(f"{len(errors)} of {contenders} failed; first: {errors[0]}")
    time.sleep(0.3)  # let etcd finish counting the last stream messages
    calls = delta(grpc_counts(etcd.metrics()), before)
    events = []
    with open(log) as f:
        for line in f:
            tag, ns = line.split()
            events.append((int(ns), tag))
    events.sort()
    starts = [t for t, tag in events if tag == "s"]
    ends = [t for t, tag in events if tag == "e"]
    if len(starts) != contenders or len(ends) != contenders:
        raise Failed(f"{len(starts)} starts and {len(ends)} ends for {contenders} contenders")
    gaps = [(starts[i] - ends[i - holders]) / 1e9 for i in range(holders, contenders)]
    most = now = 0
    for _, tag in events:
        now += 1 if tag == "s" else -1
        most = max(most, now)
    return {"requests": requests(calls) / contenders,
            "keepalive": calls.get("keepalive_sent", 0.0) / contenders,
            "calls": {k: v / contenders for k, v in calls.items()},
            "gaps": gaps, "wall": wall, "most": most}


QUEUE_ENV = None


def pooled(results):
    """Several queue_run() results of one tool as one: gaps pooled, the rest averaged (the
    wall time: its median), the most holders: the most."""
    n = len(results)
    calls = {}
    for r in results:
        for k, v in r["calls"].items():
            calls[k] = calls.get(k, 0.0) + v / n
    return {"requests": sum(r["requests"] for r in results) / n,
            "keepalive": sum(r["keepalive"] for r in results) / n,
            "calls": calls, "gaps": [g for r in results for g in r["gaps"]],
            "wall": statistics.median(r["wall"] for r in results),
            "most": max(r["most"] for r in results)}


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def nowait_herd(etcd, distlock_bin, runs, etcdctl_bin):
    """`runs` --nowait processes at once against a lock held by `distlock --lock`."""
    common = [distlock_bin, f"--endpoints={etcd.url}", f"--prefix={PREFIX}", "--lock-name=herd"]
    held = subprocess.run(common + ["--lock"], env=QUEUE_ENV, capture_output=True, text=True)
    if held.returncode != 0:
        raise Failed(f"--lock exited with {held.returncode}: {held.stderr.strip()}")
    try:
        reset = reset_peak_rss(etcd.proc.pid)
        rss_before = proc_status(etcd.proc.pid, "VmHWM")
        before = grpc_counts(etcd.metrics())
        t0 = time.perf_counter()
        procs = [subprocess.Popen(common + ["--nowait", "--", "true"], env=QUEUE_ENV,
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL) for _ in range(runs)]
        codes = [p.wait() for p in procs]
        took = time.perf_counter() - t0
        time.sleep(0.2)
        calls = delta(grpc_counts(etcd.metrics()), before)
        peak = proc_status(etcd.proc.pid, "VmHWM")
        out = subprocess.run([etcdctl_bin, f"--endpoints={etcd.url}", "get", "--prefix",
                              "--keys-only", PREFIX + "herd"], env=QUEUE_ENV, capture_output=True,
                             text=True).stdout
        keys = [k for k in out.split() if k]
    finally:
        subprocess.run(common + ["--unlock"], env=QUEUE_ENV, capture_output=True)
    return {"proposals": calls.get("proposals", 0.0) / runs, "took": took,
            "peak_kib": peak if reset else None, "rss_before_kib": rss_before,
            "losers": sum(1 for c in codes if c == 1), "others": [c for c in codes if c != 1],
            "requests": requests(calls) / runs, "keys": len(keys)}


def fleet(etcd, distlock_bin, waiters, window=20.0):
    """`waiters` distlock runs queued behind a held lock: what they cost etcd per second."""
    common = [distlock_bin, f"--endpoints={etcd.url}", f"--prefix={PREFIX}", "--lock-name=fleet"]
    held = subprocess.run(common + ["--lock"], env=QUEUE_ENV, capture_output=True, text=True)
    if held.returncode != 0:
        raise Failed(f"--lock exited with {held.returncode}: {held.stderr.strip()}")
    pid = etcd.proc.pid
    procs = []
    try:
        rss0 = proc_status(pid, "VmRSS")
        before = grpc_counts(etcd.metrics())
        procs = [subprocess.Popen(common + ["--", "true"], env=QUEUE_ENV, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for _ in range(waiters)]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            now = grpc_counts(etcd.metrics())
            if now.get("unary:LeaseGrant", 0) - before.get("unary:LeaseGrant", 0) >= waiters:
                break
            time.sleep(0.2)
        time.sleep(2)  # the last ones create their watches
        reset_peak_rss(pid)
        start, cpu0 = grpc_counts(etcd.metrics()), cpu_seconds(pid)
        t0 = time.monotonic()
        time.sleep(window)
        calls, cpu = delta(grpc_counts(etcd.metrics()), start), cpu_seconds(pid) - cpu0
        span = time.monotonic() - t0
        rss = proc_status(pid, "VmRSS")
        peak = proc_status(pid, "VmHWM")
        alive = sum(1 for p in procs if p.poll() is None)
    finally:
        subprocess.run(common + ["--unlock"], env=QUEUE_ENV, capture_output=True)
        t0 = time.monotonic()
        for p in procs:
            try:
                p.wait(timeout=max(1.0, 120 - (time.monotonic() - t0)))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    drain = time.monotonic() - t0
    per_s = {k: v / span for k, v in calls.items()}
    return {"waiters": waiters, "alive": alive, "rss0": rss0, "rss": rss, "peak": peak,
            "cpu": cpu / span, "per_s": per_s, "drain": drain}


def extra(args, etcd, etcdctl_bin, env, rows, notes, errors):
    """The scenarios of issue 11: queue, nowait, fleet (see the module's docstring)."""
    def row(metric, d, e, ratio, goal, ok):
        rows.append((metric, d, e, ratio, goal, "" if ok is None else ("PASS" if ok else "FAIL")))

    if "queue" in args.only:
        workdir = tempfile.mkdtemp(prefix="distlock-bench-queue.")
        try:
            hold_cmd = hold_command(workdir)
            history = f"--history-size={args.history_size}"
            kinds = {
                "distlock": lambda lock, cmd: [args.distlock, f"--endpoints={etcd.url}", history,
                                               f"--prefix={PREFIX}", f"--lock-name={lock}", "--"] + cmd,
                "distlock -q": lambda lock, cmd: [args.distlock, f"--endpoints={etcd.url}", "-q",
                                                  history, f"--prefix={PREFIX}", f"--lock-name={lock}",
                                                  "--"] + cmd,
                # The same without history: what its one write per acquisition costs.
                "distlock no history": lambda lock, cmd: [
                    args.distlock, f"--endpoints={etcd.url}", "--history-size=0",
                    f"--prefix={PREFIX}", f"--lock-name={lock}", "--"] + cmd,
                "etcdctl": lambda lock, cmd: [etcdctl_bin, f"--endpoints={etcd.url}", "lock",
                                              PREFIX + lock, "--"] + cmd,
            }
            for run, n in enumerate(args.queues):
                log(f"queue: {n} contenders holding {args.hold} s, distlock (history "
                    f"{args.history_size}, and 0), distlock -q and etcdctl, "
                    f"one after the other (about {n * args.hold:.0f} s each, "
                    f"{max(1, -(-GAPS_PER_TOOL // (n - 1)))} time(s))")
                # A short queue gives few gaps: run it again until there are enough a tool,
                # alternating the order, so that a median means something.
                reps = max(1, -(-GAPS_PER_TOOL // (n - 1)))
                runs = {k: [] for k in kinds}
                try:
                    for rep in range(reps):
                        order = list(kinds) if (run + rep) % 2 == 0 else list(kinds)[::-1]
                        for k in order:
                            runs[k].append(queue_run(
                                etcd, kinds[k], f"queue{n}-{run}-{rep}-{k.replace(' ', '')}", n,
                                args.hold, hold_cmd, workdir))
                    res = {k: pooled(v) for k, v in runs.items()}
                except Failed as ex:
                    errors.append(f"queue {n}: {ex}")
                    row(f"queue {n}: requests/acquisition", "error", "", "", "", False)
                    continue
                d, q, e = res["distlock"], res["distlock -q"], res["etcdctl"]
                o = res["distlock no history"]
                # The history's write is one request per acquisition, on top of the goal.
                on = GOAL_QUEUE_REQUESTS + (1 if args.history_size > 0 else 0)
                for name, r, goal in (("distlock", d, on), ("distlock -q", q, on),
                                      ("no history", o, GOAL_QUEUE_REQUESTS)):
                    ok = r["requests"] <= goal + 1e-9
                    row(f"queue {n}: requests/acquisition ({name})", fmt_n(r["requests"]),
                        fmt_n(e["requests"]), f"{r['requests'] / e['requests']:.2f}",
                        f"<= {goal:g}", ok)
                dm, em = statistics.median(d["gaps"]), statistics.median(e["gaps"])
                row(f"queue {n}: hand-over gap, median", fmt_ms(dm), fmt_ms(em), f"{dm / em:.2f}",
                    f"<= {GOAL_GAP}", dm / em <= GOAL_GAP)
                om = statistics.median(o["gaps"])
                row(f"queue {n}: hand-over gap, median (no history)", fmt_ms(om), fmt_ms(em),
                    f"{om / em:.2f}", f"<= {GOAL_GAP}", om / em <= GOAL_GAP)
                # distlock column: requests/acquisition history adds; ratio: gap on / gap off.
                row(f"queue {n}: history on vs off", f"+{fmt_n(d['requests'] - o['requests'])}",
                    "-", f"{dm / om:.2f}", "(info)", None)
                qm = statistics.median(q["gaps"])
                row(f"queue {n}: hand-over gap, median (-q)", fmt_ms(qm), fmt_ms(em),
                    f"{qm / em:.2f}", "(info)", None)
                dp, ep = percentile(d["gaps"], 0.99), percentile(e["gaps"], 0.99)
                row(f"queue {n}: hand-over gap, p99", fmt_ms(dp), fmt_ms(ep), f"{dp / ep:.2f}",
                    "(info)", None)
                row(f"queue {n}: wall", fmt_s(d["wall"]), fmt_s(e["wall"]),
                    f"{d['wall'] / e['wall']:.2f}", "(info)", None)
                most = max(d["most"], q["most"])
                row(f"queue {n}: most holders at once", str(most), str(e["most"]), "",
                    "1", most == 1)
                row(f"queue {n}: keep-alive msgs/acq (apart)", fmt_n(d["keepalive"]),
                    fmt_n(e["keepalive"]), "", "(info)", None)
                for name, r in (("distlock", d), ("distlock -q", q), ("distlock no history", o),
                                 ("etcdctl", e)):
                    notes.append(f"queue {n}, {name}, per acquisition: " + describe_calls(r["calls"]))
            if hold_cmd[0] == "bash":
                notes.append("queue: no C compiler, so the command is bash: its start is in every gap")
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    if "semaphore" in args.only:
        semaphore(args, etcd, row, notes, errors)

    if "nowait" in args.only:
        log(f"nowait: {args.nowait_runs} --nowait runs at once against a held lock")
        try:
            r = nowait_herd(etcd, args.distlock, args.nowait_runs, etcdctl_bin)
            ok = r["proposals"] <= GOAL_NOWAIT_PROPOSALS and not r["others"] and r["keys"] == 1
            row(f"nowait x{args.nowait_runs}: proposals/loser", f"{r['proposals']:.3f}", "-", "-",
                f"<= {GOAL_NOWAIT_PROPOSALS}", ok)
            row(f"nowait x{args.nowait_runs}: all exited after", fmt_s(r["took"]), "-", "-",
                "(info)", None)
            if r["peak_kib"] is not None:
                row(f"nowait x{args.nowait_runs}: etcd peak RSS", fmt_kib(r["peak_kib"]), "-", "-",
                    "(info)", None)
            notes.append(f"nowait: {r['losers']} exited 1 (busy), {len(r['others'])} otherwise "
                         f"{sorted(set(r['others']))[:5]}; {r['requests']:.2f} requests per run; "
                         f"keys left under the lock: {r['keys']} (the holder's); etcd RSS before "
                         f"{fmt_kib(r['rss_before_kib'] or 0)}; etcdctl lock has no try-lock")
        except Failed as ex:
            errors.append(f"nowait: {ex}")

    if "fleet" in args.only:
        log(f"fleet: {args.fleet} waiters queued behind a held lock for 20 s")
        try:
            r = fleet(etcd, args.distlock, args.fleet)
            per = r["per_s"]
            w = r["waiters"]
            notes.append(
                f"fleet: {w} waiters ({r['alive']} still waiting at the end), per second: "
                f"{per.get('unary', 0):.1f} unary calls, {per.get('keepalive_received', 0):.1f} "
                f"keep-alives, {per.get('watch_sent', 0):.1f} watch msgs, received "
                f"{per.get('bytes_received', 0) / 1024:.1f} KiB, sent {per.get('bytes_sent', 0) / 1024:.1f} KiB, "
                f"etcd CPU {r['cpu'] * 100:.1f}% of a core; etcd RSS {fmt_kib(r['rss0'] or 0)} before, "
                f"{fmt_kib(r['rss'] or 0)} with them (peak {fmt_kib(r['peak'] or 0)}); "
                f"per waiter {((r['rss'] or 0) - (r['rss0'] or 0)) / w:.0f} KiB of etcd memory, "
                f"{per.get('bytes_received', 0) / w:.0f} B/s in, {per.get('bytes_sent', 0) / w:.0f} B/s out; "
                f"all {w} went through the lock in {r['drain']:.1f} s after the holder let go")
        except Failed as ex:
            errors.append(f"fleet: {ex}")


def semaphore(args, etcd, row, notes, errors):
    """--semaphores queues of contenders holding --hold s, as a semaphore of --holders and as
    the mutex beside it (alternating): requests per acquisition, whether they stay flat from
    the shortest queue to the longest, the most holders at once and the hand-over gap."""
    workdir = tempfile.mkdtemp(prefix="distlock-bench-semaphore.")
    n_holders = args.holders
    try:
        hold_cmd = hold_command(workdir)
        base = [args.distlock, f"--endpoints={etcd.url}", f"--prefix={PREFIX}", "-q"]
        kinds = {
            f"N={n_holders}": lambda lock, cmd: base + [f"--lock-name={lock}",
                                                     f"--max-holders={n_holders}", "--"] + cmd,
            "mutex": lambda lock, cmd: base + [f"--lock-name={lock}", "--"] + cmd,
        }
        per_acq = {}
        for run, n in enumerate(args.semaphores):
            log(f"semaphore: {n} contenders holding {args.hold} s, N={n_holders} and the mutex")
            res = {}
            try:
                order = list(kinds) if run % 2 == 0 else list(kinds)[::-1]
                for k in order:
                    holders = n_holders if k != "mutex" else 1
                    res[k] = queue_run(etcd, kinds[k], f"sem{n}-{run}-{k.replace('=', '')}", n,
                                       args.hold, hold_cmd, workdir, holders=holders)
            except Failed as ex:
                errors.append(f"semaphore {n}: {ex}")
                row(f"semaphore {n}: requests/acquisition", "error", "", "", "", False)
                continue
            s_, m = res[f"N={n_holders}"], res["mutex"]
            per_acq[n] = s_["requests"]
            row(f"sem. {n} x {args.hold}s, N={n_holders}: requests/acq (vs mutex)",
                fmt_n(s_["requests"]), fmt_n(m["requests"]),
                f"{s_['requests'] / m['requests']:.2f}", "(flat: below)", None)
            row(f"sem. {n}, N={n_holders}: most holders at once (mutex)", str(s_["most"]),
                str(m["most"]), "", f"{n_holders}", s_["most"] == min(n_holders, n) and m["most"] == 1)
            sg, mg = statistics.median(s_["gaps"]), statistics.median(m["gaps"])
            row(f"sem. {n}, N={n_holders}: slot hand-over gap, median (mutex)", fmt_ms(sg),
                fmt_ms(mg), f"{sg / mg:.2f}", "(info)", None)
            row(f"sem. {n}, N={n_holders}: wall (mutex)", fmt_s(s_["wall"]), fmt_s(m["wall"]),
                f"{s_['wall'] / m['wall']:.2f}", "(info)", None)
            for name, r in res.items():
                notes.append(f"semaphore {n}, {name}, per acquisition: " + describe_calls(r["calls"]))
        if len(per_acq) >= 2:
            lo, hi = min(per_acq), max(per_acq)
            ratio = per_acq[hi] / per_acq[lo]
            row(f"sem. N={n_holders}: requests/acq at {hi} / at {lo}", fmt_n(per_acq[hi]),
                fmt_n(per_acq[lo]), f"{ratio:.2f}", f"<= {GOAL_FLAT}", ratio <= GOAL_FLAT)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


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
    ap.add_argument("--semaphores", default="30,60",
                    help="queue lengths for the semaphore scenario (default 30,60)")
    ap.add_argument("--holders", type=int, default=3,
                    help="--max-holders in the semaphore scenario (default 3)")
    ap.add_argument("--only", default="a,b,c,d,queue,semaphore,nowait,fleet",
                    help="scenarios to run, comma-separated (default: all)")
    ap.add_argument("--queues", default="10,50,200",
                    help="queue lengths for the queue scenario (default 10,50,200)")
    ap.add_argument("--history-size", type=int, default=20,
                    help="history_size of the queue scenario's distlock (default 20); it runs "
                         "with 0 too, side by side")
    ap.add_argument("--hold", type=float, default=0.3,
                    help="seconds each queued contender holds the lock (default 0.3)")
    ap.add_argument("--nowait-runs", type=int, default=1000,
                    help="--nowait processes started at once (default 1000)")
    ap.add_argument("--fleet", type=int, default=1000,
                    help="waiters in the capacity scenario (default 1000)")
    args = ap.parse_args()
    if args.runs < 1:
        ap.error("--runs must be at least 1")
    args.only = set(args.only.split(","))
    unknown = args.only - {"a", "b", "c", "d", "queue", "semaphore", "nowait", "fleet"}
    if unknown:
        ap.error(f"unknown scenario {sorted(unknown)[0]!r}")
    try:
        args.queues = [int(n) for n in args.queues.split(",")]
        args.semaphores = [int(n) for n in args.semaphores.split(",")]
    except ValueError:
        ap.error("--queues and --semaphores take numbers, e.g. 10,50,200")
    if any(n <= args.holders or n > 1000 for n in args.semaphores) or not 2 <= args.holders <= 100:
        ap.error("--holders 2..100, and --semaphores longer than --holders, up to 1000")
    if (any(n < 2 or n > 1000 for n in args.queues) or not 0 < args.hold <= 5
            or not 1 <= args.nowait_runs <= 5000 or not 1 <= args.fleet <= 5000):
        ap.error("queues 2..1000, --hold up to 5 s, --nowait-runs and --fleet 1..5000")

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
    global QUEUE_ENV
    QUEUE_ENV = env
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
    if "a" in args.only:
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
    if "b" in args.only:
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
    if "c" in args.only:
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
    if "d" in args.only:
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

    # queue, nowait, fleet
    extra(args, etcd, etcdctl_bin, env, rows, notes, errors)

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
