"""Benchmark of the simulated lab: simulated readings per second for each technique, side by side.

Run: ``python bench/sim_lab.py [--seconds S]``. Each row times one verb repeatedly for about ``S`` seconds
(after one warm-up call, so caches are filled the way a campaign fills them) and prints readings per second, the
median time per reading and the ratio to the powder-XRD row measured in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

# This file is bench/sim_lab.py: keep its own directory off the path so that ``sim_lab`` is the package.
_ROOT = str(Path(__file__).resolve().parents[1])
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import numpy as np  # noqa: E402

from sim_lab import phases  # noqa: E402
from sim_lab.pdf import PDFDiffractometer  # noqa: E402
from sim_lab.saxs import CoreShellSphere, Cylinder, ParticlesInSample, SAXSCamera, Sphere  # noqa: E402
from sim_lab.scenarios import get_scenario  # noqa: E402
from sim_lab.xas import XasSpectrometer  # noqa: E402
from sim_lab.xrd import PhaseInSample, PowderDiffractometer  # noqa: E402


def timed(call: Callable[[], object], seconds: float) -> list[float]:
    call()  # warm-up: fills reflection, pair-histogram and transform caches
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(times) < 3:
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.5, help="time spent on each row")
    args = parser.parse_args()
    rng = np.random.default_rng(0)

    xrd = PowderDiffractometer()
    tio2 = get_scenario("tio2_calcination").truth(
        {"anneal_temperature_c": 700.0, "anneal_time_h": 2.0, "dopant_fraction": 0.05}
    )
    catalyst = get_scenario("ceria_zirconia_catalyst").truth(
        {"zr_fraction": 0.2, "ni_loading_wt": 10.0, "pd_loading_wt": 2.0, "calcination_temperature_c": 600.0}
    )
    counter = iter(range(10**9))

    def xrd_new_cell() -> object:  # a new dopant level each call: pymatgen recomputes the reflections
        x = 1e-4 * next(counter)
        cell = phases.anatase_cell(x % 0.1)
        phase = PhaseInSample("anatase", phases.anatase(cell.a_angstrom, cell.c_angstrom), 1.0, 20.0, 5e-4)
        return xrd.measure([phase], 1.0, rng)

    camera = SAXSCamera()
    sphere = [ParticlesInSample(Sphere(40.0, 0.15, 52.0, 8.0), 0.002)]
    core_shell = [ParticlesInSample(CoreShellSphere(30.0, 10.0, 0.15, 52.0, 28.0, 8.0), 0.002)]
    rods = [ParticlesInSample(Cylinder(20.0, 150.0, 0.1, 0.1, 52.0, 8.0), 0.002)]
    pdf = PDFDiffractometer()
    ceria = [PhaseInSample("ceria", phases.fluorite(), 1.0, 5.0)]
    xas = XasSpectrometer()

    rows: list[tuple[str, str, Callable[[], object]]] = [
        ("xrd", "TiO2 anatase+rutile, 3501 steps, Kα1/Kα2", lambda: xrd.measure(tio2.phases, 1.0, rng)),
        ("xrd", "5-phase catalyst, 3501 steps", lambda: xrd.measure(catalyst.phases, 1.0, rng)),
        ("xrd", "anatase at a new cell every call (uncached)", xrd_new_cell),
        ("saxs", "Schulz spheres, 200 q", lambda: camera.measure(sphere, 10.0, rng)),
        ("saxs", "Schulz core-shell spheres, 200 q", lambda: camera.measure(core_shell, 10.0, rng)),
        ("saxs", "Schulz cylinders (radius and length), 200 q", lambda: camera.measure(rods, 10.0, rng)),
        ("pdf", "5 nm CeO2, Qmax 25, 2901 r", lambda: pdf.measure(ceria, 60.0, rng)),
        ("xas", "Ce L3 XANES, 401 energies", lambda: xas.measure("Ce_L3", {"Ce3+": 0.2, "Ce4+": 0.8}, 1.0, rng)),
    ]
    results = [(technique, what, timed(call, args.seconds)) for technique, what, call in rows]
    reference = statistics.median(results[0][2])
    print(f"{'technique':<10} {'reading':<46} {'per s':>9} {'median ms':>10} {'vs xrd':>8}")
    for technique, what, times in results:
        median = statistics.median(times)
        print(f"{technique:<10} {what:<46} {1.0 / median:9.1f} {1e3 * median:10.2f} {reference / median:8.2f}")


if __name__ == "__main__":
    main()
