"""SynthFace: procedural faces with parsing maps and CelebA-like correlated labels (the default training data)."""

from faceinsight.synthface.dataset import SynthFace
from faceinsight.synthface.render import SynthFaceConfig

__all__ = ["SynthFace", "SynthFaceConfig"]
