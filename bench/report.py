"""The report of bench/run.sh: reads the wrk and CPU files of one run and prints the tables.

    report.py WORKDIR ROUNDS "bare me login" "description of the setup"

Per scenario it takes the median round (by req/s) for req/s and the median of the rounds' p99;
ratios are median req/s over the bare view's median req/s. Exit status 1 when any answer of
any phase (warm-up included) was wrong: not the expected HTTP status (200; 204 for notify_v3),
a GraphQL `errors` key, no expected data (notify_alipay: exactly `success`; oa_text: an encrypted
reply), a socket error or timeout, or a notify or oa_text scenario that ran out of fresh requests;
or when the database disagrees with the notify answers (WORKDIR/verify.txt, from bench/fixtures.py
verify), or the shared cache with the oa_text answers (WORKDIR/verify-oa.txt, from bench/fixtures.py
replies, one line per phase). The SQL statements per request come from WORKDIR/sql.txt (bench/fixtures.py
setup).
"""

from __future__ import annotations

import datetime
import statistics
import sys
from pathlib import Path

LABELS = {
    "bare": "bare view",
    "floor": "{__typename}",
    "me": "me query",
    "login": "wechatLogin",
    "notify_v2": "v2 notify",
    "notify_v3": "v3 notify",
    "notify_alipay": "alipay notify",
    "orders": "orders page",
    "oa_text": "OA text msg",
}
TARGETS = {
    "me": 0.35,
    "login": 0.15,
    "notify_v2": 0.2,
    "notify_v3": 0.2,
    "notify_alipay": 0.2,
    "orders": 0.1,
    "oa_text": 0.25,
}
# SQL statements per request of each scenario (from sql.txt; the test suite pins the same numbers).
SQL_KEYS = {m: f"{m}_queries" for m in ("me", "login", "notify_v2", "notify_v3", "notify_alipay", "orders", "oa_text")}
BAD_KEYS = (
    "bad_status",
    "gql_errors",
    "unexpected",
    "exhausted",
    "sock_connect",
    "sock_read",
    "sock_write",
    "sock_timeout",
)


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


def replies_kept(work: Path, rounds: int, problems: list[str]) -> bool:
    """Prints the shared-cache check of each oa_text phase (WORKDIR/verify-oa.txt); True when it failed."""
    checks = {}
    try:
        for line in (work / "verify-oa.txt").read_text(encoding="utf-8").splitlines():
            if line.startswith("VERIFY "):
                got = dict(part.split("=", 1) for part in line.split()[1:] if "=" in part)
                checks[got.get("phase", "")] = got
    except OSError:
        pass
    print()
    print("shared cache after each oa_text phase: every text message answered with an encrypted reply has its")
    print("rendered reply (to its follower, with the expected keyword or default text) kept under its MsgId's")
    print("deduplication key, and no message never sent has one (a text message changes nothing in the database):")
    failed = False
    for phase in ["warmup"] + [f"r{r}" for r in range(1, rounds + 1)]:
        c = checks.get(phase)
        if not c:
            failed = True
            problems.append(f"oa_text {phase}: no shared-cache check (verify-oa.txt)")
            print(f"  {phase}: not checked")
            continue
        print(
            f"  {phase}: {c['kept']} replies kept for {c['good']} good answers; {c['inflight_kept']} of the"
            f" {c['inflight']} messages in flight when wrk stopped; {c['unsent_kept']} keys of {c['unsent']}"
            " messages not sent" + ("" if c["ok"] == "1" else f"  MISMATCH: {c.get('problems', '')}")
        )
        if c["ok"] != "1":
            failed = True
            problems.append(f"oa_text {phase}: the shared cache disagrees with the answers: {c}")
    return failed


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

    def own(c: dict[str, str]) -> float:
        """The benchmark's own CPU ms per request: workers, gunicorn, postgres, redis, wrk."""
        parts = ("worker", "master", "postgres", "redis", "wrk")
        return sum(float(c.get(p + "_ms_per_req", 0)) for p in parts)

    def median_own(mode: str) -> float | None:
        rows = [c for c in cpu.get(mode, []) if c]
        return statistics.median(own(c) for c in rows) if rows else None

    bare_own = median_own("bare")

    def cpu_ratio(mode: str) -> float | None:
        """bare's own CPU per request over the scenario's: the ratio a CPU-bound machine gives."""
        mine = median_own(mode)
        return bare_own / mine if bare_own and mine else None

    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    print()
    print(f"wxbackend load benchmark, {now}")
    print(setup)
    print()
    head = (
        f"{'scenario':<12} {'req/s':>8} {'(min-max)':>15} {'p50 ms':>7} {'p99 ms':>7} {'(max)':>7}"
        f" {'requests':>9} {'x bare':>7} {'by CPU':>7}  target"
    )
    print(head)
    print("-" * len(head))
    bare = summary.get("bare", {}).get("rps")
    sql = fields(work / "sql.txt", prefix="")
    verdicts = []
    for mode in scenarios:
        s = summary.get(mode)
        if not s:
            print(f"{LABELS[mode]:<12} no result")
            continue
        ratio = s["rps"] / bare if bare else None
        target = TARGETS.get(mode)
        verdict = ""
        by_cpu = cpu_ratio(mode)
        if target is not None and ratio is not None:
            met = ratio >= target
            goal = f"{target}x"
            achieved = f"{ratio:.2f}x of bare (by CPU {by_cpu:.2f}x)" if by_cpu else f"{ratio:.2f}x of bare"
            if SQL_KEYS.get(mode) in sql:
                achieved += f", {sql[SQL_KEYS[mode]]} SQL statements per request"
            word = "met" if met else "MISSED"
            if failed_modes & {mode, "bare"}:
                word += " (not valid: some answers failed)"
            verdict = f">= {goal} {word}"
            verdicts.append(f"{LABELS[mode]} {achieved} (target {goal}): {word}")
        spread = f"({s['rps_min']:.0f}-{s['rps_max']:.0f})"
        print(
            f"{LABELS[mode]:<12} {s['rps']:>8.1f} {spread:>15} {s['p50']:>7.1f} {s['p99']:>7.1f} {s['p99_max']:>7.1f}"
            f" {s['requests']:>9} {(f'{ratio:.2f}' if ratio is not None else '-'):>7}"
            f" {(f'{by_cpu:.2f}' if by_cpu is not None else '-'):>7}  {verdict}"
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

        for mode in scenarios:
            rows = [c for c in cpu[mode] if c]
            if not rows:
                continue

            def med(key: str, rows: list[dict[str, str]] = rows) -> float:
                if key == "own_ms_per_req":
                    return statistics.median(own(c) for c in rows)
                return statistics.median(float(c.get(key, 0)) for c in rows)

            estimate = f"{cpu_ratio(mode):.2f}" if cpu_ratio(mode) else "-"
            print(
                f"{mode:<12} {med('machine_busy_pct'):>7.0f} {med('cpu_ms_per_req'):>7.2f} "
                + " ".join(f"{med(c + '_ms_per_req'):>8.2f}" for c in cols)
                + f" {estimate:>13} {max(float(c.get('foreign_cores', 0)) for c in rows):>20.2f}"
            )

    if sql and any(m in SQL_KEYS for m in scenarios):
        print()
        print("SQL statements per request, BEGIN / SAVEPOINT / COMMIT included (bench/fixtures.py: the same request")
        print(
            "through the whole stack, in a process with the workers' settings; statements in WORKDIR/sql-*.log): "
            + ", ".join(f"{m} {sql[SQL_KEYS[m]]}" for m in scenarios if SQL_KEYS.get(m) in sql)
        )
    notify_modes = [m for m in scenarios if m.startswith("notify_")]
    if notify_modes:
        checks = {}
        try:
            for line in (work / "verify.txt").read_text(encoding="utf-8").splitlines():
                if line.startswith("VERIFY "):
                    got = dict(part.split("=", 1) for part in line.split()[1:] if "=" in part)
                    checks[got.get("mode", "")] = got
        except OSError:
            pass
        print()
        print("database after the run, per order (warm-up included): every notify answered SUCCESS / 204 / success")
        print("left its order PAID with one payment event, and no order without such an answer is PAID except")
        print("notifies still in flight when wrk stopped (the server applied them; wrk no longer read the answer):")
        for mode in notify_modes:
            c = checks.get(mode)
            if not c:
                failed = True
                problems.append(f"{mode}: no database check (verify.txt)")
                print(f"  {LABELS[mode]}: not checked")
                continue
            print(
                f"  {LABELS[mode]}: {c['paid']} orders PAID ({c['events']} APPLIED payment events)"
                f" = {c['good']} successful answers + {c['inflight_paid']} of the {c['inflight']} notifies in"
                f" flight when wrk stopped (sent, no answer read); {c['sent']} sent, {c['answered']} answered"
                + ("" if c["ok"] == "1" else f"  MISMATCH: {c.get('problems', '')}")
            )
            if c["ok"] != "1":
                failed = True
                problems.append(f"{mode}: the database disagrees with the answers: {c}")

    if "oa_text" in scenarios:
        failed |= replies_kept(work, rounds, problems)

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
        print(f"checks: all {total} measured answers (and the warm-ups') had the expected status (200; 204 for")
        print("        notify_v3) and data, no GraphQL errors, no socket errors or timeouts, no notify or text")
        print("        message sent twice.")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
