"""Train the embedded demo CLIP on synthetic captioned scenes and write it as a model bundle.

No pretrained CLIP can be downloaded where this project is built, so it trains its own small one:
a CNN image tower and a causal-transformer text tower, trained with a symmetric InfoNCE loss and a
learnable temperature on scenes from ``imgsearch_devkit.demo.scenes``, then exported to ONNX with
the tokenizer and ``model.json`` (``models/demo-clip/``)::

    .venv/bin/python tools/train_demo_clip.py --out models/demo-clip

Images go through the runtime's own preprocessing (``imgsearch.model.preprocess.to_pixels``), so
the exported tower sees at inference exactly what it saw in training. A batch often holds several
images that one caption describes ("red circle" fits every image of red circles), so the targets
are soft: each caption's probability mass is shared by every image it describes, and vice versa.
Each image is also contrasted with the 40 "colour shape" prompts of ``model_eval.kind_queries``.

The bundle is built in a staging folder, checked through the real runtime against torch, evaluated
on the held-out scenes (figures go into ``model.json``) and only then replaces ``--out``; a
``MODEL_CARD.md`` already there is kept. The run is reproducible: fixed seeds, deterministic torch
kernels, a fixed thread count.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from bundle_writer import log, run
from imgsearch_devkit.demo.model_eval import EVAL_SEED, evaluate_model, kind_queries
from imgsearch_devkit.demo.scenes import (
    KINDS,
    WORDS,
    Scene,
    caption,
    describes,
    generate,
    requirements,
)
from imgsearch_training.bundle import staged_bundle, write_manifest
from imgsearch_training.demo_clip import Clip, DemoArchitecture, build_clip
from imgsearch_training.export import check_parity, export, tokenize
from imgsearch_training.trainable import DemoClip
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

from imgsearch.eval.metrics import score_rankings
from imgsearch.model import ClipModel
from imgsearch.model.bundle import TOKENIZER, ModelManifest
from imgsearch.model.preprocess import to_pixels
from imgsearch.model.tokenizer import TextTokenizer

CARD = "MODEL_CARD.md"
UNK, SOT, EOT = "[UNK]", "<|startoftext|>", "<|endoftext|>"
CHUNK = 500
"""Scenes rendered per worker task; chunk ``c`` of a run uses seed ``seed * 1000 + c``."""


# --------------------------------------------------------------------------- tokenizer


def build_tokenizer() -> Tokenizer:
    """WordLevel over every caption word; lower-cased, split on whitespace, SOT ... EOT added."""
    vocab = {UNK: 0, SOT: 1, EOT: 2} | {word: i + 3 for i, word in enumerate(sorted(WORDS))}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{SOT} $A {EOT}", special_tokens=[(SOT, vocab[SOT]), (EOT, vocab[EOT])]
    )
    tokenizer.add_special_tokens([UNK, SOT, EOT])
    return tokenizer


def runtime_tokenizer(tokenizer: Tokenizer, manifest: ModelManifest) -> TextTokenizer:
    """The runtime's tokenizer (truncation keeping EOT, padding to the batch's longest)."""
    return TextTokenizer(
        Tokenizer.from_str(tokenizer.to_str()), manifest.context_length, manifest.pad_token_id
    )


# --------------------------------------------------------------------------- data


def render_chunk(task: tuple[int, int, ModelManifest]) -> tuple[np.ndarray, list[Scene]]:
    """Render one chunk of balanced scenes and preprocess them as the runtime does."""
    count, seed, manifest = task
    pairs = generate(count, seed=seed, balanced=True)
    pixels = np.stack([to_pixels(image, manifest) for image, _ in pairs])
    return pixels, [scene for _, scene in pairs]


def make_dataset(
    n: int,
    seed: int,
    manifest: ModelManifest,
    workers: int,
) -> tuple[torch.Tensor, list[Scene]]:
    seeds = [seed * 1000 + c for c in range(math.ceil(n / CHUNK))]
    if EVAL_SEED in seeds:
        raise SystemExit(f"seed {seed} would render the held-out evaluation seed {EVAL_SEED}")
    tasks = [(min(CHUNK, n - i * CHUNK), s, manifest) for i, s in enumerate(seeds)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        chunks = list(pool.map(render_chunk, tasks))
    pixels = torch.from_numpy(np.concatenate([c[0] for c in chunks]))
    return pixels, [scene for c in chunks for scene in c[1]]


def match_matrix(scenes: list[Scene], texts: list[str]) -> torch.Tensor:
    """``m[i, j]`` is 1 when text ``j`` describes scene ``i`` (see ``synthetic.requirements``)."""
    columns: dict[str, np.ndarray] = {}
    matrix = np.ones((len(scenes), len(texts)), dtype=bool)
    for j, text in enumerate(texts):
        for field, allowed in requirements(text).items():
            if field not in columns:
                columns[field] = np.array([getattr(s, field) for s in scenes], dtype=object)
            matrix[:, j] &= np.isin(columns[field], list(allowed))
    return torch.from_numpy(matrix.astype(np.float32))


def soft_clip_loss(
    image: torch.Tensor, text: torch.Tensor, scale: torch.Tensor, matches: torch.Tensor
) -> torch.Tensor:
    """Symmetric InfoNCE whose targets spread evenly over every matching pair."""
    logits = scale.exp() * F.normalize(image, dim=-1) @ F.normalize(text, dim=-1).T
    to_text = matches / matches.sum(dim=1, keepdim=True)
    to_image = matches.T / matches.T.sum(dim=1, keepdim=True)
    return (F.cross_entropy(logits, to_text) + F.cross_entropy(logits.T, to_image)) / 2


def kind_loss(
    image: torch.Tensor, prompts: torch.Tensor, scale: torch.Tensor, kinds: torch.Tensor
) -> torch.Tensor:
    """InfoNCE of each image against one prompt per kind (``kind_queries`` order)."""
    logits = scale.exp() * F.normalize(image, dim=-1) @ F.normalize(prompts, dim=-1).T
    return F.cross_entropy(logits, kinds)


# --------------------------------------------------------------------------- training


@torch.no_grad()
def validate(
    model: Clip, pixels: torch.Tensor, scenes: list[Scene], tokens: torch.Tensor, k: int = 10
) -> float:
    """precision@k of the kind queries on the validation scenes (torch, no ONNX)."""
    model.eval()
    images = F.normalize(torch.cat([model.visual(b) for b in pixels.split(256)]), dim=-1)
    texts = F.normalize(model.textual(tokens), dim=-1)
    rankings = (texts @ images.T).argsort(dim=1, descending=True, stable=True).tolist()
    relevant = [{i for i, s in enumerate(scenes) if describes(s, q)} for q in kind_queries()]
    model.train()
    return score_rankings(rankings, relevant, k).precision


def train(
    args: argparse.Namespace,
    model: Clip,
    tokenizer: Tokenizer,
    manifest: ModelManifest,
) -> dict[str, Any]:
    started = time.perf_counter()
    pixels, scenes = make_dataset(args.train_images, args.seed, manifest, args.threads)
    val_pixels, val_scenes = make_dataset(args.val_images, args.seed + 1, manifest, args.threads)
    data_seconds = time.perf_counter() - started
    log.info(
        "rendered %d training and %d validation scenes in %.1f s",
        len(scenes),
        len(val_scenes),
        data_seconds,
    )
    text_tokenizer = runtime_tokenizer(tokenizer, manifest)
    query_tokens = tokenize(text_tokenizer, kind_queries())

    steps_per_epoch = len(scenes) // args.batch_size
    total = steps_per_epoch * args.epochs
    warmup = max(1, total // 20)
    optimiser = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser,
        lambda step: min((step + 1) / warmup, 0.5 * (1 + math.cos(math.pi * step / total))),
    )
    rng = np.random.default_rng(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    history: list[dict[str, float]] = []
    train_started = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        order = torch.randperm(len(scenes), generator=generator)
        losses = []
        for step in range(steps_per_epoch):
            batch = order[step * args.batch_size : (step + 1) * args.batch_size].tolist()
            batch_scenes = [scenes[i] for i in batch]
            texts = [caption(s, rng) for s in batch_scenes]  # fresh wording every epoch
            tokens = tokenize(text_tokenizer, texts)
            image_embeds = model.visual(pixels[batch])
            loss = soft_clip_loss(
                image_embeds,
                model.textual(tokens),
                model.logit_scale,
                match_matrix(batch_scenes, texts),
            )
            # Every image also against all 40 "colour shape" prompts: each then competes with the
            # four other shapes of its colour. Shape comes faster (8 epochs: validation
            # precision@10 0.64 without this term, 0.74 with it).
            loss = loss + kind_loss(
                image_embeds,
                model.textual(query_tokens),
                model.logit_scale,
                torch.tensor([KINDS.index(s.kind) for s in batch_scenes]),
            )
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))
            losses.append(loss.item())
        precision = validate(model, val_pixels, val_scenes, query_tokens)
        history.append(
            {
                "epoch": epoch,
                "loss": round(float(np.mean(losses)), 4),
                "val_precision_at_10": round(precision, 4),
            }
        )
        log.info(
            "epoch %d/%d: loss %.4f, temperature %.4f, validation precision@10 %.3f (%.0f s)",
            epoch,
            args.epochs,
            np.mean(losses),
            1 / model.logit_scale.exp().item(),
            precision,
            time.perf_counter() - train_started,
        )
    return {
        "data_seconds": round(data_seconds, 1),
        "train_seconds": round(time.perf_counter() - train_started, 1),
        "final_loss": history[-1]["loss"],
        "temperature": round(1 / model.logit_scale.exp().item(), 4),
        "history": history,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("models/demo-clip"),
        help="bundle folder to write (replaced once the new bundle has passed its checks)",
    )
    parser.add_argument(
        "--train-images",
        type=int,
        default=8000,
        help="synthetic training scenes (balanced over the 40 kinds)",
    )
    parser.add_argument(
        "--val-images",
        type=int,
        default=400,
        help="validation scenes for the per-epoch precision@10 log line",
    )
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=2e-3, help="peak AdamW learning rate")
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument(
        "--image-size",
        type=int,
        default=64,
        help="centre-crop side fed to the image tower (also the resize side)",
    )
    parser.add_argument("--dim", type=int, default=64, help="embedding dimension")
    parser.add_argument("--width", type=int, default=128, help="text transformer width")
    parser.add_argument("--layers", type=int, default=2, help="text transformer layers")
    parser.add_argument("--heads", type=int, default=4, help="text attention heads")
    parser.add_argument(
        "--context-length",
        type=int,
        default=32,
        help="longest token sequence, start and end-of-text tokens included",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=1,
        help="training seed (scenes, captions, weights); never the eval seed",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="torch threads and scene-rendering processes",
    )
    parser.add_argument(
        "--eval-images",
        type=int,
        default=520,
        help="held-out scenes for the final evaluation recorded in model.json (0 skips it)",
    )
    return parser.parse_args(argv)


def train_and_write(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(args.threads)

    tokenizer = build_tokenizer()
    eot = tokenizer.token_to_id(EOT)
    manifest = ModelManifest(
        name="demo-clip",
        version="1",
        embedding_dim=args.dim,
        image_size=args.image_size,
        resize_size=args.image_size,
        context_length=args.context_length,
        pad_token_id=eot,
        files={},
        source=(
            f"tools/train_demo_clip.py: {args.train_images} synthetic scenes "
            f"(imgsearch_devkit.demo.scenes, seed {args.seed}), {args.epochs} epochs, batch "
            f"{args.batch_size}, soft-target InfoNCE with a learnable temperature; CNN image "
            f"tower, {args.layers}-layer causal transformer text tower"
        ),
        license="Apache-2.0",
        description="Tiny demo CLIP trained in this repository on synthetic coloured-shape "
        "scenes only (no third-party weights); not a general image model. See "
        "MODEL_CARD.md.",
    )
    architecture = DemoArchitecture(
        dim=args.dim,
        width=args.width,
        layers=args.layers,
        heads=args.heads,
        vocab=tokenizer.get_vocab_size(),
        context_length=args.context_length,
        eot_id=eot,
    )
    model = build_clip(architecture, manifest)
    training = train(args, model, tokenizer, manifest)

    with staged_bundle(args.out, force=True) as staging:
        tokenizer.save(str(staging / TOKENIZER))
        example = tokenize(
            runtime_tokenizer(tokenizer, manifest),
            ["a red circle", "two small blue stars on a grey background"],
        )
        export(model, staging, manifest.image_size, manifest.context_length, example)
        fields = manifest.to_dict()
        # the weights a retraining run starts from (imgsearch_training.job); not in ``files``
        fields["checkpoint"] = DemoClip(model, architecture).write_checkpoint(staging)
        fields["parameters"] = sum(p.numel() for p in model.parameters())
        fields["training"] = {
            **training,
            "images": args.train_images,
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "seed": args.seed,
            "threads": args.threads,
            "torch": torch.__version__,
        }
        write_manifest(staging, fields)
        runtime = ClipModel.load(staging, threads=args.threads)
        fields["parity"] = check_parity(model, runtime, tokenizer)
        log.info("parity with torch through the runtime: %s", fields["parity"])
        if args.eval_images:
            report = evaluate_model(runtime, images=args.eval_images)
            fields["eval"] = {
                **report,
                "command": f"imgsearch model eval --images "
                f"{args.eval_images} --seed {report['seed']} --k {report['k']}",
            }
            log.info("held-out evaluation: %s", json.dumps(report))
        fields["training"]["total_seconds"] = round(time.perf_counter() - started, 1)
        write_manifest(staging, fields)
        if (args.out / CARD).is_file():  # the hand-written card outlives retraining
            shutil.copy2(args.out / CARD, staging / CARD)
    size = sum(f.stat().st_size for f in args.out.iterdir())
    log.info(
        "wrote %s (%.2f MB) in %.0f s", args.out, size / 1e6, fields["training"]["total_seconds"]
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run("train_demo_clip", lambda: train_and_write(args))


if __name__ == "__main__":
    sys.exit(main())
