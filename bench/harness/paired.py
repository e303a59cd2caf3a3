#!/usr/bin/env python3
"""Paired comparison of two topologies across the interleaved rounds of harness runs.

    bench/harness/paired.py --test lat5000 --metric p99_ms --base signet/w1 \
        --other signet-audit/w1 RAW.tsv [RAW.tsv ...]

Rounds run both topologies back to back, so they share whatever the machine was doing; the
per-round difference (other − base) removes most of that, where the ratio of two medians
across rounds does not. Prints each round, the median difference relative to the base's
median, how many rounds the other was higher in (with a two-sided sign-test p), and a
bootstrap 90 % interval for the relative median difference.
"""

import argparse
import csv
import math
import random
import statistics


def rounds(paths, test, metric, base, other):
    pairs = []
    for n, path in enumerate(paths):
        seen = {}
        with open(path, newline="") as f:
            for row in csv.reader(f, delimiter="\t"):
                if len(row) != 5:
                    continue
                rnd, t, topo, key, value = row
                if t == test and key == metric and topo in (base, other):
                    seen.setdefault(rnd, {})[topo] = float(value)
        for rnd, values in sorted(seen.items(), key=lambda kv: int(kv[0])):
            if base in values and other in values:
                pairs.append((f"{n + 1}.{rnd}", values[base], values[other]))
    return pairs


def sign_test(higher, n):
    k = min(higher, n - higher)
    p = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * p)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--test", required=True)
    ap.add_argument("--metric", required=True)
    ap.add_argument("--base", required=True)
    ap.add_argument("--other", required=True)
    ap.add_argument("raw", nargs="+")
    args = ap.parse_args()
    pairs = rounds(args.raw, args.test, args.metric, args.base, args.other)
    if not pairs:
        raise SystemExit("no round has both topologies for that test and metric")
    for name, a, b in pairs:
        print(f"round {name:>6}  {args.base} {a:8.3f}  {args.other} {b:8.3f}  diff {b - a:+8.3f}")
    base_median = statistics.median(a for _, a, _ in pairs)
    diffs = [b - a for _, a, b in pairs]
    rel = statistics.median(diffs) / base_median
    higher = sum(d > 0 for d in diffs)
    rng = random.Random(1)
    boot = sorted(
        statistics.median(rng.choices(diffs, k=len(diffs)))
        / statistics.median(rng.choices([a for _, a, _ in pairs], k=len(pairs)))
        for _ in range(10_000)
    )
    low, high = boot[int(0.05 * len(boot))], boot[int(0.95 * len(boot)) - 1]
    other_median = statistics.median(b for _, _, b in pairs)
    print(f"rounds: {len(pairs)}")
    print(f"medians: {args.base} {base_median:.3f}, {args.other} {other_median:.3f} "
          f"(ratio {other_median / base_median - 1:+.1%})")
    print(f"median per-round difference: {statistics.median(diffs):+.3f} ({rel:+.1%} of the base median)")
    print(f"{args.other} higher in {higher} of {len(pairs)} rounds (sign test p = {sign_test(higher, len(pairs)):.2f})")
    print(f"bootstrap 90% interval of the relative median difference: {low:+.1%} to {high:+.1%}")


if __name__ == "__main__":
    main()
