"""Unlabelled photos for ``faceinsight predict --data.predict_images``: a folder, or a text file listing images.

Nothing is labelled: the schema names the model's characteristics, all masked, so each is predicted and none
evaluated. Images are read upright (EXIF orientation applied: phone photos store it there) and large ones are
downscaled to ``max_side``: face parsers compute maps at the image's own size, and a 12-megapixel photo would cost
gigabytes there for no gain at the model's 64-224 px. The data module's ModelView resizes to the model's size.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from faceinsight.data._io import read_lines, read_rgb
from faceinsight.data.base import DataFormatError, FaceDataset, Sample
from faceinsight.vocab import Schema

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})


class ImageFiles(FaceDataset):
    """Image files without labels, in a stable order.

    Args:
        source: a folder (every file below it with an image extension, hidden files and folders excepted, sorted
            by path) or a UTF-8 text file with one image path per line (relative paths are relative to the list
            file's folder). A listed file that is missing, repeated or undecodable is an error naming the list
            file, its line and the path.
        characteristics: the model's characteristics, the schema's (every label is masked).
        max_side: images with a longer side are downscaled to it (aspect kept) when read.

    ``key`` is the path relative to the folder, or the path as written in the list.
    """

    def __init__(self, source: str | Path, characteristics: Sequence[str] = (), max_side: int = 512) -> None:
        self.source, self.max_side = Path(source), max_side
        self.schema = Schema("images", attributes=tuple(characteristics))
        self._k = len(self.schema.characteristics)
        self.list_file: Path | None = None
        self.lines: list[int] = []  # line of each image in the list file
        if self.source.is_dir():
            self.files = sorted(
                p
                for p in self.source.rglob("*")
                if p.suffix.lower() in IMAGE_EXTENSIONS
                and not any(part.startswith(".") for part in p.relative_to(self.source).parts)  # ._x.jpg, .thumbs/
                and p.is_file()
            )
            self._keys = [p.relative_to(self.source).as_posix() for p in self.files]
        elif self.source.is_file():
            self.list_file = self.source
            self._read_list()
        else:
            raise FileNotFoundError(f"{self.source}: no such folder or image list file")
        if not self.files:
            raise ValueError(f"{self.source}: no images found (extensions {', '.join(sorted(IMAGE_EXTENSIONS))})")
        self._name = f"images-{self._fingerprint()}"

    def _read_list(self) -> None:
        assert self.list_file is not None
        seen: dict[str, int] = {}
        self.files, self._keys = [], []
        for line, text in read_lines(self.list_file):
            path = Path(text) if Path(text).is_absolute() else self.list_file.parent / text
            if text in seen:
                raise DataFormatError(self.list_file, line, f"{text!r} repeats line {seen[text]}")
            if not path.is_file():
                raise DataFormatError(self.list_file, line, f"image file {path} is missing")
            seen[text] = line
            self.files.append(path)
            self._keys.append(text)
            self.lines.append(line)

    def _fingerprint(self) -> str:
        """Hash of every file's absolute path, size and modification time (and ``max_side``): the segmentation-map
        cache keys on the dataset's name, so a folder whose photos change is parsed anew."""
        digest = hashlib.sha256(str(self.max_side).encode())
        for path in self.files:
            stat = path.stat()
            digest.update(f"\n{path.resolve()}\t{stat.st_size}\t{stat.st_mtime_ns}".encode())
        return digest.hexdigest()[:16]

    @property
    def name(self) -> str:
        return self._name

    @property
    def keys(self) -> list[str]:
        return self._keys

    def __len__(self) -> int:
        return len(self.files)

    def read(self, index: int) -> torch.Tensor:
        """Image ``index`` as uint8 ``[3, H, W]``, upright, longer side at most ``max_side``."""
        path = self.files[index]
        try:
            image = read_rgb(path, upright=True)
        except DataFormatError as e:
            if self.list_file is None:
                raise
            raise DataFormatError(self.list_file, self.lines[index], str(e)) from None
        return downscale(image, self.max_side)

    def __getitem__(self, index: int) -> Sample:
        return Sample(
            image=self.read(index),
            labels=torch.zeros(self._k),
            label_mask=torch.zeros(self._k, dtype=torch.bool),
            age=torch.tensor(float("nan")),
            key=self._keys[index],
        )

    def label_matrix(self) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.zeros(len(self), self._k), torch.zeros(len(self), self._k, dtype=torch.bool)


def downscale(image: torch.Tensor, max_side: int) -> torch.Tensor:
    """uint8 ``[3, H, W]`` with its longer side reduced to ``max_side`` (antialiased, aspect kept); smaller as is."""
    h, w = image.shape[-2:]
    if max(h, w) <= max_side:
        return image
    scale = max_side / max(h, w)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    x = F.interpolate(image[None].float(), size=size, mode="bilinear", antialias=True, align_corners=False)
    return x[0].round().clamp(0, 255).to(torch.uint8)
