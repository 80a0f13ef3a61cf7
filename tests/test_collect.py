import torch

from faceinsight.eval.collect import collect


def test_collect_concatenates_outputs_and_labels_in_face_order_across_batches():
    """Five faces in batches of two: each output and the labels, boolean mask and ages come back in the faces'
    order, as one tensor each."""
    faces = [
        {"image": torch.full((3,), float(i)), "labels": torch.tensor([i % 2, 1.0]),
         "label_mask": torch.tensor([1, i % 3]), "age": torch.tensor(20.0 + i)}
        for i in range(5)
    ]  # fmt: skip
    out = collect(faces, lambda batch: {"double": batch["image"].sum(1) * 2}, "test", batch_size=2)
    assert set(out) == {"double", "labels", "mask", "ages"}
    torch.testing.assert_close(out["double"], torch.tensor([0.0, 6, 12, 18, 24]))
    torch.testing.assert_close(out["labels"], torch.stack([f["labels"] for f in faces]))
    assert out["mask"].dtype == torch.bool and out["mask"].tolist() == [[True, i % 3 > 0] for i in range(5)]
    torch.testing.assert_close(out["ages"], torch.arange(20.0, 25.0))
