"""Machine-learned powder-pattern analysis: a PQ-Net-style CNN deep ensemble with calibrated uncertainty."""

from analysis.ml.ensemble import WEIGHTS_DIR, EnsemblePrediction, ModelCard, PowderEnsemble, load_ensemble
from analysis.ml.network import NetworkOutput, PatternCNN
from analysis.ml.preprocess import PatternGrid, network_input, rebin

__all__ = [
    "WEIGHTS_DIR",
    "EnsemblePrediction",
    "ModelCard",
    "NetworkOutput",
    "PatternCNN",
    "PatternGrid",
    "PowderEnsemble",
    "load_ensemble",
    "network_input",
    "rebin",
]
