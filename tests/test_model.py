import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from faceinsight.eval.attention import attention_shares, prefix_segments
from faceinsight.eval.gradients import gradient_participation_ratio
from faceinsight.eval.hooks import caught_outputs
from faceinsight.model.encoders import ImageEncoder, ImageEncoderConfig, LLMConfig, build_llm, resolve_pretrained
from faceinsight.model.faceinsight import FaceInsight, FaceInsightConfig, characteristic_attention_mask
from faceinsight.vocab import SCHEMAS

NAMES = list(SCHEMAS["synthface"].characteristics)


@pytest.fixture(scope="module")
def model() -> FaceInsight:
    torch.manual_seed(0)
    m = FaceInsight(FaceInsightConfig(), NAMES).eval()
    labels = (torch.rand(200, len(NAMES)) > 0.6).float()
    m.stats.update(labels, torch.ones_like(labels, dtype=torch.bool))
    return m


def permuted(model: FaceInsight, perm: torch.Tensor) -> FaceInsight:
    """The same model with its characteristics listed in another order."""
    other = copy.deepcopy(model)
    other.characteristics = [model.characteristics[i] for i in perm]
    other.prompt_embeddings.copy_(model.prompt_embeddings[perm])
    for name in ("m", "n", "known"):
        getattr(other.stats, name).copy_(getattr(model.stats, name)[perm][:, perm])
    return other


def test_attention_mask_structure():
    mask = characteristic_attention_mask(3, 2, torch.float32, torch.device("cpu"))[0, 0]
    allowed = mask == 0
    expected = torch.tensor(
        [
            [1, 0, 0, 0, 0],
            [1, 1, 0, 0, 0],
            [1, 1, 1, 0, 0],
            [1, 1, 1, 1, 0],  # characteristic 1: prefix and itself
            [1, 1, 1, 0, 1],  # characteristic 2: prefix and itself, not characteristic 1
        ],
        dtype=torch.bool,
    )
    assert torch.equal(allowed, expected)


def test_permuting_characteristics_permutes_probabilities(model):
    image, segmap = torch.rand(3, 3, 64, 64), torch.randint(0, 19, (3, 64, 64))
    perm = torch.randperm(len(NAMES))
    with torch.no_grad():
        logits = model(image, segmap)
        logits_perm = permuted(model, perm)(image, segmap)
    torch.testing.assert_close(logits_perm, logits[:, perm], rtol=1e-4, atol=1e-5)


def test_one_characteristic_alone_gives_the_same_answer(model):
    """Characteristic tokens do not see each other: scoring a subset changes nothing."""
    image, segmap = torch.rand(2, 3, 64, 64), torch.randint(0, 19, (2, 64, 64))
    with torch.no_grad():
        full = model(image, segmap)
        chars = model.characteristic_embeddings()
        sub = copy.deepcopy(model)
        sub.gcn = None  # feed the already refined embeddings of the first 5 characteristics directly
        sub.prompt_adapter = torch.nn.Identity()
        sub.prompt_embeddings = chars[:5]
        torch.testing.assert_close(sub(image, segmap), full[:, :5], rtol=1e-4, atol=1e-5)


def test_gradients_reach_only_trainable_parts(model):
    m = copy.deepcopy(model).train()
    image, segmap = torch.rand(2, 3, 64, 64), torch.randint(0, 19, (2, 64, 64))
    m(image, segmap).sum().backward()
    for name, p in m.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, name
        else:
            assert p.grad is None, name
    assert all(not p.requires_grad for p in m.llm.parameters())
    assert all(p.requires_grad for p in m.gcn.parameters())


def test_modules_switch_off():
    config = FaceInsightConfig(use_seg=False, use_correlation=False)
    m = FaceInsight(config, NAMES[:10]).eval()
    assert m.seg_encoder is None and m.gcn is None
    with torch.no_grad():
        out = m(torch.rand(2, 3, 64, 64))
    assert out.shape == (2, 10)
    with pytest.raises(ValueError, match="segmap"):
        FaceInsight(FaceInsightConfig(), NAMES[:3])(torch.rand(1, 3, 64, 64))


def test_bf16_llm_gives_float32_answer_differences(model):
    """Yes-minus-No is taken in float32: a bf16 LLM agrees with float32 and does not round scores into ties."""
    low = copy.deepcopy(model)
    low.llm.to(torch.bfloat16)
    image, segmap = torch.rand(8, 3, 64, 64), torch.randint(0, 19, (8, 64, 64))
    with torch.no_grad():
        full, half = model(image, segmap), low(image, segmap)
    assert half.dtype == torch.float32
    # A difference rounded in bf16 keeps 8 significant bits: on 8 x K scores most values would collide.
    assert half.unique().numel() > 0.95 * half.numel()
    torch.testing.assert_close(half, full, atol=0.05 * full.abs().max().item(), rtol=0)
    hidden = torch.randn(2, 3, low.llm.config.hidden_size).to(torch.bfloat16)
    head = low.llm.get_output_embeddings().weight[low.answer_ids].float()
    want = hidden.float() @ (head[0] - head[1])  # the exact float32 reference
    torch.testing.assert_close(low.answer_difference(hidden), want)


@pytest.mark.parametrize("select_layer", [-2, -1, 1])
def test_image_encoder_matches_clip_hidden_states(select_layer):
    """E_i stops at ``select_layer`` (LLaVA's -2 skips the last layer) yet returns CLIP's own hidden state there."""
    encoder = ImageEncoder(ImageEncoderConfig(select_layer=select_layer)).eval()
    image = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        reference = encoder.clip(pixel_values=encoder.norm(image), output_hidden_states=True).hidden_states
        torch.testing.assert_close(encoder(image), reference[select_layer][:, 1:], rtol=0, atol=0)


def test_last_layer_on_characteristic_tokens_only_is_the_full_pass(model):
    """``_decode`` runs the LLM's last layer on the K characteristic tokens only; its logits and gradients are those
    of the Hugging Face decoder run on the whole sequence (float64, a trainable LLM, several layers)."""
    m = copy.deepcopy(model).double().train()
    m.llm.requires_grad_(True)
    image, segmap = torch.rand(3, 3, 64, 64, dtype=torch.float64), torch.randint(0, 19, (3, 64, 64))

    def full_pass() -> torch.Tensor:
        prefix, chars = m._prefix(image, segmap), m.characteristic_embeddings().expand(3, -1, -1)
        p, k = prefix.shape[1], chars.shape[1]
        mask = characteristic_attention_mask(p, k, torch.float64, image.device).expand(3, -1, -1, -1)
        positions = torch.cat([torch.arange(p), torch.full((k,), p)]).expand(3, -1)
        out = m.llm.get_decoder()(inputs_embeds=torch.cat([prefix, chars], 1), attention_mask=mask,
                                  position_ids=positions, use_cache=False)  # fmt: skip
        return m.answer_difference(out.last_hidden_state[:, p:])

    grads = []
    for run in (m, lambda *_: full_pass()):
        m.zero_grad()
        logits = run(image, segmap)
        (logits * torch.linspace(-1, 1, logits.shape[1], dtype=torch.float64)).sum().backward()
        grads.append({n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None})
        grads[-1]["logits"] = logits.detach()
    assert grads[0].keys() == grads[1].keys()
    for name, value in grads[0].items():
        torch.testing.assert_close(value, grads[1][name], rtol=1e-10, atol=1e-12, msg=name)


def test_per_characteristic_readout_is_eq2_as_built_and_starts_at_the_priors(model):
    """``readout: per_characteristic`` as built gives eq. 2's logits (each row is the Yes-minus-No row); with
    ``readout_start: zero`` and ``start_readout_at_prior`` every face gets exactly the log-odds of the training
    positive rates. It agrees with the per-question pass and moves one characteristic's answer with that
    characteristic's parameters alone."""
    image, segmap = torch.rand(3, 3, 64, 64), torch.randint(0, 19, (3, 64, 64))
    rate = model.stats.positive_rate().float()
    want = torch.log(rate / (1 - rate))  # hand-computed: rates here are in (0, 1)
    zero = FaceInsight(FaceInsightConfig(readout="per_characteristic", readout_start="zero"), NAMES).eval()
    zero.load_state_dict(model.state_dict(), strict=False)
    with torch.no_grad():
        torch.testing.assert_close(zero(image, segmap), torch.zeros(3, len(NAMES)))
        zero.start_readout_at_prior()
        torch.testing.assert_close(zero(image, segmap), want.expand(3, -1))
    other = FaceInsight(FaceInsightConfig(readout="per_characteristic"), NAMES).eval()
    other.load_state_dict(model.state_dict(), strict=False)  # the paper's weights; the readout keeps its own
    other.readout = type(other.readout)(other._answer_row(), len(NAMES))  # rows from the loaded output head
    with torch.no_grad():
        torch.testing.assert_close(other(image, segmap), model(image, segmap))
        other.readout.bias[3] += 2.0
        other.readout.weight[5] *= 2.0
        changed = other(image, segmap) - model(image, segmap)
        torch.testing.assert_close(other.forward_per_characteristic(image, segmap), other(image, segmap),
                                   rtol=1e-4, atol=1e-5)  # fmt: skip
    moved = (changed.abs() > 1e-6).any(0).nonzero().flatten().tolist()
    assert moved == [3, 5]
    torch.testing.assert_close(changed[:, 3], torch.full((3,), 2.0))
    torch.testing.assert_close(changed[:, 5], model(image, segmap)[:, 5].detach())  # twice the row: twice the logit

    other.start_readout_at_prior()
    torch.testing.assert_close(other.readout.bias.detach(), want)
    model.start_readout_at_prior()  # the paper's readout has no bias to set: nothing changes
    with pytest.raises(ValueError, match="readout must be"):
        FaceInsight(FaceInsightConfig(readout="mean"), NAMES[:3])
    with pytest.raises(ValueError, match="readout_start must be"):
        FaceInsight(FaceInsightConfig(readout="per_characteristic", readout_start="ones"), NAMES[:3])


def test_random_readout_start_gives_each_characteristic_its_own_gradient(model):
    """``readout_start: random``: rows of the answer row's norm in independent directions, biases the answer bias.
    With ``answer_row`` the characteristics' gradients to E_i's tokens are nearly one direction (the collapse of
    docs/learning.md); random rows spread them over several."""
    image, segmap = torch.rand(4, 3, 64, 64), torch.randint(0, 19, (4, 64, 64))
    torch.manual_seed(0)
    built = {}
    for start in ("answer_row", "random"):
        m = FaceInsight(FaceInsightConfig(readout="per_characteristic", readout_start=start), NAMES).eval()
        m.load_state_dict(model.state_dict(), strict=False)
        m.readout = type(m.readout)(m._answer_row(), len(NAMES), start)  # rows from the loaded output head
        built[start] = m
    row, bias = built["random"]._answer_row()
    weight = built["random"].readout.weight.detach()
    torch.testing.assert_close(weight.norm(dim=1), row.norm().expand(len(NAMES)))
    torch.testing.assert_close(built["random"].readout.bias.detach(), bias.expand(len(NAMES)))
    cos = F.normalize(weight, dim=1) @ F.normalize(weight, dim=1).T
    assert cos[~torch.eye(len(NAMES), dtype=torch.bool)].abs().max() < 0.9  # no two rows alike
    same, spread = (float(gradient_participation_ratio(built[s], built[s].encode(image, segmap)).mean())
                    for s in ("answer_row", "random"))  # fmt: skip
    assert same < 1.5 < 2 * same < spread, (same, spread)


def test_characteristic_offsets_start_at_the_papers_tokens_and_belong_to_one_characteristic(model):
    """``characteristic_offsets``: built at 0, the model answers as the paper's form with the same weights; an offset
    moves its own characteristic's answer only, and only its own characteristic's loss reaches it."""
    image, segmap = torch.rand(3, 3, 64, 64), torch.randint(0, 19, (3, 64, 64))
    assert model.characteristic_offsets is None  # off by default: the paper's form
    m = FaceInsight(FaceInsightConfig(characteristic_offsets=True), NAMES).eval()
    missing, unexpected = m.load_state_dict(model.state_dict(), strict=False)
    assert missing == ["characteristic_offsets.weight"] and not unexpected
    with torch.no_grad():
        torch.testing.assert_close(m(image, segmap), model(image, segmap))
        m.characteristic_offsets.weight[4] += 0.5
        changed = m(image, segmap) - model(image, segmap)
        torch.testing.assert_close(m.forward_per_characteristic(image, segmap), m(image, segmap), rtol=1e-4, atol=1e-5)
    assert (changed.abs() > 1e-6).any(0).nonzero().flatten().tolist() == [4]
    m.zero_grad()
    m(image, segmap)[:, 7].sum().backward()
    rows = (m.characteristic_offsets.weight.grad.abs().sum(1) > 0).nonzero().flatten().tolist()
    assert rows == [7]


def test_a_missing_pretrained_folder_is_named(tmp_path):
    """A local folder that does not exist is an error naming it, for E_i and the LLM alike; hub ids and existing
    folders pass through unchanged."""
    missing = "runs/pretrain/clip_nowhere"
    with pytest.raises(FileNotFoundError, match=r"'runs/pretrain/clip_nowhere' does not exist.*faceinsight pretrain"):
        ImageEncoder(ImageEncoderConfig(pretrained=missing))
    with pytest.raises(FileNotFoundError, match=r"'\./lm_nowhere' does not exist"):
        build_llm(LLMConfig(pretrained="./lm_nowhere"))
    assert resolve_pretrained("lmsys/vicuna-7b-v1.5") == "lmsys/vicuna-7b-v1.5"
    assert resolve_pretrained(str(tmp_path)) == str(tmp_path)


def test_celebahq64_starts_the_llm_at_one_over_root_width():
    """celebahq64 sets Llama's ``initializer_range`` to 1/sqrt(hidden_size) (docs/learning.md, "The LLM's initial
    scale"), and the value reaches the built LLM's weights."""
    root = Path(__file__).resolve().parents[1]
    arch = yaml.safe_load((root / "configs" / "celebahq64.yaml").read_text())["model"]["llm"]["arch"]
    assert arch["initializer_range"] == pytest.approx(arch["hidden_size"] ** -0.5, rel=1e-3)
    torch.manual_seed(0)
    llm, _ = build_llm(LLMConfig(arch=arch))
    weight = llm.get_decoder().layers[0].self_attn.v_proj.weight
    assert float(weight.std()) == pytest.approx(arch["initializer_range"], rel=0.05)


def test_llm_initial_scale_sets_the_images_share_of_the_characteristic_states():
    """With Llama's 0.02 at width 128 the image moves the state the readout reads by a few percent; at
    1/sqrt(width) by several times more. That share is what E_i's gradient passes through (docs/learning.md)."""
    image, segmap = torch.rand(8, 3, 64, 64), torch.randint(0, 19, (8, 64, 64))
    share = {}
    for scale in (0.02, 128**-0.5):
        torch.manual_seed(0)
        config = FaceInsightConfig(readout="per_characteristic", readout_start="random")
        config.llm.arch = {**config.llm.arch, "initializer_range": scale}
        m = FaceInsight(config, NAMES).eval()
        caught: list[torch.Tensor] = []
        m.llm.get_decoder().norm.register_forward_hook(lambda module, args, out, into=caught: into.append(out))
        with torch.no_grad():
            m(image, segmap)
        state = caught[0]  # [B, K, D]: the normalised states the readout reads
        share[scale] = float(state.std(0).pow(2).mean().sqrt() / state.pow(2).mean().sqrt())
    assert share[128**-0.5] > 3 * share[0.02], share


def test_attention_shares_match_uniform_attention_by_hand(model):
    """With the query projections zeroed every score is 0, so each characteristic token spreads its attention evenly
    over the P prefix tokens and itself: each part's share is its token count over P + 1, in every layer. On the model
    as built the shares differ from that, each layer's sum to 1, and the LLM's attention implementation is restored."""
    image, segmap = torch.rand(2, 3, 64, 64), torch.randint(0, 19, (2, 64, 64))
    visual = model.encode(image, segmap)
    counts = prefix_segments(model, visual)
    assert counts["image"] > 0 and counts["seg"] > 0 and counts["query"] > 0
    implementation = model.llm.config._attn_implementation
    shares = attention_shares(model, visual)
    assert model.llm.config._attn_implementation == implementation
    assert len(shares) == model.llm.config.num_hidden_layers
    for layer in shares.values():
        assert sum(layer.values()) == pytest.approx(1.0, abs=1e-5)
    flat = copy.deepcopy(model)
    for layer in flat.llm.get_decoder().layers:
        torch.nn.init.zeros_(layer.self_attn.q_proj.weight)
    total = sum(counts.values()) + 1
    expected = {**{name: n / total for name, n in counts.items()}, "self": 1 / total}
    for layer in attention_shares(flat, visual).values():
        assert layer == pytest.approx(expected, abs=1e-5)
    assert shares["layer_0"] != pytest.approx(expected, abs=1e-3)


def test_caught_outputs_gives_each_parts_latest_output_and_removes_its_hooks():
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    x = torch.randn(5, 3)
    with caught_outputs({"first": net[0], "last": net[2]}) as caught:
        net(torch.randn(5, 3))
        out = net(x)
        torch.testing.assert_close(caught["first"], net[0](x))
        assert caught["last"] is out
    assert all(not m._forward_hooks for m in net)
