#!/usr/bin/env bash
# Image preprocessing speed: `paligemma preprocess` (decode + resize + rescale/normalise, release
# build) against Pillow 13 + transformers 5.23 SiglipImageProcessorPil on the same files, one core.
#
#   Launch/bench-images.sh [SIZE] [REPEATS]
#
# SIZE: output side (default 224). REPEATS: timed runs per image (default 15), median taken.
# Inputs are made on the fly (photo-like JPEGs from 200x150 to 4032x3024, baseline and
# progressive, and PNG RGB/RGBA). Both sides are pinned to CPU 0 and time the same work per image:
# read the file, decode, convert to RGB, resize, rescale, normalise (Python: Image.open + processor
# call with return_tensors="np"; ours: ImagePreprocessor.pixelValues(contentsOf:), timed inside
# the process so start-up is excluded on both sides). The outputs must be identical, or it fails.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE="${1:-224}"
REPEATS="${2:-15}"
PYTHON="${PYTHON:-.venv/bin/python}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
PIN=()
command -v taskset >/dev/null && PIN=(taskset -c 0)
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1

swift build -c release --scratch-path .build-img --product paligemma >&2
BIN=".build-img/release/paligemma"

"$PYTHON" - "$WORK" <<'PY'
import sys
import numpy as np
from PIL import Image
work = sys.argv[1]
rng = np.random.default_rng(0)
def photo(w, h):
    """Smooth structure plus fine noise: compresses like a photograph."""
    coarse = rng.integers(0, 256, (max(h // 16, 2), max(w // 16, 2), 3), dtype=np.uint8)
    img = np.asarray(Image.fromarray(coarse).resize((w, h), Image.Resampling.BICUBIC), np.float64)
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)
specs = [("jpeg_200x150.jpg", 200, 150, {}), ("jpeg_640x480.jpg", 640, 480, {}),
         ("jpeg_1024x768_progressive.jpg", 1024, 768, {"progressive": True}),
         ("jpeg_1920x1080.jpg", 1920, 1080, {}), ("jpeg_4032x3024.jpg", 4032, 3024, {}),
         ("png_800x600_rgb.png", 800, 600, None), ("png_512x512_rgba.png", 512, 512, "rgba")]
for name, w, h, opts in specs:
    img = photo(w, h)
    if opts == "rgba":
        alpha = np.clip(np.linspace(0, 400, w)[None, :].repeat(h, 0), 0, 255).astype(np.uint8)
        Image.fromarray(np.dstack([img, alpha]), "RGBA").save(f"{work}/{name}")
    elif opts is None:
        Image.fromarray(img).save(f"{work}/{name}")
    else:
        Image.fromarray(img).save(f"{work}/{name}", quality=90, **opts)
    print(name, file=open(f"{work}/list.txt", "a"))
PY

: >"$WORK/swift.txt"
while read -r NAME; do
    "${PIN[@]}" "$BIN" preprocess --image "$WORK/$NAME" --size "$SIZE" --output "$WORK/$NAME.safetensors" \
        --repeat "$REPEATS" | grep '^{' >>"$WORK/swift.txt"
done <"$WORK/list.txt"

"${PIN[@]}" "$PYTHON" - "$WORK" "$SIZE" "$REPEATS" <<'PY'
import json, sys, time
import numpy as np
from PIL import Image
from safetensors.numpy import load_file
from transformers import SiglipImageProcessorPil
work, size, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
proc = SiglipImageProcessorPil(size={"height": size, "width": size})
ours = {json.loads(l)["image"].rsplit("/", 1)[1]: json.loads(l) for l in open(f"{work}/swift.txt")}
total_py = total_swift = 0.0
print(f"{'image':34s} {'transformers ms':>16s} {'ours ms':>9s} {'speed-up':>9s}")
for name in open(f"{work}/list.txt").read().split():
    path = f"{work}/{name}"
    def run():
        with Image.open(path) as im:
            return proc(im, return_tensors="np")["pixel_values"][0]
    expected = run()
    got = load_file(f"{path}.safetensors")["pixel_values"]
    assert got.shape == expected.shape and np.array_equal(got, expected), f"{name}: outputs differ"
    times = []
    for _ in range(repeats):
        t = time.perf_counter(); run(); times.append(time.perf_counter() - t)
    py = sorted(times)[repeats // 2]
    sw = ours[name]["median_s"]
    total_py += py; total_swift += sw
    print(f"{name:34s} {py * 1e3:16.2f} {sw * 1e3:9.2f} {py / sw:8.2f}x")
print(f"{'total':34s} {total_py * 1e3:16.2f} {total_swift * 1e3:9.2f} {total_py / total_swift:8.2f}x")
print(f"ratio transformers/ours = {total_py / total_swift:.2f} (size {size}, median of {repeats}, one core; outputs identical)")
PY
