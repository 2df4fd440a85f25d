"""Pattern files as labs write them: .xy/.xye, CSV and Panalytical .xrdml, with the radiation from the file or given."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest

from agents.analysis_agents import XRDNetworkAgent, analyse_file
from analysis.powder_model import Radiation
from analysis.readers import ANODES, MIN_POINTS_TO_ANALYSE, PatternFileError, parse_radiation, read_pattern
from sim_lab.datasets import measured_set

XRDML = """<?xml version="1.0" encoding="UTF-8"?>
<xrdMeasurements xmlns="http://www.xrdml.com/XRDMeasurement/1.5" status="Completed">
  <sample type="To be analyzed"><id>TiO2-17</id></sample>
  <xrdMeasurement measurementType="Scan" status="Completed">
    <usedWavelength intended="K-Alpha">
      <kAlpha1 unit="Angstrom">1.5405980</kAlpha1>
      <kAlpha2 unit="Angstrom">1.5444260</kAlpha2>
      <kBeta unit="Angstrom">1.3922500</kBeta>
      <ratioKAlpha2KAlpha1>0.5000</ratioKAlpha2KAlpha1>
    </usedWavelength>
    <scan appendNumber="0" mode="Continuous" scanAxis="Gonio" status="Completed">
      <dataPoints>
        <positions axis="2Theta" unit="deg">
          <startPosition>20.00</startPosition>
          <endPosition>20.08</endPosition>
        </positions>
        <positions axis="Omega" unit="deg">
          <startPosition>10.00</startPosition>
          <endPosition>10.04</endPosition>
        </positions>
        <commonCountingTime unit="seconds">2.50</commonCountingTime>
        <intensities unit="counts">101 140 260 150 99</intensities>
      </dataPoints>
    </scan>
  </xrdMeasurement>
</xrdMeasurements>
"""


def test_xy_with_wavelengths_in_a_comment(tmp_path: Path) -> None:
    path = tmp_path / "scan.xy"
    path.write_text("# Bruker export\n# wavelength: 1.54056 1.54439 0.5\n20.0 100\n20.02 120\n20.04 90\n")
    pattern = read_pattern(path)
    np.testing.assert_allclose(pattern.two_theta_deg, [20.0, 20.02, 20.04])
    np.testing.assert_allclose(pattern.counts, [100, 120, 90])
    assert (pattern.wavelength_angstrom, pattern.wavelength_ka2_angstrom, pattern.ka2_ratio) == (1.54056, 1.54439, 0.5)
    assert pattern.sample_id == "scan"


def test_xye_with_anode_and_third_column(tmp_path: Path) -> None:
    path = tmp_path / "scan.xye"
    path.write_text("' Anode: Co\n30.00 400 20\n30.05 441 21\n")
    pattern = read_pattern(path)
    assert pattern.wavelength_angstrom == ANODES["Co"].wavelength_angstrom
    assert pattern.wavelength_ka2_angstrom == ANODES["Co"].wavelength_ka2_angstrom
    np.testing.assert_allclose(pattern.counts, [400, 441])


def test_csv_columns_found_by_header_and_radiation_given(tmp_path: Path) -> None:
    path = tmp_path / "scan.csv"
    path.write_text("index,intensity,two_theta\n0,5,10.5\n1,7,10.0\n")
    pattern = read_pattern(path, radiation="Mo-Ka1")
    np.testing.assert_allclose(pattern.two_theta_deg, [10.0, 10.5])  # sorted by angle
    np.testing.assert_allclose(pattern.counts, [7, 5])
    assert pattern.wavelength_angstrom == ANODES["Mo"].wavelength_angstrom
    assert pattern.wavelength_ka2_angstrom is None


def test_xrdml_radiation_positions_and_counting_time(tmp_path: Path) -> None:
    path = tmp_path / "scan.xrdml"
    path.write_text(XRDML)
    pattern = read_pattern(path)
    np.testing.assert_allclose(pattern.two_theta_deg, [20.0, 20.02, 20.04, 20.06, 20.08])
    np.testing.assert_allclose(pattern.counts, [101, 140, 260, 150, 99])
    assert (pattern.wavelength_angstrom, pattern.wavelength_ka2_angstrom, pattern.ka2_ratio) == (1.540598, 1.544426,
                                                                                                 0.5)
    assert pattern.counting_time_s == 2.5
    override = read_pattern(path, radiation=Radiation(1.5406))
    assert override.wavelength_ka2_angstrom is None


# Real PANalytical Aeris scans (Cu, Ni Kβ filter, no monochromator): read in place, never copied into the repo.
REAL_XRD = Path(os.environ.get("CRUCIBLE_REAL_XRD") or Path(__file__).resolve().parents[2] / "shared" / "real_xrd")


def _aeris_like(beam_paths: str = "", comment: str = "") -> str:
    """The synthetic .xrdml above as an Aeris writes it (``intended="K-Alpha 1"`` over both lines, ratio 0.498 to
    tell the file's ratio from the default), with optics after ``usedWavelength`` and a comment entry."""
    text = XRDML.replace('intended="K-Alpha"', 'intended="K-Alpha 1"').replace("0.5000<", "0.4980<")
    text = text.replace("</usedWavelength>", f"</usedWavelength>{beam_paths}")
    return text.replace("<sample ", f"<comment><entry>{comment}</entry></comment><sample ") if comment else text


NI_FILTER = """<incidentBeamPath><xRayTube name="Cu LFF"><anodeMaterial>Cu</anodeMaterial></xRayTube></incidentBeamPath>
<diffractedBeamPath><filter id="20030001" name="Large beta-filter Nickel"><material>Ni</material>
<thickness unit="mm">0.020</thickness></filter></diffractedBeamPath>"""


def test_xrdml_intended_kalpha1_still_has_kalpha2_and_names_the_kbeta_filter(tmp_path: Path) -> None:
    """PANalytical writes intended="K-Alpha 1" on scans that hold Kα1 and Kα2: both lines, at the file's ratio."""
    path = tmp_path / "aeris.xrdml"
    path.write_text(_aeris_like(NI_FILTER, comment="Cu Kα1 + Kα2 not stripped"))
    pattern = read_pattern(path)
    assert (pattern.wavelength_angstrom, pattern.wavelength_ka2_angstrom, pattern.ka2_ratio) == (1.540598, 1.544426,
                                                                                                 0.498)
    assert pattern.metadata["kbeta_filter"] == "Ni"
    assert pattern.metadata["kbeta_filter_thickness_mm"] == 0.02
    assert pattern.metadata["kbeta_wavelength_angstrom"] == 1.39225
    assert "kalpha1_only" not in pattern.metadata
    assert type(pattern).from_dict(pattern.as_dict()).metadata == pattern.metadata  # JSON-safe, wire format as before
    bare = tmp_path / "bare.xrdml"  # no optics named: both lines, no filter claimed
    bare.write_text(_aeris_like())
    assert read_pattern(bare).wavelength_ka2_angstrom == 1.544426
    assert "kbeta_filter" not in read_pattern(bare).metadata


@pytest.mark.parametrize("beam_paths, comment", [
    ('<incidentBeamPath><monochromator name="Incident beam monochromator"><crystal>Ge (111) Johansson</crystal>'
     "</monochromator></incidentBeamPath>", ""),
    ('<incidentBeamPath><monochromator name="Hybrid monochromator 2xGe(220)"/></incidentBeamPath>', ""),
    ('<diffractedBeamPath><monochromator name="Kα1 monochromator"/></diffractedBeamPath>', ""),
    ("", "K-Alpha2 stripped (Rachinger)"),
])
def test_xrdml_kalpha1_only_when_the_file_says_so(tmp_path: Path, beam_paths: str, comment: str) -> None:
    path = tmp_path / "ka1.xrdml"
    path.write_text(_aeris_like(beam_paths, comment))
    pattern = read_pattern(path)
    assert pattern.wavelength_angstrom == 1.540598
    assert pattern.wavelength_ka2_angstrom is None
    assert pattern.metadata["kalpha1_only"]


def test_xrdml_diffracted_beam_graphite_monochromator_keeps_kalpha2(tmp_path: Path) -> None:
    path = tmp_path / "graphite.xrdml"
    path.write_text(_aeris_like('<diffractedBeamPath><monochromator name="Diffracted beam monochromator">'
                                "<crystal>Graphite</crystal></monochromator></diffractedBeamPath>"))
    pattern = read_pattern(path)
    assert pattern.wavelength_ka2_angstrom == 1.544426
    assert "Graphite" in pattern.metadata["monochromator"]


@pytest.mark.skipif(not REAL_XRD.is_dir(), reason=f"real XRD scans not present at {REAL_XRD}")
def test_real_aeris_xrdml_scans() -> None:
    """Every real scan: Cu Kα1 + Kα2 at the file's ratio (0.5), Ni Kβ filter, 10-100° on the stated grid."""
    files = sorted((REAL_XRD / "scans").glob("*.xrdml"))
    assert len(files) == 12
    for path in files:
        pattern = read_pattern(path, min_points=MIN_POINTS_TO_ANALYSE)
        ratio = float(re.search(r"<ratioKAlpha2KAlpha1>([^<]+)<", path.read_text(encoding="utf-8-sig")).group(1))
        assert pattern.wavelength_angstrom == pytest.approx(1.5406, abs=1e-4), path.name
        assert pattern.wavelength_ka2_angstrom == pytest.approx(1.5444, abs=1e-4), path.name
        assert pattern.ka2_ratio == ratio == 0.5
        assert pattern.metadata["kbeta_filter"] == "Ni"
        assert pattern.metadata["anode"] == "Cu"
        assert "kalpha1_only" not in pattern.metadata
        assert pattern.sample_id == path.stem
        expected = 8282 if path.stem.endswith("--8min") else 2071
        assert pattern.two_theta_deg.size == pattern.counts.size == expected
        assert 10.0 <= pattern.two_theta_deg[0] < 10.03 and 99.99 < pattern.two_theta_deg[-1] <= 100.0
        np.testing.assert_allclose(np.diff(pattern.two_theta_deg), 0.0109 if expected == 8282 else 0.0435, rtol=0.01)
        assert pattern.counts.min() >= 0 and pattern.counts.max() > 1000


def test_missing_radiation_and_bad_files_are_named(tmp_path: Path) -> None:
    path = tmp_path / "bare.xy"
    path.write_text("20.0 100\n20.02 120\n")
    with pytest.raises(PatternFileError, match="bare.xy: the file does not state its radiation"):
        read_pattern(path)
    (tmp_path / "words.xy").write_text("# nothing here\n")
    with pytest.raises(PatternFileError, match="no numeric rows"):
        read_pattern(tmp_path / "words.xy", radiation="Cu")
    with pytest.raises(PatternFileError, match="no such file"):
        read_pattern(tmp_path / "absent.xrdml")


def test_parse_radiation_forms() -> None:
    assert parse_radiation("Cu") == ANODES["Cu"]
    assert parse_radiation("cu-ka1") == Radiation(ANODES["Cu"].wavelength_angstrom)
    assert parse_radiation("1.5406") == Radiation(1.5406)
    assert parse_radiation("1.5406,1.5444,0.48") == Radiation(1.5406, 1.5444, 0.48)
    with pytest.raises(ValueError, match="anode"):
        parse_radiation("tungsten")


def test_file_round_trip_into_the_network_agent(tmp_path: Path) -> None:
    sample = measured_set("tio2_calcination", 1, seed=77)[0]
    path = tmp_path / "sim.xy"
    lines = [f"{x:.4f} {y:.0f}" for x, y in zip(sample.pattern.two_theta_deg, sample.pattern.counts, strict=True)]
    path.write_text("\n".join(lines) + "\n")
    pattern = read_pattern(path, radiation="Cu")
    np.testing.assert_allclose(pattern.counts, sample.pattern.counts)
    report = XRDNetworkAgent("tio2_calcination").analyse(pattern)
    assert report.quantities["anatase_fraction"].value == pytest.approx(sample.quantities["anatase_fraction"],
                                                                         abs=0.05)


def test_analyse_file_with_each_analysis(tmp_path: Path) -> None:
    """What ``crucible analyse FILE`` runs: read, then the whole-pattern fit, the network or identification."""
    sample = measured_set("tio2_calcination", 1, seed=78)[0]
    path = tmp_path / "sim.xy"
    path.write_text("# anode: Cu\n" + "\n".join(
        f"{x:.4f} {y:.0f}" for x, y in zip(sample.pattern.two_theta_deg, sample.pattern.counts, strict=True)))
    true = sample.quantities["rutile_fraction"]
    for analysis, tolerance in (("fit", 0.02), ("network", 0.05)):
        report = analyse_file(path, analysis)
        assert report.quantities["rutile_fraction"].value == pytest.approx(true, abs=tolerance), analysis
    with pytest.raises(ValueError, match="unknown analysis"):
        analyse_file(path, "guess")
