"""`faceinsight describe`: the caption loss (LLaVA's alignment stage), greedy generation, the deterministic decoded
description, the contradiction counts, and the command on a 2-step checkpoint."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from test_training import ROOT, fit
from torch import nn

from faceinsight.cli import run
from faceinsight.text.captions import batch_captions, full_description
from faceinsight.text.tokens import end_id, tokenize_captions
from faceinsight.tools.describe import check, decided_face, statements, summarize
from faceinsight.train.faceinsight_module import FaceInsightModule
from faceinsight.train.losses import masked_bce
from faceinsight.vocab import GROUPS, SCHEMAS

NAMES = list(SCHEMAS["synthface"].characteristics)
RULES = [str(ROOT / f"rules/{r}.rules") for r in ("celeba", "demographics", "expression")]


@pytest.fixture(scope="module")
def module() -> FaceInsightModule:
    """A default-size FaceInsight (LLM frozen) with the caption loss on, and co-occurrence statistics set."""
    torch.manual_seed(0)
    m = FaceInsightModule(characteristics=NAMES, rules=RULES, caption_weight=1.0)
    labels = (torch.rand(200, len(NAMES)) > 0.6).float()
    m.model.stats.update(labels, torch.ones_like(labels, dtype=torch.bool))
    return m


def consistent(module: FaceInsightModule, n: int, seed: int) -> torch.Tensor:
    """``n`` random answers that satisfy every hard rule (one member per group), bool ``[n, K]``."""
    return module.rules.decode(torch.rand(n, len(NAMES), generator=torch.Generator().manual_seed(seed)))


def batch_of(module: FaceInsightModule, n: int = 3) -> dict:
    labels = consistent(module, n, seed=1).float()
    ages = torch.tensor([25.0, float("nan"), 61.0]).repeat(n)[:n]
    return {"image": torch.rand(n, 3, 64, 64), "segmap": torch.randint(0, 19, (n, 64, 64)), "labels": labels,
            "label_mask": torch.ones_like(labels, dtype=torch.bool), "age": ages,
            "key": [f"face{i}" for i in range(n)], "dataset": torch.zeros(n, dtype=torch.long)}  # fmt: skip


def captions(module: FaceInsightModule, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    texts = batch_captions(NAMES, batch, np.random.default_rng(0))
    return tokenize_captions(module.model.tokenizer, texts)


def test_caption_loss_is_the_llms_own_loss_on_the_same_sequence(module):
    model, batch = module.model.eval(), batch_of(module)
    ids, mask = captions(module, batch)
    assert (ids[mask.bool()] == end_id(model.tokenizer)).sum() == len(ids)  # one end token per caption
    with torch.no_grad():
        visual = model.encode(batch["image"], batch["segmap"])
        ours = model.caption_loss(visual, module.describe_ids, ids, mask)
        prefix = model.describe_prefix(visual, module.describe_ids)
        # [BOS] image and map tokens as the characteristic prefix has them, then "describe this face."
        q, d = len(model.query_ids), len(module.describe_ids)
        torch.testing.assert_close(prefix[:, :-d], model._prefix(None, None, visual)[:, :-q])
        embed = model.llm.get_input_embeddings()
        torch.testing.assert_close(prefix[:, -d:], embed(module.describe_ids).expand(len(ids), -1, -1))
        labels = torch.cat([torch.full(prefix.shape[:2], -100), ids.masked_fill(mask == 0, -100)], dim=1)
        attention = torch.cat([torch.ones(prefix.shape[:2], dtype=torch.long), mask], dim=1)
        inputs = torch.cat([prefix, embed(ids)], dim=1)
        reference = model.llm(inputs_embeds=inputs, attention_mask=attention, labels=labels).loss
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("llm_trainable", [False, True])
def test_caption_gradients_reach_the_adapters_and_a_frozen_llm_stays_untouched(module, llm_trainable):
    model, batch = copy.deepcopy(module.model).train(), batch_of(module)
    model.llm.requires_grad_(llm_trainable)
    ids, mask = captions(module, batch)
    model.caption_loss(model.encode(batch["image"], batch["segmap"]), module.describe_ids, ids, mask).backward()
    for adapter in (model.image_adapter, model.seg_adapter):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in adapter.parameters())
    llm_grads = [p.grad for p in model.llm.parameters()]
    if llm_trainable:
        assert all(g is not None for g in llm_grads)
    else:
        assert all(g is None for g in llm_grads)
    assert all(p.grad is None for p in model.prompt_adapter.parameters())  # not on the caption's path


def test_caption_weight_zero_leaves_the_losses_unchanged_and_the_encoders_run_once(module, monkeypatch):
    batch, calls = batch_of(module), []
    encode = module.visual
    monkeypatch.setattr(module, "visual", lambda b: calls.append(1) or encode(b))
    module.eval()
    with torch.no_grad():
        monkeypatch.setitem(module.hparams, "caption_weight", 0.0)
        off, off_parts, off_logits = module.losses(batch)
        monkeypatch.setitem(module.hparams, "caption_weight", 0.5)
        on, on_parts, on_logits = module.losses(batch)
    assert set(off_parts) == {"bce", "logic"} and set(on_parts) == {"bce", "logic", "caption"}
    torch.testing.assert_close(off, masked_bce(off_logits, batch["labels"], batch["label_mask"]) + off_parts["logic"])
    torch.testing.assert_close(off_parts["logic"], module.logic_loss(off_logits))  # eq. 4, as before
    torch.testing.assert_close(on_logits, off_logits)
    torch.testing.assert_close(on, off + 0.5 * on_parts["caption"])
    assert len(calls) == 2  # one encoder pass per losses() call, the caption loss included


def test_generation_is_greedy_deterministic_and_stops_at_the_end_token_or_the_limit(module):
    model, batch = copy.deepcopy(module.model).eval(), batch_of(module)
    end = end_id(model.tokenizer)
    visual = model.encode(batch["image"], batch["segmap"])
    ids = model.generate(visual, module.describe_ids, end, max_new_tokens=6)
    assert torch.equal(ids, model.generate(visual, module.describe_ids, end, max_new_tokens=6))
    with torch.no_grad():  # the same tokens without the KV cache, the whole sequence each step
        sequence = model.describe_prefix(visual, module.describe_ids)
        for t in range(ids.shape[1]):
            token = model.llm(inputs_embeds=sequence).logits[:, -1].argmax(-1)
            running = ids[:, :t].ne(end).all(1)  # rows that have not ended
            assert torch.equal(token[running], ids[running, t])
            sequence = torch.cat([sequence, model.llm.get_input_embeddings()(token)[:, None]], dim=1)
    # An output layer that always prefers the end token stops every row at once; one that never does runs to the limit.
    d, vocabulary = model.llm.config.hidden_size, model.llm.config.vocab_size
    for preferred, length in ((end, 1), (end + 1, 4)):
        head = nn.Linear(d, vocabulary, bias=True)
        nn.init.zeros_(head.weight)
        with torch.no_grad():
            head.bias.zero_()[preferred] = 1.0
        model.llm.set_output_embeddings(head)
        out = model.generate(visual, module.describe_ids, end, max_new_tokens=4)
        assert out.shape == (3, length) and (out == preferred).all()


# Facts the decoded descriptions state that faceinsight.text.answers' phrase tables may not read back (parser limits,
# see docs/describe.md): "older" away from the noun ("an older happy woman"), a hair texture before a colour ("straight
# black hair"), a child's or teenager's age said by the noun alone ("a little girl", "a teenage boy").
UNREAD = {("Young", False), ("Straight_Hair", True), ("Age_3-9", True), ("Age_10-19", True)}


def with_groups(facts: dict[str, bool]) -> dict[str, bool]:
    """``facts`` and what a group member said present says: the group's other members absent."""
    out = dict(facts)
    for members in GROUPS.values():
        if any(facts.get(m) for m in members):
            out |= {m: False for m in members if m in NAMES and m not in facts}
    return out


def test_decoded_descriptions_parse_back_to_exactly_what_they_state(module):
    stated_total = unread_total = 0
    for row in consistent(module, 200, seed=2).tolist():
        described = full_description(decided_face(NAMES, row))
        assert full_description(decided_face(NAMES, row)).text == described.text  # deterministic
        c = check(described.text, NAMES, row, module.rules)
        assert not c.contradicts and not c.breaks, (described.text, c)
        stated = {n: v for n, v in described.facts.items() if n in NAMES}
        readable = with_groups({n: v for n, v in stated.items() if (n, v) not in UNREAD})
        present, absent = statements(described.text, NAMES)
        parsed = {**dict.fromkeys(absent, False), **dict.fromkeys(present, True)}
        assert readable.items() <= parsed.items() <= with_groups(stated).items(), described.text
        stated_total += len(stated)
        unread_total += len(stated.items() - parsed.items())
    assert unread_total / stated_total < 0.05


def test_contradictions_with_the_answers_and_the_hard_rules_are_counted(module):
    decided = dict.fromkeys(NAMES, False) | {"Female": True, "No_Beard": True, "Expr_Happiness": True,
                                              "Age_20-29": True, "Smiling": True, "Young": True}  # fmt: skip
    row = [decided[n] for n in NAMES]
    assert module.rules.satisfied(torch.tensor([row])).all()
    texts = [
        "A photo of a woman in her twenties. She has a goatee and no beard. She is smiling.",  # Goatee; a rule
        "A smiling young woman without glasses.",  # nothing wrong
        "A sad man with a happy expression.",  # Male, Female, Expr_Sadness; two expressions break exactly_one
        "A blurry photo.",  # Blurry
    ]
    checks = [check(t, NAMES, row, module.rules) for t in texts]
    assert checks[0].contradicts == ("Goatee",)
    assert checks[0].breaks == ("No_Beard -> ~Goatee",)
    assert checks[1].contradicts == () and checks[1].breaks == ()
    assert set(checks[2].contradicts) == {"Male", "Female", "Expr_Sadness"}
    assert len(checks[2].breaks) == 1 and "exactly_one(Expr_Surprise" in checks[2].breaks[0]
    assert checks[3].contradicts == ("Blurry",) and checks[3].facts == 1
    s = summarize(checks)
    assert s["contradicting_share"] == 0.75 and s["rule_breaking_share"] == 0.5
    assert s["contradictions_per_characteristic"]["Goatee"] == 1 and s["hard_rules_broken"]["No_Beard -> ~Goatee"] == 1
    assert set(check("He has a goatee.", NAMES, row, module.rules).contradicts) == {"Goatee", "Male", "Female"}
    assert check("Does this person have a goatee? Answer: no.", NAMES, row, module.rules).facts == 0  # a question
    # "smiling" is the Smiling attribute, not a stated expression: no contradiction with a decided neutral face
    neutral = [n in ("Female", "No_Beard", "Expr_Neutral", "Age_20-29", "Smiling") for n in NAMES]
    assert check("A smiling woman.", NAMES, neutral, module.rules).contradicts == ()


def test_describe_command_on_a_two_step_checkpoint(tmp_path):
    steps = ["--trainer.limit_train_batches", "2", "--trainer.log_every_n_steps", "1", "--test_after_fit", "false"]
    cli = fit(tmp_path, *steps, "--model.caption_weight", "1.0")
    ckpt = cli.trainer.checkpoint_callback.last_model_path or cli.trainer.checkpoint_callback.best_model_path
    metrics = (tmp_path / "version_0" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "train/caption" in metrics and "val/synthface/caption" in metrics
    assert cli.model.run_report()["loss"]["caption_weight"] == 1.0
    out = tmp_path / "faces.jsonl"
    run(["describe", "--ckpt_path", ckpt, "--limit", "5", "--max_new_tokens", "8", "--json", str(out)])
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 5 and all(r["decoded"] and r["dataset"] == "synthface" for r in lines)
    assert all(len(r["generated"].split()) <= 8 for r in lines)
    saved = json.loads(out.with_suffix(".report.json").read_text())
    assert saved["generated"]["descriptions"] == 5
    assert saved["decoded"]["contradicting_share"] == 0 and saved["decoded"]["rule_breaking_share"] == 0
