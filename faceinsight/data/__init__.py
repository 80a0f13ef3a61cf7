"""Face datasets in their native on-disk formats, behind one :class:`~faceinsight.data.base.FaceDataset` contract."""

from faceinsight.data.registry import DATASETS, detect_kind, load_dataset

__all__ = ["DATASETS", "detect_kind", "load_dataset"]
