#!/usr/bin/env python3
"""Image fixtures and goldens for Tests/PaliImageTests (re-runnable, deterministic).

    .venv/bin/python Tests/Oracle/make_image_goldens.py

Writes Tests/Fixtures/images/:
  sources/*.jpg, *.png   small test images of every layout PaliImage decodes (JPEG baseline and
                         progressive at 4:2:0/4:2:2/4:4:4/4:4:0/4:1:1, grayscale, CMYK with and
                         without an Adobe marker, YCCK; PNG 1/2/4/8/16-bit gray, gray+alpha,
                         palette with tRNS, RGB, RGBA, 16-bit, interlaced), gradients plus noise.
  bad/*                  truncated, corrupt, oversized-header and non-image files.
  configs/*/             processor_config.json / preprocessor_config.json layouts.
  goldens.safetensors    decoded.<name>      U8 [H,W,3]  Pillow 13 + transformers convert_to_rgb
                         resized.<name>.<S>  U8 [S,S,3]  the 8-bit image behind transformers'
                                                         pixel_values (asserted to reproduce them
                                                         exactly, see check_reconstruction)
                         pixel_values.<name>.<S>, pixel_values_clip.<name>.<S>
                                             F32 [3,S,S] transformers' output itself
                         random.<i>.in/.out  U8          Pillow resizes of random images to random
                                                         shapes (pass order, skipped axes)
  goldens.json           manifest: per image its Pillow mode, size, output sizes; expected errors;
                         expected configuration values.

Oracle: transformers 5.23 SiglipImageProcessorPil (the PIL backend; this venv has no torchvision,
so AutoImageProcessor resolves to it as well), Pillow 13.0.0 (its wheel bundles libjpeg-turbo
3.2.0). Built with numpy, Pillow, zlib and, for layouts Pillow cannot write (YCCK, 4:4:0, 4:1:1),
the system libturbojpeg through ctypes. PNGs are written by the small encoder below because Pillow
cannot write 16-bit RGB(A), interlaced or low-bit-depth gray files with tRNS.
"""
import ctypes
import ctypes.util
import json
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import PIL
from PIL import Image
import safetensors.numpy
import transformers
from transformers import SiglipImageProcessorPil
from transformers.image_transforms import convert_to_rgb

ROOT = Path(__file__).resolve().parents[1] / "Fixtures" / "images"
SIZES = [14, 28, 56, 97]
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


# ---------------------------------------------------------------------------------------------
# Content


def content(w, h, seed, channels=3, maxval=255):
    """Gradients + a hard-edged rectangle + noise: every resampling tap matters."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    planes = [
        x / max(w - 1, 1),
        y / max(h - 1, 1),
        0.5 + 0.5 * np.sin((x + 2 * y) * 0.7 + seed),
        1.0 - (x + y) / max(w + h - 2, 1),
    ]
    img = np.stack(planes[:channels], axis=-1)
    img[h // 4 : h // 4 + max(h // 3, 1), w // 3 : w // 3 + max(w // 4, 1), :] = (seed % 3) / 2.0
    img = img + rng.normal(0, 0.08, img.shape)
    return np.clip(np.round(img * maxval), 0, maxval).astype(np.uint16 if maxval > 255 else np.uint8)


def alpha_plane(w, h, seed):
    """Partial alpha: 0 and 255 regions plus every level in between."""
    rng = np.random.default_rng(seed + 100)
    a = rng.integers(0, 256, (h, w)).astype(np.int32)
    a[: max(h // 4, 1), :] = 255
    a[-max(h // 5, 1):, : max(w // 3, 1)] = 0
    return a


# ---------------------------------------------------------------------------------------------
# PNG writer (all colour types, bit depths, filters 0-4 cycling per row, Adam7)

ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def pack_row(samples, bits):
    if bits == 8:
        return samples.astype(np.uint8).tobytes()
    if bits == 16:
        return samples.astype(">u2").tobytes()
    per = 8 // bits
    out = bytearray((len(samples) * bits + 7) // 8)
    for i, v in enumerate(samples):
        out[i // per] |= int(v) << (8 - bits * (i % per + 1))
    return bytes(out)


def filter_row(row, prev, bpp, kind):
    r = np.frombuffer(row, np.uint8).astype(np.int32)
    p = np.frombuffer(prev, np.uint8).astype(np.int32) if prev is not None else np.zeros_like(r)
    a = np.concatenate([np.zeros(bpp, np.int32), r])[: len(r)]
    c = np.concatenate([np.zeros(bpp, np.int32), p])[: len(r)]
    if kind == 0:
        o = r
    elif kind == 1:
        o = r - a
    elif kind == 2:
        o = r - p
    elif kind == 3:
        o = r - (a + p) // 2
    else:
        pa, pb, pc = np.abs(p - c), np.abs(a - c), np.abs(a + p - 2 * c)
        o = r - np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, p, c))
    return bytes([kind]) + (o & 255).astype(np.uint8).tobytes()


def write_png(path, img, bits, color_type, palette=None, trns=None, interlace=False):
    """img: H x W x C sample values; palette: N x 3; trns: bytes (palette) or tuple (gray/RGB)."""
    h, w, ch = img.shape
    bpp = max(1, ch * bits // 8)
    raw = bytearray()
    rows = 0

    def emit(sub):
        nonlocal rows
        prev = None
        for y in range(sub.shape[0]):
            row = pack_row(sub[y].reshape(-1), bits)
            raw.extend(filter_row(row, prev, bpp, rows % 5))
            rows += 1
            prev = row

    if interlace:
        for x0, y0, dx, dy in ADAM7:
            sub = img[y0::dy, x0::dx]
            if sub.shape[0] and sub.shape[1]:
                emit(sub)
    else:
        emit(img)
    out = b"\x89PNG\r\n\x1a\n"
    out += png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bits, color_type, 0, 0, int(interlace)))
    out += png_chunk(b"gAMA", struct.pack(">I", 100000))  # ignored by Pillow and by us
    if palette is not None:
        out += png_chunk(b"PLTE", np.asarray(palette, np.uint8).tobytes())
    if trns is not None:
        data = bytes(trns) if isinstance(trns, (bytes, bytearray)) else b"".join(struct.pack(">H", v) for v in trns)
        out += png_chunk(b"tRNS", data)
    z = zlib.compress(bytes(raw), 9)
    for i in range(0, len(z), 4096):
        out += png_chunk(b"IDAT", z[i : i + 4096])
    out += png_chunk(b"IEND", b"")
    Path(path).write_bytes(out)


# ---------------------------------------------------------------------------------------------
# TurboJPEG (system library) for layouts Pillow's encoder does not offer

TJPF_RGB, TJPF_CMYK = 0, 11
TJSAMP = {"444": 0, "422": 1, "420": 2, "440": 4, "411": 5}
TJFLAG_PROGRESSIVE = 16384


def turbojpeg_encode(path, pixels, pixel_format, subsamp, quality=90, flags=0):
    lib = ctypes.CDLL(ctypes.util.find_library("turbojpeg") or "libturbojpeg.so.0")
    lib.tjInitCompress.restype = ctypes.c_void_p
    lib.tjCompress2.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                                ctypes.c_int, ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_ulong),
                                ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.tjFree.argtypes = [ctypes.c_void_p]
    lib.tjDestroy.argtypes = [ctypes.c_void_p]
    handle = lib.tjInitCompress()
    h, w, ch = pixels.shape
    src = np.ascontiguousarray(pixels, np.uint8)
    buf, size = ctypes.c_void_p(), ctypes.c_ulong(0)
    rc = lib.tjCompress2(handle, src.ctypes.data, w, w * ch, h, pixel_format, ctypes.byref(buf), ctypes.byref(size),
                         subsamp, quality, flags)
    assert rc == 0, f"tjCompress2 failed for {path}"
    Path(path).write_bytes(ctypes.string_at(buf, size.value))
    lib.tjFree(buf)
    lib.tjDestroy(handle)


def strip_adobe_marker(data):
    """Removes the APP14 "Adobe" segment of a JPEG (libjpeg then assumes plain CMYK)."""
    i = 2
    while i < len(data) and data[i] == 0xFF and data[i + 1] != 0xDA:
        length = struct.unpack(">H", data[i + 2 : i + 4])[0]
        if data[i + 1] == 0xEE and data[i + 4 : i + 9] == b"Adobe":
            return data[:i] + data[i + 2 + length :]
        i += 2 + length
    raise AssertionError("no Adobe marker found")


# ---------------------------------------------------------------------------------------------
# Sources


def make_sources(src):
    """Returns {name: (file, note, extra_sizes)}."""
    made = {}

    def add(name, file, note, big=False):
        made[name] = {"file": f"sources/{file}", "note": note, "sizes": SIZES + ([224] if big else [])}

    # JPEG through Pillow (its libjpeg-turbo 3.2 encoder)
    jpegs = [
        ("jpeg_420_baseline", 37, 23, dict(subsampling=2), "baseline 4:2:0, odd size", True),
        ("jpeg_422_baseline", 64, 48, dict(subsampling=1), "baseline 4:2:2", False),
        ("jpeg_444_baseline", 300, 40, dict(subsampling=0), "baseline 4:4:4, wide", True),
        ("jpeg_420_progressive", 40, 300, dict(subsampling=2, progressive=True), "progressive 4:2:0, tall", False),
        ("jpeg_422_progressive", 97, 61, dict(subsampling=1, progressive=True), "progressive 4:2:2", False),
        ("jpeg_444_progressive", 7, 5, dict(subsampling=0, progressive=True), "progressive 4:4:4, 7x5", False),
        ("jpeg_420_optimized_restart", 45, 35, dict(subsampling=2, optimize=True, restart_marker_blocks=3),
         "optimized Huffman tables, restart markers", False),
        ("jpeg_420_1x1", 1, 1, dict(subsampling=2), "a single pixel", False),
        ("jpeg_rgb_adobe", 29, 19, dict(subsampling=0, keep_rgb=True), "RGB (Adobe transform 0), no YCbCr", False),
    ]
    for i, (name, w, h, opts, note, big) in enumerate(jpegs):
        Image.fromarray(content(w, h, i)).save(src / f"{name}.jpg", quality=90, **opts)
        add(name, f"{name}.jpg", note, big)
    Image.fromarray(content(33, 65, 20, 1)[..., 0]).save(src / "jpeg_gray_baseline.jpg", quality=90)
    add("jpeg_gray_baseline", "jpeg_gray_baseline.jpg", "grayscale baseline")
    Image.fromarray(content(120, 8, 21, 1)[..., 0]).save(src / "jpeg_gray_progressive.jpg", quality=85,
                                                          progressive=True)
    add("jpeg_gray_progressive", "jpeg_gray_progressive.jpg", "grayscale progressive, 120x8")
    cmyk = content(45, 30, 22, 4)
    Image.fromarray(cmyk, "CMYK").save(src / "jpeg_cmyk_adobe.jpg", quality=90)
    add("jpeg_cmyk_adobe", "jpeg_cmyk_adobe.jpg", "CMYK as Pillow writes it: Adobe marker, inverted")
    (src / "jpeg_cmyk_noadobe.jpg").write_bytes(strip_adobe_marker((src / "jpeg_cmyk_adobe.jpg").read_bytes()))
    add("jpeg_cmyk_noadobe", "jpeg_cmyk_noadobe.jpg", "CMYK without Adobe marker (Pillow still inverts)")
    turbojpeg_encode(src / "jpeg_ycck.jpg", content(31, 29, 23, 4), TJPF_CMYK, TJSAMP["420"])
    add("jpeg_ycck", "jpeg_ycck.jpg", "YCCK (Adobe transform 2), written by TurboJPEG")
    turbojpeg_encode(src / "jpeg_440_baseline.jpg", content(50, 34, 24), TJPF_RGB, TJSAMP["440"])
    add("jpeg_440_baseline", "jpeg_440_baseline.jpg", "baseline 4:4:0 (vertical-only subsampling)")
    turbojpeg_encode(src / "jpeg_411_progressive.jpg", content(53, 27, 25), TJPF_RGB, TJSAMP["411"],
                     flags=TJFLAG_PROGRESSIVE)
    add("jpeg_411_progressive", "jpeg_411_progressive.jpg", "progressive 4:1:1")

    # PNG through the writer above
    def rgb(w, h, seed):
        return content(w, h, seed)

    def gray(w, h, seed, maxval=255):
        return content(w, h, seed, 1, maxval)

    pngs = []
    g = gray(13, 9, 30)
    pngs.append(("png_gray1", (g >= 128).astype(np.uint8), 1, 0, {}, "1-bit gray", False))
    pngs.append(("png_gray1_trns_interlaced", (gray(11, 7, 31) >= 128).astype(np.uint8), 1, 0,
                 dict(trns=(1,), interlace=True), "1-bit gray, tRNS, Adam7", False))
    pngs.append(("png_gray2_trns", gray(17, 11, 32) >> 6, 2, 0, dict(trns=(0,)), "2-bit gray, tRNS value 0", False))
    pngs.append(("png_gray4", gray(19, 23, 33) >> 4, 4, 0, {}, "4-bit gray", False))
    pngs.append(("png_gray8", gray(64, 40, 34), 8, 0, {}, "8-bit gray", True))
    pngs.append(("png_gray8_trns", gray(31, 17, 35) // 16 * 16, 8, 0, dict(trns=(256 + 128,)),
                 "8-bit gray, tRNS 384 (matches 128: Pillow compares the low byte)", False))
    pngs.append(("png_gray16", gray(27, 21, 36, 400), 16, 0, {}, "16-bit gray, values 0..400 (Pillow clips > 255)",
                 False))
    pngs.append(("png_gray16_full", gray(23, 25, 37, 65535), 16, 0, {}, "16-bit gray over the full range", False))
    pngs.append(("png_gray16_trns", gray(25, 19, 38, 300) // 10 * 10, 16, 0, dict(trns=(0x1200 + 100,)),
                 "16-bit gray, tRNS low byte 100", False))
    la = np.concatenate([gray(33, 21, 39), alpha_plane(33, 21, 39)[..., None]], axis=-1)
    pngs.append(("png_gray_alpha8", la, 8, 4, {}, "8-bit gray+alpha, partial alpha", False))
    la16 = np.concatenate([gray(21, 33, 40, 65535), alpha_plane(21, 33, 40)[..., None] * 257 + 3], axis=-1)
    pngs.append(("png_gray_alpha16_interlaced", la16, 16, 4, dict(interlace=True),
                 "16-bit gray+alpha, Adam7 (opens as RGBA)", False))
    rng = np.random.default_rng(41)
    palette = rng.integers(0, 256, (40, 3))
    idx = (content(47, 29, 41, 1)[..., 0].astype(np.int32) * 44 // 256).astype(np.uint8)[..., None]  # 0..43
    trns = bytes(rng.integers(0, 256, 30).astype(np.uint8))
    pngs.append(("png_palette8_trns", idx, 8, 3, dict(palette=palette, trns=trns),
                 "8-bit palette, 40 entries, alpha for 30, indices past the palette", True))
    idx4 = (content(26, 18, 42, 1)[..., 0] >> 4)[..., None]
    pngs.append(("png_palette4_interlaced", idx4, 4, 3, dict(palette=palette[:16], interlace=True),
                 "4-bit palette, Adam7", False))
    idx2 = (content(15, 14, 43, 1)[..., 0] >> 6)[..., None]
    pngs.append(("png_palette2_simple_trns", idx2, 2, 3, dict(palette=palette[:4], trns=b"\xff\xff\x00"),
                 "2-bit palette, one fully transparent entry", False))
    idx1 = (content(9, 12, 44, 1)[..., 0] >> 7)[..., None]
    pngs.append(("png_palette1", idx1, 1, 3, dict(palette=palette[:2]), "1-bit palette", False))
    pngs.append(("png_rgb8", rgb(300, 2, 45), 8, 2, {}, "8-bit RGB, 300x2", False))
    pngs.append(("png_rgb8_tall", rgb(2, 200, 46), 8, 2, {}, "8-bit RGB, 2x200", False))
    pngs.append(("png_rgb8_56", rgb(56, 56, 47), 8, 2, {}, "8-bit RGB, exactly 56x56 (no resize at 56)", False))
    r8 = rgb(35, 22, 48) // 32 * 32
    pngs.append(("png_rgb8_trns", r8, 8, 2, dict(trns=tuple(int(v) for v in r8[3, 4])), "8-bit RGB, tRNS colour", False))
    pngs.append(("png_rgb8_interlaced", rgb(37, 29, 49), 8, 2, dict(interlace=True), "8-bit RGB, Adam7", True))
    r16 = content(29, 31, 50, 3, 65535)
    pngs.append(("png_rgb16", r16, 16, 2, {}, "16-bit RGB", False))
    r16t = (r16 // 8192 * 8192 + 77).astype(np.uint16)
    key = tuple(int(v) for v in r16t[5, 5])
    pngs.append(("png_rgb16_trns", r16t, 16, 2, dict(trns=tuple(k >> 8 for k in key)),
                 "16-bit RGB, tRNS whose low bytes equal a pixel's high bytes", False))
    rgba = np.concatenate([rgb(41, 27, 51), alpha_plane(41, 27, 51)[..., None]], axis=-1)
    pngs.append(("png_rgba8", rgba, 8, 6, {}, "8-bit RGBA, partial alpha", True))
    rgba16 = np.concatenate([content(24, 30, 52, 3, 65535), alpha_plane(24, 30, 52)[..., None] * 257 + 1], axis=-1)
    pngs.append(("png_rgba16_interlaced", rgba16, 16, 6, dict(interlace=True), "16-bit RGBA, Adam7", False))
    pngs.append(("png_rgb8_7x5_interlaced", rgb(7, 5, 53), 8, 2, dict(interlace=True), "7x5, Adam7 (empty passes)", False))
    for name, img, bits, ctype, opts, note, big in pngs:
        img = img if img.ndim == 3 else img[..., None]
        write_png(src / f"{name}.png", img, bits, ctype, **opts)
        add(name, f"{name}.png", note, big)

    # A PNG from Pillow's own encoder (zlib stream layout of the most common writer).
    Image.fromarray(rgb(57, 43, 54)).save(src / "png_pillow_rgb.png")
    add("png_pillow_rgb", "png_pillow_rgb.png", "RGB written by Pillow")
    Image.fromarray(np.concatenate([rgb(20, 20, 55), alpha_plane(20, 20, 55)[..., None].astype(np.uint8)], -1),
                    "RGBA").save(src / "png_pillow_rgba.png")
    add("png_pillow_rgba", "png_pillow_rgba.png", "RGBA written by Pillow")
    return made


# ---------------------------------------------------------------------------------------------
# Bad files


def make_bad(bad, src):
    cases = []

    def add(file, expect, note):
        cases.append({"file": f"bad/{file}", "expect": expect, "note": note})

    jpg = (src / "jpeg_422_baseline.jpg").read_bytes()
    (bad / "truncated_baseline.jpg").write_bytes(jpg[: len(jpg) * 6 // 10])
    add("truncated_baseline.jpg", "truncated", "baseline JPEG cut at 60%")
    prog = (src / "jpeg_420_progressive.jpg").read_bytes()
    (bad / "truncated_progressive.jpg").write_bytes(prog[: len(prog) // 2])
    add("truncated_progressive.jpg", "truncated", "progressive JPEG cut at 50%")
    (bad / "truncated_header.jpg").write_bytes(jpg[:40])
    add("truncated_header.jpg", "truncated", "JPEG cut inside its header")
    (bad / "signature_then_noise.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(
        np.random.default_rng(60).integers(0, 256, 300).astype(np.uint8)))
    add("signature_then_noise.jpg", "truncated", "JPEG signature, then noise (a segment runs past the end)")
    sof = jpg.find(b"\xff\xc0")
    zero = bytearray(jpg)
    zero[sof + 9] = 0  # SOF0 component count
    (bad / "corrupt_sof.jpg").write_bytes(bytes(zero))
    add("corrupt_sof.jpg", "corrupt", "JPEG whose SOF0 declares 0 components")
    png = (src / "png_rgb8_interlaced.png").read_bytes()
    (bad / "truncated.png").write_bytes(png[: len(png) // 2])
    add("truncated.png", "truncated", "PNG cut inside IDAT")
    (bad / "truncated_header.png").write_bytes(png[:20])
    add("truncated_header.png", "truncated", "PNG cut inside IHDR")
    broken = bytearray(png)
    idat = broken.find(b"IDAT")
    broken[idat + 40] ^= 0x55
    (bad / "bad_crc.png").write_bytes(bytes(broken))
    add("bad_crc.png", "corrupt", "PNG with a flipped byte in IDAT (CRC mismatch)")
    # Valid CRC, broken zlib stream.
    data = bytes(np.random.default_rng(61).integers(0, 256, 200).astype(np.uint8))
    (bad / "bad_zlib.png").write_bytes(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 20, 10, 8, 2, 0, 0, 0))
                                        + png_chunk(b"IDAT", b"\x78\x9c" + data) + png_chunk(b"IEND", b""))
    add("bad_zlib.png", "corrupt", "PNG with valid CRCs around a broken zlib stream")
    # Headers that declare 60000 x 60000 = 3.6 gigapixels, followed by junk.
    huge = png_chunk(b"IHDR", struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0))
    (bad / "huge.png").write_bytes(b"\x89PNG\r\n\x1a\n" + huge + png_chunk(b"IDAT", b"\x78\x9c\x03\x00")
                                   + png_chunk(b"IEND", b""))
    add("huge.png", "tooLarge", "PNG header declaring 60000x60000")
    hj = bytearray(jpg)
    hj[sof + 5 : sof + 9] = struct.pack(">HH", 60000, 60000)
    (bad / "huge.jpg").write_bytes(bytes(hj))
    add("huge.jpg", "tooLarge", "JPEG whose SOF0 declares 60000x60000")
    (bad / "not_an_image.txt").write_bytes(b"this is not an image\n")
    add("not_an_image.txt", "unsupportedFormat", "plain text")
    (bad / "empty.png").write_bytes(b"")
    add("empty.png", "unsupportedFormat", "zero bytes")
    gif = Image.fromarray(content(8, 8, 62)).convert("P")
    gif.save(bad / "image.gif")
    add("image.gif", "unsupportedFormat", "a GIF (a format PaliImage does not decode)")

    # Pillow must fail on all of these too (except the unsupported-but-valid GIF).
    for case in cases:
        path = ROOT / case["file"]
        try:  # Pillow's own pixel budget (MAX_IMAGE_PIXELS) stops the huge headers
            with Image.open(path) as im:
                im.load()
            case["pillow"] = "ok"
        except Exception as e:  # noqa: BLE001
            case["pillow"] = f"{type(e).__name__}: {e}"[:160]
        assert case["pillow"] != "ok" or case["file"].endswith(".gif"), case
    return cases


# ---------------------------------------------------------------------------------------------
# Goldens


def processor(size, mean=None, std=None):
    kwargs = {"size": {"height": size, "width": size}}
    if mean is not None:
        kwargs.update(image_mean=mean, image_std=std)
    proc = SiglipImageProcessorPil(**kwargs)
    assert proc.backend == "pil" and proc.resample == 3 and proc.do_convert_rgb
    return proc


def transformers_pixel_values(path, size, mean=None, std=None):
    with Image.open(path) as im:
        out = processor(size, mean, std)(im, return_tensors="np")["pixel_values"]
    assert out.dtype == np.float32 and out.shape == (1, 3, size, size)
    return out[0]


def check_reconstruction(resized, pixel_values, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)):
    """The Swift preprocessor's formula: f32(u8 * f64(1/255)), then (x - f32 mean) / f32 std."""
    x = (resized.astype(np.float64) * (1 / 255)).astype(np.float32)
    x = (x - np.array(mean, np.float32)) / np.array(std, np.float32)
    x = np.ascontiguousarray(x.transpose(2, 0, 1))
    assert x.dtype == np.float32 and np.array_equal(x.view(np.uint32), pixel_values.view(np.uint32)), \
        "reconstruction from the 8-bit image differs from transformers"


def pillow_resize(decoded, size):
    return np.array(Image.fromarray(decoded, "RGB").resize((size, size), Image.Resampling.BICUBIC))


def make_goldens(sources):
    tensors = {}
    images = []
    full_f32 = {("jpeg_420_baseline", 56), ("png_rgba8", 97), ("png_palette8_trns", 28), ("jpeg_cmyk_adobe", 14),
                ("png_gray16", 56)}
    clip = [("jpeg_444_baseline", 28), ("png_rgba16_interlaced", 56)]
    for name, entry in sources.items():
        path = ROOT / entry["file"]
        with Image.open(path) as im:
            mode, (w, h) = im.mode, im.size
            decoded = convert_to_rgb(im, return_numpy=True)
        assert decoded.dtype == np.uint8 and decoded.shape == (h, w, 3)
        tensors[f"decoded.{name}"] = np.ascontiguousarray(decoded)
        for size in entry["sizes"]:
            pv = transformers_pixel_values(path, size)
            resized = pillow_resize(decoded, size)
            check_reconstruction(resized, pv)
            tensors[f"resized.{name}.{size}"] = resized
            if (name, size) in full_f32:
                tensors[f"pixel_values.{name}.{size}"] = pv
        images.append({"name": name, "file": entry["file"], "pillow_mode": mode, "width": w, "height": h,
                       "sizes": entry["sizes"], "note": entry["note"],
                       "pixel_values": sorted(s for (n, s) in full_f32 if n == name)})
    normalization = []
    for name, size in clip:
        path = ROOT / sources[name]["file"]
        pv = transformers_pixel_values(path, size, CLIP_MEAN, CLIP_STD)
        check_reconstruction(tensors[f"resized.{name}.{size}"], pv, CLIP_MEAN, CLIP_STD)
        tensors[f"pixel_values_clip.{name}.{size}"] = pv
        normalization.append({"image": name, "size": size, "image_mean": CLIP_MEAN, "image_std": CLIP_STD,
                              "tensor": f"pixel_values_clip.{name}.{size}"})
    assert all(f"pixel_values.{n}.{s}" in tensors for n, s in full_f32)
    return tensors, images, normalization


def make_random_resizes(tensors, count=120):
    """Pillow resizes of random images to random (non-square) shapes, both pass orders, axes kept."""
    rng = np.random.default_rng(70)
    cases = []
    for i in range(count):
        w, h, ow, oh = (int(v) for v in rng.integers(1, 48, 4))
        if i % 10 == 0:
            ow = w  # horizontal pass skipped
        if i % 10 == 1:
            oh = h  # vertical pass skipped
        src = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        out = np.array(Image.fromarray(src, "RGB").resize((ow, oh), Image.Resampling.BICUBIC))
        tensors[f"random.{i}.in"] = src
        tensors[f"random.{i}.out"] = out
        vertical_first = (h - oh) > 0 and (h - oh) > 2 * (w - ow)
        cases.append({"index": i, "width": w, "height": h, "out_width": ow, "out_height": oh,
                      "vertical_first": vertical_first})
    assert any(c["vertical_first"] for c in cases) and not all(c["vertical_first"] for c in cases)
    return cases


def make_configs(configs):
    """Model-directory layouts; the expected values are what transformers itself loads."""
    from transformers import AutoImageProcessor

    cases = []

    def add(name, files, expect=None, error=None):
        d = configs / name
        d.mkdir(parents=True)
        for file, obj in files.items():
            (d / file).write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
        case = {"directory": f"configs/{name}"}
        if error:
            case["error"] = error
        else:
            proc = AutoImageProcessor.from_pretrained(d)
            assert type(proc).__name__ == "SiglipImageProcessorPil", type(proc)
            case["expect"] = {"height": proc.size["height"], "width": proc.size["width"],
                              "image_mean": list(map(float, proc.image_mean)),
                              "image_std": list(map(float, proc.image_std)),
                              "rescale_factor": float(proc.rescale_factor), "resample": int(proc.resample)}
            assert case["expect"] == expect, (name, case["expect"], expect)
        cases.append(case)

    hub = {"do_convert_rgb": None, "do_normalize": True, "do_rescale": True, "do_resize": True,
           "image_mean": [0.5, 0.5, 0.5], "image_processor_type": "SiglipImageProcessor", "image_seq_length": 256,
           "image_std": [0.5, 0.5, 0.5], "processor_class": "PaliGemmaProcessor", "resample": 3,
           "rescale_factor": 0.00392156862745098, "size": {"height": 224, "width": 224}}
    default = {"height": 224, "width": 224, "image_mean": [0.5] * 3, "image_std": [0.5] * 3,
               "rescale_factor": 1 / 255, "resample": 3}
    add("hub_preprocessor", {"preprocessor_config.json": hub}, default)
    nested = json.loads(processor(448, CLIP_MEAN, CLIP_STD).to_json_string())
    add("v5_processor", {"processor_config.json": {"image_processor": nested, "image_seq_length": 1024,
                                                   "processor_class": "PaliGemmaProcessor"}},
        {**default, "height": 448, "width": 448, "image_mean": CLIP_MEAN, "image_std": CLIP_STD})
    add("both_nested_wins", {"processor_config.json": {"image_processor": {**hub, "size": {"height": 896, "width": 896}},
                                                       "processor_class": "PaliGemmaProcessor"},
                             "preprocessor_config.json": hub}, {**default, "height": 896, "width": 896})
    add("both_flat_processor", {"processor_config.json": {"processor_class": "PaliGemmaProcessor"},
                                "preprocessor_config.json": {**hub, "size": {"height": 448, "width": 448}}},
        {**default, "height": 448, "width": 448})
    add("bilinear", {"preprocessor_config.json": {**hub, "resample": 2}}, error="invalidConfiguration")
    add("empty_directory", {}, error="invalidConfiguration")
    return cases


def main():
    if ROOT.exists():
        shutil.rmtree(ROOT)
    for sub in ("sources", "bad", "configs"):
        (ROOT / sub).mkdir(parents=True)
    sources = make_sources(ROOT / "sources")
    bad = make_bad(ROOT / "bad", ROOT / "sources")
    tensors, images, normalization = make_goldens(sources)
    random_resizes = make_random_resizes(tensors)
    configs = make_configs(ROOT / "configs")
    safetensors.numpy.save_file(tensors, str(ROOT / "goldens.safetensors"), metadata={"format": "np"})
    from PIL import features

    manifest = {
        "generator": "Tests/Oracle/make_image_goldens.py",
        "versions": {"transformers": transformers.__version__, "pillow": PIL.__version__,
                     "pillow_libjpeg_turbo": features.version_feature("libjpeg_turbo"), "numpy": np.__version__},
        "images": images, "normalization": normalization, "errors": bad, "configs": configs,
        "random_resizes": random_resizes,
    }
    (ROOT / "goldens.json").write_text(json.dumps(manifest, indent=1) + "\n")
    total = sum(p.stat().st_size for p in ROOT.rglob("*") if p.is_file())
    print(f"{len(images)} images, {len(tensors)} tensors, {len(bad)} error cases, {len(configs)} configs; "
          f"{total / 1e6:.2f} MB under {ROOT}")


if __name__ == "__main__":
    main()
