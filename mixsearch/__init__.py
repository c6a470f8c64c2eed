"""mixsearch: mixed-modality search with modality-gap calibration (GR-CLIP, MixBench)."""

__version__ = "0.1.0"
