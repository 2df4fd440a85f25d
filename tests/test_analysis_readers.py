"""Pattern files as labs write them: .xy/.xye, CSV and Panalytical .xrdml, with the radiation from the file or given."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agents.analysis_agents import XRDNetworkAgent, analyse_file
from analysis.powder_model import Radiation
from analysis.readers import ANODES, PatternFileError, parse_radiation, read_pattern
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
