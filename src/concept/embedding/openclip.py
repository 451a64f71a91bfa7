"""open_clip models (`pip install "concept[open_clip]"`): LAION / DataComp / DFN CLIPs, SigLIP and
SigLIP 2, MobileCLIP, by architecture and pretrained tag, from the local cache or a file.

Specs (after the ``open_clip:`` prefix of `load_embedding_model`):

- ``ARCH/TAG``, e.g. ``ViT-B-32/laion2b_s34b_b79k`` or ``ViT-B-16-SigLIP2/webli``: a built-in
  architecture with one of its pretrained tags (`open_clip.list_pretrained()`), read from the
  Hugging Face cache (or, for the few tags that are plain URLs, open_clip's ``~/.cache/clip``);
- ``ARCH/PATH``: a built-in architecture with a checkpoint file (``.safetensors``, ``.bin``,
  ``.pt``; an absolute path gives ``ARCH//abs/path``);
- ``FOLDER``: a folder holding ``open_clip_config.json`` and the weights (open_clip's
  ``local-dir:`` layout, as a hub repository of open_clip is laid out);
- ``hf-hub:ORG/NAME``: such a repository in the Hugging Face cache.

Nothing reaches the network unless ``allow_download=True``: the weights (and, for SigLIP, the
Hugging Face tokenizer) are looked up in the cache first, with an EmbeddingError naming what to
place where when they are missing, and the model loads with the hub in offline mode.
Preprocessing follows the checkpoint's own (`preprocess_cfg`: size, mean, std, resize mode),
done by concept's image pipeline rather than open_clip's torchvision transforms, so that it runs
in worker processes.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from concept._errors import EmbeddingError
from concept._hub import cached_file
from concept.embedding.clip import _model_tag
from concept.embedding.towers import TwoTowerEmbedder, file_tag, hub_offline

#: Where open_clip keeps checkpoints of URL-only tags when no cache_dir is given.
_URL_CACHE = "~/.cache/clip"


def import_open_clip():
    """The open_clip module, or an EmbeddingError saying what to install."""
    try:
        import open_clip
    except ImportError as exc:
        if exc.name in (None, "open_clip"):
            raise EmbeddingError(
                "open_clip models need the open_clip_torch package: pip install \"concept[open_clip]\" "
                "(with the torchvision built for your torch).") from None
        failure = exc
    except Exception as exc:  # noqa: BLE001 - e.g. a torchvision built for another torch
        failure = exc
    else:
        return open_clip
    raise EmbeddingError(
        f"open_clip could not be imported: {type(failure).__name__}: {failure}. It imports torchvision, which "
        "must be the build of your torch (a CPU-only torch needs torchvision's CPU wheel, from "
        "https://download.pytorch.org/whl/cpu).")


def _hub_cache(cache_dir: str | None) -> str:
    from huggingface_hub import constants

    return cache_dir or constants.HF_HUB_CACHE


def _weight_files(filename: str) -> list[str]:
    """The files open_clip tries for a hub checkpoint `filename`, safetensors first."""
    from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

    filename = filename or HF_WEIGHTS_NAME
    if filename == HF_WEIGHTS_NAME:
        return [HF_SAFE_WEIGHTS_NAME, filename]
    if filename.endswith((".bin", ".pth")):
        return [filename[:-4] + ".safetensors", filename]
    return [filename]


def _require_tokenizer(text_cfg: dict, what: str, cache_dir: str | None) -> None:
    """A model with a Hugging Face tokenizer (SigLIP's Gemma, XLM-R...) needs it in the cache."""
    name = text_cfg.get("hf_tokenizer_name") or text_cfg.get("hf_model_name")
    if not name or Path(name).expanduser().is_dir():
        return
    if cached_file(name, ["tokenizer_config.json", "tokenizer.json"], cache_dir) is None:
        raise EmbeddingError(
            f"The tokenizer of {what}, the Hugging Face repository {name!r}, is not in the cache "
            f"{_hub_cache(cache_dir)} and concept never downloads by default: place it there with "
            f"`hf download {name}` on a machine with network, or pass allow_download=True.")


class OpenCLIPEmbedder(TwoTowerEmbedder):
    """An open_clip model (see the module doc for the `model` strings).

    Parameters
    ----------
    model: ``ARCH/TAG``, ``ARCH/PATH``, a folder, or ``hf-hub:ORG/NAME``.
    pretrained: a tag or checkpoint file, instead of writing it into `model` (then `model` is ARCH).
    device: torch device (None: "cuda" when available, else "cpu").
    allow_download: let open_clip fetch weights and tokenizer from the hub; off by default.
    cache_dir: the Hugging Face cache to read (None: HF_HUB_CACHE).
    precision: "auto" (bf16 on CUDA, fp32 on CPU), "fp32", "bf16", "fp16".
    gpu_batch_size / gpu_decode: as `CLIPEmbedder`'s (CUDA only; untested without a GPU).
    """

    def __init__(self, model: str, *, pretrained: str | None = None, device: str | None = None,
                 allow_download: bool = False, cache_dir: str | None = None, precision: str = "auto",
                 gpu_batch_size: int | None = None, gpu_decode: bool | None = None,
                 verbose: bool = True) -> None:
        super().__init__(verbose=verbose)
        self._setup_device(device, precision, gpu_batch_size, gpu_decode)
        self.allow_download = allow_download
        self.cache_dir = cache_dir
        open_clip = import_open_clip()
        self.spec = "open_clip:" + (model if pretrained is None else f"{model}/{pretrained}")
        self._model_name, pretrained, self.name = self._resolve(open_clip, model, pretrained)
        try:
            with hub_offline(not allow_download):
                net = open_clip.create_model(self._model_name, pretrained=pretrained, device=self.device,
                                             cache_dir=cache_dir, require_pretrained=True)
                self.tokenizer = open_clip.get_tokenizer(self._model_name, cache_dir=cache_dir)
        except Exception as exc:  # many causes: a bad checkpoint, a mismatched architecture
            raise EmbeddingError(f"Could not load the open_clip model {self.spec!r}: {exc}") from exc
        net.eval()
        if self.dtype_ != torch.float32:  # CUDA only (untested here)
            net.to(self.dtype_)
        self.model = net
        self._read_preprocessing(net.visual.preprocess_cfg)
        self.logit_scale = float(net.logit_scale.detach().float().exp())
        bias = getattr(net, "logit_bias", None)
        self.logit_bias = None if bias is None else float(bias.detach().float().reshape(-1)[0])

    def _resolve(self, open_clip, model: str, pretrained: str | None) -> tuple[str, str | None, str]:
        """(open_clip's model name, its `pretrained` argument, this backend's `name`), after checking
        that the weights are on this machine unless downloads are allowed."""
        local = Path(model.removeprefix("local-dir:")).expanduser()
        if pretrained is None and (model.startswith("local-dir:") or local.is_dir()):
            if not (local / "open_clip_config.json").is_file():
                raise EmbeddingError(f"The folder {str(local)!r} has no open_clip_config.json: an open_clip folder "
                                     "holds it and the weights (open_clip_model.safetensors), as a hub "
                                     "repository of open_clip does.")
            if not self.allow_download:
                import json

                cfg = json.loads((local / "open_clip_config.json").read_text(encoding="utf-8"))
                _require_tokenizer(cfg.get("model_cfg", cfg).get("text_cfg", {}), str(local), self.cache_dir)
            return f"local-dir:{local}", None, f"open_clip:{_model_tag(str(local))}"
        if pretrained is None and model.startswith(("/", ".", "~", "local-dir:")):
            raise EmbeddingError(f"The open_clip folder {str(local)!r} does not exist: pass a folder holding "
                                 "open_clip_config.json and the weights, or 'open_clip:ARCH/TAG'.")
        if pretrained is None and model.startswith("hf-hub:"):
            repo = model.removeprefix("hf-hub:")
            if not self.allow_download:
                config = cached_file(repo, ["open_clip_config.json"], self.cache_dir)
                if config is None or cached_file(repo, _weight_files(""), self.cache_dir) is None:
                    raise self._missing(model, repo, "open_clip_config.json and open_clip_model.safetensors")
                import json

                cfg = json.loads(Path(config).read_text(encoding="utf-8"))
                _require_tokenizer(cfg.get("model_cfg", cfg).get("text_cfg", {}), model, self.cache_dir)
            return model, None, f"open_clip:{model}"
        if pretrained is None:
            if "/" not in model:
                raise EmbeddingError(
                    f"open_clip:{model} names no weights: write open_clip:ARCH/TAG (e.g. "
                    "'open_clip:ViT-B-32/laion2b_s34b_b79k'; open_clip.list_pretrained() lists them), "
                    "open_clip:ARCH/CHECKPOINT_FILE, or open_clip:FOLDER.")
            model, pretrained = model.split("/", 1)
        arch = model
        if arch not in open_clip.list_models():
            raise EmbeddingError(f"open_clip has no architecture {arch!r}; open_clip.list_models() lists them "
                                 "(e.g. 'ViT-B-32', 'ViT-B-16-SigLIP2').")
        tags = open_clip.list_pretrained_tags_by_model(arch)
        if pretrained in tags:
            if not self.allow_download:
                self._check_tag(open_clip, arch, pretrained)
            return arch, pretrained, f"open_clip:{arch}/{pretrained}"
        path = Path(pretrained).expanduser()
        if path.is_file():
            return arch, str(path), f"open_clip:{arch}/{file_tag(path)}"
        raise EmbeddingError(
            f"{pretrained!r} is neither a pretrained tag of open_clip's {arch} ({', '.join(tags) or 'none'}) "
            "nor an existing checkpoint file.")

    def _check_tag(self, open_clip, arch: str, tag: str) -> None:
        cfg = open_clip.get_pretrained_cfg(arch, tag)
        what = f"{arch}/{tag}"
        if cfg.get("hf_hub"):
            # "org/name/file.bin", or "org/name/" for open_clip's default weights file
            repo, filename = os.path.split(cfg["hf_hub"])
            files = _weight_files(filename)
            if cached_file(repo, files, self.cache_dir) is None:
                raise self._missing(what, repo, " or ".join(files))
        elif cfg.get("url"):
            target = Path(self.cache_dir or _URL_CACHE).expanduser() / os.path.basename(cfg["url"])
            if not target.is_file():
                raise EmbeddingError(
                    f"The weights of open_clip:{what} are not on this machine: place {cfg['url']} at {target} "
                    "(or pass allow_download=True on a machine with network); concept never downloads by default.")
        config = open_clip.get_model_config(arch) or {}
        _require_tokenizer(config.get("text_cfg", {}), f"open_clip:{what}", self.cache_dir)

    def _missing(self, what: str, repo: str, files: str) -> EmbeddingError:
        cache = _hub_cache(self.cache_dir)
        return EmbeddingError(
            f"The weights of open_clip:{what} are not on this machine: open_clip reads them as {files} of the "
            f"Hugging Face repository {repo!r}, looked for in the cache {cache} (set by HF_HOME / "
            f"HF_HUB_CACHE), and concept never downloads by default. Place them there with `hf download {repo}` "
            f"on a machine with network (then copy the cache), pass a checkpoint file "
            f"('open_clip:ARCH/path/to/open_clip_model.safetensors') or a folder, pass allow_download=True, "
            f"or use embedding_model='offline', the bundled model, which works now.")

    def _read_preprocessing(self, cfg: dict) -> None:
        size = cfg.get("size", 224)
        if isinstance(size, (tuple, list)):
            if len(set(size)) != 1:
                raise EmbeddingError(f"open_clip model {self.spec!r} expects non-square {size} images, which "
                                     "concept's image pipeline does not make.")
            size = size[0]
        self.image_size = int(size)
        self.mean = tuple(float(v) for v in cfg.get("mean", self.mean))
        self.std = tuple(float(v) for v in cfg.get("std", self.std))
        self.resize = cfg.get("resize_mode", "shortest")
        self.interpolation = cfg.get("interpolation", "bicubic")
        self.fill_color = int(cfg.get("fill_color", 0))

    def _image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(pixels)

    def _text_features(self, texts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(texts).to(self.device)
        return self.model.encode_text(tokens)
