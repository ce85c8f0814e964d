#!/usr/bin/env bash
# The README's first command. Until the demo model lands (issue 5) it runs the pieces that exist
# on the smallest fixtures the tests ship: tokenizer and image preprocessing (and generation once a
# fixture model with a tokenizer is shipped).
set -euo pipefail
cd "$(dirname "$0")/.."
bash Launch/setup.sh
swift build -c release --product paligemma
bin=.build/release/paligemma
out=${OUT_DIR:-out/demo}
mkdir -p "$out"
tok=Tests/Fixtures/tokenizer/gemma-style.model
img=Tests/Fixtures/images/sources/jpeg_420_baseline.jpg
model=Tests/Fixtures/weights/tiny_sharded
if [ -f "$tok" ]; then
    echo "== paligemma tokenize --tokenizer $tok --text='caption en <loc0001> a red circle'"
    "$bin" tokenize --tokenizer "$tok" --text='caption en <loc0001> a red circle'
fi
if [ -f "$img" ]; then
    echo "== paligemma preprocess --image $img --size 224 --output $out/pixel_values.safetensors"
    "$bin" preprocess --image "$img" --size 224 --output "$out/pixel_values.safetensors"
    ls -l "$out/pixel_values.safetensors"
fi
if [ -d "$model" ] && [ -f "$model/tokenizer.model" ]; then
    echo "== paligemma generate --model $model --image $img --prompt='caption en' --json"
    "$bin" generate --model "$model" --image "$img" --prompt='caption en' --max-tokens 8 --json
fi
echo "demo: done (outputs in $out)"
