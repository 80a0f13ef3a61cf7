"""FaceInsight: a multimodal LLM for face perception (Li et al., 2025)."""

__version__ = "0.1.0"
