"""Summarises a py-spy raw (collapsed-stack) profile written by `BENCH_PROFILE=1 bash bench/run.sh`.

    .venv/bin/python bench/profile_summary.py /tmp/wxbench.XXXX/profile-me.txt [--top 25] [--match TEXT]

Prints the frames with the most inclusive samples (time in the frame or anything it called) and
the most self samples (time in the frame itself), as a share of all on-CPU samples of the workers.
--match keeps only the frames whose text contains TEXT (e.g. a package name).
"""

from __future__ import annotations

import argparse
import collections
import re
import sys

# py-spy prefixes each stack with process and thread frames; they say nothing about the code.
_NOISE = re.compile(r"^(process \d+:|thread \(0x)")


def load(path: str) -> tuple[int, collections.Counter[str], collections.Counter[str]]:
    total = 0
    inclusive: collections.Counter[str] = collections.Counter()
    self_: collections.Counter[str] = collections.Counter()
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            line = line.rstrip("\n")
            if not line:
                continue
            stack, _, count_text = line.rpartition(" ")
            try:
                count = int(count_text)
            except ValueError:
                continue
            frames = [f for f in stack.split(";") if f and not _NOISE.match(f)]
            if not frames:
                continue
            total += count
            for frame in set(frames):
                inclusive[frame] += count
            self_[frames[-1]] += count
    return total, inclusive, self_


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--match", default="")
    args = parser.parse_args()
    total, inclusive, self_ = load(args.profile)
    if not total:
        print("no samples", file=sys.stderr)
        return 1
    print(f"{args.profile}: {total} on-CPU samples")
    for title, counter in (("inclusive", inclusive), ("self", self_)):
        print(f"\n--- top {args.top} by {title} share ---")
        shown = 0
        for frame, count in counter.most_common():
            if args.match and args.match not in frame:
                continue
            print(f"{100 * count / total:6.1f}%  {count:7d}  {frame}")
            shown += 1
            if shown >= args.top:
                break
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # piped into head
        sys.exit(0)
