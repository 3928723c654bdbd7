"""Fine-tune a CLIP on judged (query, image) pairs with a contrastive loss.

The model is a ``trainable.Trainable``: the demo CLIP or a Hugging Face ``CLIPModel``; the
figures below are the demo model's.

Each training item is one positive pair (a query and an image that answers it) with up to
``negatives`` of the query's hard negatives: images it was shown but never clicked, or judged
irrelevant. For "red circle on a black background" those are red circles on other backgrounds,
exactly what the parent confuses. Each negative also brings a query it is a known positive of
("red circle on a white background"), so both directions of the symmetric InfoNCE see the
difference. A batch's logits are its queries against its images; targets are uniform over a
query's known positives; an image no judgment ties to a query is a negative for it, as in CLIP.

Early stopping watches the held-out loss: each held-out query against every image of the channel
(``retrieval_loss``), what a search does, with no batch sampling in it. The held-out queries'
positive images never train (``data.load_pairs``), or the loss would measure how training pushed
them away as other queries' negatives rather than what the model learnt.

Forgetting colour and shape, and speed (measured in ``benchmarks/retrain.py`` on a validation
split, never on the reported queries): BatchNorm frozen in eval mode; the image tower's first
``frozen_stages`` stages kept as the parent's (they already tell backgrounds apart, the last
stages do not; their outputs are computed once per image, which makes an epoch about 1.6x
cheaper); AdamW at a low rate, warmed up over the first epoch, without weight decay (decay pulls
towards zero, not towards the parent); an anchor, ``anchor * (1 - cos)`` between the model's
and the parent's embeddings of the batch's images and of probe phrases of the vocabulary; and,
at the end, the weights 40 % of the way from the parent's to the best epoch's (``interpolate``,
WiSE-FT). That last step is what keeps colour and shape. On three training corpora of 800
images, at ten images a kind for the colour and shape queries: the best epoch itself gained
63-89 % nDCG@10 on held-out background queries and cost 10-13 % on colour and shape; half-way,
22-38 % and 1.5-1.8 % (P@10 2.3-2.8 %, past the gate's 2 %); 40 %, 13-24 % and 0.5-0.8 %. A
distillation of the probe texts' rankings, tried instead, kept the parent's blindness to
backgrounds along with its shapes and gained nothing.

Reproducible: the same pairs, settings (thread count included) and seed give the same weights
(seeded order and sampling, ``torch.use_deterministic_algorithms``). Bounded by ``epochs`` and
``max_seconds``; stops when the held-out loss has not improved for ``patience`` epochs and keeps
the best epoch's, then interpolates::

    from imgsearch_training.finetune import Settings, finetune

    model = load_checkpoint(bundle.root, bundle.manifest)
    result = finetune(model, pairs, tokenizer, Settings(seed=1, epochs=8), probes=texts)
    result.status, result.best_epoch, result.history[-1]   # the model holds the kept weights
"""

from __future__ import annotations

import copy
import logging
import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from imgsearch.model.tokenizer import TextTokenizer
from imgsearch_training.data import Pairs, Query
from imgsearch_training.trainable import Trainable

logger = logging.getLogger(__name__)

Status = Literal["trained", "diverged"]
Stopped = Literal["early-stopping", "epochs", "max-seconds", "diverged"]


@dataclass(frozen=True)
class Settings:
    """How one fine-tuning run goes; the job reads them from ``hyperparameters.json``."""

    seed: int = 0
    epochs: int = 8
    max_seconds: float = 3600.0
    patience: int = 3
    """Epochs without a better held-out loss before stopping."""
    learning_rate: float = 3e-4
    batch_size: int = 8
    """Positive pairs per step."""
    negatives: int = 4
    """Hard negatives drawn per positive pair."""
    anchor: float = 0.5
    """Weight of the anchor to the parent's embeddings (0: none)."""
    frozen_stages: int = 2
    """Image-tower stages kept as the parent's (their outputs are computed once per image): the
    demo CNN's stride-2 stages (of 4), a vision transformer's encoder layers."""
    warmup_epochs: float = 1.0
    """The learning rate rises linearly from 0 over this many epochs' steps."""
    text_blocks: bool = True
    """Whether the text tower's transformer blocks train (else its embeddings and projection)."""
    threads: int = 2
    device: str = "cpu"
    """The torch device the loop runs on (``cuda`` on a GPU instance); the kept model is
    returned on the CPU, where the export runs."""
    divergence_factor: float = 2.0
    """Diverged when the last held-out loss exceeds its start by this factor."""
    interpolate: float = 0.4
    """The weights kept: ``parent + interpolate * (best - parent)`` (1: the best epoch's)."""
    temperature: float | None = None
    """Fixed softmax temperature; ``None``: the parent's (``logit_scale``), not trained."""


@dataclass
class Result:
    status: Status
    reason: str
    epochs_run: int
    best_epoch: int
    stopped: Stopped
    history: list[dict[str, Any]]
    seconds: float
    state: dict[str, torch.Tensor] = field(repr=False)
    """The kept weights, on the CPU: the best epoch's, interpolated from the parent's (the
    parent's if no epoch ran)."""


@contextmanager
def deterministic(threads: int) -> Iterator[None]:
    """Deterministic kernels and a fixed thread count, restored afterwards (in-process use)."""
    was_deterministic, was_threads = (
        torch.are_deterministic_algorithms_enabled(),
        torch.get_num_threads(),
    )
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was_deterministic)
        torch.set_num_threads(was_threads)


def freeze_batch_norm(model: nn.Module) -> None:
    """Eval mode for every BatchNorm: running statistics stay the parent's."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


@dataclass(frozen=True)
class Batch:
    queries: list[Query]
    """Distinct queries, one row each."""
    images: list[int]
    """Distinct image rows, one column each."""
    relevance: torch.Tensor
    """(queries, images): 1 a known positive, -1 a known negative, 0 unknown."""
    weights: torch.Tensor

    def to(self, device: torch.device) -> Batch:
        return Batch(self.queries, self.images, self.relevance.to(device), self.weights.to(device))


def make_batch(queries: list[Query], images: list[int]) -> Batch:
    """The batch of ``queries`` (rows) against ``images`` (columns), judgments filled in."""
    column = {image: j for j, image in enumerate(images)}
    relevance = torch.zeros(len(queries), len(images))
    for i, query in enumerate(queries):
        for image in query.negatives:
            if image in column:
                relevance[i, column[image]] = -1
        for image in query.positives:
            if image in column:
                relevance[i, column[image]] = 1
    weights = torch.tensor([q.weight for q in queries], dtype=torch.float32)
    return Batch(queries, images, relevance, weights / weights.mean())


def contrastive_loss(
    texts: torch.Tensor, images: torch.Tensor, batch: Batch, scale: float
) -> torch.Tensor:
    """Symmetric InfoNCE over the batch with soft targets on the known positives.

    Query to images: each query's mass spread over its positives, weighted by the query's
    weight. Image to queries: each positive image's mass spread over the queries it answers."""
    logits = scale * F.normalize(texts, dim=-1) @ F.normalize(images, dim=-1).T
    positive = (batch.relevance > 0).float()
    to_images = positive / positive.sum(dim=1, keepdim=True)
    per_query = -(to_images * logits.log_softmax(dim=1)).sum(dim=1)
    text_side = (per_query * batch.weights).mean()
    answered = positive.sum(dim=0) > 0
    to_texts = positive[:, answered] / positive[:, answered].sum(dim=0, keepdim=True)
    image_side = -(to_texts * logits[:, answered].log_softmax(dim=0)).sum(dim=0).mean()
    return (text_side + image_side) / 2


def anchor_loss(current: torch.Tensor, parent: torch.Tensor) -> torch.Tensor:
    """Mean ``1 - cos`` between the model's embeddings and the parent's of the same inputs."""
    return (1 - F.cosine_similarity(current, parent, dim=-1)).mean()


class Trainer:
    """The loop's state: the model, its parent's frozen embeddings and the tokenised texts."""

    def __init__(
        self,
        model: Trainable,
        pairs: Pairs,
        tokenizer: TextTokenizer,
        settings: Settings,
        probes: list[str],
    ) -> None:
        self.model, self.tokenizer, self.settings = model, tokenizer, settings
        self.device = torch.device(settings.device)
        # The first stages already tell backgrounds apart (a linear probe of the demo model's
        # pooled features reads the background 97-99 % right, the last stage's 30 %): they
        # stay as they are, so their outputs are computed once per image, never back-propagated.
        self.split = model.split_visual(settings.frozen_stages)
        self.probe_tokens = self.tokens(probes) if probes else None
        # The parent's temperature, fixed: a learnable one drifts on a few hundred pairs.
        self.scale = (
            1 / settings.temperature
            if settings.temperature
            else float(model.logit_scale.detach().exp())
        )
        pixels = torch.from_numpy(pairs.pixels)
        with torch.no_grad():
            model.module.eval()
            self.stems = torch.cat(
                [self.split.stem(chunk.to(self.device)) for chunk in pixels.split(256)]
            )
            self.parent_images = self.split.head(self.stems)
            self.parent_probes = (
                model.textual(self.probe_tokens) if self.probe_tokens is not None else None
            )

    def trainable(self) -> list[nn.Parameter]:
        """Every parameter but the frozen stages' and the temperature."""
        frozen = {id(p) for p in self.split.frozen} | {id(self.model.logit_scale)}
        if not self.settings.text_blocks:
            frozen |= {id(p) for p in self.model.text_blocks.parameters()}
        return [p for p in self.model.module.parameters() if id(p) not in frozen]

    def encode_images(self, rows: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.split.head(self.stems[chunk]) for chunk in rows.split(256)])

    def tokens(self, texts: list[str]) -> torch.Tensor:
        return torch.from_numpy(self.tokenizer(texts)).to(self.device)

    def encode_texts(self, queries: list[Query]) -> torch.Tensor:
        return self.model.textual(self.tokens([q.text for q in queries]))

    def losses(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(contrastive, anchor) of one batch with the model as it is."""
        columns = torch.tensor(batch.images, device=self.device)
        images = self.encode_images(columns)
        texts = self.encode_texts(batch.queries)
        loss = contrastive_loss(texts, images, batch.to(self.device), self.scale)
        anchor = torch.zeros((), device=self.device)
        if self.settings.anchor:
            anchor = anchor_loss(images, self.parent_images[columns])
            if self.probe_tokens is not None:
                probes = self.model.textual(self.probe_tokens)
                anchor = (anchor + anchor_loss(probes, self.parent_probes)) / 2
        return loss, anchor


def batches(queries: list[Query], settings: Settings, rng: np.random.Generator) -> Iterator[Batch]:
    """One epoch: every positive pair once, ``batch_size`` at a time, in a random order.

    Each pair brings up to ``negatives`` of its query's hard negatives, and each negative brings
    a query it is a known positive of, if any: "red circle on a white background" comes with
    a red circle on white that "... on a black background" was shown but not clicked. Its image
    then has a hard negative query too, so both directions of the loss see the difference."""
    answers: dict[int, list[Query]] = {}
    for query in queries:
        for image in query.positives:
            answers.setdefault(image, []).append(query)
    items = [(q, p) for q in queries for p in q.positives]
    order = rng.permutation(len(items))
    for start in range(0, len(items), settings.batch_size):
        chosen = [items[int(i)] for i in order[start : start + settings.batch_size]]
        rows = {id(q): q for q, _ in chosen}
        columns = {p: None for _, p in chosen}
        for query, _ in chosen:
            count = min(settings.negatives, len(query.negatives))
            for negative in rng.choice(len(query.negatives), size=count, replace=False):
                image = query.negatives[int(negative)]
                columns[image] = None
                if partners := answers.get(image):
                    partner = partners[int(rng.integers(len(partners)))]
                    rows.setdefault(id(partner), partner)
        yield make_batch(list(rows.values()), list(columns))


@torch.no_grad()
def retrieval_loss(trainer: Trainer, queries: list[Query]) -> float:
    """Each query against every image of the channel: minus the log of the softmax mass on its
    positives, averaged with the queries' weights; the model in eval mode.

    What a search does (rank everything), with no batch composition or sampling in it, so
    that epochs compare exactly."""
    if not queries:
        return math.nan
    trainer.model.module.eval()
    rows = torch.arange(len(trainer.stems), device=trainer.device)
    images = F.normalize(trainer.encode_images(rows), dim=-1)
    texts = F.normalize(trainer.encode_texts(queries), dim=-1)
    log_p = (trainer.scale * texts @ images.T).log_softmax(dim=1)
    losses = torch.stack([-log_p[i, list(q.positives)].logsumexp(0) for i, q in enumerate(queries)])
    weights = torch.tensor([q.weight for q in queries], device=trainer.device)
    return float((losses * weights).sum() / weights.sum())


def interpolate(
    parent: dict[str, torch.Tensor], tuned: dict[str, torch.Tensor], alpha: float
) -> dict[str, torch.Tensor]:
    """``parent + alpha * (tuned - parent)`` for every float tensor (WiSE-FT, Wortsman et al.
    2022): most of the gain on what was tuned, much less loss on what was not."""
    return {
        name: parent[name] + alpha * (value - parent[name]) if value.is_floating_point() else value
        for name, value in tuned.items()
    }


def finetune(
    model: Trainable,
    pairs: Pairs,
    tokenizer: TextTokenizer,
    settings: Settings,
    probes: list[str] | None = None,
) -> Result:
    """Fine-tune ``model`` in place on ``pairs``; returns the run's figures and kept weights."""
    if not pairs.train:
        raise ValueError("no training queries with a usable positive image")
    if not 0 < settings.interpolate <= 1:
        raise ValueError(f"interpolate must be in (0, 1], got {settings.interpolate}")
    started = time.perf_counter()
    if torch.device(settings.device).type == "cuda":
        # cuBLAS is deterministic only with a fixed workspace, set before its first call
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    model.module.to(settings.device)
    with deterministic(settings.threads):
        torch.manual_seed(settings.seed)
        trainer = Trainer(model, pairs, tokenizer, settings, probes or [])
        start_heldout = retrieval_loss(trainer, pairs.heldout)
        history: list[dict[str, Any]] = [
            {
                "epoch": 0,
                "train_loss": round(retrieval_loss(trainer, pairs.train), 5),
                "heldout_loss": round(start_heldout, 5),
            }
        ]
        logger.info(
            "epoch 0 (the parent): train loss %.4f, held-out loss %.4f",
            history[0]["train_loss"],
            start_heldout,
        )
        optimiser = torch.optim.AdamW(
            trainer.trainable(), lr=settings.learning_rate, weight_decay=0.0
        )
        # Adam's first steps move every weight by about the learning rate whatever its
        # gradient; ramping up keeps them from shaking the parent before the moments settle.
        pairs_per_epoch = sum(len(q.positives) for q in pairs.train)
        warmup = max(1.0, settings.warmup_epochs * math.ceil(pairs_per_epoch / settings.batch_size))
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimiser, lambda step: min(1.0, (step + 1) / warmup)
        )
        rng = np.random.default_rng(settings.seed)
        best_state, best_epoch, best_loss = copy.deepcopy(model.module.state_dict()), 0, math.inf
        parent_state = best_state
        stopped: Stopped = "epochs"
        status: Status = "trained"
        reason = ""
        for epoch in range(1, settings.epochs + 1):
            model.module.train()
            freeze_batch_norm(model.module)
            losses, anchors, encoded = [], [], 0
            for step, batch in enumerate(batches(pairs.train, settings, rng)):
                loss, anchor = trainer.losses(batch)
                total = loss + settings.anchor * anchor
                if not torch.isfinite(total):
                    status, stopped = "diverged", "diverged"
                    reason = f"the training loss became {float(total)} at epoch {epoch} step {step}"
                    break
                optimiser.zero_grad(set_to_none=True)
                total.backward()
                optimiser.step()
                schedule.step()
                losses.append(float(loss.detach()))
                encoded += len(batch.images)
                anchors.append(float(anchor.detach()))
                if time.perf_counter() - started > settings.max_seconds:
                    stopped = "max-seconds"  # this epoch still gets its losses
                    break
            if status == "diverged":
                break
            heldout = retrieval_loss(trainer, pairs.heldout)
            entry = {
                "epoch": epoch,
                "train_loss": round(retrieval_loss(trainer, pairs.train), 5),
                "heldout_loss": round(heldout, 5),
                "batch_loss": round(float(np.mean(losses)), 5),
                "anchor_loss": round(float(np.mean(anchors)), 5),
                "images_encoded": encoded,
                "seconds": round(time.perf_counter() - started, 2),
            }
            history.append(entry)
            logger.info(
                "epoch %d/%d: train loss %.4f, held-out loss %.4f, anchor %.4f (%.1f s)",
                epoch,
                settings.epochs,
                entry["train_loss"],
                heldout,
                entry["anchor_loss"],
                entry["seconds"],
            )
            if pairs.heldout and not math.isfinite(heldout):
                status, stopped = "diverged", "diverged"
                reason = f"the held-out loss became {heldout} at epoch {epoch}"
                break
            # Without held-out queries there is nothing to stop on: the last epoch is the best.
            if not pairs.heldout or heldout < best_loss:
                best_state, best_epoch = copy.deepcopy(model.module.state_dict()), epoch
                best_loss = heldout
            if stopped == "max-seconds":
                break
            if epoch - best_epoch >= settings.patience:
                stopped = "early-stopping"
                break
        epochs_run = len(history) - 1
        last = history[-1]["heldout_loss"]
        if (
            status == "trained"
            and pairs.heldout
            and last > settings.divergence_factor * start_heldout
        ):
            status = "diverged"
            reason = (
                f"the held-out loss ended at {last:.4f}, more than {settings.divergence_factor}x "
                f"its start {start_heldout:.4f}"
            )
        if status == "trained":
            reason = (
                f"best held-out loss {best_loss:.4f} at epoch {best_epoch} (start "
                f"{start_heldout:.4f}); stopped: {stopped}"
                if pairs.heldout
                else f"no held-out queries: no early stopping, kept epoch {best_epoch}"
            )
        if settings.interpolate != 1.0:  # 1: the best epoch's weights bit for bit
            best_state = interpolate(parent_state, best_state, settings.interpolate)
        model.module.load_state_dict(best_state)
        model.module.to("cpu")
    return Result(
        status=status,
        reason=reason,
        epochs_run=epochs_run,
        best_epoch=best_epoch,
        stopped=stopped,
        history=history,
        seconds=round(time.perf_counter() - started, 2),
        state=model.module.state_dict(),
    )
