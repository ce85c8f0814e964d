"""What each role of `paligemma run` holds in memory, per model and layout, from the models' configs.

    python3 Launch/memory-table.py            # the markdown table of docs/operations.md, "Memory per role"

Weights are counted at the precision the checkpoint ships in (PaliGemma 1: f32, 4 bytes/param;
PaliGemma 2: bf16, 2 bytes/param), i.e. one copy of the weights as issue 11 asks. Roles:
  coordinator   the tokenizer only (tens of MB);
  vision rank   SigLIP So400m/14 + the projector;
  stage k of S  its decoder layers (the split paligemma makes by cost: StagePlan.split with the LM head's
                cost, ported below); stage 0 also holds the token embedding [V, D] and the last stage the
                final norm and the tied LM head, the same [V, D] matrix: with S = 1 one copy, with S > 1
                both the first and the last stage hold it.
KV cache per sequence: 2 (K, V) x layers x kv_heads x head_dim x 4 bytes (f32) x tokens, at 256 image
tokens + 32 text tokens (224 px); a stage holds its layers' share for every sequence in flight (default
micro-batches of 8, S of them in flight). Activations and scratch add a few hundred MB per rank.

Config numbers (width D, layers L, MLP F, heads H, KV heads, head_dim, vocabulary V):
  SigLIP So400m/14 224 px (all four): D 1152, L 27, F 4304, 16 heads, patch 14, 256 positions; with
    biases and LayerNorms (hub config of google/paligemma-3b-pt-224; transformers
    convert_paligemma2_weights_to_hf.py, vision_config).
  PaliGemma 1 3B, Gemma 2B: D 2048, L 18, F 16384, H 8, KV 1, head_dim 256, V 257216 (hub config.json of
    google/paligemma-3b-pt-224).
  PaliGemma 2 3B/10B/28B, Gemma 2 2B/9B/27B (transformers convert_paligemma2_weights_to_hf.py,
    VARIANT_CONFIGS; V 257216 as in the hub config.json of google/paligemma2-3b-pt-224's text_config):
    2B: D 2304, L 26, F 9216, H 8, KV 4, head_dim 256;
    9B: D 3584, L 42, F 14336, H 16, KV 8, head_dim 256;
    27B: D 4608, L 46, F 36864, H 32, KV 16, head_dim 128.
  Gemma 2 layers have 4 RMSNorms (Gemma 1: 2); the projector is D_vision -> D with a bias.
"""

GB = 1e9
TOKENS = 256 + 32

VISION = dict(D=1152, L=27, F=4304, patch=14, positions=256)
MODELS = [  # name, shipped bytes/param, decoder config, norms per layer
    ("PaliGemma 1 3B (f32)", 4, dict(D=2048, L=18, F=16384, H=8, KV=1, hd=256, V=257216), 2),
    ("PaliGemma 2 3B (bf16)", 2, dict(D=2304, L=26, F=9216, H=8, KV=4, hd=256, V=257216), 4),
    ("PaliGemma 2 10B (bf16)", 2, dict(D=3584, L=42, F=14336, H=16, KV=8, hd=256, V=257216), 4),
    ("PaliGemma 2 28B (bf16)", 2, dict(D=4608, L=46, F=36864, H=32, KV=16, hd=128, V=257216), 4),
]
STAGES = [1, 2, 4]  # np 3 (1 vision + 1 stage), np 4 (S 2), np 6 (S 4)


def vision_params(d_text):
    v = VISION
    D, F = v["D"], v["F"]
    embed = D * 3 * v["patch"] ** 2 + D + v["positions"] * D
    layer = 4 * (D * D + D) + (D * F + F) + (F * D + D) + 4 * D
    return embed + v["L"] * layer + 2 * D + (D * d_text + d_text)


def layer_params(c, norms):
    D = c["D"]
    return D * c["H"] * c["hd"] * 2 + D * c["KV"] * c["hd"] * 2 + 3 * D * c["F"] + norms * D


def split(layers, stages, head_cost):
    """StagePlan.split (Sources/PaliPipeline/StagePlan.swift): least maximum stage cost, then least
    sum of squares, ties to the latest cut; unit layer costs, the head's cost on the last stage."""
    inf = float("inf")

    def cost(k, i, j):
        return (j - i) + (head_cost if k == stages - 1 else 0)

    best = [[inf] * (layers + 1) for _ in range(stages)]
    for j in range(1, layers + 1):
        best[0][j] = cost(0, 0, j)
    for k in range(1, stages):
        for j in range(k + 1, layers + 1):
            for i in range(k, j):
                best[k][j] = min(best[k][j], max(best[k - 1][i], cost(k, i, j)))
    limit = best[stages - 1][layers] * (1 + 1e-9) + 1e-12
    sq = [[inf] * (layers + 1) for _ in range(stages)]
    cut = [[0] * (layers + 1) for _ in range(stages)]
    for j in range(1, layers + 1):
        if cost(0, 0, j) <= limit:
            sq[0][j] = cost(0, 0, j) ** 2
    for k in range(1, stages):
        for j in range(k + 1, layers + 1):
            for i in range(k, j):
                if sq[k - 1][i] < inf and cost(k, i, j) <= limit:
                    total = sq[k - 1][i] + cost(k, i, j) ** 2
                    if total <= sq[k][j] * (1 + 1e-12):
                        sq[k][j], cut[k][j] = total, i
    counts, end = [0] * stages, layers
    for k in range(stages - 1, -1, -1):
        start = 0 if k == 0 else cut[k][end]
        counts[k], end = end - start, start
    return counts


def main():
    print("| model (parameters, shipped as) | np 1: one process | vision rank | np 3: stage | np 4: stages 0, 1 "
          "| np 6: stages 0–3 | KV cache per sequence |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, nbytes, c, norms in MODELS:
        D, L, V = c["D"], c["L"], c["V"]
        vis = vision_params(D) * nbytes
        lay = layer_params(c, norms) * nbytes
        emb = V * D * nbytes
        total = vis + L * lay + emb + D * nbytes
        head_cost = V * D / (D * (2 * c["H"] * c["hd"] + 2 * c["KV"] * c["hd"] + 3 * c["F"]))
        cells = []
        for s in STAGES:
            counts = split(L, s, head_cost)
            sizes = []
            for k, n in enumerate(counts):
                size = n * lay + (emb if k == 0 else 0) + (emb + D * nbytes if k == s - 1 and s > 1 else 0)
                sizes.append(f"{size / GB:.1f}" + (f" ({n})" if s > 1 else ""))
            cells.append(", ".join(sizes))
        kv = 2 * L * c["KV"] * c["hd"] * 4 * TOKENS
        print(f"| {name.replace('(', f'({total / nbytes / 1e9:.2f} B, ')} | {total / GB:.1f} | {vis / GB:.2f} "
              f"| {cells[0]} | {cells[1]} | {cells[2]} | {kv / 1e6:.0f} MB |")


if __name__ == "__main__":
    main()
