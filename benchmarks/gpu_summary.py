#!/usr/bin/env python
"""One table from the JSON files of ``benchmarks/gpu_suite.sh`` (also written as ``summary.md``).

    python benchmarks/gpu_summary.py runs/gpu_suite [--peak-tflops 989]

MFU = counted FLOPs per second / peak: against the nominal dense bf16 peak (``--peak-tflops``)
and against the best matmul throughput measured in the same run (fp32 rows against the fp32
matmul, bf16 rows against the bf16 one). Targets (H100-class): >= 40% MFU for paper-size Prose
in bf16-mixed, >= 1e5 trajectories/s generated for the spectral families and >= 1e4 for the
finite-volume ones.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

SPECTRAL = ("heat", "advection", "wave", "Klein_Gordon", "Sine_Gordon", "kdv", "fplanck", "diff_linearreact_1D")
FINITE_VOLUME = ("burgers", "conservation_sinflux", "conservation_cubicflux", "inviscid_burgers",
                 "inviscid_conservation_sinflux", "inviscid_conservation_cubicflux")


def _load(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def train_rows(data: dict, peak_tflops: float) -> list[list[str]]:
    rows = []
    peaks = (data.get("peak") or {}).get("peak", {})
    best = {dt: max(v.values()) for dt, v in peaks.items() if v}
    for key, runs in data.get("results", {}).items():
        ok = [r for r in runs if "error" not in r]
        if not ok:
            rows.append([key, "-", "-", "-", "-", "-", runs[0].get("error", "failed") if runs else "no run"])
            continue
        ms = statistics.median(r["ms"] for r in ok)
        gflops = statistics.median(r["gflops"] for r in ok)
        dtype = "bfloat16" if "bf16" in ok[0]["variant"] else "float32"
        measured = best.get(dtype)
        mfu_meas = f"{gflops / measured:.1%}" if measured else "-"
        mfu_nom = f"{gflops / (peak_tflops * 1e3):.1%}" if dtype == "bfloat16" else "-"
        rows.append([key, f"{ok[0]['batch']}", f"{ok[0]['batch'] / ms * 1e3:.0f}", f"{ms:.1f}",
                     f"{mfu_nom} / {mfu_meas}", f"{max(r['peak_mb'] for r in ok):.0f}", ""])
    return rows


def meta_rows(data) -> list[list[str]]:
    rows = []
    for sec in data or []:
        if "error" in sec:
            rows.append([f"meta {sec.get('section')}", "-", "-", "-", "-", "-", sec["error"]])
            continue
        for name, row in sec.get("rows", {}).items():
            if "ms" in row:
                ratio = f"{row['ratio']:.2f}x" if "ratio" in row else ""
                rows.append([f"meta {sec['section']}: {name}", "-", "-", f"{row['ms']:.1f}", "-",
                             f"{sec.get('peak_mb', 0):.0f}", ratio])
    return rows


def generate_rows(data) -> list[list[str]]:
    rows = []
    if not data:
        return rows
    for fam, entry in sorted((data.get("families") or {}).items()):
        for variant, res in entry.items():
            if not isinstance(res, dict) or "traj_per_s" not in res or variant == "numpy":
                continue
            rate = res["traj_per_s"]
            target = 1e5 if fam in SPECTRAL else (1e4 if fam in FINITE_VOLUME else None)
            verdict = "" if target is None else ("PASS" if rate >= target else "MISS") + f" (>= {target:.0e}/s)"
            rows.append([f"generate {fam} {variant}", f"{res.get('batch', '-')}", f"{rate:.3g} traj/s", "-", "-",
                         f"{res.get('peak_mb', 0):.0f}", verdict])
    return rows


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder")
    p.add_argument("--peak-tflops", type=float, default=989.0)
    args = p.parse_args(argv)
    folder = Path(args.folder)
    env = (folder / "env.txt").read_text().strip() if (folder / "env.txt").exists() else "environment unknown"
    rows = []
    for name in ("train_prose.json", "train_prose_more.json", "train_operators.json"):
        data = _load(folder / name)
        if data:
            rows += train_rows(data, args.peak_tflops)
    rows += meta_rows(_load(folder / "meta.json"))
    rows += generate_rows(_load(folder / "generate.json"))
    tests = (folder / "gpu_tests.txt").read_text().strip().splitlines() if (folder / "gpu_tests.txt").exists() else []
    verdict = next((ln for ln in reversed(tests) if " passed" in ln or " failed" in ln or "error" in ln), "no result")
    rows.append(["tests -m gpu", "-", "-", "-", "-", "-", verdict.strip("= ")])
    head = ["what", "batch", "samples/s", "ms/step", "MFU nominal / measured", "peak MB", "note"]
    widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
    lines = [env, "", "| " + " | ".join(h.ljust(w) for h, w in zip(head, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |" for r in rows]
    lines.append("")
    lines.append(f"MFU nominal: counted FLOPs/s over {args.peak_tflops:g} TFLOP/s (dense bf16, bf16 rows only); "
                 "measured: over the best matmul of the same dtype in the same run. Target: >= 40% nominal MFU for "
                 "prose_paper bf16.")
    text = "\n".join(lines)
    print(text)
    (folder / "summary.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
