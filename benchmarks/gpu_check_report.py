"""The markdown body of gpu_check.sh's report, from the junit XML and benchmark JSON it wrote.

    python benchmarks/gpu_check_report.py OUTDIR STEP=RC,SECONDS ...   (steps: tests, api, bench)

Reads OUTDIR/<step>.xml (junit; the benchmarks: bench-<file>.xml), OUTDIR/bench-<file>.json,
OUTDIR/<step>.log (each may be missing: a
step that timed out or crashed) and prints: pass/fail/skip counts of every step, one table per benchmark group (median time, GFLOP/s or GB/s, ratio to the fastest
of the group), then each failure's message tail. Standard library only.
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

TAIL = 25  # lines of each failure's traceback


def junit_counts(paths):
    """(counts, failures [(name, text)]) over pytest junit files, or (None, []) when none exists."""
    paths = [p for p in paths if p.exists()]
    if not paths:
        return None, []
    cases = []
    for path in paths:
        try:
            cases += list(ET.parse(path).getroot().iter("testcase"))
        except ET.ParseError as e:
            return {"error": f"unreadable junit file {path.name} ({e})"}, []
    counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
    failures = []
    for case in cases:
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        bad = case.find("failure")
        if bad is None:
            bad = case.find("error")
        if bad is not None:
            counts["failed" if bad.tag == "failure" else "errors"] += 1
            text = (bad.get("message") or "") + "\n" + (bad.text or "")
            failures.append((name, "\n".join(text.strip().splitlines()[-TAIL:])))
        elif case.find("skipped") is not None:
            counts["skipped"] += 1
        else:
            counts["passed"] += 1
    return counts, failures


def log_tail(path: Path, n=15) -> str:
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-n:])


def fmt_rate(extra: dict) -> str:
    for unit in ("GFLOP/s", "GB/s"):
        if unit in extra:
            v = float(extra[unit])
            return f"{v:,.0f} {unit}" if v >= 100 else f"{v:.3g} {unit}"
    return ""


def bench_tables(paths) -> list[str]:
    groups: dict[str, list] = {}
    notes = []
    for path in paths:
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            notes.append(f"(unreadable benchmark JSON {path.name}: {e})")
            continue
        for b in data.get("benchmarks", []):
            groups.setdefault(b.get("group") or b["name"], []).append(b)
    if not paths:
        return ["(no benchmark JSON: the benchmark step did not finish)"]
    out = []
    for group in sorted(groups):
        rows = groups[group]
        best = min(r["stats"]["median"] for r in rows)
        out += [f"### {group}", "", "| case | median | rate | vs fastest |", "| --- | ---: | ---: | ---: |"]
        for r in sorted(rows, key=lambda r: r["stats"]["median"]):
            med = r["stats"]["median"]
            extra = dict(r.get("extra_info") or {})
            # timed() helpers record from the mean; recompute from the median for the table
            if "flops" in extra:
                extra["GFLOP/s"] = extra["flops"] / med / 1e9
            elif "bytes" in extra:
                extra["GB/s"] = extra["bytes"] / med / 1e9
            out.append(f"| {r['name'].split('[', 1)[-1].rstrip(']')} | {med * 1e3:.3f} ms | "
                       f"{fmt_rate(extra)} | {med / best:.2f}x |")
        out.append("")
    return notes + (out or ["(no benchmarks ran)"])


LABELS = {"tests": "GPU tests (pytest -m gpu)", "api": "tests/test_api.py (stubs vs the built _cuda)",
          "bench": "GPU benchmarks (pytest -m gpu, one run per bench_*.py)"}


def main(outdir: str, *steps: str) -> None:
    d = Path(outdir)
    runs = []
    for spec in steps:
        name, _, rest = spec.partition("=")
        rc, _, secs = rest.partition(",")
        files = sorted(d.glob("bench-*.xml")) if name == "bench" else [d / f"{name}.xml"]
        counts, fails = junit_counts(files)
        runs.append((name, rc, secs, counts, fails))
    timed_out = {"124", "137"}
    ok = all(rc == "0" for _, rc, _, _, _ in runs)
    lines = ["", f"## Result: {'PASS' if ok else 'FAIL'}", ""]
    for name, rc, secs, counts, _ in runs:
        what = LABELS.get(name, name)
        note = " (TIMED OUT)" if rc in timed_out else ""
        if counts is None:
            lines.append(f"- {what}: no results (exit {rc}{note}, {secs} s)")
        elif "error" in counts:
            lines.append(f"- {what}: {counts['error']} (exit {rc}{note})")
        else:
            lines.append(f"- {what}: {counts['passed']} passed, {counts['failed']} failed, "
                         f"{counts['errors']} errors, {counts['skipped']} skipped "
                         f"(exit {rc}{note}, {secs} s)")
            if name == "tests" and counts["passed"] == 0 and counts["failed"] == 0:
                lines.append("- WARNING: no GPU test ran (is CuPy importable? see tests.log)")
    lines += ["", "## Benchmarks", ""] + bench_tables(sorted(d.glob("bench-*.json")))
    failures = [f for run in runs for f in run[4]]
    if failures:
        lines += ["## Failures", ""]
        for name, text in failures:
            lines += [f"### {name}", "", "```", text, "```", ""]
    for name, rc, _, _, _ in runs:
        if rc != "0":
            lines += [f"## Tail of {name}.log (exit {rc})", "", "```", log_tail(d / f"{name}.log"),
                      "```", ""]
    print("\n".join(lines))


if __name__ == "__main__":
    main(*sys.argv[1:])
