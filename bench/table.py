#!/usr/bin/python3
"""bench/table.py [--quick] [--pairs N] [--seconds T] [--servers a,b] -- the benchmark tables.

Builds nothing: uses the executables in build/release/bench/ (bench/run.sh builds them).
1. Runs loop_bench (post/timer/ping-pong) if it was built.
2. Echo: for every workload (connections x message size x raw/line x depth) and every echo
   server that is available (corio on io_uring and on epoll; the peers uring_echo and
   epoll_echo in C, asio_echo on Asio's epoll and io_uring backends, tornado_echo.py), starts
   the server on a free port pinned to one CPU, waits for its "listening on" line, runs
   echo_load (io_uring engine unless --engine says otherwise) pinned to another CPU, stops
   the server with SIGTERM and collects:
     msgs/s, p50/p99 latency       from echo_load
     server CPU us per message     from /proc/PID/task/*/schedstat (time on CPU, all threads)
     syscalls, sends per message   from corio's loop stats (--stats-file), corio servers only
   Per-message figures divide by every message echoed during the load run (warm-up included),
   matching the CPU and syscalls counted over the whole run.
   The workloads that carry a target (TARGETS below) run in --pairs rounds: every round runs
   each server involved once, in an order that reverses from one round to the next, so the
   two sides of a target alternate (A B, B A, A B ...) and each round gives one paired ratio.
   The targets table shows the median and the range of those ratios, which drift between
   runs far less than msgs/s does.
3. perf cross-check: when `perf stat -e raw_syscalls:sys_enter` works, one more run per corio
   backend counts the server's system calls with perf, printed beside loop_stats' count.
4. Idle connections: bench/idle_conns opens 10,000 connections (--idle-conns) to each echo
   server (--quick: corio's two only), one 64-byte echo on each, and prints the growth of the
   server's VmRSS per connection; corio io_uring's target is <= 2048 B at 10,000.
5. Low-load latency: 1 connection, 1 message in flight (raw 64 B, depth 1), server and
   echo_load pinned to the same CPU; corio vs the hand-written C server on each backend in
   paired rounds (at least 3 in a full run); p50 and p99 ratios, goal <= 1.1.
6. 1 loop vs 2 loops: bench/corio_echo_mt (run_per_core, SO_REUSEPORT) with --loops 1 and 2,
   raw 64 B x 64 connections, msgs/s and server CPU per message (all loop threads).
7. Techniques: paired with/without runs of one technique at raw 64 B x 64 connections:
   multishot recv on the C server (peer_uring_echo vs peer_uring_echo --single-shot) and in
   corio (corio_echo vs corio_echo with CORIO_NO_MULTISHOT=1); server CPU ratios.
8. HTTP: for every HTTP workload (1, 64, 1000 connections; quick: 64) and every HTTP server
   (corio_http_hello on io_uring and on epoll, and nginx with one worker answering
   `return 200 "Hello, World!"` when nginx is installed), starts the server pinned to one CPU
   and runs `wrk --latency` (one thread) pinned to another against GET /, and collects
   requests/s and p99 latency from wrk, server CPU us per request (schedstat, the whole
   process tree) and, for corio, syscalls per request from its --stats-file. At 64 and 1000
   connections the servers run in --pairs rounds (order alternating) and the table gives
   medians and the paired ratios corio / nginx requests/s.
9. TLS echo beside plaintext (corio_echo, tls_load).
10. SEND_ZC vs SEND for large writes (bench/send_zc_probe, full run only, about 35 s): 4 KiB
   to 1 MiB writes over one loopback connection with io_uring SEND and SEND_ZC in paired
   rounds, 1 send in flight (corio's shape) and 4; GB/s, sender/receiver/total CPU per byte,
   and the paired ratios zc / send.
Prints markdown tables on stdout; progress goes to stderr.

Everything is bounded in time, and every server is killed at the end, even on errors.
"""
import argparse
import os
import selectors
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "build", "release", "bench")
PEERS = os.path.join(ROOT, "bench", "peers")
PYTHON = "/usr/bin/python3"  # Debian's, where python3-tornado is installed

# name -> (executable, extra args, reports corio loop stats); a *.py executable is a script in
# bench/peers run by PYTHON, the others are built in BIN.
SERVERS = [
    ("corio io_uring", "corio_echo", ["--backend", "io_uring"], True),
    ("corio epoll", "corio_echo", ["--backend", "epoll"], True),
    ("uring_echo (C)", "peer_uring_echo", [], False),
    ("epoll_echo (C)", "peer_epoll_echo", [], False),
    ("asio (io_uring)", "peer_asio_uring_echo", [], False),
    ("asio (epoll)", "peer_asio_echo", [], False),
    ("tornado", "tornado_echo.py", [], False),
]


def server_command(exe):
    """argv prefix that runs an echo server's executable."""
    if exe.endswith(".py"):
        return [PYTHON, os.path.join(PEERS, exe)]
    return [os.path.join(BIN, exe)]


def server_missing(exe):
    """Why a server cannot run here, or None when it can."""
    if exe.endswith(".py"):
        probe = subprocess.run([PYTHON, "-c", "import tornado"], capture_output=True)
        if probe.returncode != 0:
            return f"{PYTHON} cannot import tornado (Debian: python3-tornado)"
        return None
    if not os.access(os.path.join(BIN, exe), os.X_OK):
        return f"{exe} not built"
    return None

running = []  # servers to kill whatever happens


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def cpus():
    """(server CPU, load CPU): different cores when there are at least two."""
    available = sorted(os.sched_getaffinity(0))
    if len(available) >= 2:
        return available[1], available[0]
    return None, None


def pin(cpu):
    if cpu is None:
        return None

    def apply():
        os.sched_setaffinity(0, {cpu})
        try:  # many connections need many fds
            import resource
            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass

    return apply


def cpu_ns(pid):
    """Time on CPU of every thread of pid, in ns (schedstat), or None if unreadable."""
    total = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                pass
    except OSError:
        return None
    return total


def user_system_ticks(pid):
    """(user, system) clock ticks of pid, all threads (/proc/PID/stat), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]), int(fields[12])  # utime, stime (fields 14 and 15)
    except (OSError, ValueError, IndexError):
        return None


def stop(proc, grace=3.0):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    if proc in running:
        running.remove(proc)


def kill_all():
    for proc in list(running):
        try:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=5)
        except Exception:  # noqa: BLE001 - best effort at exit
            pass
        running.remove(proc)


def start_server(argv, cpu, timeout=5.0, env=None):
    """Starts a server on port 0 (the kernel picks a free port); returns (proc, port).

    env: variables to add to the server's environment."""
    stderr = tempfile.TemporaryFile()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL,
                            preexec_fn=pin(cpu), env={**os.environ, **env} if env else None)
    running.append(proc)
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    line = b""
    while time.monotonic() < deadline and not line.endswith(b"\n"):
        if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
            break
        chunk = os.read(proc.stdout.fileno(), 1)
        if not chunk:
            break
        line += chunk
    sel.close()
    text = line.decode(errors="replace").strip()
    if not text.startswith("listening on "):
        stop(proc, grace=0.5)
        stderr.seek(0)
        raise RuntimeError(f"{argv[0]} did not report 'listening on' within {timeout} s "
                           f"(got {text!r}; stderr: {stderr.read().decode(errors='replace')[-300:]!r})")
    # "listening on 127.0.0.1:N", possibly followed by a note ("(2 loops)").
    return proc, int(text.rsplit(":", 1)[1].split()[0])


def parse_result(output):
    for line in output.splitlines():
        if line.startswith("result:"):
            return {k: float(v) for k, v in (kv.split("=") for kv in line.split()[1:])}
    return None



def read_stats(path):
    """corio's --stats-file: "name value" lines."""
    stats = {}
    with open(path) as f:
        for line in f:
            key, _, value = line.partition(" ")
            if value.strip():
                stats[key] = int(value)
    return stats


# --- perf: the kernel's own count of the server's system calls -----------------------------

PERF = "/usr/bin/perf"
PERF_EVENT = "raw_syscalls:sys_enter"


def perf_usable():
    """None when `perf stat -e raw_syscalls:sys_enter` works here, else why not."""
    if not os.access(PERF, os.X_OK):
        return "perf not installed (Debian: linux-perf)"
    try:
        done = subprocess.run([PERF, "stat", "-x,", "-e", PERF_EVENT, "--", "true"],
                              capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError) as e:
        return f"perf failed: {e}"
    if done.returncode != 0 or "<not" in done.stderr:
        return f"perf stat -e {PERF_EVENT} failed: {done.stderr.strip()[-200:]!r}"
    return None


def perf_attach(pid, out_path, timeout=5.0):
    """Starts `perf stat -p pid`; returns once perf has opened its counter (or None)."""
    proc = subprocess.Popen([PERF, "stat", "-x,", "-e", PERF_EVENT, "-o", out_path,
                             "-p", str(pid)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    running.append(proc)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        # perf_event_open's fds show up as anon_inode:[perf_event] links.
        try:
            fd_dir = f"/proc/{proc.pid}/fd"
            if any("perf_event" in os.readlink(os.path.join(fd_dir, fd))
                   for fd in os.listdir(fd_dir)):
                return proc
        except OSError:
            pass
        time.sleep(0.01)
    stop(proc, grace=0.5)
    return None


def perf_finish(proc, out_path):
    """Stops perf stat (SIGINT makes it print) and returns its count, or None."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)
    if proc in running:
        running.remove(proc)
    try:
        with open(out_path) as f:
            for line in f:
                fields = line.strip().split(",")
                if len(fields) > 2 and fields[2] == PERF_EVENT:
                    return int(fields[0]) if fields[0].isdigit() else None
    except OSError:
        pass
    return None


# --- echo: workloads, runs, rounds ---------------------------------------------------------

@dataclass(frozen=True)
class Workload:
    conns: int
    size: int
    mode: str  # raw | line
    depth: int

    def label(self):
        return f"{self.mode} {self.conns}c x {self.size}B d{self.depth}"


def run_one(server, workload, args, server_cpu, load_cpu, with_perf=False, env=None,
            fixed_port=False, seconds=None):
    """One echo run: starts the server, runs echo_load against it; returns a row (dict).

    env: added to the server's environment; fixed_port: pass a free port rather than 0 (the
    loops of corio_echo_mt bind the same port); seconds: overrides args.seconds."""
    name, exe, extra, has_stats = server
    seconds = args.seconds if seconds is None else seconds
    row = {"workload": workload.label(), "server": name}
    stats_path = perf_out = None
    port_arg = str(free_port()) if fixed_port else "0"
    argv = [*server_command(exe), *extra, "--port", port_arg, "--mode", workload.mode]
    if has_stats:
        fd, stats_path = tempfile.mkstemp(prefix="corio_stats_")
        os.close(fd)
        argv += ["--stats-file", stats_path]
    try:
        proc, port = start_server(argv, server_cpu, env=env)
        try:
            perf = None
            if with_perf:
                fd, perf_out = tempfile.mkstemp(prefix="corio_perf_")
                os.close(fd)
                perf = perf_attach(proc.pid, perf_out)
            load = [os.path.join(BIN, "echo_load"), "--engine", args.engine, "--port", str(port),
                    "--conns", str(workload.conns), "--depth", str(workload.depth),
                    "--size", str(workload.size), "--seconds", str(seconds),
                    "--warmup", str(args.warmup), "--mode", workload.mode]
            cpu_before, ticks_before = cpu_ns(proc.pid), user_system_ticks(proc.pid)
            try:
                done = subprocess.run(load, capture_output=True, text=True,
                                      timeout=seconds + args.warmup + 30,
                                      preexec_fn=pin(load_cpu))
            except subprocess.TimeoutExpired:
                row["error"] = "echo_load timed out"
                return row
            cpu_after, ticks_after = cpu_ns(proc.pid), user_system_ticks(proc.pid)
            if perf is not None:
                row["perf_syscalls"] = perf_finish(perf, perf_out)
            if proc.poll() is not None:
                row["error"] = f"server exited with status {proc.returncode}"
                return row
        finally:
            stop(proc)
        result = parse_result(done.stdout)
        if done.returncode != 0 or result is None:
            row["error"] = (done.stderr.strip() or done.stdout.strip() or "no result")[-200:]
            return row
        total = max(result["total_msgs"], 1.0)
        row.update(result)
        if cpu_before is not None and cpu_after is not None:
            row["cpu_us_per_msg"] = (cpu_after - cpu_before) / 1000.0 / total
            if ticks_before is not None and ticks_after is not None:
                # The tick counts split schedstat's precise total into user and kernel time.
                user = ticks_after[0] - ticks_before[0]
                system = ticks_after[1] - ticks_before[1]
                if user + system > 0:
                    row["user_us_per_msg"] = row["cpu_us_per_msg"] * user / (user + system)
        if stats_path:
            stats = read_stats(stats_path)
            if "syscalls" in stats:
                row["syscalls_per_msg"] = stats["syscalls"] / total
            if "ops_sendmsg" in stats:
                row["sends_per_msg"] = (stats["ops_sendmsg"] + stats.get("ops_send", 0)) / total
        if row.get("perf_syscalls") is not None:
            row["perf_syscalls_per_msg"] = row["perf_syscalls"] / total
        return row
    except (RuntimeError, OSError, ValueError) as e:
        row["error"] = str(e)
        return row
    finally:
        for path in (stats_path, perf_out):
            if path:
                try:
                    os.unlink(path)
                except OSError:
                    pass


def log_row(row, rnd=None):
    where = f"{row['workload']:<22} {row['server']:<16}" + ("" if rnd is None else f" #{rnd}")
    if "error" in row:
        log(f"{where} ERROR {row['error']}")
        return
    extra = ""
    if row.get("perf_syscalls_per_msg") is not None:
        extra = (f"  syscalls/msg loop_stats {row.get('syscalls_per_msg', 0):.3f} "
                 f"perf {row['perf_syscalls_per_msg']:.3f}")
    log(f"{where} {row['msgs_per_s']:>11,.0f} msgs/s"
        # Three decimals: ratios across runs are recomputed from these lines.
        f"  CPU {row.get('cpu_us_per_msg', 0):6.3f} µs/msg (user {fmt(row.get('user_us_per_msg'), '.3f')})"
        f"  p50 {row['p50_us']:.0f} µs  p99 {row['p99_us']:.0f} µs"
        f"  load CPU {row['load_cpu_pct']:.0f}%{extra}")


# --- targets: paired ratios and counts -----------------------------------------------------

CORIO_URING, CORIO_EPOLL = "corio io_uring", "corio epoll"
C_URING, C_EPOLL = "uring_echo (C)", "epoll_echo (C)"
ASIO_URING, ASIO_EPOLL = "asio (io_uring)", "asio (epoll)"
TORNADO = "tornado"

# The order servers run in within a round (reversed every other round): each corio server
# sits next to the peers it is compared with.
ROUND_ORDER = [C_URING, CORIO_URING, ASIO_URING, ASIO_EPOLL, CORIO_EPOLL, C_EPOLL, TORNADO]


@dataclass(frozen=True)
class Ratio:
    """metric(a) / metric(b), one ratio per round in which both ran."""
    a: str
    b: str
    workloads: tuple  # of Workload; empty: every workload (aggregated, see target_rows)
    metric: str  # "cpu" (server CPU µs/msg) or "rate" (msgs/s)
    goal: str  # "<=" or ">="
    limit: float


@dataclass(frozen=True)
class Count:
    """A per-message count of one server, one value per run."""
    server: str
    workloads: tuple
    metric: str  # "syscalls" or "sends"
    limit: float  # at most


def make_targets(depth):
    """The targets of issue #7: 64 B raw echo at 64 and 1000 connections unless noted."""
    raw64 = tuple(Workload(n, 64, "raw", depth) for n in (64, 1000))
    line4k = tuple(Workload(n, 4096, "line", depth) for n in (64, 1000))
    piped = tuple(Workload(n, 64, "line", 16) for n in (64, 1000))
    raw64_1c = (Workload(1, 64, "raw", depth),)
    return [
        Ratio(CORIO_URING, C_URING, raw64, "cpu", "<=", 1.1),
        Ratio(CORIO_EPOLL, C_EPOLL, raw64, "cpu", "<=", 1.1),
        Ratio(CORIO_URING, CORIO_EPOLL, raw64, "cpu", "<=", 0.9),
        Ratio(CORIO_URING, ASIO_URING, raw64, "cpu", "<=", 0.9),
        Ratio(CORIO_EPOLL, ASIO_EPOLL, raw64, "cpu", "<=", 0.9),
        Ratio(CORIO_URING, ASIO_URING, line4k, "cpu", "<=", 0.4),
        Ratio(CORIO_EPOLL, ASIO_EPOLL, line4k, "cpu", "<=", 0.4),
        Ratio(CORIO_URING, ASIO_URING, piped, "rate", ">=", 10.0),
        Ratio(CORIO_EPOLL, ASIO_EPOLL, piped, "rate", ">=", 10.0),
        Ratio(CORIO_URING, TORNADO, (), "rate", ">=", 4.0),
        Ratio(CORIO_EPOLL, TORNADO, (), "rate", ">=", 4.0),
        Count(CORIO_URING, raw64, "syscalls", 0.06),
        Count(CORIO_URING, raw64_1c, "syscalls", 2.0),
        Count(CORIO_EPOLL, raw64_1c + raw64, "syscalls", 2.05),
        Count(CORIO_URING, piped, "sends", 0.1),
        Count(CORIO_EPOLL, piped, "sends", 0.1),
    ]


def echo_plan(args, names, targets):
    """[(workload, rounds, servers of round 0, servers of later rounds)].

    Round 0 runs every server (it fills the echo table); the workloads a paired target names
    run args.pairs rounds, the later ones with only the servers that targets compare there.
    Tornado runs once per workload: it is slow, and 4x is far from the noise."""
    d = args.depth
    if args.cpu_targets:
        # Only what the CPU-per-message targets pair, so that more rounds fit in the time.
        grid = [Workload(n, 64, "raw", d) for n in (64, 1000)]
        corio_only = []
    elif args.quick:
        # 64 connections only; 1 connection on corio alone, for its syscall count.
        grid = [Workload(64, 64, "raw", d), Workload(64, 4096, "line", d),
                Workload(64, 64, "line", 16)]
        corio_only = [Workload(1, 64, "raw", d)]
    else:
        grid = [Workload(n, s, m, d) for n in (1, 64, 1000) for s in (64, 4096)
                for m in ("raw", "line")]
        grid += [Workload(n, 64, "line", 16) for n in (64, 1000)]
        corio_only = []
    grid = list(dict.fromkeys(grid))  # --depth 16 makes the pipelined workloads twice
    plan = []
    for w in grid + corio_only:
        first = [n for n in ROUND_ORDER if n in names
                 and (w not in corio_only or n in (CORIO_URING, CORIO_EPOLL))]
        paired = set()
        for t in targets:
            if isinstance(t, Ratio) and w in t.workloads:
                paired |= {t.a, t.b}
            elif isinstance(t, Count) and w in t.workloads:
                paired.add(t.server)
        later = [n for n in first if n in paired and n != TORNADO]
        if args.cpu_targets:
            first = later
        rounds = args.pairs if any(isinstance(t, Ratio) and w in t.workloads
                                   for t in targets) else 1
        plan.append((w, rounds, first, later))
    return plan


def run_echo(args, servers, targets, server_cpu, load_cpu):
    """Runs the plan; returns {(workload, server): [(round, row)]}."""
    by_name = {s[0]: s for s in servers}
    runs = {}
    for w, rounds, first, later in echo_plan(args, set(by_name), targets):
        for rnd in range(rounds):
            order = first if rnd == 0 else later
            for name in (order if rnd % 2 == 0 else order[::-1]):
                row = run_one(by_name[name], w, args, server_cpu, load_cpu)
                runs.setdefault((w, name), []).append((rnd, row))
                log_row(row, rnd if rounds > 1 else None)
    return runs


def run_perf_check(args, servers, server_cpu, load_cpu):
    """One run per corio backend with perf counting the server's syscalls; returns rows."""
    why = perf_usable()
    if why:
        log(f"perf cross-check skipped: {why}")
        return []
    w = Workload(64, 64, "raw", args.depth)
    rows = []
    for server in servers:
        if server[0] in (CORIO_URING, CORIO_EPOLL):
            row = run_one(server, w, args, server_cpu, load_cpu, with_perf=True)
            log_row(row, "perf")
            rows.append(row)
    return rows


def good(rows):
    return [r for r in rows if "error" not in r]


def median_of(rows, key):
    values = [r[key] for r in good(rows) if r.get(key) is not None]
    return statistics.median(values) if values else None


def paired_ratios(runs, t, w):
    """The ratios metric(a)/metric(b) of the rounds in which both a and b ran without error."""
    key = "cpu_us_per_msg" if t.metric == "cpu" else "msgs_per_s"
    a = {rnd: r for rnd, r in runs.get((w, t.a), []) if "error" not in r and r.get(key)}
    b = {rnd: r for rnd, r in runs.get((w, t.b), []) if "error" not in r and r.get(key)}
    return [a[rnd][key] / b[rnd][key] for rnd in sorted(a.keys() & b.keys())]


def meets(value, goal, limit):
    return value <= limit if goal == "<=" else value >= limit


METRIC_NAMES = {"cpu": "CPU/msg", "rate": "msgs/s", "syscalls": "syscalls/msg",
                "sends": "sends/msg"}


def target_rows(runs, targets):
    """Rows of the targets table, as dicts: what, workload, goal, limit, values, met."""
    workloads = [w for w, _ in runs]
    out = []
    for t in targets:
        if isinstance(t, Ratio):
            what = f"{t.a} / {t.b} {METRIC_NAMES[t.metric]}"
        else:
            what = f"{t.server} {METRIC_NAMES[t.metric]}"
        goal = getattr(t, "goal", "<=")
        if isinstance(t, Ratio) and not t.workloads:
            # One pair per workload; the target holds everywhere, so the worst one decides.
            per = [(w, paired_ratios(runs, t, w)) for w in dict.fromkeys(workloads)]
            per = [(w, r[0]) for w, r in per if r]
            if not per:
                continue
            pick = min if goal == ">=" else max
            worst_w, worst = pick(per, key=lambda p: p[1])
            out.append({"what": what, "goal": goal, "limit": t.limit,
                        "workload": f"all {len(per)} workloads (worst: {worst_w.label()})",
                        "values": [v for _, v in per], "met": meets(worst, goal, t.limit)})
            continue
        for w in t.workloads:
            if isinstance(t, Ratio):
                ran = (w, t.a) in runs and (w, t.b) in runs
                values = paired_ratios(runs, t, w)
            else:
                ran = (w, t.server) in runs
                key = f"{t.metric}_per_msg"
                values = [r[key] for _, r in runs.get((w, t.server), [])
                          if "error" not in r and r.get(key) is not None]
            if not ran:
                continue  # a workload or server this run left out (--quick, --servers)
            met = meets(statistics.median(values), goal, t.limit) if values else None
            out.append({"what": what, "goal": goal, "limit": t.limit, "workload": w.label(),
                        "values": values, "met": met})
    return out


# The hand-written server that does a corio backend's job with nothing around it.
HAND_WRITTEN = {CORIO_URING: C_URING, CORIO_EPOLL: C_EPOLL}


def ceiling_rows(runs, targets):
    """For each paired CPU target between corio and another server: the same paired ratio with
    corio replaced by its backend's C server (rounds in which both ran)."""
    out = []
    for t in targets:
        if not isinstance(t, Ratio) or t.metric != "cpu" or t.a not in HAND_WRITTEN:
            continue
        if t.b in HAND_WRITTEN.values():
            continue  # corio / its own C server: the ceiling is 1 by definition
        a, b = HAND_WRITTEN[t.a], HAND_WRITTEN.get(t.b, t.b)
        for w in t.workloads:
            values = paired_ratios(runs, Ratio(a, b, (w,), "cpu", t.goal, t.limit), w)
            if values:
                out.append({"what": f"{a} / {b}", "instead": f"{t.a} / {t.b}",
                            "workload": w.label(), "goal": t.goal, "limit": t.limit,
                            "values": values})
    return out


def fmt(value, spec):
    return "—" if value is None else format(value, spec)


def short_rate(rate):
    if rate is None:
        return "—"
    return f"{rate / 1e3:,.0f}k" if rate >= 1e4 else f"{rate / 1e3:.1f}k"


def print_echo_tables(args, runs, targets, perf_rows, servers):
    names = [s[0] for s in servers if any(name == s[0] for _, name in runs)]  # those that ran
    workloads = []
    for w, _ in runs:
        if w not in workloads:
            workloads.append(w)
    engine = "io_uring" if args.engine == "uring" else "epoll"
    print()
    runs_note = ("one run each" if args.pairs == 1 else
                 f"median of {args.pairs} runs on the workloads a target pairs, else one run")
    print(f"Echo servers, loopback, server and echo_load ({engine} engine) pinned to different "
          f"CPUs, {args.seconds:g} s per run (+{args.warmup:g} s warm-up). Each cell: msgs/s "
          f"/ server CPU µs per message ({runs_note}):")
    print()
    print("| workload | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for w in workloads:
        cells = []
        for name in names:
            rows = [r for _, r in runs.get((w, name), [])]
            if not rows:
                cells.append("")
            elif not good(rows):
                cells.append("error")
            else:
                cells.append(f"{short_rate(median_of(rows, 'msgs_per_s'))} / "
                             f"{fmt(median_of(rows, 'cpu_us_per_msg'), '.2f')}")
        print(f"| {w.label()} | " + " | ".join(cells) + " |")

    rows = target_rows(runs, targets)
    if rows:
        print()
        print("Targets. \"A / B\" rows are paired ratios: in every round A and B run back to "
              "back, in an order that alternates from round to round; n = pairs, met = the "
              "median meets the goal (Tornado: one pair per workload, the worst workload "
              "decides). Count rows: one value per run of that server.")
        if args.quick:
            print("--quick: 64 connections only (the full run adds 1000) and, unless --pairs "
                  "says otherwise, one round.")
        print()
        print("| target | workload | goal | n | median | range | met? |")
        print("|---|---|---|---:|---:|---:|---|")
        for r in rows:
            head = f"| {r['what']} | {r['workload']} | {r['goal']} {r['limit']:g} "
            values = r["values"]
            if not values:
                print(head + "| 0 | — | — | no data (a run failed) |")
                continue
            digits = ".2f" if r["what"].endswith(("CPU/msg", "msgs/s")) else ".3f"
            lo, hi = min(values), max(values)
            verdict = "met" if r["met"] else "**missed**"
            if meets(lo, r["goal"], r["limit"]) != meets(hi, r["goal"], r["limit"]):
                verdict += " (range crosses the goal)"
            print(head + f"| {len(values)} | {statistics.median(values):{digits}} "
                  f"| {lo:{digits}}–{hi:{digits}} | {verdict} |")

    ceilings = ceiling_rows(runs, targets)
    if ceilings:
        print()
        print("Ceilings: the same CPU ratios with each corio server replaced by the hand-written "
              "C server of its backend, from the same rounds. A library that costs exactly what "
              "its C server costs would score this; a goal that asks for less than this asks "
              "corio to beat the hand-written server.")
        print()
        print("| ratio | in place of | workload | goal | n | median | range |")
        print("|---|---|---|---|---:|---:|---:|")
        for r in ceilings:
            values = r["values"]
            print(f"| {r['what']} | {r['instead']} | {r['workload']} | {r['goal']} "
                  f"{r['limit']:g} | {len(values)} | {statistics.median(values):.2f} "
                  f"| {min(values):.2f}–{max(values):.2f} |")

    if perf_rows:
        print()
        print("System calls per message, corio's loop_stats beside the kernel's count "
              f"(perf stat -e {PERF_EVENT} -p PID, same run; perf also counts setup and "
              "close calls that loop_stats leaves out):")
        print()
        print("| workload | server | loop_stats syscalls/msg | perf syscalls/msg |")
        print("|---|---|---:|---:|")
        for r in perf_rows:
            if "error" in r:
                print(f"| {r['workload']} | {r['server']} | error: "
                      f"{r['error'].splitlines()[-1]} | |")
            else:
                print(f"| {r['workload']} | {r['server']} | "
                      f"{fmt(r.get('syscalls_per_msg'), '.4f')} | "
                      f"{fmt(r.get('perf_syscalls_per_msg'), '.4f')} |")

    print()
    print("Echo details (medians over each workload's runs; user µs/msg: the part of the "
          "server's CPU spent outside the kernel, from /proc/PID/stat; syscalls and sends per "
          "message from corio's loop_stats):")
    print()
    print("| workload | server | runs | msgs/s | p50 µs | p99 µs | server CPU µs/msg "
          "| user µs/msg | syscalls/msg | sends/msg |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for w in workloads:
        for name in names:
            rows = [r for _, r in runs.get((w, name), [])]
            if not rows:
                continue
            if not good(rows):
                print(f"| {w.label()} | {name} | {len(rows)} | error: "
                      f"{rows[-1]['error'].splitlines()[-1]} | | | | | | |")
                continue
            print(f"| {w.label()} | {name} | {len(good(rows))} "
                  f"| {fmt(median_of(rows, 'msgs_per_s'), ',.0f')} "
                  f"| {fmt(median_of(rows, 'p50_us'), '.0f')} "
                  f"| {fmt(median_of(rows, 'p99_us'), '.0f')} "
                  f"| {fmt(median_of(rows, 'cpu_us_per_msg'), '.2f')} "
                  f"| {fmt(median_of(rows, 'user_us_per_msg'), '.3f')} "
                  f"| {fmt(median_of(rows, 'syscalls_per_msg'), '.3f')} "
                  f"| {fmt(median_of(rows, 'sends_per_msg'), '.3f')} |")
    sys.stdout.flush()


def run_loop_bench(quick):
    exe = os.path.join(BIN, "loop_bench")
    if not os.access(exe, os.X_OK):
        log("loop_bench not built; skipped")
        return
    argv = [exe, "--backend", "both"] + (["--quick"] if quick else [])
    log("running", " ".join(argv))
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=25 if quick else 300)
        print(done.stdout, end="" if done.stdout.endswith("\n") else "\n")
        if done.returncode != 0:
            log(f"loop_bench exited with status {done.returncode}: {done.stderr.strip()[-300:]}")
    except subprocess.TimeoutExpired:
        log("loop_bench timed out; skipped")
    sys.stdout.flush()


# --- idle connections, same-CPU latency, 1 vs 2 loops, techniques ---------------------------

def ratio_line(what, workload, values, goal=None, limit=None, digits=".2f"):
    """One row of a ratio table: median and range of the paired ratios, met/missed."""
    head = f"| {what} | {workload} | " + (f"{goal} {limit:g}" if goal else "—") + " "
    if not values:
        return head + "| 0 | — | — | no data (a run failed) |"
    lo, hi, mid = min(values), max(values), statistics.median(values)
    verdict = "—"
    if goal:
        verdict = "met" if meets(mid, goal, limit) else "**missed**"
        if meets(lo, goal, limit) != meets(hi, goal, limit):
            verdict += " (range crosses the goal)"
    return head + f"| {len(values)} | {mid:{digits}} | {lo:{digits}}–{hi:{digits}} | {verdict} |"


def run_rounds(variants, workload, rounds, args, server_cpu, load_cpu, **kwargs):
    """variants: [(label, server tuple, run_one keyword args, which may override the CPUs)].
    Every round runs each variant once, in an order reversed every other round; returns
    {label: {round: row}}."""
    out = {label: {} for label, _, _ in variants}
    for rnd in range(rounds):
        order = variants if rnd % 2 == 0 else variants[::-1]
        for label, server, extra in order:
            row = run_one(server, workload, args, **{"server_cpu": server_cpu,
                                                     "load_cpu": load_cpu, **kwargs, **extra})
            row["server"] = label
            out[label][rnd] = row
            log_row(row, rnd if rounds > 1 else None)
    return out


def ratios(runs, a, b, key):
    """key(a) / key(b) for every round in which both ran without error."""
    ra, rb = runs.get(a, {}), runs.get(b, {})
    both = [n for n in sorted(ra.keys() & rb.keys())
            if "error" not in ra[n] and "error" not in rb[n] and ra[n].get(key) and rb[n].get(key)]
    return [ra[n][key] / rb[n][key] for n in both]


def find_server(servers, name):
    return next((s for s in servers if s[0] == name), None)


IDLE_TARGET_BYTES = 2048  # corio io_uring, at 10,000 idle connections (issue #7)
IDLE_TARGET_CONNS = 10000
QUICK_IDLE_CONNS = 10000


def run_idle(args, servers, server_cpu, load_cpu):
    """Bytes of server RSS per idle connection (bench/idle_conns); returns the rows."""
    exe = os.path.join(BIN, "idle_conns")
    if not os.access(exe, os.X_OK):
        log("idle_conns not built; idle-connection table skipped")
        return []
    conns = args.idle_conns
    # --quick: corio only (each server takes about 1.5 s at 10,000 connections).
    wanted = [CORIO_URING, CORIO_EPOLL]
    if not args.quick:
        wanted += [C_URING, C_EPOLL, ASIO_URING, ASIO_EPOLL, TORNADO]
    rows = []
    for name in wanted:
        server = find_server(servers, name)
        if server is None:
            continue
        _, exe_name, extra, _ = server
        row = {"server": name, "conns": conns}
        try:
            proc, port = start_server([*server_command(exe_name), *extra, "--port", "0",
                                       "--mode", "raw"], server_cpu)
        except (RuntimeError, OSError) as e:
            row["error"] = str(e)
            rows.append(row)
            continue
        started = time.monotonic()
        try:
            done = subprocess.run([exe, "--port", str(port), "--pid", str(proc.pid),
                                   "--conns", str(conns)], capture_output=True, text=True,
                                  timeout=60, preexec_fn=pin(load_cpu))
            result = parse_result(done.stdout)
            if done.returncode != 0 or result is None:
                row["error"] = (done.stderr.strip() or done.stdout.strip() or "no result")[-200:]
            elif proc.poll() is not None:
                row["error"] = f"server exited with status {proc.returncode}"
            else:
                row.update(result)
        except subprocess.TimeoutExpired:
            row["error"] = "idle_conns timed out"
        finally:
            stop(proc)
        rows.append(row)
        log(f"idle {conns} conns {name:<16} " +
            (f"ERROR {row['error']}" if "error" in row else
             f"{row['bytes_per_conn']:>7.0f} B/conn ({time.monotonic() - started:.1f} s)"))
    if not rows:
        return rows
    print()
    print(f"Idle connections: server resident memory per connection (bench/idle_conns: VmRSS "
          f"after {conns:,} connections, each with one 64-byte echo done, minus VmRSS before, "
          f"over {conns:,}; user-space memory only, the kernel's socket buffers are not in "
          f"it). Target: corio io_uring ≤ {IDLE_TARGET_BYTES} B at {IDLE_TARGET_CONNS:,}.")
    print()
    print("| server | connections | RSS before KiB | RSS after KiB | bytes/conn | target |")
    print("|---|---:|---:|---:|---:|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['server']} | {conns:,} | error: {r['error'].splitlines()[-1]} | | | |")
            continue
        target = "—"
        if r["server"] == CORIO_URING:
            if conns != IDLE_TARGET_CONNS:
                target = f"not claimed ({conns:,} connections, not {IDLE_TARGET_CONNS:,})"
            elif r["bytes_per_conn"] <= IDLE_TARGET_BYTES:
                target = f"≤ {IDLE_TARGET_BYTES}: met"
            else:
                target = f"≤ {IDLE_TARGET_BYTES}: **missed**"
        elif r["server"] == CORIO_EPOLL:
            target = "stated"
        print(f"| {r['server']} | {conns:,} | {r['rss_before_kb']:,.0f} | {r['rss_after_kb']:,.0f} "
              f"| {r['bytes_per_conn']:,.0f} | {target} |")
    sys.stdout.flush()
    return rows


def run_latency(args, servers, cpu):
    """Low-load latency: 1 connection, 1 message in flight, server and echo_load on the same
    CPU; corio vs the hand-written server on each backend, paired rounds. Returns the rows."""
    pairs = [(CORIO_URING, C_URING), (CORIO_EPOLL, C_EPOLL)]
    pairs = [(a, b) for a, b in pairs if find_server(servers, a) and find_server(servers, b)]
    if not pairs:
        log("latency table skipped: needs corio and the hand-written C server of a backend")
        return []
    order = [n for n in ROUND_ORDER if any(n in p for p in pairs)]
    variants = [(n, find_server(servers, n), {}) for n in order]
    w = Workload(1, 64, "raw", 1)
    rounds = args.latency_rounds
    runs = run_rounds(variants, w, rounds, args, cpu, cpu, seconds=args.latency_seconds)
    print()
    print(f"Low-load latency: {w.label()} (one 64-byte message in flight on one connection), "
          f"server and echo_load pinned to the same CPU ({cpu}), {args.latency_seconds:g} s "
          f"per run, {rounds} round(s), each round every server once in an order reversed "
          f"every other round. Ratios: corio's p50 (p99) over the hand-written server's in "
          f"the same round; goal ≤ 1.1.")
    print()
    print("| server | runs | round trips/s | p50 µs | p99 µs | server CPU µs/msg |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in order:
        rows = list(runs[name].values())
        if not good(rows):
            print(f"| {name} | {len(rows)} | error: {rows[-1]['error'].splitlines()[-1]} | | | |")
            continue
        print(f"| {name} | {len(good(rows))} | {fmt(median_of(rows, 'msgs_per_s'), ',.0f')} "
              f"| {fmt(median_of(rows, 'p50_us'), '.1f')} | {fmt(median_of(rows, 'p99_us'), '.1f')} "
              f"| {fmt(median_of(rows, 'cpu_us_per_msg'), '.2f')} |")
    print()
    print("| target | workload | goal | n | median | range | met? |")
    print("|---|---|---|---:|---:|---:|---|")
    for a, b in pairs:
        for q in ("p50", "p99"):
            print(ratio_line(f"{a} / {b} {q} latency", f"{w.label()}, same CPU",
                             ratios(runs, a, b, f"{q}_us"), "<=", 1.1))
    sys.stdout.flush()
    return [r for by_round in runs.values() for r in by_round.values()]


def run_loops(args, server_cpu, load_cpu):
    """corio_echo_mt on 1 loop and on 2 loops (run_per_core, SO_REUSEPORT); returns rows."""
    if not os.access(os.path.join(BIN, "corio_echo_mt"), os.X_OK):
        log("corio_echo_mt not built; 1-loop vs 2-loop table skipped")
        return []
    ncpu = len(os.sched_getaffinity(0))
    w = Workload(64, 64, "raw", args.depth)
    rows = []
    lines = []
    for backend in args.loops_backends:
        one = (f"corio {backend} 1 loop", "corio_echo_mt",
               ["--backend", backend, "--loops", "1"], True)
        two = (f"corio {backend} 2 loops", "corio_echo_mt",
               ["--backend", backend, "--loops", "2"], True)
        # 1 loop: pinned like every echo server. 2 loops: the process may use every CPU and
        # run_per_core pins loop i to the i-th; echo_load is left to the scheduler.
        runs = run_rounds([(one[0], one, {}),
                           (two[0], two, {"server_cpu": None, "load_cpu": None})],
                          w, args.pairs, args, server_cpu, load_cpu, fixed_port=True,
                          seconds=args.extra_seconds)
        rows += [r for by_round in runs.values() for r in by_round.values()]
        lines.append((one[0], two[0], runs))
    print()
    print(f"1 loop vs 2 loops (bench/corio_echo_mt: one event loop per thread, each with its "
          f"own SO_REUSEPORT listener, corio::run_per_core), {w.label()}, {args.extra_seconds:g} s per "
          f"run, {args.pairs} round(s). 1 loop: server pinned to CPU {server_cpu}, echo_load to "
          f"CPU {load_cpu}. 2 loops: loop i pinned to the i-th CPU, echo_load (one thread) "
          f"unpinned, so on this {ncpu}-CPU machine three busy threads share {ncpu} CPUs. "
          f"Server CPU per message counts every loop thread.")
    print()
    print("| server | runs | msgs/s | server CPU µs/msg | syscalls/msg | load CPU % |")
    print("|---|---:|---:|---:|---:|---:|")
    for a, b, runs in lines:
        for name in (a, b):
            rs = list(runs[name].values())
            if not good(rs):
                print(f"| {name} | {len(rs)} | error: {rs[-1]['error'].splitlines()[-1]} | | | |")
                continue
            print(f"| {name} | {len(good(rs))} | {fmt(median_of(rs, 'msgs_per_s'), ',.0f')} "
                  f"| {fmt(median_of(rs, 'cpu_us_per_msg'), '.2f')} "
                  f"| {fmt(median_of(rs, 'syscalls_per_msg'), '.3f')} "
                  f"| {fmt(median_of(rs, 'load_cpu_pct'), '.0f')} |")
    print()
    print("| ratio | workload | goal | n | median | range | met? |")
    print("|---|---|---|---:|---:|---:|---|")
    for a, b, runs in lines:
        print(ratio_line(f"{b} / {a} msgs/s", w.label(), ratios(runs, b, a, "msgs_per_s")))
        print(ratio_line(f"{b} / {a} CPU/msg", w.label(), ratios(runs, b, a, "cpu_us_per_msg")))
    sys.stdout.flush()
    return rows


def run_techniques(args, servers, server_cpu, load_cpu):
    """Paired with/without runs of single techniques; returns the rows."""
    w = Workload(64, 64, "raw", args.depth)
    studies = []  # (technique, with label, without label, runs)
    rows = []
    c_uring = find_server(servers, C_URING)
    if c_uring:
        single = (f"{C_URING} single-shot", c_uring[1], [*c_uring[2], "--single-shot"], False)
        runs = run_rounds([(C_URING, c_uring, {}), (single[0], single, {})], w, args.pairs,
                          args, server_cpu, load_cpu, seconds=args.extra_seconds)
        studies.append(("multishot recv (hand-written C io_uring server)", C_URING, single[0],
                        runs))
    corio_uring = find_server(servers, CORIO_URING)
    if corio_uring:
        without = f"{CORIO_URING} single-shot recv"
        runs = run_rounds([(CORIO_URING, corio_uring, {}),
                           (without, corio_uring, {"env": {"CORIO_NO_MULTISHOT": "1"}})],
                          w, args.pairs, args, server_cpu, load_cpu, seconds=args.extra_seconds)
        studies.append(("multishot recv (corio io_uring; CORIO_NO_MULTISHOT=1 turns it off)",
                        CORIO_URING, without, runs))
    if not studies:
        return rows
    print()
    print(f"Techniques evaluated: the same server with and without one technique, {w.label()}, "
          f"{args.extra_seconds:g} s per run, {args.pairs} round(s) (with/without alternating first). "
          f"Ratio = with / without: below 1 the technique saves server CPU.")
    print()
    print("| technique | with | without | n | CPU µs/msg with | CPU µs/msg without "
          "| ratio median | ratio range | msgs/s with | msgs/s without |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for what, a, b, runs in studies:
        rows += [r for by_round in runs.values() for r in by_round.values()]
        values = ratios(runs, a, b, "cpu_us_per_msg")
        ra, rb = list(runs[a].values()), list(runs[b].values())
        cells = (f"| {fmt(median_of(ra, 'cpu_us_per_msg'), '.2f')} "
                 f"| {fmt(median_of(rb, 'cpu_us_per_msg'), '.2f')} ")
        if values:
            cells += (f"| {statistics.median(values):.3f} "
                      f"| {min(values):.3f}–{max(values):.3f} ")
        else:
            cells += "| — | no data (a run failed) "
        cells += (f"| {fmt(median_of(ra, 'msgs_per_s'), ',.0f')} "
                  f"| {fmt(median_of(rb, 'msgs_per_s'), ',.0f')} |")
        print(f"| {what} | {a} | {b} | {len(values)} " + cells)
    sys.stdout.flush()
    return rows


# --- SEND_ZC vs SEND for large writes (bench/send_zc_probe) --------------------------------

SEND_ZC_SIZES = (4096, 65536, 262144, 1048576)
SEND_ZC_MODES = ("send", "zc")
# (label, send_zc_probe arguments). corio keeps one send in flight per stream and does not
# set MSG_WAITALL; with SEND_ZC its next send could use other buffers while the kernel still
# holds the last ones, hence 4 buffers for 1 send in flight.
SEND_ZC_SHAPES = (
    ("1 in flight, 4 buffers", ["--inflight", "1", "--buffers", "4", "--no-waitall"]),
    ("4 in flight, MSG_WAITALL", ["--inflight", "4"]),
)
SEND_ZC_SECONDS = 0.5  # per run: 2 shapes x 4 sizes x 2 modes x 3 rounds x ~0.7 s = ~34 s
SEND_ZC_WARMUP = 0.15
SEND_ZC_ADOPT = 0.9  # SEND_ZC would pay with >= 10 % less total CPU per byte


def run_send_zc_one(mode, size, shape_args, args, sender_cpu, receiver_cpu):
    """One send_zc_probe run; returns a row (dict)."""
    row = {"workload": f"{size} B writes", "server": f"send_zc_probe {mode}"}
    argv = [os.path.join(BIN, "send_zc_probe"), "--mode", mode, "--size", str(size),
            *shape_args, "--seconds", str(args.send_zc_seconds), "--warmup", str(SEND_ZC_WARMUP),
            "--sender-cpu", str(-1 if sender_cpu is None else sender_cpu),
            "--receiver-cpu", str(-1 if receiver_cpu is None else receiver_cpu)]
    try:
        done = subprocess.run(argv, capture_output=True, text=True,
                              timeout=args.send_zc_seconds + SEND_ZC_WARMUP + 20)
    except subprocess.TimeoutExpired:
        row["error"] = "send_zc_probe timed out"
        return row
    result = parse_result(done.stdout)
    if done.returncode != 0 or result is None:
        row["error"] = (done.stderr.strip() or done.stdout.strip() or "no result")[-200:]
    else:
        row.update(result)
    return row


def run_send_zc(args, server_cpu, load_cpu):
    """IORING_OP_SEND_ZC against IORING_OP_SEND for large writes over loopback TCP, paired
    rounds per write size and shape (send and zc back to back, the order reversed every other
    round); returns the rows."""
    if not os.access(os.path.join(BIN, "send_zc_probe"), os.X_OK):
        log("send_zc_probe not built; SEND_ZC table skipped")
        return []
    rounds = args.send_zc_rounds
    cases = [(shape, size) for shape, _ in SEND_ZC_SHAPES for size in SEND_ZC_SIZES]
    runs = {case: {mode: {} for mode in SEND_ZC_MODES} for case in cases}
    for rnd in range(rounds):
        for shape, shape_args in SEND_ZC_SHAPES:
            for size in SEND_ZC_SIZES:
                order = SEND_ZC_MODES if rnd % 2 == 0 else SEND_ZC_MODES[::-1]
                for mode in order:
                    row = run_send_zc_one(mode, size, shape_args, args, server_cpu, load_cpu)
                    runs[(shape, size)][mode][rnd] = row
                    log(f"send_zc {shape:<24} {size:>8} B {mode:<4} round {rnd + 1} " +
                        (f"ERROR {row['error']}" if "error" in row else
                         f"{row['gb_per_s']:6.2f} GB/s, CPU ns/B sender "
                         f"{row['sender_ns_per_byte']:.3f} receiver "
                         f"{row['receiver_ns_per_byte']:.3f} total {row['total_ns_per_byte']:.3f}"))
    print()
    print(f"SEND_ZC vs SEND, large writes (bench/send_zc_probe: one loopback TCP connection; "
          f"the sender writes with io_uring SEND or SEND_ZC — a SEND_ZC buffer is reused only "
          f"after its notification CQE — and a receiver thread drains it with recv() into "
          f"1 MiB). Shapes: 1 send in flight without MSG_WAITALL, cycling over 4 buffers (what "
          f"corio's one-sendmsg-per-stream write path would do), and 4 sends in flight with "
          f"MSG_WAITALL. {args.send_zc_seconds:g} s per run, {rounds} round(s), send and zc "
          f"back to back, the order reversed every other round; sender on CPU {server_cpu}, "
          f"receiver on CPU {load_cpu}. CPU: time on CPU of the sender and receiver threads "
          f"(schedstat) over the bytes received; on loopback the sender's send also runs the "
          f"receiving side of TCP. zc copied: share of notifications in which the kernel "
          f"reported it had copied the data after all (IORING_SEND_ZC_REPORT_USAGE).")
    print()
    print("| shape | write size | mode | runs | GB/s | sender CPU ns/B | receiver CPU ns/B "
          "| total CPU ns/B | zc copied |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|")
    rows = []
    for shape, size in cases:
        for mode in SEND_ZC_MODES:
            rs = list(runs[(shape, size)][mode].values())
            rows += rs
            if not good(rs):
                print(f"| {shape} | {size:,} | {mode} | {len(rs)} | error: "
                      f"{rs[-1]['error'].splitlines()[-1]} | | | | |")
                continue
            copied = median_of(rs, "zc_copied")
            print(f"| {shape} | {size:,} | {mode} | {len(good(rs))} "
                  f"| {fmt(median_of(rs, 'gb_per_s'), '.2f')} "
                  f"| {fmt(median_of(rs, 'sender_ns_per_byte'), '.3f')} "
                  f"| {fmt(median_of(rs, 'receiver_ns_per_byte'), '.3f')} "
                  f"| {fmt(median_of(rs, 'total_ns_per_byte'), '.3f')} "
                  f"| {'—' if copied is None or copied < 0 else f'{copied:.0%}'} |")
    print()
    print(f"Paired ratios zc / send. The goal ≤ {SEND_ZC_ADOPT:g} on total CPU per byte is the "
          f"bar for SEND_ZC in corio (≥ 10 % less CPU); a size that meets it, at sizes that "
          f"miss it, would call for a size window.")
    print()
    print("| ratio | shape, write size | goal | n | median | range | met? |")
    print("|---|---|---|---:|---:|---:|---|")
    for shape, size in cases:
        label = f"{shape}, {size:,} B"
        r = runs[(shape, size)]
        print(ratio_line("zc / send total CPU per byte", label,
                         ratios(r, "zc", "send", "total_ns_per_byte"), "<=", SEND_ZC_ADOPT,
                         digits=".3f"))
        print(ratio_line("zc / send GB/s", label, ratios(r, "zc", "send", "gb_per_s"),
                         digits=".3f"))
    sys.stdout.flush()
    return rows


# --- HTTP: corio_http_hello and nginx under wrk --------------------------------------------

# name -> (executable or None for nginx, extra args)
HTTP_SERVERS = [
    ("corio io_uring", "corio_http_hello", ["--backend", "io_uring"]),
    ("corio epoll", "corio_http_hello", ["--backend", "epoll"]),
    ("nginx", None, []),
]

NGINX_CONF = """worker_processes 1;
{user}
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 4096; multi_accept on; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path {tmp}/body;
  proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fastcgi;
  uwsgi_temp_path {tmp}/uwsgi;
  scgi_temp_path {tmp}/scgi;
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location / {{ default_type text/plain; return 200 "Hello, World!"; }}
  }}
}}
"""


def find_nginx():
    for path in ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"):
        if os.access(path, os.X_OK):
            return path
    return None


def find_wrk():
    for path in ("/usr/bin/wrk", "/usr/local/bin/wrk"):
        if os.access(path, os.X_OK):
            return path
    return None


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, proc, timeout=5.0):
    import socket
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.02)
    return False


def start_nginx(tmp, cpu):
    """nginx as the current user, in the foreground, everything in tmp; returns (proc, port)."""
    port = free_port()
    conf = os.path.join(tmp, "nginx.conf")
    with open(conf, "w") as f:
        f.write(NGINX_CONF.format(tmp=tmp, port=port,
                                  user="user root;" if os.geteuid() == 0 else ""))
    argv = [find_nginx(), "-p", tmp, "-c", conf, "-e", os.path.join(tmp, "error.log"),
            "-g", "daemon off;"]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, preexec_fn=pin(cpu))
    running.append(proc)
    if not wait_for_port(port, proc):
        stop(proc, grace=0.5)
        try:
            with open(os.path.join(tmp, "error.log")) as f:
                err = f.read()[-300:]
        except OSError:
            err = ""
        raise RuntimeError(f"nginx did not listen on {port} (error.log: {err!r})")
    return proc, port


def tree_cpu_ns(pid):
    """cpu_ns of pid and its children (nginx's worker is a child of its master)."""
    total = cpu_ns(pid)
    if total is None:
        return None
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            for child in f.read().split():
                total += cpu_ns(int(child)) or 0
    except OSError:
        pass
    return total


def wrk_duration_us(text):
    for unit, scale in (("us", 1.0), ("ms", 1e3), ("s", 1e6), ("m", 60e6), ("h", 3600e6)):
        if text.endswith(unit):
            try:
                return float(text[:-len(unit)]) * scale
            except ValueError:
                return None
    return None


def parse_wrk(output):
    """requests/s, p50/p99 latency (us), total requests, errors from `wrk --latency` output."""
    result = {}
    lines = output.splitlines()
    for i, line in enumerate(lines):
        words = line.split()
        if line.startswith("Requests/sec:"):
            result["rps"] = float(words[1])
        elif len(words) == 2 and words[0] in ("50%", "99%"):
            result["p" + words[0][:-1] + "_us"] = wrk_duration_us(words[1])
        elif "requests in" in line:
            result["total"] = float(words[0])
        elif line.strip().startswith("Socket errors:"):
            result["socket_errors"] = line.strip()
        elif line.strip().startswith("Non-2xx or 3xx responses:"):
            result["non2xx"] = int(words[-1])
    return result if "rps" in result else None


def run_http_one(server, conns, args, server_cpu, load_cpu):
    name, exe, extra = server
    row = {"workload": f"GET / {conns}c", "server": name}
    stats_path = None
    tmp = tempfile.mkdtemp(prefix="corio_http_bench_")
    try:
        if exe is None:
            proc, port = start_nginx(tmp, server_cpu)
        else:
            stats_path = os.path.join(tmp, "stats")
            argv = [os.path.join(BIN, exe), *extra, "--port", "0", "--stats-file", stats_path]
            proc, port = start_server(argv, server_cpu)
        try:
            load = [find_wrk(), "-t1", f"-c{conns}", f"-d{args.seconds:g}s", "--latency",
                    "--timeout", "5s", f"http://127.0.0.1:{port}/"]
            cpu_before = tree_cpu_ns(proc.pid)
            try:
                done = subprocess.run(load, capture_output=True, text=True,
                                      timeout=args.seconds + 30, preexec_fn=pin(load_cpu))
            except subprocess.TimeoutExpired:
                row["error"] = "wrk timed out"
                return row
            cpu_after = tree_cpu_ns(proc.pid)
            if proc.poll() is not None:
                row["error"] = f"server exited with status {proc.returncode}"
                return row
        finally:
            stop(proc)
        result = parse_wrk(done.stdout)
        if done.returncode != 0 or result is None:
            row["error"] = (done.stderr.strip() or done.stdout.strip() or "no result")[-200:]
            return row
        row.update(result)
        if result.get("non2xx"):
            row["error"] = f"{result['non2xx']} non-2xx responses"
            return row
        total = max(result.get("total", 0.0), 1.0)
        if cpu_before is not None and cpu_after is not None:
            row["cpu_us_per_req"] = (cpu_after - cpu_before) / 1000.0 / total
        if stats_path and os.path.exists(stats_path):
            stats = {}
            with open(stats_path) as f:
                for line in f:
                    key, _, value = line.partition(" ")
                    if value.strip():
                        stats[key] = int(value)
            if stats.get("requests"):
                row["syscalls_per_req"] = stats["syscalls"] / stats["requests"]
        return row
    except (RuntimeError, OSError, ValueError) as e:
        row["error"] = str(e)
        return row
    finally:
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)


def print_http_table(rows):
    print("| workload | server | requests/s | p50 µs | p99 µs | server CPU µs/req | syscalls/req |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        if "error" in r:
            print(f"| {r['workload']} | {r['server']} | error: {r['error'].splitlines()[-1]} | | | | |")
            continue
        print(f"| {r['workload']} | {r['server']} | {fmt(r.get('rps'), ',.0f')} "
              f"| {fmt(r.get('p50_us'), '.0f')} | {fmt(r.get('p99_us'), '.0f')} "
              f"| {fmt(r.get('cpu_us_per_req'), '.2f')} | {fmt(r.get('syscalls_per_req'), '.3f')} |")
    sys.stdout.flush()


def run_http(args, server_cpu, load_cpu):
    """The HTTP table; returns its rows ([] when wrk or every server is missing)."""
    if find_wrk() is None:
        log("wrk not installed (Debian: wrk); HTTP benchmark skipped")
        return []
    servers = []
    for s in HTTP_SERVERS:
        if s[1] is None:
            if find_nginx() is None:
                log("nginx not installed (Debian: nginx); skipped")
                continue
        elif not os.access(os.path.join(BIN, s[1]), os.X_OK):
            log(f"{s[0]}: {s[1]} not built; skipped")
            continue
        servers.append(s)
    if args.servers:
        wanted = {w.strip() for w in args.servers.split(",")}
        servers = [s for s in servers if s[0] in wanted or s[1] in wanted
                   or (s[1] is None and "nginx" in wanted)]
    connections = (64,) if args.quick else (1, 64, 1000)
    # Like the echo targets: at 64 and 1000 connections every round runs each server once,
    # in an order reversed every other round, and corio / nginx is a paired ratio per round
    # (one run each, minutes apart, differed by up to 20 % on this kind of machine).
    paired = (64, 1000)
    rows, rounds_of = [], {}
    for conns in connections:
        rounds = args.pairs if conns in paired else 1
        for rnd in range(rounds):
            for server in (servers if rnd % 2 == 0 else servers[::-1]):
                row = run_http_one(server, conns, args, server_cpu, load_cpu)
                rows.append(row)
                rounds_of.setdefault((row["workload"], row["server"]), {})[rnd] = row
                if "error" in row:
                    log(f"{row['workload']:<24} {row['server']:<16} #{rnd} ERROR {row['error']}")
                else:
                    log(f"{row['workload']:<24} {row['server']:<16} #{rnd} "
                        f"{row['rps']:>12,.0f} req/s  p99 {row.get('p99_us') or 0:.0f} µs")
    if rows:
        print()
        runs_note = ("one run each" if args.pairs == 1 else
                     f"at {' and '.join(str(c) for c in paired if c in connections)} "
                     f"connections the median of {args.pairs} runs in alternating order, "
                     f"else one run")
        print(f"HTTP/1.1 hello world (GET / -> 13-byte body), loopback, keep-alive, server and "
              f"wrk (1 thread) pinned to different CPUs, {args.seconds:g} s per run; "
              f"{runs_note}:")
        print()
        print_http_table(median_rows(rows))
        nginx = next((s[0] for s in servers if s[1] is None), None)
        corio = [s[0] for s in servers if s[1] is not None]
        if nginx and corio:
            print()
            print("HTTP target: corio requests/s over nginx's in the same round; goal ≥ 1.")
            print()
            print("| target | workload | goal | n | median | range | met? |")
            print("|---|---|---|---:|---:|---:|---|")
            for conns in (c for c in paired if c in connections):
                workload = f"GET / {conns}c"
                for name in corio:
                    print(ratio_line(f"{name} / {nginx} requests/s", workload,
                                     ratios({name: rounds_of.get((workload, name), {}),
                                             nginx: rounds_of.get((workload, nginx), {})},
                                            name, nginx, "rps"), ">=", 1.0))
    return rows


def median_rows(rows):
    """One row per (workload, server): the median of each figure over its error-free runs."""
    groups = {}
    for r in rows:
        groups.setdefault((r["workload"], r["server"]), []).append(r)
    out = []
    for (workload, server), group in groups.items():
        ok = good(group)
        if not ok:
            out.append(group[-1])
            continue
        row = {"workload": workload, "server": server}
        for key in ("rps", "p50_us", "p99_us", "cpu_us_per_req", "syscalls_per_req"):
            row[key] = median_of(ok, key)
        out.append(row)
    return out


def make_tls_cert(tmp):
    """A self-signed certificate for localhost, made with the openssl command."""
    cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", key, "-out", cert], check=True, capture_output=True, timeout=30)
    return cert, key


def run_tls(args, server_cpu, load_cpu):
    """TLS echo beside plaintext: same server binary, same corio load client (tls_load)."""
    exe, load = os.path.join(BIN, "corio_echo"), os.path.join(BIN, "tls_load")
    if not (os.access(exe, os.X_OK) and os.access(load, os.X_OK)):
        log("corio_echo or tls_load not built; TLS table skipped")
        return []
    if args.quick:
        workloads = [(64, 64, 8)]
    else:
        workloads = [(64, 64, 8), (4, 65536, 4)]
    rows = []
    with tempfile.TemporaryDirectory(prefix="corio_tls_bench_") as tmp:
        try:
            cert, key = make_tls_cert(tmp)
        except (OSError, subprocess.SubprocessError) as e:
            log(f"cannot make a TLS certificate ({e}); TLS table skipped")
            return []
        for conns, size, depth in workloads:
            for backend in ("io_uring", "epoll"):
                for tls in (True, False):
                    row = {"workload": f"raw {conns}c x {size}B d{depth}",
                           "server": f"corio {backend} {'TLS' if tls else 'plain'}"}
                    argv = [exe, "--backend", backend, "--port", "0", "--mode", "raw"]
                    if tls:
                        argv += ["--tls-cert", cert, "--tls-key", key]
                    try:
                        proc, port = start_server(argv, server_cpu)
                    except (RuntimeError, OSError) as e:
                        row["error"] = str(e)
                        rows.append(row)
                        continue
                    try:
                        cmd = [load, "--port", str(port), "--conns", str(conns), "--size", str(size),
                               "--depth", str(depth), "--seconds", str(args.seconds),
                               "--warmup", str(args.warmup)]
                        if tls:
                            cmd += ["--tls-ca", cert]
                        cpu_before = cpu_ns(proc.pid)
                        done = subprocess.run(cmd, capture_output=True, text=True,
                                              timeout=args.seconds + args.warmup + 30,
                                              preexec_fn=pin(load_cpu))
                        cpu_after = cpu_ns(proc.pid)
                    except subprocess.TimeoutExpired:
                        row["error"] = "tls_load timed out"
                        rows.append(row)
                        continue
                    finally:
                        stop(proc)
                    result = parse_result(done.stdout)
                    if done.returncode != 0 or result is None:
                        row["error"] = (done.stderr.strip() or "no result")[-200:]
                    else:
                        row.update(result)
                        if cpu_before is not None and cpu_after is not None:
                            row["cpu_us_per_msg"] = ((cpu_after - cpu_before) / 1000.0 /
                                                     max(result["total_msgs"], 1.0))
                    rows.append(row)
                    log(f"{row['workload']:<24} {row['server']:<22} "
                        + (f"ERROR {row['error']}" if "error" in row else
                           f"{row['msgs_per_s']:>10,.0f} msgs/s {row['mb_per_s']:>8.1f} MB/s"))
    print()
    print(f"TLS echo beside plaintext (corio_echo raw mode, tls_load client), {args.seconds:g} s per run:")
    print()
    print("| workload | server | msgs/s | MB/s | p50 µs | p99 µs | server CPU µs/msg |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        if "error" in r:
            print(f"| {r['workload']} | {r['server']} | error: {r['error'].splitlines()[-1]} | | | | |")
            continue
        print(f"| {r['workload']} | {r['server']} | {fmt(r.get('msgs_per_s'), ',.0f')} "
              f"| {fmt(r.get('mb_per_s'), ',.1f')} | {fmt(r.get('p50_us'), '.0f')} "
              f"| {fmt(r.get('p99_us'), '.0f')} | {fmt(r.get('cpu_us_per_msg'), '.2f')} |")
    sys.stdout.flush()
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="echo: 64 connections, one round; HTTP: 64 connections; "
                        "1 s runs; idle bytes: corio only; latency, loops and techniques: "
                        "0.5 s runs (under a minute)")
    parser.add_argument("--depth", type=int, default=8,
                        help="messages in flight per connection (the pipelined workloads use 16)")
    parser.add_argument("--seconds", type=float, help="measured seconds per run (5, quick: 1)")
    parser.add_argument("--warmup", type=float, default=0.25, help="warm-up seconds per run")
    parser.add_argument("--pairs", type=int,
                        help="rounds for the workloads with a paired target (3, quick: 1)")
    parser.add_argument("--engine", choices=("auto", "uring", "epoll"), default="auto",
                        help="echo_load's engine (auto: io_uring where the kernel has it)")
    parser.add_argument("--servers", help="comma-separated subset of: " +
                        ", ".join(s[0] for s in SERVERS))
    parser.add_argument("--cpu-targets", action="store_true",
                        help="only the paired CPU-per-message targets and their ceilings (raw "
                        "64 B echo at 64 and 1000 connections, the servers they compare), "
                        "every round; no other table: more --pairs in the same time")
    parser.add_argument("--no-loop-bench", action="store_true", help="skip loop_bench")
    parser.add_argument("--no-echo", action="store_true", help="skip the echo tables")
    parser.add_argument("--no-perf", action="store_true", help="skip the perf cross-check")
    parser.add_argument("--no-http", action="store_true", help="skip the HTTP table")
    parser.add_argument("--no-tls", action="store_true", help="skip the TLS echo table")
    parser.add_argument("--idle-conns", type=int,
                        help="idle connections per server for the bytes-per-connection table "
                        f"({IDLE_TARGET_CONNS}; quick: {QUICK_IDLE_CONNS})")
    parser.add_argument("--no-idle", action="store_true", help="skip the idle-connection table")
    parser.add_argument("--no-latency", action="store_true",
                        help="skip the same-CPU low-load latency table")
    parser.add_argument("--no-loops", action="store_true", help="skip 1 loop vs 2 loops")
    parser.add_argument("--no-techniques", action="store_true",
                        help="skip the techniques table (multishot recv on the C server and in corio)")
    parser.add_argument("--no-send-zc", action="store_true",
                        help="skip SEND_ZC vs SEND (large writes; never run with --quick)")
    args = parser.parse_args()
    if args.cpu_targets:
        for table in ("loop_bench", "perf", "http", "tls", "idle", "latency", "loops",
                      "techniques", "send_zc"):
            setattr(args, f"no_{table}", True)
    if args.seconds is None:
        args.seconds = 1.0 if args.quick else 5.0  # --quick must finish within a minute
    if args.quick and args.warmup == 0.25:
        args.warmup = 0.15
    if args.pairs is None:
        args.pairs = 1 if args.quick else 3
    args.pairs = max(1, args.pairs)
    if args.idle_conns is None:
        args.idle_conns = QUICK_IDLE_CONNS if args.quick else IDLE_TARGET_CONNS
    # Latency pairs are cheap (4 servers, 1 connection): at least 3 rounds in a full run.
    args.latency_rounds = args.pairs if args.quick else max(3, args.pairs)
    # The sections after the echo table run shorter in --quick, to stay within a minute.
    args.extra_seconds = min(args.seconds, 0.5) if args.quick else args.seconds
    # 3 s of 1-connection round trips is ~300k samples: plenty for a p99, and it keeps the
    # full run's 12 latency runs near 40 s.
    args.latency_seconds = args.extra_seconds if args.quick else min(args.seconds, 3.0)
    args.loops_backends = ("io_uring",) if args.quick else ("io_uring", "epoll")
    # SEND_ZC vs SEND: 2 shapes x 4 sizes x 2 modes x rounds runs of at most 0.5 s (about
    # 34 s at 3 rounds).
    args.send_zc_rounds = max(3, args.pairs)
    args.send_zc_seconds = min(args.seconds, SEND_ZC_SECONDS)

    echo_load = os.path.join(BIN, "echo_load")
    if not os.access(echo_load, os.X_OK):
        sys.exit(f"table.py: {echo_load} not found; build first (bench/run.sh)")
    # Resolve "auto" once, so that every run uses the engine the header names.
    probe = subprocess.run([echo_load, "--engine", args.engine, "--print-engine"],
                           capture_output=True, text=True, timeout=10)
    if probe.returncode != 0 or probe.stdout.strip() not in ("uring", "epoll"):
        sys.exit(f"table.py: echo_load --print-engine failed: {probe.stderr.strip()}")
    args.engine = probe.stdout.strip()

    servers = []
    for s in SERVERS:
        why = server_missing(s[1])
        if why:
            log(f"{s[0]}: {why}; skipped")
        else:
            servers.append(s)
    if args.servers:
        wanted = {w.strip() for w in args.servers.split(",")}
        servers = [s for s in servers if s[0] in wanted or s[1] in wanted]

    server_cpu, load_cpu = cpus()
    log(f"server on CPU {server_cpu}, echo_load/wrk on CPU {load_cpu}; echo_load engine "
        f"{args.engine}; {args.seconds} s (+{args.warmup} s warm-up) per run; "
        f"{args.pairs} round(s) for paired targets")

    if not args.no_loop_bench:
        run_loop_bench(args.quick)

    echo_rows = []
    if not args.no_echo and servers:
        targets = make_targets(args.depth)
        runs = run_echo(args, servers, targets, server_cpu, load_cpu)
        perf_rows = [] if args.no_perf else run_perf_check(args, servers, server_cpu, load_cpu)
        print_echo_tables(args, runs, targets, perf_rows, servers)
        echo_rows = [r for rows in runs.values() for _, r in rows] + perf_rows
    if not args.no_idle and servers:
        echo_rows += run_idle(args, servers, server_cpu, load_cpu)
    if not args.no_latency and servers:
        echo_rows += run_latency(args, servers, server_cpu)
    if not args.no_loops:
        echo_rows += run_loops(args, server_cpu, load_cpu)
    if not args.no_techniques and servers:
        echo_rows += run_techniques(args, servers, server_cpu, load_cpu)
    if not args.no_send_zc and not args.quick:
        echo_rows += run_send_zc(args, server_cpu, load_cpu)
    http_rows = [] if args.no_http else run_http(args, server_cpu, load_cpu)
    tls_rows = [] if args.no_tls else run_tls(args, server_cpu, load_cpu)
    return 1 if any("error" in r for r in echo_rows + http_rows + tls_rows) else 0


if __name__ == "__main__":
    def on_signal(signum, _frame):
        kill_all()
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        sys.exit(main())
    finally:
        kill_all()
