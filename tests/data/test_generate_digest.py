"""Generated data stay the same for a seed: a tiny ``generate`` run (operator families with the numpy and
the torch solvers, multi-level initial conditions, two map families at two levels) against the digests
in ``tests/data/fixtures/generate_digests.json``.

Recorded with the code before issue 23 moved the store, the grid transfer and the parameter vocabulary
(``python -m tests.data.test_generate_digest --record``). Every dataset is compared by the SHA-256 of its
bytes (timings and the command line excepted); the identity attributes by one digest. Floating-point
results can depend on the CPU's vector unit: on a machine whose torch CPU capability differs from the
recording machine's, the torch files are compared by their sums (to 1e-5) instead. Re-record only for an
intended change of the data, and say so in the commit.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

FIXTURE = Path(__file__).parent / "fixtures" / "generate_digests.json"
SKIP_DATA = {"solve_seconds"}  # measured wall times
SKIP_ATTRS = {"command", "seconds_per_sample"}


def _digest_file(path: Path) -> dict:
    import h5py

    out = {}
    with h5py.File(path, "r") as f:
        for name in sorted(f):
            if name in SKIP_DATA:
                continue
            a = f[name][()]
            h = hashlib.sha256(f"{a.dtype}{a.shape}".encode())
            h.update(np.ascontiguousarray(a).tobytes())
            out[name] = h.hexdigest()[:16]
            if a.dtype.kind == "f":
                out[name + ":sum"] = float(np.asarray(a, dtype=np.float64).sum())
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items() if k not in SKIP_ATTRS}
        out["attrs"] = hashlib.sha256(repr(sorted((k, str(v)) for k, v in attrs.items())).encode()).hexdigest()[:16]
    return out


def _digests(root: Path) -> dict:
    return {str(p.relative_to(root)): _digest_file(p) for p in sorted(root.rglob("*.h5"))}


def tiny_generate(tmp: Path) -> dict:
    """Digests of every file of the tiny runs, per run."""
    from lemon_pl.data.generate import generate
    from lemon_pl.multilevel.generate import generate_maps, map_specs

    out = {}
    for solver in ("numpy", "torch"):
        generate(tmp / solver, "tiny", ["heat", "kdv", "inviscid_burgers", "diff_bistablereact_1D", "porous_medium"],
                 splits=("train", "val"), n_operators=2, k=3, nx=32, nt=8, seed=7, progress=False, solver=solver)
        generate(tmp / f"{solver}_levels", "tiny", ["heat", "inviscid_burgers"], splits=("train",), n_operators=2, k=3,
                 nx=16, nt=4, seed=7, progress=False, solver=solver, ic_nx=32, restriction="spectral")
        out[solver] = _digests(tmp / solver)
        out[f"{solver}_levels"] = _digests(tmp / f"{solver}_levels")
    for n in (16, 32):
        specs = [s for fam in ("schrodinger", "rough_elliptic")
                 for s in map_specs(fam, "tiny", ["train", "val"], n, 32, 7, n_samples=8)]
        generate_maps(tmp / "maps" / f"n{n}", specs, progress=False)
    out["maps"] = _digests(tmp / "maps")
    return out


def _capability() -> str:
    import torch

    return str(torch.backends.cpu.get_cpu_capability())


def test_a_tiny_generate_run_gives_the_recorded_files(tmp_path):
    want = json.loads(FIXTURE.read_text())
    got = tiny_generate(tmp_path)
    same_cpu = want["cpu_capability"] == _capability()
    assert set(got) == set(want["runs"])
    for run, files in want["runs"].items():
        assert set(got[run]) == set(files), run
        for name, digests in files.items():
            for key, value in digests.items():
                if key.endswith(":sum"):
                    assert got[run][name][key] == pytest.approx(value, rel=1e-5, abs=1e-8), (run, name, key)
                elif same_cpu or not run.startswith("torch") or key == "attrs":
                    assert got[run][name][key] == value, (run, name, key)


if __name__ == "__main__" and "--record" in sys.argv:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        runs = tiny_generate(Path(tmp))
    FIXTURE.parent.mkdir(exist_ok=True)
    FIXTURE.write_text(json.dumps({"cpu_capability": _capability(), "runs": runs}, indent=1, sort_keys=True) + "\n")
    print(f"recorded {FIXTURE}")
