#!/usr/bin/env python3
"""Where two runs of one QAT cell part ways: compares the per-step loss traces (the
`qat_loss_trace` detail rows) of the same cell in two stores, e.g. one run at 1 thread and one
at 2 (issue 21's thread study).

  scripts/compare_loss_traces.py A.db B.db [--algorithm pact] [--bits w2a2] [--rel 1e-6]

Prints, per cell found in both: the first step whose loss differs by more than `--rel` of its
size (float noise is about 1e-7), the largest difference over the first 10 steps after it, the
final losses and the cells' top-1.
"""
import argparse
import sqlite3
import sys


def traces(db, algorithm, bits):
    con = sqlite3.connect(db)
    q = ("select r.algorithm, r.w_bits, r.a_bits, r.seed, r.top1, d.text from cell_details d "
         "join results r on r.id = d.result_id where d.section = 'qat_loss_trace'")
    out = {}
    for alg, wb, ab, seed, top1, text in con.execute(q):
        label = f"w{wb}a{ab}"
        if (algorithm and alg != algorithm) or (bits and label != bits):
            continue
        out[(alg, label, seed)] = (top1, [float(v) for v in text.split(",")])
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--algorithm")
    ap.add_argument("--bits")
    ap.add_argument("--rel", type=float, default=1e-6)
    args = ap.parse_args()
    ta, tb = traces(args.a, args.algorithm, args.bits), traces(args.b, args.algorithm, args.bits)
    common = sorted(set(ta) & set(tb))
    if not common:
        print("no cell with a loss trace in both stores", file=sys.stderr)
        return 1
    print("| cell | steps | first step that differs | rel. difference there | final loss A / B | top-1 A / B |")
    print("|---|---:|---:|---:|---|---|")
    for key in common:
        (top_a, la), (top_b, lb) = ta[key], tb[key]
        n = min(len(la), len(lb))
        first = next((i for i in range(n) if abs(la[i] - lb[i]) > args.rel * max(abs(la[i]), abs(lb[i]), 1e-30)), None)
        there = "-" if first is None else f"{abs(la[first] - lb[first]) / max(abs(la[first]), 1e-30):.1e}"
        print(f"| {key[0]} {key[1]} seed {key[2]} | {n} | {'none' if first is None else first} | {there} | "
              f"{la[n - 1]:.4f} / {lb[n - 1]:.4f} | {top_a:.2f} / {top_b:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
