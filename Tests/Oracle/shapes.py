#!/usr/bin/env python3
"""Deterministic synthetic scenes for the shapes demo model (issue 5).

  python Tests/Oracle/shapes.py --seed S --count N --out DIR [--size-range 96 160] [--all-prompts]

Each scene: an image of W×H pixels (each drawn from --size-range), a plain, gradient or lightly
noisy background, and 1–3 objects with non-overlapping boxes, each a shape from SHAPES in a
colour from COLORS, no two objects with the same (colour, shape). Writes

  DIR/images/<id>.png         the RGB image
  DIR/masks/<id>_<k>.png      one binary mask per object (mode L, 0/255, image size)
  DIR/manifest.jsonl          one line per (image, prompt) job:
                              {"id", "image", "prompt", "truth": {"caption", "objects": [...]}}

Prompts are `caption en`, `detect <label>` and `segment <label>`. By default one job per scene,
its kind drawn at random (mixed prompts); --all-prompts writes the caption plus a detect and a
segment job for every object. A label is "<colour> <shape>", or just "<shape>" when that shape is
unique in the scene, so a label names exactly one object. truth.objects holds the objects the
prompt refers to (all of them for a caption), each {"label", "box": [x0, y0, x1, y1], "mask"}
with the box in pixels, x1/y1 exclusive (the tight box of the mask's pixels).

The caption is a function of the scene: objects left to right by box centre, "a red circle",
"a red circle and a blue square", "a red circle, a blue square and a green star".

The same code is imported by train_demo_model.py (scene(), suffix_for()).
"""
import argparse
import json
import math
import os

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ["circle", "square", "triangle", "star", "cross"]
COLORS = {
    "red": (220, 40, 40),
    "green": (40, 190, 60),
    "blue": (40, 80, 235),
    "yellow": (240, 220, 40),
    "purple": (160, 50, 200),
    "white": (245, 245, 245),
}
COLOR_NAMES = list(COLORS)


def _shape_polygon(shape, cx, cy, r, rot, thick):
    """Polygon (list of (x, y)) of a shape of "radius" r centred at (cx, cy); None for circle."""
    if shape == "square":
        s = r * 0.86
        return [(cx - s, cy - s), (cx + s, cy - s), (cx + s, cy + s), (cx - s, cy + s)]
    if shape == "triangle":
        return [(cx + r * math.cos(rot + k * 2 * math.pi / 3), cy + r * math.sin(rot + k * 2 * math.pi / 3))
                for k in range(3)]
    if shape == "star":
        pts = []
        for k in range(10):
            rr = r if k % 2 == 0 else r * 0.45
            a = rot + k * math.pi / 5
            pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
        return pts
    if shape == "cross":
        t = r * thick
        s = r * 0.95
        base = [(-t, -s), (t, -s), (t, -t), (s, -t), (s, t), (t, t), (t, s), (-t, s), (-t, t), (-s, t),
                (-s, -t), (-t, -t)]
        c, sn = math.cos(rot), math.sin(rot)
        return [(cx + x * c - y * sn, cy + x * sn + y * c) for x, y in base]
    return None


def _draw_mask(shape, w, h, cx, cy, r, rot, thick):
    m = Image.new("L", (w, h), 0)
    d = ImageDraw.Draw(m)
    if shape == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
    else:
        d.polygon(_shape_polygon(shape, cx, cy, r, rot, thick), fill=255)
    return np.array(m)


def _background(rng, w, h):
    kind = rng.choice(["plain", "gradient", "noise"], p=[0.4, 0.3, 0.3])

    def muted():
        base = rng.uniform(25, 120)
        return np.clip(base + rng.uniform(-25, 25, 3), 0, 255)

    c0 = muted()
    img = np.broadcast_to(c0, (h, w, 3)).astype(np.float64)
    if kind == "gradient":
        c1 = muted()
        ang = rng.uniform(0, 2 * math.pi)
        yy, xx = np.mgrid[0:h, 0:w]
        t = (xx * math.cos(ang) + yy * math.sin(ang))
        t = (t - t.min()) / max(t.max() - t.min(), 1e-6)
        img = c0 * (1 - t[..., None]) + c1 * t[..., None]
    elif kind == "noise":
        img = img + rng.normal(0, rng.uniform(3, 10), (h, w, 3))
    return img


def box_iou(a, b):
    """IoU of two [x0, y0, x1, y1] boxes (x1/y1 exclusive); 0 when both are empty."""
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def scene(rng, size_range=(96, 160)):
    """One scene from a numpy Generator: (uint8 image HxWx3, list of objects).

    Object: {"color", "shape", "mask" (uint8 HxW 0/255), "box": [x0, y0, x1, y1]}, left to right.
    """
    lo, hi = size_range
    w = int(rng.integers(lo, hi + 1))
    h = int(rng.integers(lo, hi + 1))
    img = _background(rng, w, h)
    n = int(rng.choice([1, 2, 3], p=[0.3, 0.35, 0.35]))
    objs, boxes, used = [], [], set()
    tries = 0
    while len(objs) < n and tries < 200:
        tries += 1
        shape = SHAPES[int(rng.integers(len(SHAPES)))]
        color = COLOR_NAMES[int(rng.integers(len(COLOR_NAMES)))]
        if (color, shape) in used:
            continue
        mn = min(w, h)
        r = float(rng.uniform(0.09, 0.26) * mn)
        cx = float(rng.uniform(r + 1, w - r - 1))
        cy = float(rng.uniform(r + 1, h - r - 1))
        rot = float(rng.uniform(0, 2 * math.pi))
        thick = float(rng.uniform(0.22, 0.4))
        mask = _draw_mask(shape, w, h, cx, cy, r, rot, thick)
        ys, xs = np.nonzero(mask)
        if len(xs) < 30:
            continue
        box = [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]
        if any(box[0] < b[2] + 2 and b[0] < box[2] + 2 and box[1] < b[3] + 2 and b[1] < box[3] + 2
               for b in boxes):
            continue
        used.add((color, shape))
        boxes.append(box)
        objs.append({"color": color, "shape": shape, "mask": mask, "box": box})
    for o in objs:
        col = np.array(COLORS[o["color"]], np.float64) + rng.uniform(-12, 12, 3)
        sel = o["mask"] > 0
        img[sel] = col
    img = np.clip(np.round(img), 0, 255).astype(np.uint8)
    objs.sort(key=lambda o: (o["box"][0] + o["box"][2], o["box"][1] + o["box"][3]))
    for o in objs:
        o["name"] = f"{o['color']} {o['shape']}"
        shape_count = sum(1 for p in objs if p["shape"] == o["shape"])
        o["unique_shape"] = shape_count == 1
    return img, objs


def caption(objs):
    names = [f"a {o['name']}" for o in objs]
    if len(names) == 1:
        return names[0]
    return ", ".join(names[:-1]) + " and " + names[-1]


def label_for(rng, o):
    """The prompt label of an object: colour+shape, or the bare shape (30%) when unique."""
    if o["unique_shape"] and rng.random() < 0.3:
        return o["shape"]
    return o["name"]


def loc_bin(v, size):
    return int(min(max(round(v / size * 1023), 0), 1023))


def loc_tokens(box, w, h):
    x0, y0, x1, y1 = box
    return "".join(f"<loc{b:04d}>" for b in (loc_bin(y0, h), loc_bin(x0, w), loc_bin(y1, h), loc_bin(x1, w)))


def mask_crop64(mask, box):
    """The object's mask cropped to its box and resized to 64×64 (float32 in [0, 1])."""
    x0, y0, x1, y1 = box
    crop = Image.fromarray(mask[y0:y1, x0:x1])
    crop = crop.resize((64, 64), Image.BILINEAR)
    return (np.asarray(crop, np.float32) / 255.0 > 0.5).astype(np.float32)


def jobs_for_scene(rng, objs, all_prompts=False):
    """[(prompt, referred objects indices, label)] for a scene."""
    jobs = []
    if all_prompts:
        jobs.append(("caption en", list(range(len(objs))), None))
        for k, o in enumerate(objs):
            lab = label_for(rng, o)
            jobs.append((f"detect {lab}", [k], lab))
            jobs.append((f"segment {lab}", [k], lab))
        return jobs
    kind = rng.choice(["caption", "detect", "segment"])
    if kind == "caption":
        return [("caption en", list(range(len(objs))), None)]
    k = int(rng.integers(len(objs)))
    lab = label_for(rng, objs[k])
    return [(f"{kind} {lab}", [k], lab)]


def generate(seed, count, out, size_range=(96, 160), all_prompts=False):
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(out, "images"), exist_ok=True)
    os.makedirs(os.path.join(out, "masks"), exist_ok=True)
    lines = []
    for i in range(count):
        img, objs = scene(rng, size_range)
        sid = f"s{seed}-{i:04d}"
        Image.fromarray(img).save(os.path.join(out, "images", f"{sid}.png"), optimize=True)
        mpaths = []
        for k, o in enumerate(objs):
            p = f"masks/{sid}_{k}.png"
            Image.fromarray(o["mask"]).save(os.path.join(out, p), optimize=True)
            mpaths.append(p)
        cap = caption(objs)
        for j, (prompt, refs, lab) in enumerate(jobs_for_scene(rng, objs, all_prompts)):
            objects = [{"label": lab if lab is not None else objs[k]["name"], "box": objs[k]["box"],
                        "mask": mpaths[k]} for k in refs]
            lines.append({"id": f"{sid}-{j}" if all_prompts else sid, "image": f"images/{sid}.png",
                          "prompt": prompt, "truth": {"caption": cap, "objects": objects}})
    with open(os.path.join(out, "manifest.jsonl"), "w") as f:
        for l in lines:
            f.write(json.dumps(l) + "\n")
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--size-range", type=int, nargs=2, default=[96, 160])
    ap.add_argument("--all-prompts", action="store_true")
    a = ap.parse_args()
    lines = generate(a.seed, a.count, a.out, tuple(a.size_range), a.all_prompts)
    print(f"{a.count} scenes, {len(lines)} jobs -> {a.out}")


if __name__ == "__main__":
    main()
