"""SynthFace: the procedural face dataset (labels from a CelebA-fitted prior, images rendered lazily)."""

from __future__ import annotations

import math

import numpy as np
import torch

from faceinsight.data.base import FaceDataset, Sample, to_uint8_chw
from faceinsight.data.synthface.labels import CleanLabels, add_label_noise, sample_clean_labels
from faceinsight.data.synthface.prior import load_prior
from faceinsight.data.synthface.render import SynthFaceConfig, render_face
from faceinsight.vocab import SCHEMAS

# Labels are drawn in fixed-size blocks, each from its own stream, so item i's labels
# depend only on (seed, i), not on the dataset's length.
BLOCK = 1024
_LABEL_STREAM, _NOISE_STREAM = 1, 2


class SynthFace(FaceDataset):
    """``num_samples`` procedural faces with parsing maps, CelebA's 40 attributes, age, gender and expression.

    All label vectors are sampled at construction (vectorised, cheap); item ``i`` is rendered on
    demand from the clean labels with the random stream ``default_rng([seed, i])``, so it is the
    same in any access order and any DataLoader worker.
    """

    schema = SCHEMAS["synthface"]
    has_segmaps = True

    def __init__(self, num_samples: int, seed: int = 0, config: SynthFaceConfig | None = None) -> None:
        if num_samples < 0:
            raise ValueError(f"num_samples must be >= 0, got {num_samples}")
        self.num_samples, self.seed = num_samples, seed
        self.config = config or SynthFaceConfig()
        prior, _ = load_prior()
        blocks, noisy, ages = [], [], []
        for b in range(math.ceil(num_samples / BLOCK)):
            n = min(BLOCK, num_samples - b * BLOCK)
            rng = np.random.default_rng([seed, b, _LABEL_STREAM])
            clean = sample_clean_labels(prior.sample(BLOCK, rng), rng)  # always a whole block, then cut
            labels, age = add_label_noise(
                clean, self.config.label_noise, np.random.default_rng([seed, b, _NOISE_STREAM])
            )
            blocks.append(CleanLabels(clean.attributes[:n], clean.age[:n], clean.expression[:n]))
            noisy.append(labels[:n])
            ages.append(age[:n])
        k = len(self.schema.characteristics)
        self.clean = CleanLabels(
            np.concatenate([c.attributes for c in blocks]) if blocks else np.zeros((0, 40), dtype=bool),
            np.concatenate([c.age for c in blocks]) if blocks else np.zeros(0, dtype=np.float32),
            np.concatenate([c.expression for c in blocks]) if blocks else np.zeros(0, dtype=np.int64),
        )
        self._labels = torch.from_numpy(np.concatenate(noisy) if noisy else np.zeros((0, k), dtype=np.float32))
        self._ages = torch.from_numpy(np.concatenate(ages) if ages else np.zeros(0, dtype=np.float32))

    def __len__(self) -> int:
        return self.num_samples

    def render(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Image ``[S, S, 3]`` uint8 and parsing map ``[S, S]`` uint8 of item ``index``."""
        rng = np.random.default_rng([self.seed, index])
        c = self.clean
        return render_face(c.attributes[index], float(c.age[index]), int(c.expression[index]), rng, self.config)

    def __getitem__(self, index: int) -> Sample:
        if not -self.num_samples <= index < self.num_samples:
            raise IndexError(f"index {index} out of range for SynthFace of {self.num_samples} samples")
        index %= self.num_samples
        image, segmap = self.render(index)
        return Sample(
            image=to_uint8_chw(image),
            segmap=torch.from_numpy(segmap.astype(np.int64)),
            labels=self._labels[index].clone(),
            label_mask=torch.ones(self._labels.shape[1], dtype=torch.bool),
            age=self._ages[index].clone(),
            key=self.key(index),
        )

    def key(self, index: int) -> str:
        return f"synthface/{self.seed}/{index}"

    @property
    def keys(self) -> list[str]:
        """Every item's key without rendering it: the caches identify a dataset by its keys."""
        return [self.key(i) for i in range(self.num_samples)]

    def label_matrix(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self._labels.clone(), torch.ones_like(self._labels, dtype=torch.bool)

    def ages(self) -> torch.Tensor:
        return self._ages.clone()
