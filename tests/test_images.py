"""Image decoding (mixsearch.data.benchmark.ImageRef.load): decompression bombs are refused
by name, high-bit-depth and other modes decode to the right 8-bit RGB values, and
``dataset.max_image_side`` is off by default, shrinks when set and is part of the cache key."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from mixsearch.data.benchmark import DataError, ImageRef


def _png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def _bilevel_png(width: int, height: int) -> bytes:
    """A valid all-black 1-bit PNG of any size, written chunk by chunk: rows of zeros
    compress to almost nothing, so a 20100 x 20100 image is a ~60 KB file."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte 0 + packed bits
    comp = zlib.compressobj(9)
    body = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def test_a_60kb_png_of_20100_squared_is_refused_naming_the_file(tmp_path):
    # 404,010,000 pixels: above the 400M limit but below 2x, where PIL itself only warns
    path = tmp_path / "bomb.png"
    path.write_bytes(_bilevel_png(20100, 20100))
    assert path.stat().st_size < 100_000
    assert Image.MAX_IMAGE_PIXELS == 400_000_000
    with pytest.raises(DataError, match=r"bomb\.png: 20100x20100 = 404010000 pixels is above"):
        ImageRef(path=str(path)).load()


@pytest.mark.parametrize("side", [101, 141])  # 1.02x and 1.99x the limit: PIL only warns there
def test_anything_above_the_limit_is_refused(monkeypatch, side):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)
    data = _png_bytes(Image.new("RGB", (side, side)))
    with pytest.raises(DataError, match=r"<embedded bytes>.*above the decoding limit of 10000"):
        ImageRef(data=data).load()
    # at the limit it decodes
    assert ImageRef(data=_png_bytes(Image.new("RGB", (100, 100)))).load().size == (100, 100)


def test_16_bit_greyscale_png_is_scaled_not_clipped_to_white():
    values = np.array([[0, 257, 32896, 65535], [1000, 20000, 40000, 60000]], dtype=np.uint16)
    data = _png_bytes(Image.fromarray(values))
    assert Image.open(io.BytesIO(data)).mode == "I;16"
    # the fault: PIL's own conversion clips every value above 255 to white
    assert (np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))[0, 1:] == 255).all()
    rgb = np.asarray(ImageRef(data=data).load())
    expected = np.round(values.astype(float) * 255 / 65535).astype(np.uint8)
    for c in range(3):
        np.testing.assert_array_equal(rgb[..., c], expected)


def test_mode_i_within_16_bits_is_scaled_and_outside_refused():
    ok = Image.fromarray(np.array([[0, 65535, 32768]], dtype=np.int32))
    assert ok.mode == "I"
    buf = io.BytesIO()
    ok.save(buf, "TIFF")
    rgb = np.asarray(ImageRef(data=buf.getvalue(), origin="x.tif").load())
    np.testing.assert_array_equal(rgb[0, :, 0], [0, 255, 128])
    bad = io.BytesIO()
    Image.fromarray(np.array([[0, 70000]], dtype=np.int32)).save(bad, "TIFF")
    with pytest.raises(DataError, match=r"big\.tif: mode I with values 0\.\.70000"):
        ImageRef(data=bad.getvalue(), origin="big.tif").load()


def test_float_images_are_refused_by_name():
    buf = io.BytesIO()
    Image.fromarray(np.full((2, 2), 0.5, dtype=np.float32)).save(buf, "TIFF")
    with pytest.raises(DataError, match=r"f\.tif: mode F"):
        ImageRef(data=buf.getvalue(), origin="f.tif").load()


@pytest.mark.parametrize("mode,colour,expected", [
    ("LA", (100, 0), (100, 100, 100)),           # alpha dropped, grey kept
    ("RGBA", (10, 20, 30, 0), (10, 20, 30)),
    ("CMYK", (0, 0, 0, 0), (255, 255, 255)),     # no ink = white
    ("CMYK", (0, 255, 255, 0), (255, 0, 0)),     # magenta + yellow = red
    ("1", 1, (255, 255, 255)),
])
def test_other_modes_keep_their_colours(mode, colour, expected):
    img = Image.new(mode, (3, 2), colour)
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    buf = io.BytesIO()
    img.save(buf, fmt, **({"quality": 100} if fmt == "JPEG" else {}))
    rgb = np.asarray(ImageRef(data=buf.getvalue()).load()).astype(int)
    assert np.abs(rgb - np.array(expected)).max() <= 2  # JPEG's rounding


def test_palette_with_transparency_keeps_its_palette_colours():
    img = Image.new("P", (2, 1))
    img.putpalette([0, 0, 0, 200, 100, 50] + [0] * 762)
    img.putpixel((1, 0), 1)
    img.info["transparency"] = 0
    rgb = np.asarray(ImageRef(data=_png_bytes(img)).load())
    np.testing.assert_array_equal(rgb[0], [[0, 0, 0], [200, 100, 50]])


def test_max_side_is_off_by_default_and_shrinks_when_set(tmp_path):
    data = _png_bytes(Image.new("RGB", (3000, 1000), (9, 9, 9)))
    assert ImageRef(data=data).load().size == (3000, 1000)  # no hidden 2048 cap
    assert ImageRef(data=data).load(300).size == (300, 100)


def test_max_image_side_defaults_to_off_and_is_checked(tmp_path):
    from mixsearch.config import ConfigError
    from mixsearch.schema import validate
    from tests.test_schema import _resolved

    for ds in ("toy", "mixbench_oven", "beir_nfcorpus", "mteb"):
        cfg = _resolved([f"dataset={ds}"], tmp_path)
        assert cfg["dataset"]["max_image_side"] is None
    cfg = _resolved(["dataset.max_image_side=512"], tmp_path)
    validate(cfg)
    for bad in ("0", "1.5"):
        cfg = _resolved([f"dataset.max_image_side={bad}"], tmp_path)
        with pytest.raises(ConfigError, match="dataset.max_image_side"):
            validate(cfg)


def test_max_image_side_is_in_the_cache_key_of_image_entries_only(tmp_path):
    from mixsearch.data.benchmark import Record
    from mixsearch.embed.cache import EmbeddingCache
    from mixsearch.embed.extract import embed_records
    from tests.fake_encoder import FakeEncoder

    enc = FakeEncoder()
    img = ImageRef(data=_png_bytes(Image.new("RGB", (64, 32), (200, 10, 10))))
    recs = [Record("d0", text="a red box", image=img)]
    cache = EmbeddingCache(tmp_path)
    keys = {}
    for side in (None, 16):
        for field in ("text", "image"):
            st: dict = {}
            embed_records(enc, recs, field, cache=cache, dataset_key="toy", split="corpus",
                          max_image_side=side, stats=st, progress=False)
            keys[side, field] = st["key"]
    assert keys[None, "text"] == keys[16, "text"]
    assert keys[None, "image"] != keys[16, "image"]
