#!/usr/bin/python3
"""bench/table.py [--quick] [--depth D] [--seconds T] [--servers a,b] -- the benchmark table.

Builds nothing: uses the executables in build/release/bench/ (bench/run.sh builds them).
1. Runs loop_bench (post/timer/ping-pong) if it was built.
2. For every echo workload (connections x message size x raw/line) and every echo server
   that was built (corio on io_uring, corio on epoll, and the peers uring_echo, epoll_echo,
   asio_echo), starts the server on a free port pinned to one CPU, waits for its
   "listening on" line, runs echo_load pinned to another CPU, then stops the server with
   SIGTERM and collects:
     msgs/s, p50/p99 latency       from echo_load
     server CPU us per message     from /proc/PID/task/*/schedstat (time on CPU, all threads)
     syscalls per message          from corio's loop stats (--stats-file), corio servers only
   Per-message figures divide by every message echoed during the load run (warm-up included),
   matching the CPU and syscalls counted over the whole run.
3. Prints one markdown table on stdout; progress goes to stderr.

Everything is bounded in time, and every server is killed at the end, even on errors.
"""
import argparse
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "build", "release", "bench")

# name -> (executable, extra args, reports corio loop stats)
SERVERS = [
    ("corio io_uring", "corio_echo", ["--backend", "io_uring"], True),
    ("corio epoll", "corio_echo", ["--backend", "epoll"], True),
    ("uring_echo (C)", "peer_uring_echo", [], False),
    ("epoll_echo (C)", "peer_epoll_echo", [], False),
    ("asio", "peer_asio_echo", [], False),
]

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


def start_server(argv, cpu, timeout=5.0):
    """Starts a server on port 0 (the kernel picks a free port); returns (proc, port)."""
    stderr = tempfile.TemporaryFile()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL,
                            preexec_fn=pin(cpu))
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
    return proc, int(text.rsplit(":", 1)[1])


def parse_result(output):
    for line in output.splitlines():
        if line.startswith("result:"):
            return {k: float(v) for k, v in (kv.split("=") for kv in line.split()[1:])}
    return None


def run_one(server, workload, args, server_cpu, load_cpu):
    name, exe, extra, has_stats = server
    conns, size, mode = workload
    row = {"workload": f"{mode} {conns}c x {size}B d{args.depth}", "server": name}
    stats_path = None
    argv = [os.path.join(BIN, exe), *extra, "--port", "0", "--mode", mode]
    if has_stats:
        fd, stats_path = tempfile.mkstemp(prefix="corio_stats_")
        os.close(fd)
        argv += ["--stats-file", stats_path]
    try:
        proc, port = start_server(argv, server_cpu)
        try:
            load = [os.path.join(BIN, "echo_load"), "--port", str(port), "--conns", str(conns),
                    "--depth", str(args.depth), "--size", str(size), "--seconds",
                    str(args.seconds), "--warmup", str(args.warmup), "--mode", mode]
            cpu_before = cpu_ns(proc.pid)
            try:
                done = subprocess.run(load, capture_output=True, text=True,
                                      timeout=args.seconds + args.warmup + 30,
                                      preexec_fn=pin(load_cpu))
            except subprocess.TimeoutExpired:
                row["error"] = "echo_load timed out"
                return row
            cpu_after = cpu_ns(proc.pid)
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
        if stats_path:
            stats = {}
            with open(stats_path) as f:
                for line in f:
                    key, _, value = line.partition(" ")
                    if value.strip():
                        stats[key] = int(value)
            if "syscalls" in stats:
                row["syscalls_per_msg"] = stats["syscalls"] / total
        return row
    except (RuntimeError, OSError, ValueError) as e:
        row["error"] = str(e)
        return row
    finally:
        if stats_path:
            try:
                os.unlink(stats_path)
            except OSError:
                pass


def fmt(value, spec):
    return "—" if value is None else format(value, spec)


def print_table(rows):
    print("| workload | server | msgs/s | p50 µs | p99 µs | server CPU µs/msg | syscalls/msg |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        if "error" in r:
            print(f"| {r['workload']} | {r['server']} | error: {r['error'].splitlines()[-1]} | | | | |")
            continue
        print(f"| {r['workload']} | {r['server']} | {fmt(r.get('msgs_per_s'), ',.0f')} "
              f"| {fmt(r.get('p50_us'), '.0f')} | {fmt(r.get('p99_us'), '.0f')} "
              f"| {fmt(r.get('cpu_us_per_msg'), '.2f')} | {fmt(r.get('syscalls_per_msg'), '.3f')} |")
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="64 connections x 64 B, both modes, 2 s runs (under a minute)")
    parser.add_argument("--depth", type=int, default=8, help="messages in flight per connection")
    parser.add_argument("--seconds", type=float, help="measured seconds per run (5, quick: 2)")
    parser.add_argument("--warmup", type=float, default=0.25, help="warm-up seconds per run")
    parser.add_argument("--servers", help="comma-separated subset of: " +
                        ", ".join(s[0] for s in SERVERS))
    parser.add_argument("--no-loop-bench", action="store_true", help="skip loop_bench")
    args = parser.parse_args()
    if args.seconds is None:
        args.seconds = 2.0 if args.quick else 5.0

    if not os.access(os.path.join(BIN, "echo_load"), os.X_OK):
        sys.exit(f"table.py: {BIN}/echo_load not found; build first (bench/run.sh)")
    servers = [s for s in SERVERS if os.access(os.path.join(BIN, s[1]), os.X_OK)]
    for s in SERVERS:
        if s not in servers:
            log(f"{s[0]}: {s[1]} not built; skipped")
    if args.servers:
        wanted = {w.strip() for w in args.servers.split(",")}
        servers = [s for s in servers if s[0] in wanted or s[1] in wanted]

    if args.quick:
        workloads = [(64, 64, mode) for mode in ("raw", "line")]
    else:
        workloads = [(n, s, mode) for n in (1, 64, 1000) for s in (64, 4096)
                     for mode in ("raw", "line")]
    server_cpu, load_cpu = cpus()
    log(f"server on CPU {server_cpu}, echo_load on CPU {load_cpu}; depth {args.depth}, "
        f"{args.seconds} s (+{args.warmup} s warm-up) per run")

    if not args.no_loop_bench:
        run_loop_bench(args.quick)

    rows = []
    for workload in workloads:
        for server in servers:
            row = run_one(server, workload, args, server_cpu, load_cpu)
            rows.append(row)
            if "error" in row:
                log(f"{row['workload']:<24} {row['server']:<16} ERROR {row['error']}")
            else:
                log(f"{row['workload']:<24} {row['server']:<16} {row['msgs_per_s']:>12,.0f} msgs/s "
                    f"{row['mb_per_s']:>8.1f} MB/s  p50 {row['p50_us']:.0f} µs  "
                    f"p99 {row['p99_us']:.0f} µs  load CPU {row['load_cpu_pct']:.0f}%")
    print()
    print(f"Echo servers, loopback, server and echo_load pinned to different CPUs, "
          f"{args.depth} messages in flight per connection, {args.seconds:g} s per run:")
    print()
    print_table(rows)
    return 1 if any("error" in r for r in rows) else 0


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
