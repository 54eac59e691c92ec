"""minigrad against PyTorch's OpInfo samples: the full per-op table and every failing sample.

    python tools/opinfo_report.py                 # totals, per-op table, failures (first 5 per op)
    python tools/opinfo_report.py --op softmax --failures 0   # only ops whose key contains "softmax", all failures
    python tools/opinfo_report.py --json out.json # every sample's result as JSON

The comparison rules (tolerances, what counts as unsupported) are in tests/minigrad/opinfo_harness.py;
tests/minigrad/test_opinfo.py runs the same code as one pytest test per op and dtype. Needs torch.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.minigrad import opinfo_harness as H  # noqa: E402


def main(argv: list | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--op", default="", help="only ops whose key contains this text")
    ap.add_argument("--dtype", choices=sorted(H.DTYPES), action="append", help="float64 and/or float32 (default both)")
    ap.add_argument("--failures", type=int, default=5, help="failing samples listed per op (0: all, -1: none)")
    ap.add_argument("--json", help="write every sample's result here")
    ap.add_argument("--known-failures", action="store_true",
                    help="print only the KNOWN_FAILURES entries for tests/minigrad/test_opinfo.py")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    matched = [m for m in H.match_ops(H.load_op_db()) if args.op in m.key]
    t_load = time.perf_counter() - t0
    if not args.known_failures:
        print(f"{len(matched)} OpInfos matched (op_db loaded in {t_load:.1f} s):")
        for m in matched:
            print(f"  {m.key:44} {', '.join(f'{v.how}: {v.label}' for v in m.variants)}")
    results = []
    for m in matched:
        for dt in args.dtype or ["float64", "float32"]:
            if dt in H.dtypes_for(m):
                results.append(H.run_op(m, dt))
    t_run = time.perf_counter() - t0 - t_load
    if args.known_failures:
        print(H.known_failures_source(results))
        return 0
    print()
    print("\n".join(H.op_table(results)))
    print()
    print("\n".join(H.totals_table(results)))
    kinds = Counter((r.dtype, s.outcome, s.kind) for r in results for s in r.samples if s.outcome != "pass")
    print("by kind: " + ", ".join(f"{dt} {o}/{k}: {n}" for (dt, o, k), n in sorted(kinds.items())))
    skipped = sum(r.skipped for r in results)
    print(f"samples torch itself refused (dropped): {skipped}; run time {t_run:.1f} s; slowest ops: "
          + ", ".join(f"{r.key}[{r.dtype}] {r.seconds:.2f} s" for r in sorted(results, key=lambda r: -r.seconds)[:5]))
    if args.failures >= 0:
        print()
        for r in results:
            lines = H.failure_lines(r, args.failures or None)
            unsupported = [s for s in r.samples if s.outcome == "unsupported"]
            if lines or unsupported:
                print(f"{r.key} [{r.dtype}]")
                if lines:
                    print("\n".join(lines))
                for detail, n in Counter(f"{s.variant}: {s.detail}" for s in unsupported).most_common():
                    print(f"  unsupported x{n}: {detail}")
    if args.json:
        Path(args.json).write_text(json.dumps([{**dataclasses.asdict(r), "samples": [dataclasses.asdict(s)
                                                for s in r.samples]} for r in results], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
