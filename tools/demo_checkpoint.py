"""Recover the demo CLIP's torch checkpoint from its ONNX towers and add it to the bundle.

The committed ``models/demo-clip`` was trained before bundles carried checkpoints, and retraining
it (20 minutes) would change every published figure. Its weights are all in the ONNX graphs:

- visual: the exporter folded each BatchNorm into the conv before it (``features.N.weight`` and
  a bias ``features.N.weight_bias``), so the conv takes the folded weight and its BatchNorm
  becomes the identity plus that bias (weight 1, bias = folded bias, running mean 0, running
  variance ``1 - eps``: ``(x - 0) / sqrt(1 - eps + eps) * 1 + bias``);
- textual: each linear layer is a ``MatMul`` by a transposed, renamed initializer (``val_N``)
  followed by an ``Add`` of ``<layer>.bias``; the graph says which is which;
- the temperature (not in either graph) comes from ``model.json``'s ``training.temperature``.

The rebuilt ``Clip`` must agree with the bundle through the real runtime (cosine >= 0.9999 on
random pixels and texts, ``imgsearch_training.export.check_parity``) before ``checkpoint.pt`` and
the ``checkpoint`` entry are written; ``files`` and every other field stay as they were::

    .venv/bin/python tools/demo_checkpoint.py models/demo-clip

Running it again rewrites the same bytes.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import onnx
import torch
from bundle_writer import log, run
from imgsearch_training.bundle import ToolError
from imgsearch_training.demo_clip import Clip, DemoArchitecture, build_clip
from imgsearch_training.export import check_parity
from imgsearch_training.trainable import DemoClip
from onnx import numpy_helper
from tokenizers import Tokenizer

from imgsearch.model import ClipModel
from imgsearch.model.bundle import MANIFEST, TEXTUAL, TOKENIZER, VISUAL, read_manifest

FOLDED_BIAS = ".weight_bias"


def _initializers(model: onnx.ModelProto) -> dict[str, torch.Tensor]:
    return {
        i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in model.graph.initializer
    }


def linear_weights(model: onnx.ModelProto) -> dict[str, torch.Tensor]:
    """``<layer>.weight`` of every ``MatMul`` + ``Add(<layer>.bias)`` pair, transposed back."""
    weights = _initializers(model)
    adds = {n.input[0]: n for n in model.graph.node if n.op_type == "Add"}
    found = {}
    for node in model.graph.node:
        if node.op_type != "MatMul" or node.input[1] not in weights:
            continue
        add = adds.get(node.output[0])
        bias = add.input[1] if add is not None else ""
        if not bias.endswith(".bias"):
            raise ToolError(f"MatMul {node.name} is not followed by the Add of a layer's bias")
        found[bias.removesuffix(".bias") + ".weight"] = weights[node.input[1]].T.contiguous()
    return found


def attention_heads(model: onnx.ModelProto, width: int) -> int:
    """Heads from the qkv reshape ``(batch, length, 3, heads, width // heads)``."""
    weights = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type != "Concat":
            continue
        parts = [weights[i].tolist() for i in node.input if i in weights]
        if len(parts) == 3 and parts[0] == [3] and parts[1][0] * parts[2][0] == width:
            return int(parts[1][0])
    raise ToolError("cannot find the attention reshape (3, heads, head) in the text graph")


def visual_state(graph: onnx.ModelProto, eps: float) -> dict[str, torch.Tensor]:
    """The image tower's state_dict, each folded BatchNorm rebuilt as identity plus bias."""
    weights = _initializers(graph)
    state = {"mean": weights["mean"], "std": weights["std"]}
    state |= {"proj.weight": weights["proj.weight"], "proj.bias": weights["proj.bias"]}
    for name, bias in weights.items():
        if not name.endswith(FOLDED_BIAS):
            continue
        conv = name.removesuffix(FOLDED_BIAS)  # features.N
        index = int(conv.rsplit(".", 1)[1])
        norm = f"features.{index + 1}"  # Conv, BatchNorm, ReLU: the norm follows its conv
        state[f"{conv}.weight"] = weights[f"{conv}.weight"]
        state[f"{norm}.weight"] = torch.ones_like(bias)
        state[f"{norm}.bias"] = bias
        state[f"{norm}.running_mean"] = torch.zeros_like(bias)
        state[f"{norm}.running_var"] = torch.full_like(bias, 1 - eps)
        state[f"{norm}.num_batches_tracked"] = torch.tensor(0)
    return state


def recover(bundle: Path) -> tuple[Clip, DemoArchitecture, dict[str, Any]]:
    """The demo ``Clip`` rebuilt from ``bundle``'s ONNX towers; (model, architecture, notes)."""
    manifest = read_manifest(bundle)
    visual, textual = onnx.load(str(bundle / VISUAL)), onnx.load(str(bundle / TEXTUAL))
    text_weights = _initializers(textual)
    vocab, width = text_weights["token.weight"].shape
    layers = len({n.split(".")[1] for n in text_weights if n.startswith("blocks.")})
    convs = sorted(
        (int(name.split(".")[1]), weight)
        for name, weight in _initializers(visual).items()
        if name.startswith("features.") and name.endswith(".weight")
    )
    # Stage 0 is one conv, every later stage a stride-2 conv then a stride-1 one.
    widths = tuple(int(convs[i][1].shape[0]) for i in (0, *range(1, len(convs), 2)))
    architecture = DemoArchitecture(
        dim=manifest.embedding_dim,
        width=int(width),
        layers=layers,
        heads=attention_heads(textual, int(width)),
        vocab=int(vocab),
        context_length=manifest.context_length,
        eot_id=manifest.pad_token_id,
        image_widths=widths,
    )
    model = build_clip(architecture, manifest)
    eps = model.visual.features[1].eps
    state = visual_state(visual, eps)
    prefix = {f"visual.{k}": v for k, v in state.items()}
    text = {
        k: v
        for k, v in text_weights.items()
        if k.split(".")[0] in ("token", "position", "blocks", "ln", "proj")
    }
    prefix |= {f"textual.{k}": v for k, v in (text | linear_weights(textual)).items()}
    temperature = float(manifest.extra.get("training", {}).get("temperature", 0.07))
    prefix["logit_scale"] = torch.tensor(math.log(1 / temperature))
    model.load_state_dict(prefix, strict=True)  # every tensor accounted for, none left over
    notes = {
        "provenance": f"recovered from {VISUAL} and {TEXTUAL} by tools/demo_checkpoint.py "
        "(BatchNorm folded into the convs: identity BatchNorm plus the folded bias; "
        f"logit_scale from training.temperature {temperature})",
    }
    return model.eval(), architecture, notes


def add_checkpoint(bundle: Path, threads: int) -> dict[str, Any]:
    """Recover, check parity through the runtime, write ``checkpoint.pt`` and its entry."""
    torch.set_num_threads(threads)
    model, architecture, notes = recover(bundle)
    runtime = ClipModel.load(bundle, threads=threads)
    parity = check_parity(model, runtime, Tokenizer.from_file(str(bundle / TOKENIZER)))
    log.info("parity of the recovered weights with the bundle: %s", parity)
    path = bundle / MANIFEST
    fields = json.loads(path.read_text(encoding="utf-8"))
    entry = DemoClip(model, architecture).write_checkpoint(bundle)
    fields["checkpoint"] = {**entry, **notes, "parity": parity}
    path.write_text(json.dumps(fields, indent=2) + "\n", encoding="utf-8")
    read_manifest(bundle)  # still a valid manifest
    log.info("wrote %s and the checkpoint entry of %s", bundle / entry["file"], path)
    return fields["checkpoint"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path, nargs="?", default=Path("models/demo-clip"))
    parser.add_argument("--threads", type=int, default=2, help="torch and onnxruntime threads")
    args = parser.parse_args(argv)
    return run("demo_checkpoint", lambda: add_checkpoint(args.bundle, args.threads))


if __name__ == "__main__":
    sys.exit(main())
