// Weights: safetensors (mmap, f32/bf16/f16, sharded index) and config.json.
