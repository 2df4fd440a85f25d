"""A diffractometer's instrument profile: what its peaks look like whatever the sample, kept in a small JSON file.

Labs refine the instrumental resolution once, on a line-profile standard (LaB6, Si) or a well-crystallised
sample, and reuse it for every scan: ``crucible analyse scan.xrdml --instrument aeris.json``. The profile holds the
Caglioti Gaussian width (U, V, W in deg²), the axial-divergence asymmetry ``A`` (``a = A / tan 2θ``), the Kβ
intensity that leaks through the filter relative to Kα1, the zero shift found when it was refined (a start, the
fit refines the zero shift of every scan), and the weight-fraction model error measured on weighed mixtures
scanned on this instrument (``fraction_model_error``: the fit's fraction std gains ``c · sqrt(w (1 − w))`` in
quadrature, what counting statistics cannot know), and the unexplained-intensity share above which phase
identification declares an unknown phase (``unexplained_fraction``, calibrated on fits of the right phases on this
instrument, whose profile misfit leaves some). :func:`refine_instrument_profile` makes one from a scan of known
phases; ``bench/analysis.py --real`` measures the model error.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from analysis.powder_model import CU_KBETA_ANGSTROM, Radiation, ReferencePhase
from instruments.readings import Diffractogram

__all__ = ["InstrumentProfile", "refine_instrument_profile", "SHIPPED_PROFILES"]

SHIPPED_PROFILES = Path(__file__).parent / "instrument_profiles"
_FORMAT = "crucible-instrument-profile/1"


@dataclass(frozen=True)
class InstrumentProfile:
    """The instrumental part of every peak of one diffractometer (see the module's docs)."""

    name: str = "default"
    caglioti_uvw_deg2: tuple[float, float, float] = (0.004, -0.002, 0.002)
    asymmetry: float = 0.0
    kbeta_ratio: float = 0.0
    kbeta_angstrom: float = CU_KBETA_ANGSTROM
    zero_shift_deg: float = 0.0
    fraction_model_error: float = 0.0
    unexplained_fraction: float | None = None
    source: str = ""

    def __post_init__(self) -> None:
        u, v, w = (float(value) for value in self.caglioti_uvw_deg2)
        if not all(math.isfinite(value) for value in (u, v, w, self.asymmetry, self.kbeta_ratio, self.zero_shift_deg)):
            raise ValueError(f"instrument profile {self.name!r}: every number must be finite")
        if not 0.0 <= self.kbeta_ratio < 0.5:
            raise ValueError(
                f"instrument profile {self.name!r}: kbeta_ratio must be in [0, 0.5), got {self.kbeta_ratio}"
            )
        if not 0.0 <= self.fraction_model_error < 1.0:
            raise ValueError(f"instrument profile {self.name!r}: fraction_model_error must be in [0, 1)")
        if abs(self.asymmetry) >= 0.5:
            raise ValueError(f"instrument profile {self.name!r}: |asymmetry| must be below 0.5, got {self.asymmetry}")
        object.__setattr__(self, "caglioti_uvw_deg2", (u, v, w))

    def radiation_for(self, radiation: Radiation) -> Radiation:
        """The scan's radiation with this instrument's Kβ leak added."""
        if self.kbeta_ratio <= 0.0:
            return radiation
        return replace(radiation, wavelength_kbeta_angstrom=self.kbeta_angstrom, kbeta_ratio=self.kbeta_ratio)

    def to_dict(self) -> dict[str, Any]:
        return {"format": _FORMAT, **asdict(self), "caglioti_uvw_deg2": list(self.caglioti_uvw_deg2)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "instrument profile") -> InstrumentProfile:
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            raise ValueError(f"{where}: not a Crucible instrument profile (expected \"format\": \"{_FORMAT}\")")
        fields = {k: v for k, v in data.items() if k != "format"}
        unknown = sorted(set(fields) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"{where}: unknown field(s) {', '.join(unknown)}")
        try:
            uvw = fields.get("caglioti_uvw_deg2", cls.caglioti_uvw_deg2)
            if len(uvw) != 3:
                raise ValueError("caglioti_uvw_deg2 needs three numbers U, V, W")
            fields["caglioti_uvw_deg2"] = tuple(float(value) for value in uvw)
            return cls(**fields)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{where}: {error}") from None

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path_or_name: str | Path) -> InstrumentProfile:
        """A profile from a JSON file, or a shipped one by name (``aeris``)."""
        path = Path(path_or_name)
        if not path.suffix:
            path = SHIPPED_PROFILES / f"{path_or_name}.json"
        if not path.is_file():
            shipped = ", ".join(sorted(p.stem for p in SHIPPED_PROFILES.glob("*.json"))) or "none"
            raise ValueError(f"instrument profile {path_or_name}: no such file (shipped profiles: {shipped})")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"instrument profile {path}: not JSON ({error})") from None
        return cls.from_dict(data, f"instrument profile {path}")


def refine_instrument_profile(
    pattern: Diffractogram, references: Sequence[ReferencePhase], name: str, start: InstrumentProfile | None = None
) -> InstrumentProfile:
    """Refine the Caglioti U and W, the asymmetry and the Kβ leak on a scan whose phases are all in ``references``
    (V is kept at the start's value: with sample broadening also refined, U, V and W together are ill-determined)."""
    from analysis.phase_quantification import FitOptions, quantify_phases

    start = start or InstrumentProfile(name=name, caglioti_uvw_deg2=(0.004, -0.002, 0.02), asymmetry=0.05,
                                       kbeta_ratio=0.005)
    fit = quantify_phases(
        pattern,
        references,
        start.caglioti_uvw_deg2,
        options=FitOptions(refine_instrument=True, asymmetry=start.asymmetry, refine_asymmetry=True,
                           kbeta_ratio=start.kbeta_ratio, max_evaluations=120),
        radiation=start.radiation_for(Radiation(pattern.wavelength_angstrom, pattern.wavelength_ka2_angstrom,
                                                pattern.ka2_ratio)),
    )
    return InstrumentProfile(
        name=name,
        caglioti_uvw_deg2=fit.caglioti_uvw_deg2,
        asymmetry=fit.asymmetry.value,
        kbeta_ratio=fit.kbeta_ratio,
        kbeta_angstrom=start.kbeta_angstrom,
        zero_shift_deg=fit.zero_shift_deg.value,
        source=f"refined on {pattern.sample_id or 'a scan'} with {', '.join(r.name for r in references)}",
    )
