"""SynthFace: procedural faces with parsing maps and CelebA-like correlated labels (the default training data)."""

from faceinsight.data.synthface.dataset import SynthFace
from faceinsight.data.synthface.render import SynthFaceConfig

__all__ = ["SynthFace", "SynthFaceConfig"]
