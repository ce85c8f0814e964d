#!/usr/bin/env python3
"""Goldens for PaliGemma's task outputs (SPEC §5.1, §5.2): Tests/Fixtures/tasks/goldens.json.

  parse   decoded texts → objects (label, box in pixels, seg codes) and the number of problems,
          by the grammar of docs/tasks.md, written here independently of the Swift parser; every
          well-formed case is also checked against the reference regex of SPEC §5.1 (the demo's
          parser) with its conventions: pixel = round(bin / 1024 · size), Python's round.
  rle     pycocotools `mask.encode` on random and structured masks from 1×1 to 97×131.
  resize  Pillow's default resize of mode "L" images (BICUBIC), the mask paste's resampler.
  npz     .npz files written by NumPy (np.savez, np.savez_compressed, and .npy format versions
          1.0, 2.0, 3.0 through np.lib.format.write_array) and the values they hold.
  paste   the demo's paste of a 64×64 mask into a box (clip, uint8, resize, /255, > 0.5) → RLE,
          on random smooth logits, boxes of every kind (empty, 1 px, up- and down-sampled, at edges).

Run with the repo's venv: .venv/bin/python Tests/Oracle/make_task_goldens.py
"""
import base64
import json
import math
import pathlib
import re
import zipfile

import numpy as np
import PIL
from PIL import Image
from pycocotools import mask as mask_api

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "Tests" / "Fixtures" / "tasks" / "goldens.json"

# ---------------------------------------------------------------------------------------------
# The grammar of docs/tasks.md, written out on its own.

TOKEN = re.compile(r"<loc(\d{4})>|<seg(\d{3})>")
PIECE = re.compile(r"^\s*((?:<loc\d{4}>\s*){4})((?:<seg\d{3}>\s*){16})?([^<>;]*)$")


def items_of(text):
    items, pos = [], 0
    for m in TOKEN.finditer(text):
        if m.start() > pos:
            items.append(("text", text[pos:m.start()]))
        items.append(("loc", int(m.group(1))) if m.group(1) is not None else ("seg", int(m.group(2))))
        pos = m.end()
    if pos < len(text):
        items.append(("text", text[pos:]))
    return items


def pieces_of(items):
    pieces, cur = [], []
    state = {"locs": 0, "seg": False, "text": False}

    def close():
        pieces.append(cur.copy())
        cur.clear()
        state.update(locs=0, seg=False, text=False)

    for kind, value in items:
        if kind == "loc":
            if state["locs"] >= 4 or state["seg"] or state["text"]:
                close()
            cur.append((kind, value))
            state["locs"] += 1
        elif kind == "seg":
            cur.append((kind, value))
            state["seg"] = True
        else:
            for k, part in enumerate(value.split(";")):
                if k > 0:
                    close()
                if part:
                    cur.append(("text", part))
                    if part.strip():
                        state["text"] = True
    close()
    return pieces


def source(piece):
    return "".join(v if k == "text" else (f"<loc{v:04d}>" if k == "loc" else f"<seg{v:03d}>") for k, v in piece)


def parse(text, width, height, codebook=128):
    items = items_of(text)
    if all(k == "text" for k, _ in items):
        return {"hasTaskTokens": False, "objects": [], "problems": 0}
    objects, problems = [], 0
    for piece in pieces_of(items):
        s = source(piece)
        if not s.strip():
            continue
        m = PIECE.match(s)
        if not m:
            problems += 1
            continue
        bins = [int(b) for b in re.findall(r"\d{4}", m.group(1))]
        codes = [int(c) for c in re.findall(r"\d{3}", m.group(2))] if m.group(2) else None
        y0, x0, y1, x1 = bins
        if y0 > y1 or x0 > x1 or (codes and max(codes) >= codebook):
            problems += 1
            continue
        box = [round(x0 / 1024 * width), round(y0 / 1024 * height), round(x1 / 1024 * width), round(y1 / 1024 * height)]
        objects.append({"label": m.group(3).strip(), "box": box, "bins": bins, "codes": codes})
    return {"hasTaskTokens": True, "objects": objects, "problems": problems}


# The reference regex of SPEC §5.1 (Google's demo), applied repeatedly; its boxes and labels
# must equal ours on well-formed outputs.
REFERENCE = re.compile(r"(.*?)" + r"<loc(\d{4})>" * 4 + r"\s*" + "(?:%s)?" % (r"<seg(\d{3})>" * 16)
                       + r"\s*([^;<>]+)? ?(?:; )?")


def reference_objects(text, width, height):
    objs = []
    while text:
        m = REFERENCE.match(text)
        if not m:
            break
        g = list(m.groups())
        name = g.pop()
        g.pop(0)
        y0, x0, y1, x1 = [int(v) / 1024 for v in g[:4]]
        box = [round(x0 * width), round(y0 * height), round(x1 * width), round(y1 * height)]
        codes = [int(c) for c in g[4:20]] if g[4] is not None else None
        objs.append({"label": (name or "").strip(), "box": box, "codes": codes})
        text = text[len(m.group()):]
    return objs


L = lambda *b: "".join(f"<loc{v:04d}>" for v in b)
S = lambda *c: "".join(f"<seg{v:03d}>" for v in c)
SEG16 = S(*range(0, 128, 8))
SEG16B = S(*[127, 0, 5, 99, 64, 1, 2, 3, 120, 77, 33, 18, 9, 44, 101, 66])

PARSE_CASES = [
    # (name, text, width, height, well-formed: True = also checked against the reference regex,
    #  False = must report problems, None = lenient extension of ours: neither)
    ("one box", L(256, 128, 768, 896) + " cat", 640, 480, True),
    ("two boxes", L(0, 0, 1023, 1023) + " cat ; " + L(100, 200, 300, 400) + " dog", 640, 480, True),
    ("no separator", L(10, 20, 30, 40) + " cat " + L(50, 60, 70, 80) + " dog", 333, 517, True),
    ("unlabeled", L(10, 20, 30, 40), 224, 224, True),
    ("eight locs", L(10, 20, 30, 40) + L(50, 60, 70, 80), 224, 224, True),
    ("segmentation", L(100, 150, 900, 850) + SEG16 + " red car", 300, 200, True),
    ("two masks", L(100, 150, 900, 850) + SEG16 + " car ; " + L(0, 0, 512, 512) + " " + SEG16B + " tree", 97, 131, True),
    ("refcoco style", L(1, 2, 3, 4) + SEG16, 50, 60, True),
    ("unicode label", L(5, 6, 700, 800) + " café crème", 1000, 1000, True),
    ("quotes in label", L(5, 6, 700, 800) + ' a "b" \\ c/d', 64, 64, True),
    ("rounding ties", L(512, 256, 768, 512) + " tie", 1, 3, True),
    ("rounding ties 2", L(256, 768, 768, 256 + 512) + " x", 2, 2, True),
    ("one pixel image", L(0, 0, 1023, 1023) + " all", 1, 1, True),
    ("empty box", L(300, 300, 300, 700) + " line", 640, 480, True),
    ("trailing separator", "  " + L(1, 2, 3, 4) + " a ; ", 100, 100, True),
    ("spaces between tokens", L(1, 2) + " " + L(3, 4) + " " + SEG16 + "  spaced ", 100, 100, None),
    ("caption only", "a cat sitting on a mat", 640, 480, True),
    ("empty text", "", 640, 480, True),
    ("not quite tokens", "<loc12> and <seg1234> and <loc123a>", 64, 64, True),
    # malformed
    ("three locs", L(100, 200, 300) + " cat", 640, 480, False),
    ("three locs then good", L(100, 200, 300) + " cat ; " + L(100, 200, 300, 400) + " dog", 640, 480, False),
    ("segs without box", SEG16 + " cat", 640, 480, False),
    ("fifteen segs", L(100, 200, 300, 400) + S(*range(15)) + " cat", 640, 480, False),
    ("seventeen segs", L(100, 200, 300, 400) + S(*range(17)) + " cat", 640, 480, False),
    ("y out of order", L(500, 100, 400, 200) + " cat ; " + L(1, 1, 2, 2) + " ok", 640, 480, False),
    ("x out of order", L(100, 500, 400, 200) + " cat", 640, 480, False),
    ("seg code outside codebook", L(100, 200, 300, 400) + S(*([200] + list(range(15)))) + " cat", 640, 480, False),
    ("seg after label", L(100, 200, 300, 400) + " cat " + SEG16, 640, 480, False),
    ("text before box", "the cat ; " + L(100, 200, 300, 400) + " cat", 640, 480, False),
    ("truncated output", L(100, 200, 300, 400) + " cat ; " + L(500) + "<loc06", 640, 480, False),
    ("five locs", L(10, 20, 30, 40, 50) + " cat", 640, 480, False),
    ("angle bracket in label", L(10, 20, 30, 40) + " a<b", 640, 480, False),
    ("seg before loc", S(1) + L(10, 20, 30, 40) + " cat", 640, 480, False),
    ("only separators", " ; ; " + L(10, 20, 30, 40) + " ; ;", 640, 480, True),
]


def parse_cases():
    cases = []
    for name, text, w, h, wellformed in PARSE_CASES:
        got = parse(text, w, h)
        if wellformed and got["hasTaskTokens"]:
            assert got["problems"] == 0, (name, got)
            ref = reference_objects(text, w, h)
            mine = [{"label": o["label"], "box": o["box"], "codes": o["codes"]} for o in got["objects"]]
            assert ref == mine, (name, ref, mine)
        if wellformed is False:
            assert got["problems"] > 0, (name, got)
        cases.append({"name": name, "text": text, "width": w, "height": h, **got})
    return cases


# ---------------------------------------------------------------------------------------------
# RLE, resize, paste

def b64(a):
    return base64.b64encode(np.ascontiguousarray(a).tobytes()).decode()


def rle(mask):
    enc = mask_api.encode(np.asfortranarray(mask.astype(np.uint8)))
    assert list(enc["size"]) == list(mask.shape)
    return enc["counts"].decode()


def rle_cases(rng):
    cases = []
    sizes = [(1, 1), (1, 7), (7, 1), (2, 2), (3, 5), (97, 131), (131, 97), (64, 64), (40, 33), (1, 300)]
    for i in range(30):
        h, w = sizes[i] if i < len(sizes) else (int(rng.integers(1, 98)), int(rng.integers(1, 132)))
        kind = ["random", "zeros", "ones", "blob", "stripes", "sparse"][i % 6]
        if kind == "random":
            m = rng.random((h, w)) < rng.uniform(0.1, 0.9)
        elif kind == "zeros":
            m = np.zeros((h, w), bool)
        elif kind == "ones":
            m = np.ones((h, w), bool)
        elif kind == "blob":
            yy, xx = np.mgrid[0:h, 0:w]
            m = ((yy - h * rng.random()) / max(h, 1) * 3) ** 2 + ((xx - w * rng.random()) / max(w, 1) * 3) ** 2 < 1.5
        elif kind == "stripes":
            yy, xx = np.mgrid[0:h, 0:w]
            m = ((xx + 2 * yy) // 3) % 2 == 0
        else:
            m = rng.random((h, w)) < 0.02
        cases.append({"height": h, "width": w, "bits": b64(np.packbits(m.astype(np.uint8).ravel())), "counts": rle(m)})
    # A mask with runs long enough to need several 5-bit groups, and big negative differences.
    m = np.zeros((300, 400), bool)
    m[:, 350:] = True
    m[10:20, 5:7] = True
    cases.append({"height": 300, "width": 400, "bits": b64(np.packbits(m.astype(np.uint8).ravel())), "counts": rle(m)})
    return cases


def resize_L(a, w, h):
    img = Image.fromarray(a, mode="L") if int(PIL.__version__.split(".")[0]) < 11 else Image.fromarray(a)
    out = img.resize((w, h))
    assert np.array_equal(np.array(out), np.array(img.resize((w, h), Image.Resampling.BICUBIC)))
    return np.array(out)


def smooth_logits(rng):
    yy, xx = np.mgrid[0:64, 0:64].astype(np.float32)
    cy, cx = rng.uniform(10, 54, 2)
    ry, rx = rng.uniform(6, 30, 2)
    d = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2
    logits = np.tanh(2.0 * (1.0 - d)) * 1.2 + rng.normal(0, 0.15, (64, 64))
    return logits.astype(np.float32)


def resize_cases(rng):
    cases = []
    targets = [(64, 64), (1, 1), (5, 3), (200, 17), (17, 200), (128, 128), (63, 65), (160, 171), (2, 90), (33, 31)]
    for i, (w, h) in enumerate(targets):
        a = rng.integers(0, 256, (64, 64), dtype=np.uint8) if i % 2 else \
            (np.clip(smooth_logits(rng) * 0.5 + 0.5, 0, 1) * 255).astype(np.uint8)
        out = resize_L(a, w, h)
        cases.append({"input": b64(a), "width": w, "height": h, "output": b64(out)})
    return cases


def paste(logits, box, W, H):
    """The demo's paste (SPEC §5.2), then the > 0.5 threshold."""
    x0, y0, x1, y1 = box
    full = np.zeros((H, W), np.float64)
    if y1 > y0 and x1 > x0:
        m = np.clip(logits * 0.5 + 0.5, 0, 1)
        assert m.dtype == np.float32
        b = (m * 255).astype(np.uint8)
        full[y0:y1, x0:x1] = resize_L(b, x1 - x0, y1 - y0) / 255.0
    return full > 0.5


def paste_cases(rng):
    cases = []
    specs = [
        ((640, 480), [100, 50, 400, 300]),   # upsample
        ((640, 480), [0, 0, 640, 480]),      # whole image
        ((97, 131), [10, 20, 40, 50]),       # downsample
        ((97, 131), [96, 130, 97, 131]),     # 1 pixel at the corner
        ((200, 100), [50, 50, 50, 90]),      # empty (zero width)
        ((200, 100), [20, 70, 180, 70]),     # empty (zero height)
        ((64, 64), [0, 0, 64, 64]),          # same size: no resampling
        ((300, 40), [5, 1, 295, 39]),        # very wide
        ((40, 300), [1, 5, 39, 295]),        # very tall
        ((1, 1), [0, 0, 1, 1]),              # one pixel image
    ]
    for (W, H), box in specs:
        logits = smooth_logits(rng)
        m = paste(logits, box, W, H)
        cases.append({"width": W, "height": H, "box": box, "logits": b64(logits.astype("<f4")), "counts": rle(m),
                      "area": int(m.sum())})
    # Boxes from bins, as the parser makes them.
    for _ in range(3):
        W, H = int(rng.integers(20, 400)), int(rng.integers(20, 400))
        y0, y1 = sorted(rng.integers(0, 1024, 2))
        x0, x1 = sorted(rng.integers(0, 1024, 2))
        box = [round(x0 / 1024 * W), round(y0 / 1024 * H), round(x1 / 1024 * W), round(y1 / 1024 * H)]
        logits = smooth_logits(rng)
        m = paste(logits, box, W, H)
        cases.append({"width": W, "height": H, "box": box, "logits": b64(logits.astype("<f4")), "counts": rle(m),
                      "area": int(m.sum())})
    return cases


def npz_fixtures(rng):
    """numpy.npz (stored), numpy-compressed.npz (deflated), versions.npz (.npy v1, v2, v3)."""
    arrays = {
        "a": np.arange(6, dtype="<f4").reshape(2, 3) * np.float32(0.5) - 1,
        "b": np.array([1.5, -2.25, 1e-3, 3.0000001192092896], dtype="<f8"),
        "c": np.array([[1, -2], [3, 2**24]], dtype="<i8"),
        "d": np.array([7, -8, 9], dtype="<i4"),
        "scalar": np.array(3.25, dtype="<f4"),
        "empty": np.zeros((0, 5), dtype="<f4"),
        "big": rng.normal(size=(128, 40)).astype("<f4"),
        "decoder.0.weight": rng.normal(size=(2, 3, 1, 1)).astype("<f4"),
    }
    d = OUT.parent
    np.savez(d / "numpy.npz", **arrays)
    np.savez_compressed(d / "numpy-compressed.npz", **arrays)
    with zipfile.ZipFile(d / "versions.npz", "w", compression=zipfile.ZIP_DEFLATED) as z:
        for version in [(1, 0), (2, 0), (3, 0)]:
            with z.open("v%d.npy" % version[0], "w") as f:
                np.lib.format.write_array(f, arrays["a"], version=version)
        z.writestr("readme.txt", "not an array")
    return [{"name": k, "dtype": v.dtype.str, "shape": list(v.shape), "values": b64(v.astype("<f4"))}
            for k, v in arrays.items()]


def main():
    rng = np.random.default_rng(20240605)
    goldens = {
        "about": "made by Tests/Oracle/make_task_goldens.py (pycocotools %s, Pillow %s, numpy %s)"
                 % (getattr(mask_api, "__version__", "2.0.11"), PIL.__version__, np.__version__),
        "parse": parse_cases(),
        "rle": rle_cases(rng),
        "resize": resize_cases(rng),
        "paste": paste_cases(rng),
        "npz": npz_fixtures(rng),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(goldens, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {OUT.relative_to(ROOT)}: {len(goldens['parse'])} parse, {len(goldens['rle'])} rle, "
          f"{len(goldens['resize'])} resize, {len(goldens['paste'])} paste cases")


if __name__ == "__main__":
    main()
