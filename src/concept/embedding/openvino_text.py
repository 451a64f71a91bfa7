"""The offline model's text network (a SentenceTransformer) run by OpenVINO on the CPU.

Only the transformer runs in OpenVINO; tokenising, pooling and normalising stay the
SentenceTransformer's own modules, so the vectors are PyTorch's to about 1e-7 (float32).
Texts are batched by token count, so that a batch of words carries almost no padding, and each
batch is split over the compiled network's streams (one per core or so), which run at once.
On the development machine's two cores: about 1.4x PyTorch's `encode` in float32, 4x in int8
(benchmarks/RESULTS.md).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from concept.embedding.quantize import cache_folder, compile_streams, infer_over_streams, load_or_build

logger = logging.getLogger(__name__)


def supported(model: Any) -> bool:
    """True when `model` is a SentenceTransformer whose first module is a Hugging Face
    transformer with a tokenizer (the bundled MiniLM is); others stay in PyTorch."""
    try:
        first = model[0]
    except (TypeError, IndexError, KeyError):
        return False
    return hasattr(first, "auto_model") and hasattr(first, "tokenizer") and hasattr(model, "preprocess")


class OpenVINOTextEncoder:
    """`encode(texts)` of a SentenceTransformer with its transformer compiled by OpenVINO.

    name: names the converted network in the cache folder (e.g. "minilm-l6-v2");
    precision: "f32" or "int8" (post-training quantization by NNCF, `concept.embedding.quantize`,
        calibrated on words of the bundled vocabulary).
    """

    def __init__(self, model: Any, name: str, precision: str = "f32") -> None:
        self.model = model
        self.precision = precision
        folder = cache_folder(name)
        network = load_or_build(folder, self._convert)
        if precision == "int8":
            from concept.embedding.quantize import nncf_version, quantize_text_network

            network = load_or_build(folder.with_name(f"{folder.name}-int8-nncf{nncf_version()}"),
                                    lambda: quantize_text_network(network, self._features))
        self.inputs = [port.get_any_name() for port in network.inputs]
        self.requests = compile_streams(network, precision)

    def _features(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """The network's inputs for `texts`, as the SentenceTransformer tokenises them."""
        features = self.model.preprocess(list(texts))
        return {k: v.numpy() for k, v in features.items() if k in ("input_ids", "attention_mask", "token_type_ids")}

    def _convert(self):
        import openvino as ov
        import torch

        example = {k: torch.from_numpy(v) for k, v in self._features(["a photo", "an example of a text"]).items()}
        with warnings.catch_warnings():
            # Tracing warns that shape checks become constants: they are (no cache of past
            # keys, an attention mask always given), and the tests compare with PyTorch.
            warnings.simplefilter("ignore")
            return ov.convert_model(self.model[0].auto_model, example_input=example)

    def encode(self, texts: list[str], batch_size: int = 256) -> np.ndarray:
        """(len(texts), d) sentence embeddings, as `model.encode` gives them."""
        import torch

        tokenizer = self.model[0].tokenizer
        lengths = np.asarray([len(ids) for ids in tokenizer(texts, add_special_tokens=True)["input_ids"]])
        order = np.argsort(lengths, kind="stable")
        out: np.ndarray | None = None
        for start in range(0, len(texts), batch_size):
            rows = order[start:start + batch_size]
            features = self._features([texts[i] for i in rows])
            (hidden,) = infer_over_streams(self.requests, {k: features[k] for k in self.inputs}, 1)
            pooled = {"attention_mask": torch.from_numpy(features["attention_mask"]),
                      "token_embeddings": torch.from_numpy(hidden)}
            with torch.inference_mode():
                for module in list(self.model)[1:]:  # the model's own pooling (and normalising)
                    pooled = module(pooled)
            vectors = pooled["sentence_embedding"].float().numpy()
            if out is None:
                out = np.zeros((len(texts), vectors.shape[1]), np.float32)
            out[rows] = vectors
        return out if out is not None else np.zeros((0, 0), np.float32)
