"""CPU accounting for bench/run.sh, read from /proc (Linux only; does nothing elsewhere).

    cpu.py snapshot GUNICORN_PID FILE            writes the counters to FILE
    cpu.py diff BEFORE AFTER REQUESTS [WRK_SECS]  prints key=value figures for the report
    cpu.py idle SECONDS                          prints the machine's busy % over SECONDS

Counters: the machine's busy and total ticks (/proc/stat) and each process's user+system ticks.
The diff sorts processes into the gunicorn workers (children of GUNICORN_PID), postgres,
redis-server, wrk (whose CPU seconds run.sh measures with `time`, as it has exited by the
second snapshot), and `foreign`: every other process, i.e. whatever else runs on the machine
and steals CPU from the benchmark. What no process accounts for (interrupts, processes that
exited in between) stays in busy but in no column.
"""

from __future__ import annotations

import json
import os
import sys
import time


def _machine() -> tuple[int, int]:
    with open("/proc/stat", encoding="utf-8") as fh:
        cpu = [int(x) for x in fh.readline().split()[1:]]
    total = sum(cpu[:8])  # user nice system idle iowait irq softirq steal
    return total - cpu[3] - cpu[4], total


def _processes() -> dict[str, tuple[str, int, int]]:
    """pid -> (comm, ppid, utime+stime)."""
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as fh:
                raw = fh.read()
            comm = raw[raw.index("(") + 1 : raw.rindex(")")]
            fields = raw[raw.rindex(")") + 2 :].split()
            # fields[0] is the state (stat field 3): ppid is field 4, utime 14, stime 15.
            out[pid] = (comm, int(fields[1]), int(fields[11]) + int(fields[12]))
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
    return out


def snapshot(gunicorn_pid: int, path: str) -> None:
    busy, total = _machine()
    data = {"gunicorn": gunicorn_pid, "busy": busy, "total": total, "procs": _processes(), "self": os.getpid()}
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(data, fh)


def _group(comm: str, ppid: int, pid: int, gunicorn: int) -> str:
    if ppid == gunicorn:
        return "worker"
    if pid == gunicorn:
        return "master"
    if comm.startswith("postgres"):
        return "postgres"
    if comm.startswith("redis-server"):
        return "redis"
    if comm == "wrk":
        return "wrk"
    return "foreign"


def diff(before_path: str, after_path: str, requests: int, wrk_seconds: float | None = None) -> str:
    with open(before_path, encoding="utf-8") as fh:
        before = json.load(fh)
    with open(after_path, encoding="utf-8") as fh:
        after = json.load(fh)
    gunicorn = after["gunicorn"]
    ours = {str(before["self"]), str(after["self"])}
    groups = dict.fromkeys(("worker", "master", "postgres", "redis", "wrk", "foreign"), 0)
    for pid, (comm, ppid, ticks) in after["procs"].items():
        if pid in ours:
            continue
        old = before["procs"].get(pid)
        # A process that started in between counts from zero; a reused pid with a new name too.
        start = old[2] if old and old[0] == comm else 0
        groups[_group(comm, ppid, int(pid), gunicorn)] += max(ticks - start, 0)
    busy = after["busy"] - before["busy"]
    total = after["total"] - before["total"]
    hz = os.sysconf("SC_CLK_TCK")
    if wrk_seconds is not None:
        groups["wrk"] = round(wrk_seconds * hz)
    ncpu = os.cpu_count() or 1
    wall = total / hz / ncpu if total else 0.0

    def per_req(ticks: int) -> float:
        return 1000.0 * ticks / hz / requests if requests else 0.0

    parts = [f"machine_busy_pct={100.0 * busy / total if total else 0:.0f}", f"cpu_ms_per_req={per_req(busy):.2f}"]
    parts += [f"{name}_ms_per_req={per_req(ticks):.2f}" for name, ticks in groups.items()]
    # The foreign share in cores, so a noisy machine shows in the report.
    parts.append(f"foreign_cores={groups['foreign'] / hz / wall if wall else 0:.2f}")
    return " ".join(parts)


def idle(seconds: float) -> str:
    b_busy, b_total = _machine()
    time.sleep(seconds)
    a_busy, a_total = _machine()
    total = a_total - b_total
    return f"{100.0 * (a_busy - b_busy) / total if total else 0:.0f}"


def main() -> int:
    if not os.path.exists("/proc/stat"):
        return 0
    args = sys.argv[1:]
    if len(args) == 3 and args[0] == "snapshot":
        snapshot(int(args[1]), args[2])
        return 0
    if len(args) in (4, 5) and args[0] == "diff":
        wrk = float(args[4]) if len(args) == 5 and args[4] else None
        print(diff(args[1], args[2], int(args[3]), wrk))
        return 0
    if len(args) == 2 and args[0] == "idle":
        print(idle(float(args[1])))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
