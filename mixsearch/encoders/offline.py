"""Running encoders without the network: hub checks, local file identity, runtime settings.

Hub-backed checkpoints are resolved through the Hugging Face cache. When the hub cannot be
used (``HF_HUB_OFFLINE`` set, or the endpoint unreachable) and the files are not cached,
:func:`require_hub_files` fails at once with a message naming the model and the command
that pre-downloads it, instead of letting the loaders retry for minutes.

:func:`clip_tokenizer_offline` rebuilds the CLIP BPE tokenizer from the vocabulary that
open_clip ships, so tests can give tiny transformers models a real tokenizer offline.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import socket
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import torch

from mixsearch.encoders.base import EncoderError

if TYPE_CHECKING:
    from transformers import CLIPTokenizer

_TRUE = {"1", "ON", "YES", "TRUE"}
#: Files up to this size are identified by a content hash; larger ones by size + mtime
#: (hashing a multi-GB checkpoint on every run would cost more than it protects).
CONTENT_HASH_LIMIT = 256 * 2**20
PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


# --------------------------------------------------------------------------- hub


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` is set (read now, not at import, so tests can toggle it)."""
    return os.environ.get("HF_HUB_OFFLINE", "").upper() in _TRUE


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the hub endpoint opens within ``timeout`` seconds.

    With an HTTP(S) proxy configured a direct connection proves nothing, so the probe
    reports reachable and leaves the verdict to the loader.
    """
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")):
        return True
    from huggingface_hub import constants

    url = urlparse(os.environ.get("HF_ENDPOINT") or constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


def hub_cached(
    repo_id: str, filename: str, *, revision: str | None = None, cache_dir: str | None = None
) -> bool:
    """Whether ``filename`` of hub repo ``repo_id`` is in the local cache."""
    return hub_commit(repo_id, filename, revision=revision, cache_dir=cache_dir) is not None


def hub_commit(
    repo_id: str, filename: str, *, revision: str | None = None, cache_dir: str | None = None
) -> str | None:
    """The commit of the cached snapshot holding ``filename``, or None when not cached."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, filename, cache_dir=cache_dir, revision=revision)
    # cache layout: .../models--org--name/snapshots/<commit>/<filename>
    return Path(found).parent.name if isinstance(found, str) else None


def download_hint(repo_id: str | None, open_clip_args: tuple[str, str] | None = None) -> str:
    """How to make a hub model available offline (ends every hub failure message).

    Args:
        repo_id: hub repository to download, if any.
        open_clip_args: ``(architecture, pretrained tag)`` for an open_clip tag.
    """
    ways = [f"`hf download {repo_id}`"] if repo_id else []
    if open_clip_args:
        name, tag = open_clip_args
        ways.append(
            f"`python -c \"import open_clip; open_clip.create_model_and_transforms('{name}', "
            f"pretrained='{tag}')\"`"
        )
    return (
        f"Pre-download it on a machine with network access ({' or '.join(ways)}) into the same "
        "HF_HOME / cache_dir, or pass a local directory instead of a hub name."
    )


def require_hub_files(
    model: str,
    repo_id: str,
    filenames: Sequence[str],
    *,
    revision: str | None = None,
    cache_dir: str | None = None,
    hint: str | None = None,
) -> None:
    """Fail fast when ``repo_id`` must come from the hub and the hub is unusable.

    Args:
        model: the name the user asked for (used in the message).
        repo_id: hub repository holding the files.
        filenames: alternatives; the check passes when any of them is cached.
        revision: hub revision, if pinned.
        cache_dir: hub cache directory, if not the default.
        hint: how to pre-download (default: :func:`download_hint` for ``repo_id``).

    Raises:
        EncoderError: none of ``filenames`` is cached and the hub is offline or unreachable.
    """
    if any(hub_cached(repo_id, f, revision=revision, cache_dir=cache_dir) for f in filenames):
        return
    if hub_offline():
        why = "HF_HUB_OFFLINE is set"
    elif not hub_reachable():
        why = "the Hugging Face hub is unreachable"
    else:
        return
    raise EncoderError(
        f"model {model!r} is not in the local cache ({repo_id}: none of {list(filenames)}) "
        f"and {why}. {hint or download_hint(repo_id)}"
    )


@contextlib.contextmanager
def hub_errors(model: str, hint: str = "") -> Iterator[None]:
    """Turn loader failures inside the block into an :class:`EncoderError` naming ``model``.

    Args:
        model: the name the user asked for.
        hint: appended to the message (how to pre-download; empty for local paths).
    """
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        yield
    except EncoderError:
        raise
    except (OSError, HfHubHTTPError, LocalEntryNotFoundError, RuntimeError, ValueError) as e:
        raise EncoderError(
            f"cannot load model {model!r}: {type(e).__name__}: {e}." + (f" {hint}" if hint else "")
        ) from e


# --------------------------------------------------------------------------- local files


def file_signature(path: str | Path) -> dict[str, Any]:
    """Identity of a local file, independent of where it lives.

    Files up to :data:`CONTENT_HASH_LIMIT` bytes are content-hashed; larger ones are
    identified by name, size and modification time.
    """
    p = Path(path)
    st = p.stat()
    sig: dict[str, Any] = {"name": p.name, "size": st.st_size}
    if st.st_size <= CONTENT_HASH_LIMIT:
        h = hashlib.sha256()
        with p.open("rb") as f:
            for block in iter(lambda: f.read(2**20), b""):
                h.update(block)
        sig["sha256"] = h.hexdigest()
    else:
        sig["mtime_ns"] = st.st_mtime_ns
    return sig


def dir_signature(directory: str | Path, patterns: Sequence[str]) -> list[dict[str, Any]]:
    """Signatures of the files in ``directory`` matching any of ``patterns``, sorted by name."""
    d = Path(directory)
    files = sorted({p for pat in patterns for p in d.glob(pat) if p.is_file()})
    return [file_signature(p) for p in files]


# --------------------------------------------------------------------------- runtime


def resolve_device(device: str, option: str = "device") -> torch.device:
    """``"auto"`` -> CUDA when available else CPU; anything else is passed to torch.

    Raises:
        ValueError: an invalid device string (names ``option``).
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError as e:
        raise ValueError(f"{option}: invalid device {device!r} ({e})") from e


def resolve_precision(precision: str) -> torch.dtype:
    """Map the ``precision`` option (fp32 | fp16 | bf16) to a torch dtype."""
    if precision not in PRECISIONS:
        raise EncoderError(
            f"invalid precision option {precision!r}; expected one of {list(PRECISIONS)}"
        )
    return PRECISIONS[precision]


# --------------------------------------------------------------------------- tokenizer


def clip_tokenizer_offline(save_dir: str | Path, model_max_length: int = 77) -> CLIPTokenizer:
    """Build the CLIP BPE tokenizer from open_clip's shipped ``bpe_simple_vocab_16e6.txt.gz``.

    Writes ``vocab.json`` and ``merges.txt`` with the layout OpenAI CLIP's tokenizer uses
    (256 byte symbols, their ``</w>`` forms, the 48,894 merges, then ``<|startoftext|>`` and
    ``<|endoftext|>``: 49,408 entries), so token ids equal open_clip's ``SimpleTokenizer``.

    Args:
        save_dir: directory to write the vocabulary and the saved tokenizer into.
        model_max_length: the tokenizer's ``model_max_length`` (77 for CLIP).

    Returns:
        The tokenizer, also saved to ``save_dir`` with ``save_pretrained``.
    """
    from open_clip.tokenizer import bytes_to_unicode, default_bpe
    from transformers import CLIPTokenizer

    lines = gzip.open(default_bpe()).read().decode("utf-8").split("\n")
    merges = lines[1 : 49152 - 256 - 2 + 1]  # the slice CLIP (and open_clip) use
    symbols = list(bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    out = Path(save_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    tokenizer = CLIPTokenizer.from_pretrained(str(out), model_max_length=model_max_length)
    tokenizer.save_pretrained(str(out))
    return tokenizer
