"""One LLM pass for all K characteristics vs. one LLM pass per characteristic question (Face-MLLM's way).

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/one_pass.py --json runs/benchmarks/one_pass.json

``FaceInsight.forward`` scores all K characteristics in one pass over P + K tokens (each characteristic token
sees only the prefix and itself); ``forward_per_characteristic`` asks them one by one as Face-MLLM does, K passes
of P + 1 tokens per image. Both give the same logits (tests/test_one_pass.py; checked again here as max|diff|).
Both run the image and segmentation encoders once per image, so they are timed once ("encoders") and the two LLM
protocols are timed on the cached prefix; end to end = encoders + LLM. Random weights, CPU, inference mode,
median of ``--repeats`` (``--paper-repeats``) rounds in which the three parts take turns (the machine may be
shared), after a warm-up call that also counts the FLOPs (``FlopCounterMode``; attention is counted dense, causal
or not). The per-question protocol sends ``--question-batch`` sequences per LLM call (default: all B * questions
timed in one call).

Two architectures: (a) configs/synthface.yaml as it trains by default; (b) configs/paper.yaml's shapes (P from
ViT-L/14 image tokens, ViT-B/16 segmentation tokens and the query; K from its datasets' vocabulary; LLM width
4096 and 32 heads) with ``--paper-layers`` of Vicuna-7B's 32 layers, since the per-layer cost ratio is what
matters; at full depth the LLM costs ``32 / layers`` times as much (an estimate, printed as such). Vicuna's
tokenizer is not available offline, so the query is tokenised with the default preset's tokenizer. One pass per
question at paper scale takes minutes per image on a CPU, so ``--paper-questions`` of the K questions are timed
and scaled by K / questions (each question is an identical pass of P + 1 tokens, so the scaling is exact up to
noise); 0 times all K.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count
from tqdm import tqdm

from faceinsight.model.encoders import LLMConfig, resolve_pretrained
from faceinsight.model.faceinsight import FaceInsight, preset_architecture

ROOT = Path(__file__).resolve().parents[1]
PRESETS = {"synthface": ROOT / "configs/synthface.yaml", "paper": ROOT / "configs/paper.yaml"}


def build(preset: Path, layers: int | None, dtype: str, image_size: int | None = None) -> tuple[FaceInsight, int]:
    """A preset's architecture with random weights on the CPU (``layers`` LLM layers if given), and its full depth."""
    config, names = preset_architecture(preset)
    if image_size:
        config.image_encoder.arch = {**config.image_encoder.arch, "image_size": image_size}
    full_depth = config.llm.arch["num_hidden_layers"]
    config.llm.arch = {**config.llm.arch, "num_hidden_layers": layers or full_depth}
    config.llm.dtype = dtype
    torch.manual_seed(0)
    model = FaceInsight(config, names, load_weights=False).eval()
    model.prompt_embeddings.normal_()  # T0 needs the text encoder's weights; any embedding times the same
    labels = (torch.rand(1000, len(names)) > 0.6).float()
    model.stats.update(labels, torch.ones_like(labels, dtype=torch.bool))  # a GCN graph with edges
    if model.answer_ids.numel() == 0:  # an LLM named by hub id comes without its tokenizer offline
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(resolve_pretrained(LLMConfig().tokenizer))
        model.bos_ids, model.query_ids, model.answer_ids = model._tokenize(tokenizer, config)
    return model, full_depth


@contextmanager
def cached_prefix(model: FaceInsight, prefix: Tensor, chars: Tensor) -> Iterator[None]:
    """Feed both protocols the precomputed prefix and characteristic embeddings, so only the LLM runs."""
    model._prefix = lambda image, segmap: prefix
    model.characteristic_embeddings = lambda: chars
    try:
        yield
    finally:
        del model._prefix, model.characteristic_embeddings


def _cpu_sdpa_flops(query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query, key, value)


# The CPU kernel behind scaled_dot_product_attention is not in FlopCounterMode's table.
FLOP_FORMULAS = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flops}


def count(fn: Callable[[], Tensor]) -> tuple[int, Tensor]:
    """FLOPs and output of one call (which is also the warm-up)."""
    with FlopCounterMode(display=False, custom_mapping=FLOP_FORMULAS) as counter:
        out = fn()
    return counter.get_total_flops(), out


def timed(parts: dict[str, Callable[[], Tensor]], repeats: int, warmup: int, bar: tqdm) -> dict[str, float]:
    """Median seconds of ``repeats`` calls of each part. The parts take turns, so load on the shared machine
    that comes and goes hits them alike and their ratios stay meaningful."""
    times: dict[str, list[float]] = {name: [] for name in parts}
    for i in range(warmup + repeats):
        for name, fn in parts.items():
            bar.set_postfix_str(name)
            start = time.perf_counter()
            fn()
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
            bar.update()
    return {name: statistics.median(t) for name, t in times.items()}


@torch.inference_mode()
def measure(name: str, model: FaceInsight, full_depth: int, batch: int, questions: int, question_batch: int | None,
            repeats: int, warmup: int) -> dict:  # fmt: skip
    """Latency per image and FLOPs of the encoders and of both LLM protocols for one architecture."""
    size, seg_size = model.image_encoder.image_size, model.seg_encoder.image_size
    image = torch.rand(batch, 3, size, size)
    segmap = torch.randint(0, model.config.seg_encoder.num_classes, (batch, seg_size, seg_size))
    k = len(model.characteristics)
    n = questions or k

    def encoders() -> Tensor:
        return model._prefix(image, segmap)

    def one_pass() -> Tensor:
        with cached_prefix(model, prefix, chars):
            return model(image, segmap)

    def per_question() -> Tensor:  # the first n questions
        with cached_prefix(model, prefix, chars[:n]):
            return model.forward_per_characteristic(image, segmap, question_batch)

    bar = tqdm(total=3 * (1 + warmup + repeats), desc=name, leave=False)
    bar.set_postfix_str("warm-up, counting FLOPs")
    f_enc, prefix = count(encoders)
    chars = model.characteristic_embeddings()
    bar.update()
    f_one, logits_one = count(one_pass)
    bar.update()
    f_q, logits_q = count(per_question)
    bar.update()
    t = timed({"encoders": encoders, "one pass": one_pass, f"{n} of {k} questions": per_question}, repeats, warmup, bar)
    t_enc, t_one, t_q = t.values()
    bar.close()
    p, scale = prefix.shape[1], k / n  # every question is the same pass of P + 1 tokens
    seg_tokens = model.seg_encoder.vit.patch_embed.num_patches
    text_tokens = model.bos_ids.numel() + model.query_ids.numel()
    t_q, f_q = t_q * scale, round(f_q * scale)
    llm = model.llm.config
    row = {
        "case": name,
        "llm_layers": llm.num_hidden_layers,
        "llm_layers_full": full_depth,
        "hidden_size": llm.hidden_size,
        "num_heads": llm.num_attention_heads,
        "dtype": str(model.llm.dtype).removeprefix("torch."),
        "batch_images": batch,
        "image_size": size,
        "image_tokens": p - seg_tokens - text_tokens,
        "seg_tokens": seg_tokens,
        "query_tokens": model.query_ids.numel(),
        "bos_tokens": model.bos_ids.numel(),
        "P": p,
        "K": k,
        "questions_timed": n,
        "sequences_per_llm_call": question_batch or batch * n,
        "encoders_ms": 1e3 * t_enc / batch,
        "llm_one_pass_ms": 1e3 * t_one / batch,
        "llm_per_question_ms": 1e3 * t_q / batch,
        "llm_ratio": t_q / t_one,
        "end_to_end_ratio": (t_enc + t_q) / (t_enc + t_one),
        "flops_encoders": f_enc / batch,
        "flops_llm_one_pass": f_one / batch,
        "flops_llm_per_question": f_q / batch,
        "llm_flop_ratio": f_q / f_one,
        "theory_token_ratio": k * (p + 1) / (p + k),  # tokens through every linear layer: K (P + 1) vs P + K
        "max_abs_diff": (logits_one[:, :n] - logits_q).abs().max().item(),
    }
    if llm.num_hidden_layers != full_depth:  # the LLM's cost is linear in its depth; the encoders' is not
        depth = full_depth / llm.num_hidden_layers
        row["full_depth_estimate"] = {
            "llm_one_pass_ms": depth * row["llm_one_pass_ms"],
            "llm_per_question_ms": depth * row["llm_per_question_ms"],
            "end_to_end_ratio": (t_enc + depth * t_q) / (t_enc + depth * t_one),
        }
    return row


def show(rows: list[dict]) -> None:
    print(f"\nthreads {torch.get_num_threads()}, median ms per image; LLM timed on the cached encoder tokens")
    head = (f"{'case':<28}{'P':>5}{'K':>4}{'B':>3}{'encoders':>10}{'LLM 1-pass':>12}{'LLM per-q':>12}"
            f"{'ratio':>8}{'e2e ratio':>11}{'FLOP ratio':>12}{'theory':>8}{'max|diff|':>11}")  # fmt: skip
    print(head + "\n" + "-" * len(head))
    for r in rows:
        name = f"{r['case']} ({r['llm_layers']}/{r['llm_layers_full']} layers)"
        print(f"{name:<28}{r['P']:>5}{r['K']:>4}{r['batch_images']:>3}{r['encoders_ms']:>10.1f}"
              f"{r['llm_one_pass_ms']:>12.1f}{r['llm_per_question_ms']:>12.1f}{r['llm_ratio']:>8.1f}"
              f"{r['end_to_end_ratio']:>11.1f}{r['llm_flop_ratio']:>12.1f}{r['theory_token_ratio']:>8.1f}"
              f"{r['max_abs_diff']:>11.1e}")  # fmt: skip
        if est := r.get("full_depth_estimate"):
            print(f"{'  at full depth (estimate)':<28}{'':>22}{est['llm_one_pass_ms']:>12.0f}"
                  f"{est['llm_per_question_ms']:>12.0f}{'':>8}{est['end_to_end_ratio']:>11.1f}")  # fmt: skip
    print()
    for r in rows:
        n = r["questions_timed"]
        timed = "all" if n == r["K"] else f"{n} (scaled by K/{n})"
        print(f"{r['case']}: P = {r['bos_tokens']} BOS + {r['image_tokens']} image ({r['image_size']} px) + "
              f"{r['seg_tokens']} seg + {r['query_tokens']} query tokens; LLM d={r['hidden_size']}, "
              f"{r['num_heads']} heads, {r['llm_layers']} of {r['llm_layers_full']} layers, {r['dtype']}; "
              f"questions timed: {timed}; GFLOP/image: encoders {r['flops_encoders'] / 1e9:.1f}, "
              f"LLM one-pass {r['flops_llm_one_pass'] / 1e9:.1f}, "
              f"LLM per-question {r['flops_llm_per_question'] / 1e9:.1f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=8, help="images per call, synthface architecture")
    parser.add_argument("--paper-batch-size", type=int, default=1, help="images per call, paper shapes")
    parser.add_argument("--question-batch", type=int, help="sequences per LLM call, per-question (default: all timed)")
    parser.add_argument("--paper-layers", type=int, default=1, help="LLM layers at paper shapes (of 32)")
    parser.add_argument("--paper-questions", type=int, default=4, help="questions timed at paper shapes; 0 = all")
    parser.add_argument("--paper-image-size", type=int, help="image size at paper shapes (paper.yaml: 224, 256 tokens;"
                        " 336 gives LLaVA-1.5's 576)")  # fmt: skip
    parser.add_argument("--paper-dtype", default="float32", choices=["float32", "bfloat16"],
                        help="LLM dtype at paper shapes (bf16 was 8x slower than float32 on an AVX2 CPU)")  # fmt: skip
    parser.add_argument("--repeats", type=int, default=10, help="timed rounds, synthface architecture")
    parser.add_argument("--paper-repeats", type=int, default=3, help="timed rounds, paper shapes")
    parser.add_argument("--warmup", type=int, default=0, help="warm-up runs after the FLOP-counting one")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()

    cases = [
        ("synthface", PRESETS["synthface"], None, "float32", None, args.batch_size, 0, args.repeats),
        ("paper", PRESETS["paper"], args.paper_layers, args.paper_dtype, args.paper_image_size, args.paper_batch_size,
         args.paper_questions, args.paper_repeats),
    ]  # fmt: skip
    rows = []
    for name, preset, layers, dtype, image_size, batch, questions, repeats in cases:
        start = time.perf_counter()
        model, full_depth = build(preset, layers, dtype, image_size)
        tqdm.write(f"{name}: built in {time.perf_counter() - start:.0f} s")
        rows.append(measure(name, model, full_depth, batch, questions, args.question_batch, repeats, args.warmup))
        del model
    show(rows)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        meta = {"threads": torch.get_num_threads(), "torch": torch.__version__, "args": vars(args)}
        args.json.write_text(json.dumps({**meta, "rows": rows}, indent=2, default=str) + "\n")
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
