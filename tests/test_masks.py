"""Masks out (indexed PNG, bits PNG, COCO RLE) and the summary picture: numpy arrays, and PNG
bytes read back with cv2, with FFmpeg's PNG decoder (PyAV) and with a chunk parser of our own."""

from __future__ import annotations

import struct
import zlib
from typing import Any

import av
import cv2
import numpy as np
import pytest

from readers import decode_png, read_bits_png, read_indexed_png, rle_decode
from worker.models.palette import voc_palette
from worker.ops.masks import bits_png, indexed_png, rle, rle_per_label
from worker.ops.postprocess import NO_CLASS

Array = np.ndarray[Any, Any]
rng = np.random.default_rng(11)


def blobs(h: int, w: int, classes: int = 6) -> Array:
    """A class map like a model's: a few regions, upscaled by nearest neighbour."""
    small = rng.integers(0, classes, (max(1, h // 40), max(1, w // 40))).astype(np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)


def chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """The PNG's chunks, parsed here independently of worker.ops.masks, CRCs checked."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    out, p = [], 8
    while p < len(data):
        (n,) = struct.unpack(">I", data[p : p + 4])
        kind, body = data[p + 4 : p + 8], data[p + 8 : p + 8 + n]
        assert struct.unpack(">I", data[p + 8 + n : p + 12 + n])[0] == zlib.crc32(kind + body)
        out.append((kind, body))
        p += 12 + n
    return out


def av_decode(data: bytes) -> av.VideoFrame:
    """FFmpeg's own PNG decoder, through PyAV."""
    frames = av.CodecContext.create("png", "r").decode(av.Packet(data))
    assert len(frames) == 1
    frame = frames[0]
    assert isinstance(frame, av.VideoFrame)
    return frame


def png(ihdr: tuple[int, ...], rows: bytes, *, plte: bytes = b"\0\0\0") -> bytes:
    """A PNG put together by hand, for what our writer never produces."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    head = chunk(b"IHDR", struct.pack(">IIBBBBB", *ihdr)) + chunk(b"PLTE", plte)
    body = chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + head + body


# --------------------------------------------------------------------------- indexed PNG


def test_indexed_png_holds_the_indices_and_the_palette_for_every_decoder() -> None:
    cm = blobs(72, 130)
    cm[:10, :10] = NO_CLASS
    cm[-1, :] = np.arange(130) % 256  # many distinct indices, not just the blobs'
    palette = voc_palette()
    data = indexed_png(cm, palette)

    # Our chunk parser: a palette image with PLTE, index 255 transparent, filter 0 rows.
    found = chunks(data)
    assert [k for k, _ in found] == [b"IHDR", b"PLTE", b"tRNS", b"IDAT", b"IEND"]
    w, h, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", found[0][1])
    assert (w, h, depth, colour, interlace) == (130, 72, 8, 3, 0)
    assert found[1][1] == palette.tobytes()
    assert found[2][1] == b"\xff" * 255 + b"\x00"
    raw = np.frombuffer(zlib.decompress(found[3][1]), np.uint8).reshape(72, 131)
    assert not raw[:, 0].any()
    np.testing.assert_array_equal(raw[:, 1:], cm)

    # libpng (cv2) expands the palette: the pixels are the card's colours, alpha from tRNS.
    bgra = decode_png(data, cv2.IMREAD_UNCHANGED)
    assert bgra.shape == (72, 130, 4)
    np.testing.assert_array_equal(bgra[:, :, :3], palette[cm][:, :, ::-1])
    np.testing.assert_array_equal(bgra[:, :, 3], np.where(cm == NO_CLASS, 0, 255))

    # FFmpeg keeps the indices and hands the palette over as ARGB.
    frame = av_decode(data)
    assert frame.format.name == "pal8"
    indices, argb = frame.to_ndarray()
    np.testing.assert_array_equal(indices, cm)
    np.testing.assert_array_equal(argb[:, 1:], palette)
    assert (argb[:255, 0] == 255).all() and argb[255, 0] == 0

    back, pal = read_indexed_png(data)
    np.testing.assert_array_equal(back, cm)
    np.testing.assert_array_equal(pal, palette)


def test_indexed_png_short_palette_is_padded_and_transparency_is_optional() -> None:
    cm = np.array([[0, 1, 2], [2, 1, 7]], np.uint8)
    colours = np.array([[10, 20, 30], [40, 50, 60], [70, 80, 90]], np.uint8)
    data = indexed_png(cm, colours, transparent=None)
    assert [k for k, _ in chunks(data)] == [b"IHDR", b"PLTE", b"IDAT", b"IEND"]
    bgr = decode_png(data, cv2.IMREAD_UNCHANGED)
    assert bgr.shape == (2, 3, 3)
    assert bgr[0, 1].tolist() == [60, 50, 40] and bgr[1, 2].tolist() == [0, 0, 0]  # 7: padding
    back, pal = read_indexed_png(data)
    np.testing.assert_array_equal(back, cm)
    assert pal.shape == (256, 3) and pal[:3].tolist() == colours.tolist()
    # Another index made transparent: tRNS is as long as it needs to be.
    found = dict(chunks(indexed_png(cm, colours, transparent=1)))
    assert found[b"tRNS"] == b"\xff\x00"


def test_indexed_png_of_a_720p_map_round_trips_and_stays_small() -> None:
    cm = blobs(720, 1280)
    data = indexed_png(cm, voc_palette())
    np.testing.assert_array_equal(read_indexed_png(data)[0], cm)
    assert len(data) < cm.size // 20  # runs of a few values: deflate's RLE strategy


@pytest.mark.parametrize(
    ("class_map", "palette"),
    [
        (np.zeros((4, 4), np.int32), voc_palette()),
        (np.zeros((4, 4, 1), np.uint8), voc_palette()),
        (np.zeros((0, 4), np.uint8), voc_palette()),
        (np.zeros((4, 4), np.uint8), np.zeros((257, 3), np.uint8)),
        (np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8)),
    ],
)
def test_indexed_png_refuses_what_it_cannot_write(class_map: Array, palette: Array) -> None:
    with pytest.raises(ValueError):
        indexed_png(class_map, palette)


def test_read_indexed_png_refuses_other_pngs() -> None:
    good = indexed_png(np.zeros((2, 3), np.uint8), voc_palette())
    rows = bytes([0, 1, 2, 3]) * 2
    cases = {
        "filter": png((3, 2, 8, 3, 0, 0, 0), bytes([1, 1, 2, 3, 0, 1, 2, 3])),
        "bit depth": png((6, 2, 4, 3, 0, 0, 0), bytes([0, 0x12, 0x30]) * 2),
        "colour type": bytes(cv2.imencode(".png", np.zeros((2, 3), np.uint8))[1]),
        "interlace": png((3, 2, 8, 3, 0, 0, 1), rows),
        "short data": png((3, 3, 8, 3, 0, 0, 0), rows),
        "crc": good[:-5] + bytes([good[-5] ^ 1]) + good[-4:],
        "truncated": good[: len(good) // 2],
        "not png": b"GIF89a" + good[6:],
    }
    for what, data in cases.items():
        with pytest.raises(ValueError):
            read_indexed_png(data)
            pytest.fail(what)


# --------------------------------------------------------------------------------- bits


@pytest.mark.parametrize(
    ("classes", "pix_fmt"),
    [(1, "gray"), (8, "gray"), (9, "gray16be"), (16, "gray16be"), (17, "rgba"), (32, "rgba")],
)
def test_bits_png_sample_value_is_the_bit_mask(classes: int, pix_fmt: str) -> None:
    bits = rng.integers(0, 1 << classes, (37, 53), dtype=np.uint64).astype(np.uint32)
    bits[0, 0] = (1 << classes) - 1  # every class on
    data = bits_png(bits, classes)
    np.testing.assert_array_equal(read_bits_png(data), bits)
    # Decoded without our code, as the module's docstring tells a user to.
    frame = av_decode(data)
    assert frame.format.name == pix_fmt
    img = frame.to_ndarray().astype(np.uint64)
    if pix_fmt == "rgba":
        r, g, b, a = (img[:, :, i] for i in range(4))
        img = r | g << np.uint64(8) | b << np.uint64(16) | a << np.uint64(24)
    np.testing.assert_array_equal(img, bits)


def test_bits_png_refuses_bits_it_would_lose() -> None:
    with pytest.raises(ValueError, match="bit 3"):
        bits_png(np.full((2, 2), 8, np.uint32), 3)
    for classes in (0, 33):
        with pytest.raises(ValueError):
            bits_png(np.zeros((2, 2), np.uint32), classes)
    with pytest.raises(ValueError):
        bits_png(np.zeros((2, 2), np.uint16), 8)
    with pytest.raises(ValueError):
        read_bits_png(b"not a png")


# ---------------------------------------------------------------------------------- RLE

# Derived by hand from pycocotools' rleToString (and checked against its mask.encode when
# written): column-major runs starting with zeros; from the 4th count on, the difference from
# the count two before; each value in 5-bit groups, low first, char = 48 + group, 0x20 set on
# all groups but the last, the last group's 0x10 bit being the sign.
HAND_VECTORS = [
    # all off: counts [4] -> "4"
    (np.zeros((2, 2), bool), [4], "4"),
    # all on: an empty run of zeros first -> [0, 4]
    (np.ones((2, 2), bool), [0, 4], "04"),
    # columns [0,1,1], [1,1,1], [0,1,1] -> [1, 5, 1, 2]; 2 - 5 = -3: 29 = 0b11101 -> "M"
    (np.array([[0, 1, 0], [1, 1, 1], [1, 1, 1]], bool), [1, 5, 1, 2], "151M"),
    # 100 = 3 << 5 | 4 -> "T" (48+32+4), "3"; 50 = 1 << 5 | 18 -> "b" (18 has 0x10), "1";
    # the third count is not a difference; the fourth is 100 - 50 = 50
    (
        np.c_[np.zeros(100), np.r_[np.ones(50), np.zeros(50)], np.ones(100)].astype(bool),
        [100, 50, 50, 100],
        "T3b1b1b1",
    ),
    # 200 -> "X6"; 10 -> ":"; 100 - 200 = -100 = -4 << 5 | 28 -> "l" (more), then -4 -> "L"
    (
        np.r_[np.ones(200), np.zeros(10), np.ones(100)].astype(bool)[:, None],
        [0, 200, 10, 100],
        "0X6:lL",
    ),
]


@pytest.mark.parametrize(("mask", "counts", "string"), HAND_VECTORS)
def test_rle_known_vectors(mask: Array, counts: list[int], string: str) -> None:
    h, w = mask.shape
    assert rle(mask) == {"size": [h, w], "counts": string}
    np.testing.assert_array_equal(rle_decode({"size": [h, w], "counts": string}), mask)
    np.testing.assert_array_equal(rle_decode({"size": [h, w], "counts": counts}), mask)
    # pycocotools hands out bytes; json.loads gives str: both read.
    np.testing.assert_array_equal(rle_decode({"size": [h, w], "counts": string.encode()}), mask)


def test_rle_round_trips_masks_of_every_kind() -> None:
    masks = [np.zeros((1, 1), bool), np.ones((1, 1), bool), np.zeros((0, 5), bool)]
    for _ in range(200):
        h, w = (int(v) for v in rng.integers(1, 50, 2))
        masks.append(rng.random((h, w)) < rng.random())
    masks += [blobs(720, 1280) == 2, np.ones((720, 1280), bool), rng.random((720, 1280)) < 0.5]
    for mask in masks:
        obj = rle(mask)
        assert obj["size"] == list(mask.shape) and isinstance(obj["counts"], str)
        back = rle_decode(obj)
        assert back.dtype == bool
        np.testing.assert_array_equal(back, mask)
    # Non-bool masks: nonzero is on.
    assert rle(np.array([[0, 7], [3, 0]], np.uint8)) == rle(np.array([[0, 1], [1, 0]], bool))


@pytest.mark.parametrize(
    "obj",
    [
        {"size": [2, 2], "counts": "3"},  # 3 pixels for 4
        {"size": [2, 2], "counts": "4 "},  # a space is below '0'
        {"size": [2, 2], "counts": "T"},  # ends inside a number
        {"size": [2, 2], "counts": [5, -1]},
        {"size": [2], "counts": "4"},
        {"counts": "4"},
    ],
)
def test_rle_decode_refuses_broken_input(obj: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        rle_decode(obj)


def test_rle_per_label_class_map_gives_each_present_label() -> None:
    labels = ("background", "sky", "ground", "robot")
    cm = blobs(90, 160, classes=6)  # 4 and 5: no label
    cm[cm == 3] = 1  # robot absent
    cm[:5] = NO_CLASS
    out = rle_per_label(cm, None, labels)
    present = [labels[i] for i in range(len(labels)) if (cm == i).any()]
    assert list(out) == present and "robot" not in out
    for i, label in enumerate(labels):
        if label in out:
            assert out[label] == rle(cm == i)
            np.testing.assert_array_equal(rle_decode(out[label]), cm == i)


def test_rle_per_label_bits_gives_each_set_bit_and_ignores_the_class_map() -> None:
    labels = tuple(f"l{i}" for i in range(20))
    bits = rng.integers(0, 1 << 18, (60, 70), dtype=np.uint64).astype(np.uint32)
    bits &= ~np.uint32(1 << 5)  # l5 never on
    out = rle_per_label(np.zeros((60, 70), np.uint8), bits, labels)
    assert list(out) == [f"l{k}" for k in range(18) if k != 5]
    for k in range(18):
        if k != 5:
            np.testing.assert_array_equal(rle_decode(out[f"l{k}"]), (bits >> k) & 1 == 1)


def test_rle_per_label_matches_per_label_rle_on_random_maps() -> None:
    # Each label's runs are cut from the whole map's runs; this checks the cutting, including
    # labels touching the first and the last pixel.
    for _ in range(300):
        h, w = (int(v) for v in rng.integers(1, 20, 2))
        cm = rng.integers(0, int(rng.integers(1, 9)), (h, w)).astype(np.uint8)
        labels = [f"c{i}" for i in range(int(rng.integers(1, 9)))]
        expect = {labels[i]: rle(cm == i) for i in range(len(labels)) if (cm == i).any()}
        assert rle_per_label(cm, None, labels) == expect


def test_rle_per_label_needs_a_map() -> None:
    with pytest.raises(ValueError):
        rle_per_label(None, None, ["a"])


# ------------------------------------------------------------------------------- pictures
