"""Training and inference throughput of a preset against this machine's dense-matmul limit.

    .venv/bin/python benchmarks/throughput.py                                   # default + celebahq64, all variants
    .venv/bin/python benchmarks/throughput.py -c configs/synthface.yaml --variants fp32 bf16 --json out.json
    .venv/bin/python benchmarks/throughput.py -c configs/celebahq64.yaml+configs/specialist.yaml --variants fp32

For each preset and variant it reports training samples/s (forward, eq. 4 loss, backward and the AdamW step on
a real batch of the preset's data), inference images/s (``inference_mode`` forward), the peak resident memory of
the process, and the achieved FLOP/s as a share of the machine's dense-matmul FLOP/s measured in the same run
(``torch.mm`` of 2048x2048 matrices at the same thread count: the physical limit a training step could reach here;
this CPU has AVX2 and no bf16 arithmetic, so bf16 runs are measured against the same fp32 limit and the bf16
matmul rate is reported beside it). FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode``
(matmuls, convolutions and attention; element-wise work is not counted, so the share is a lower bound of how busy
the cores are).

Variants: ``fp32``; ``bf16`` (``torch.autocast`` on CPU); ``channels_last`` (the model and images in channels-last
memory format, which only changes the convolutions: patch embeddings here); ``compile`` (``torch.compile`` of the
network; its compilation time is reported apart). Each (preset, variant) runs in its own subprocess so its peak
memory and compiled state are its own. The machine is shared and noisy: compare rows of one run, as ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("fp32", "bf16", "channels_last", "compile")
PRESETS = ("configs/synthface.yaml", "configs/celebahq64.yaml")
# The benchmark needs a batch, not the whole training set: SynthFace renders only this many faces.
SMALL_SYNTHFACE = "[{kind: synthface, options: {num_train: 512, num_val: 64, num_test: 64, seed: 0, size: 64}}]"


def matmul_flops(dtype: torch.dtype, n: int = 2048, repeats: int = 5) -> float:
    """Dense ``n x n`` matmul FLOP/s at the current thread count: the limit a training step could reach."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    torch.mm(a, b)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times)


def rss_gb() -> float:
    """Current resident memory of this process (GB), from /proc."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e9


def build(preset: str) -> tuple[object, dict]:
    """The preset's LightningModule and one training batch, through the real CLI (one step of ``fit``).
    ``preset`` may compose several files with ``+`` (``-c a.yaml -c b.yaml``)."""
    from faceinsight.cli import run

    configs = [a for path in preset.split("+") for a in ("-c", str(ROOT / path))]
    data = ["--data.datasets", SMALL_SYNTHFACE] if preset.startswith("configs/synthface") else []
    cli = run(
        ["fit", *configs, *data, "--trainer.max_steps", "1", "--trainer.limit_val_batches", "0",
         "--trainer.logger", "false", "--trainer.enable_checkpointing", "false", "--trainer.callbacks", "[]",
         "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
         "--trainer.default_root_dir", "/tmp/faceinsight-throughput", "--test_after_fit", "false"]
    )  # fmt: skip
    batch = next(iter(cli.datamodule.train_dataloader()))
    return cli.model, batch


def worker(preset: str, variant: str, steps: int) -> dict:
    """Measure one (preset, variant) in this process; returns a row of the table."""
    module, batch = build(preset)
    module.train()
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if variant == "bf16" else nullcontext()
    if variant == "channels_last":
        module.to(memory_format=torch.channels_last)
        batch = {k: v.contiguous(memory_format=torch.channels_last) if k == "image" else v for k, v in batch.items()}
    compile_s = None
    if variant == "compile":
        module.model = torch.compile(module.model)
    optimizer = module.make_optimizer()  # the training run's optimiser (fused AdamW)

    def train_step() -> None:
        with autocast:
            loss, _, _ = module.losses(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    start = time.perf_counter()
    train_step()  # warm-up (and compilation)
    if variant == "compile":
        compile_s = time.perf_counter() - start
    train_step()
    rss_before = rss_gb()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        train_step()
        times.append(time.perf_counter() - start)
    step_s = statistics.median(times)

    module.eval()
    with torch.inference_mode(), autocast:
        module.model(batch["image"], batch.get("segmap"))
        infer = []
        for _ in range(steps):
            start = time.perf_counter()
            module.model(batch["image"], batch.get("segmap"))
            infer.append(time.perf_counter() - start)
    infer_s = statistics.median(infer)

    # FLOPs of one training step and one inference pass, counted on the eager fp32 graph (the same arithmetic).
    from torch.utils.flop_counter import FlopCounterMode

    eager = getattr(module.model, "_orig_mod", module.model)
    module.train()
    with FlopCounterMode(display=False) as counter:
        logits = eager(batch["image"], batch.get("segmap"))
        logits.float().sum().backward()
    train_flops = counter.get_total_flops()
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        eager(batch["image"], batch.get("segmap"))
    infer_flops = counter.get_total_flops()

    # The limit is fp32's: this CPU has no bf16 arithmetic (AVX2 only), so bf16 is converted, not faster. The bf16
    # matmul rate is reported beside it (smaller matrices: it is slow).
    limit = matmul_flops(torch.float32)
    bf16_matmul = matmul_flops(torch.bfloat16, n=512, repeats=3) if variant == "bf16" else None
    b = batch["image"].shape[0]
    return {
        "preset": preset,
        "variant": variant,
        "threads": torch.get_num_threads(),
        "batch": b,
        "train_step_s": step_s,
        "train_samples_per_s": b / step_s,
        "infer_images_per_s": b / infer_s,
        "train_gflop_per_step": train_flops / 1e9,
        "infer_gflop_per_batch": infer_flops / 1e9,
        "train_gflops": train_flops / step_s / 1e9,
        "infer_gflops": infer_flops / infer_s / 1e9,
        "matmul_limit_gflops": limit / 1e9,
        "bf16_matmul_gflops": bf16_matmul / 1e9 if bf16_matmul else None,
        "train_share_of_limit": train_flops / step_s / limit,
        "infer_share_of_limit": infer_flops / infer_s / limit,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
        "step_memory_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6 - rss_before,
        "compile_s": compile_s,
    }


def print_table(rows: list[dict]) -> None:
    w = max(24, *(len(r["preset"]) + 2 for r in rows))
    header = (f"{'preset':<{w}}{'variant':<15}{'train/s':>9}{'infer/s':>9}{'GFLOP/step':>11}{'train GF/s':>11}"
              f"{'limit GF/s':>11}{'share':>7}{'infer share':>12}{'peak GB':>9}")  # fmt: skip
    print(header)
    print("-" * len(header))
    for r in rows:
        if "error" in r:
            print(f"{r['preset']:<{w}}{r['variant']:<15}failed: {r['error']}")
            continue
        print(
            f"{r['preset']:<{w}}{r['variant']:<15}{r['train_samples_per_s']:>9.1f}{r['infer_images_per_s']:>9.1f}"
            f"{r['train_gflop_per_step']:>11.2f}{r['train_gflops']:>11.1f}{r['matmul_limit_gflops']:>11.1f}"
            f"{r['train_share_of_limit']:>7.1%}{r['infer_share_of_limit']:>12.1%}{r['peak_rss_gb']:>9.2f}"
        )
    compiled = [r for r in rows if r.get("compile_s")]
    for r in compiled:
        print(f"compile time ({r['preset']}): {r['compile_s']:.1f} s, paid once per process")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--config", nargs="+", default=list(PRESETS), help="presets (a.yaml+b.yaml composes)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per measurement (median)")
    parser.add_argument("--json", type=Path, help="write the rows here")
    parser.add_argument("--worker", nargs=2, metavar=("PRESET", "VARIANT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print("ROW " + json.dumps(worker(*args.worker, args.steps)))
        return

    rows = []
    for preset in args.config:
        for variant in args.variants:
            print(f"[throughput] {preset} {variant} ...", file=sys.stderr, flush=True)
            cmd = [sys.executable, __file__, "--worker", preset, variant, "--steps", str(args.steps)]
            proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
            lines = [line for line in proc.stdout.splitlines() if line.startswith("ROW ")]
            if proc.returncode or not lines:
                error = (proc.stderr.strip().splitlines() or ["no output"])[-1]
                rows.append({"preset": preset, "variant": variant, "error": error})
            else:
                rows.append(json.loads(lines[-1][4:]))
    print_table(rows)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2))
        print(f"written to {args.json}")


if __name__ == "__main__":
    main()
