"""One LLM pass for all K characteristics gives the same answers as one pass per characteristic question."""

import pytest
import torch

import faceinsight.model.faceinsight as model_module
from faceinsight.model.encoders import ImageEncoderConfig, SegEncoderConfig
from faceinsight.model.faceinsight import FaceInsight, FaceInsightConfig
from faceinsight.vocab import SCHEMAS

NAMES = list(SCHEMAS["synthface"].characteristics)
# Observed: 4e-7 in float32; 0 in float64 (the final Yes-minus-No product is float32 in both).
TOLERANCE = {torch.float32: dict(rtol=1e-5, atol=5e-6), torch.float64: dict(rtol=0.0, atol=1e-6)}


def tiny_model(dtype: torch.dtype = torch.float32, use_seg: bool = True) -> FaceInsight:
    """The default tiny architecture at 32 px, with co-occurrence statistics so the GCN mixes characteristics."""
    clip = dict(image_size=32, patch_size=8, hidden_size=64, intermediate_size=128,
                num_hidden_layers=2, num_attention_heads=2)  # fmt: skip
    config = FaceInsightConfig(
        image_encoder=ImageEncoderConfig(arch=clip),
        seg_encoder=SegEncoderConfig(arch=dict(img_size=32, patch_size=8, embed_dim=48, depth=2, num_heads=2)),
        use_seg=use_seg,
    )
    model = FaceInsight(config, NAMES).eval()
    labels = (torch.rand(200, len(NAMES)) > 0.6).float()
    model.stats.update(labels, torch.ones_like(labels, dtype=torch.bool))
    return model.to(dtype)


@pytest.fixture(scope="module")
def model() -> FaceInsight:
    torch.manual_seed(0)
    return tiny_model()


def inputs(batch: int = 3, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.rand(batch, 3, 32, 32, dtype=dtype), torch.randint(0, 19, (batch, 32, 32))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_one_pass_equals_one_pass_per_characteristic(model, dtype):
    m = model if dtype == torch.float32 else tiny_model(dtype)
    image, segmap = inputs(dtype=dtype)
    with torch.inference_mode():
        one_pass = m(image, segmap)
        per_question = m.forward_per_characteristic(image, segmap)
    assert per_question.shape == one_pass.shape == (3, len(NAMES))
    torch.testing.assert_close(per_question, one_pass, **TOLERANCE[dtype])
    torch.testing.assert_close(torch.sigmoid(per_question), torch.sigmoid(one_pass), **TOLERANCE[dtype])


@pytest.mark.parametrize("batch_size", [1, 7, 1000])
def test_chunked_questions_give_the_same_logits(model, batch_size):
    """Chunks that split an image's K questions (7 does not divide K) or hold all B*K change nothing."""
    image, segmap = inputs()
    with torch.inference_mode():
        whole = model.forward_per_characteristic(image, segmap)
        chunked = model.forward_per_characteristic(image, segmap, batch_size=batch_size)
    torch.testing.assert_close(chunked, whole, **TOLERANCE[torch.float32])


def test_without_segmentation():
    m = tiny_model(use_seg=False)
    image, _ = inputs(batch=2)
    with torch.inference_mode():
        torch.testing.assert_close(m.forward_per_characteristic(image, batch_size=5), m(image))


def test_characteristics_that_saw_each_other_would_disagree(model, monkeypatch):
    """A full causal mask (characteristic k sees 0..k-1) breaks the equality: the check above is sensitive to it."""

    def causal(prefix: int, k: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        blocked = torch.ones(prefix + k, prefix + k, dtype=torch.bool, device=device).triu(1)
        return torch.zeros(prefix + k, prefix + k, dtype=dtype, device=device).masked_fill(
            blocked, torch.finfo(dtype).min
        )[None, None]

    image, segmap = inputs()
    with torch.inference_mode():
        per_question = model.forward_per_characteristic(image, segmap)
        monkeypatch.setattr(model_module, "characteristic_attention_mask", causal)
        leaky = model(image, segmap)
    # The first characteristic sees only the prefix under both masks; (nearly) every later one now disagrees.
    mismatch = ~torch.isclose(leaky, per_question, **TOLERANCE[torch.float32])
    assert not mismatch[:, 0].any()
    assert mismatch[:, 1:].float().mean() > 0.9
