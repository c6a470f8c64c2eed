"""The toy CLIP shipped with mixsearch (trained on the procedural shapes world), as an encoder.

It is an ordinary open_clip ``local-dir:`` checkpoint, so it runs through
:class:`~mixsearch.encoders.openclip.OpenClipEncoder`; this wrapper only finds the packaged
folder and verifies its ``SHA256SUMS`` first, so a damaged or edited checkpoint fails loudly
instead of producing quietly different numbers.
"""

from __future__ import annotations

from pathlib import Path

from mixsearch.encoders.base import EncoderError
from mixsearch.encoders.openclip import OpenClipEncoder
from mixsearch.toymodel import CHECKPOINT_DIR, verify_checksums


class ToyEncoder(OpenClipEncoder):
    """The toy CLIP (or another checkpoint folder written by ``mixsearch.toymodel.train``).

    Args:
        checkpoint: folder with ``open_clip_config.json``, weights and ``SHA256SUMS``; the
            packaged ``mixsearch/assets/toy_clip`` when None.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ...

    Raises:
        EncoderError: the folder is missing, or a file is missing or fails its checksum (the
            message names the file).
    """

    def __init__(self, checkpoint: str | Path | None = None, *, device: str = "auto") -> None:
        folder = Path(checkpoint) if checkpoint is not None else CHECKPOINT_DIR
        if not folder.is_dir():
            raise EncoderError(f"toy CLIP checkpoint folder not found: {folder}")
        try:
            verify_checksums(folder)
        except ValueError as e:
            raise EncoderError(f"toy CLIP checkpoint is damaged: {e}") from e
        super().__init__(f"local-dir:{folder}", device=device)
        self.name = f"toy:{folder.name}"
