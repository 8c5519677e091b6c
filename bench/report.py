"""The report of bench/run.sh: reads the wrk and CPU files of one run and prints the tables.

    report.py WORKDIR ROUNDS "bare me login" "description of the setup"

Per scenario it takes the median round (by req/s) for req/s and the median of the rounds' p99;
ratios are median req/s over the bare view's median req/s. Exit status 1 when any answer of
any phase (warm-up included) was wrong: not HTTP 200, a GraphQL `errors` key, no expected
field, or a socket error or timeout.
"""

from __future__ import annotations

import datetime
import statistics
import sys
from pathlib import Path

LABELS = {"bare": "bare view", "floor": "{__typename}", "me": "me query", "login": "wechatLogin"}
TARGETS = {"me": 0.5, "login": 0.25}
BAD_KEYS = ("non200", "gql_errors", "unexpected", "sock_connect", "sock_read", "sock_write", "sock_timeout")


def fields(path: Path, prefix: str = "BENCH_RESULT ") -> dict[str, str]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    for line in text.splitlines():
        if line.startswith(prefix) or not prefix:
            return dict(part.split("=", 1) for part in line.split() if "=" in part)
    return {}


def first_bad(path: Path) -> str:
    try:
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("BENCH_FIRST_BAD "):
                return line[len("BENCH_FIRST_BAD ") :]
    except OSError:
        pass
    return ""


def main() -> int:
    work, rounds, scenarios, setup = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3].split(), sys.argv[4]
    results = {m: [fields(work / f"r{r}-{m}.txt") for r in range(1, rounds + 1)] for m in scenarios}
    cpu = {m: [fields(work / f"r{r}-{m}.cpu", prefix="") for r in range(1, rounds + 1)] for m in scenarios}

    failed = False
    problems = []
    failed_modes = set()
    for mode in scenarios:
        phases = [("warm-up", work / f"warmup-{mode}.txt")]
        phases += [(f"round {r}", work / f"r{r}-{mode}.txt") for r in range(1, rounds + 1)]
        for name, path in phases:
            got = fields(path)
            if not got:
                problems.append(f"{mode} {name}: no result from wrk")
                failed = True
                failed_modes.add(mode)
                continue
            bad = {k: int(got.get(k, "1")) for k in BAD_KEYS if int(got.get(k, "1"))}
            if bad:
                failed = True
                failed_modes.add(mode)
                detail = ", ".join(f"{k}={v}" for k, v in bad.items())
                problems.append(f"{mode} {name}: {detail} of {got.get('requests')}; first: {first_bad(path)[:160]}")

    summary = {}
    for mode in scenarios:
        rows = [r for r in results[mode] if r]
        if not rows:
            continue
        rps = [float(r["rps"]) for r in rows]
        summary[mode] = {
            "rps": statistics.median(rps),
            "rps_min": min(rps),
            "rps_max": max(rps),
            "p50": statistics.median(float(r["p50_ms"]) for r in rows),
            "p99": statistics.median(float(r["p99_ms"]) for r in rows),
            "p99_max": max(float(r["p99_ms"]) for r in rows),
            "requests": sum(int(r["requests"]) for r in rows),
            "good": sum(int(r.get("good", 0)) for r in rows),
        }

    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    print()
    print(f"wxbackend load benchmark, {now}")
    print(setup)
    print()
    head = (
        f"{'scenario':<12} {'req/s':>8} {'(min-max)':>15} {'p50 ms':>7} {'p99 ms':>7} {'(max)':>7}"
        f" {'requests':>9} {'x bare':>7}  target"
    )
    print(head)
    print("-" * len(head))
    bare = summary.get("bare", {}).get("rps")
    verdicts = []
    for mode in scenarios:
        s = summary.get(mode)
        if not s:
            print(f"{LABELS[mode]:<12} no result")
            continue
        ratio = s["rps"] / bare if bare else None
        target = TARGETS.get(mode)
        verdict = ""
        if target is not None and ratio is not None:
            met = ratio >= target
            word = "met" if met else "MISSED"
            if failed_modes & {mode, "bare"}:
                word += " (not valid: some answers failed)"
            verdict = f">= {target}x {word}"
            verdicts.append(f"{LABELS[mode]} {ratio:.2f}x of bare (target {target}x): {word}")
        spread = f"({s['rps_min']:.0f}-{s['rps_max']:.0f})"
        print(
            f"{LABELS[mode]:<12} {s['rps']:>8.1f} {spread:>15} {s['p50']:>7.1f} {s['p99']:>7.1f} {s['p99_max']:>7.1f}"
            f" {s['requests']:>9} {(f'{ratio:.2f}' if ratio is not None else '-'):>7}  {verdict}"
        )
    if rounds > 1 and bare:
        print()
        print(
            "ratio to bare per round: "
            + "; ".join(
                f"{mode} "
                + " ".join(
                    f"{float(results[mode][i]['rps']) / float(results['bare'][i]['rps']):.2f}"
                    for i in range(rounds)
                    if results[mode][i] and results["bare"][i]
                )
                for mode in scenarios
                if mode != "bare"
            )
        )

    if any(any(c) for c in cpu.values()):
        print()
        print("CPU ms per request, medians of the rounds (from /proc; foreign = other programs on the machine):")
        print("'own' is the benchmark's own CPU (workers, gunicorn, postgres, redis, wrk); on a CPU-bound")
        print("machine bare's own / a scenario's own predicts the req/s ratio, and other programs barely move it.")
        cols = ("worker", "postgres", "redis", "wrk", "own", "foreign")
        print(
            f"{'scenario':<12} {'busy %':>7} {'all':>7} "
            + " ".join(f"{c:>8}" for c in cols)
            + f" {'x bare (own)':>13} {'foreign cores (max)':>20}"
        )

        def own(c: dict[str, str]) -> float:
            parts = ("worker", "master", "postgres", "redis", "wrk")
            return sum(float(c.get(p + "_ms_per_req", 0)) for p in parts)

        bare_own = statistics.median(own(c) for c in cpu.get("bare", []) if c) if any(cpu.get("bare", [])) else None
        for mode in scenarios:
            rows = [c for c in cpu[mode] if c]
            if not rows:
                continue

            def med(key: str, rows: list[dict[str, str]] = rows) -> float:
                if key == "own_ms_per_req":
                    return statistics.median(own(c) for c in rows)
                return statistics.median(float(c.get(key, 0)) for c in rows)

            estimate = f"{bare_own / med('own_ms_per_req'):.2f}" if bare_own else "-"
            print(
                f"{mode:<12} {med('machine_busy_pct'):>7.0f} {med('cpu_ms_per_req'):>7.2f} "
                + " ".join(f"{med(c + '_ms_per_req'):>8.2f}" for c in cols)
                + f" {estimate:>13} {max(float(c.get('foreign_cores', 0)) for c in rows):>20.2f}"
            )

    foreign = max((float(c.get("foreign_cores", 0)) for rows in cpu.values() for c in rows if c), default=0.0)
    print()
    if foreign >= 0.25:
        print(f"note: other programs used up to {foreign:.2f} of the cores during a round; the figures of that")
        print("      round are lower than on a quiet machine (see the min-max spread and the per-round ratios).")
    for line in verdicts:
        print(line)
    if failed:
        print("FAILED checks:")
        for line in problems:
            print("  " + line)
    else:
        total = sum(s["good"] for s in summary.values())
        print(f"checks: all {total} measured answers (and the warm-ups') were HTTP 200 with the expected data,")
        print("        no GraphQL errors, no socket errors or timeouts.")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
