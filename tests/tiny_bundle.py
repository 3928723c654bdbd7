"""A tiny, valid model bundle built with the ``onnx`` helper API, for runtime error-path tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

from imgsearch.model.bundle import sha256_file

VOCAB = ["[UNK]", "<|startoftext|>", "<|endoftext|>", "a", "red", "blue", "circle", "square"]


def _visual(dim: int, image_size: int) -> onnx.ModelProto:
    weights = numpy_helper.from_array(
        np.random.default_rng(0).standard_normal((3, dim)).astype(np.float32), "w"
    )
    nodes = [
        helper.make_node("ReduceMean", ["pixel_values"], ["pooled"], axes=[2, 3], keepdims=0),
        helper.make_node("MatMul", ["pooled", "w"], ["image_embeds"]),
    ]
    graph = helper.make_graph(
        nodes,
        "visual",
        [
            helper.make_tensor_value_info(
                "pixel_values", TensorProto.FLOAT, ["batch", 3, image_size, image_size]
            )
        ],
        [helper.make_tensor_value_info("image_embeds", TensorProto.FLOAT, ["batch", dim])],
        initializer=[weights],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _textual(dim: int) -> onnx.ModelProto:
    table = numpy_helper.from_array(
        np.random.default_rng(1).standard_normal((len(VOCAB), dim)).astype(np.float32), "emb"
    )
    nodes = [
        helper.make_node("Gather", ["emb", "input_ids"], ["tokens"]),
        helper.make_node("ReduceMean", ["tokens"], ["text_embeds"], axes=[1], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "textual",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "tokens"])],
        [helper.make_tensor_value_info("text_embeds", TensorProto.FLOAT, ["batch", dim])],
        initializer=[table],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _tokenizer() -> Tokenizer:
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(VOCAB)}, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A <|endoftext|>",
        special_tokens=[("<|startoftext|>", 1), ("<|endoftext|>", 2)],
    )
    return tokenizer


def make_tiny_bundle(
    root: Path, dim: int = 8, image_size: int = 16, context_length: int = 6
) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    onnx.save(_visual(dim, image_size), root / "visual.onnx")
    onnx.save(_textual(dim), root / "textual.onnx")
    _tokenizer().save(str(root / "tokenizer.json"))
    files = {n: sha256_file(root / n) for n in ("visual.onnx", "textual.onnx", "tokenizer.json")}
    manifest = {
        "name": "tiny",
        "version": "1",
        "embedding_dim": dim,
        "image_size": image_size,
        "resize_size": image_size,
        "context_length": context_length,
        "pad_token_id": 2,
        "files": files,
        "source": "tests",
        "license": "Apache-2.0",
    }
    (root / "model.json").write_text(json.dumps(manifest), encoding="utf-8")
    return root
