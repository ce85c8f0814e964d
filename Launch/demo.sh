#!/usr/bin/env bash
# The README's first command. Until the demo model lands (issue 5) it runs the pieces that exist
# on the smallest fixtures the tests ship: tokenizer and image preprocessing.
set -euo pipefail
cd "$(dirname "$0")/.."
bash Launch/setup.sh
swift build -c release --product paligemma
bin=.build/release/paligemma
out=${OUT_DIR:-out/demo}
mkdir -p "$out"
tok=Tests/Fixtures/tokenizer/gemma-style.model
img=$(ls Tests/Fixtures/images/*.png 2>/dev/null | head -n1 || true)
if [ -f "$tok" ]; then
    echo "== paligemma tokenize --tokenizer $tok --text='caption en <loc0001> a red circle'"
    "$bin" tokenize --tokenizer "$tok" --text='caption en <loc0001> a red circle'
fi
if [ -n "$img" ]; then
    echo "== paligemma preprocess --image $img --size 224 --output $out/pixel_values.safetensors"
    "$bin" preprocess --image "$img" --size 224 --output "$out/pixel_values.safetensors"
    ls -l "$out/pixel_values.safetensors"
fi
echo "demo: done (outputs in $out)"
