// Gemma and Gemma 2 decoders, over a range of layers so that a pipeline stage runs the same code as
// the single-process path. Mirrors transformers v5.23.0 (the version our goldens come from):
//   src/transformers/models/gemma/modeling_gemma.py    GemmaModel, GemmaDecoderLayer, GemmaAttention,
//                                                      GemmaMLP, GemmaRMSNorm (weight applied as 1 + w)
//   src/transformers/models/gemma2/modeling_gemma2.py  Gemma2DecoderLayer: a norm after attention and
//                                                      around the MLP, attention and final logit soft-caps,
//                                                      sliding-window layers
// One `DecoderLayer` is GemmaDecoderLayer.forward statement by statement: input_layernorm →
// GemmaAttention → (Gemma 2: post_attention_layernorm) → residual; pre-MLP norm → GemmaMLP → (Gemma 2:
// post_feedforward_layernorm) → residual.
//
// A forward step works on a ragged batch: the new tokens of several sequences concatenated into
// hidden [R, D] (R = Σ new tokens). Linear layers run on all R rows at once; attention runs per
// sequence against that sequence's own KV cache, so no padding is ever needed and each sequence's
// result does not depend on what it was batched with.
import PaliTensor

/// One sequence's part of a batched forward step.
public struct SequenceStep {
    /// New tokens of this sequence in the step (the prompt at prefill, 1 when decoding).
    public var tokens: Int
    /// Its KV cache (for the layers this decoder holds); new keys go after `cache.length`.
    public var cache: KVCache
    /// Length of the prefix block (image tokens + BOS + prompt + "\n"): fully visible inside itself.
    public var prefixLength: Int

    public init(tokens: Int, cache: KVCache, prefixLength: Int) {
        self.tokens = tokens; self.cache = cache; self.prefixLength = prefixLength
    }
}

public final class GemmaDecoder: @unchecked Sendable {
    public let hyper: DecoderHyperparameters
    /// The layers held here; a full model holds 0..<layers.
    public let layerRange: Range<Int>

    /// GemmaAttention's projections (q_proj, k_proj, v_proj, o_proj), packed.
    struct AttentionWeights {
        let q, k, v, o: PackedWeight
    }

    /// GemmaMLP's projections (gate_proj, up_proj, down_proj), packed: down(gelu_tanh(gate(x)) · up(x)).
    struct MLPWeights {
        let gate, up, down: PackedWeight
    }

    /// GemmaDecoderLayer / Gemma2DecoderLayer. The norms are named by where they act, resolved once at
    /// load: Gemma 1's checkpoint calls its pre-MLP norm `post_attention_layernorm`, so it is loaded as
    /// `preFeedforwardNorm`, and `postAttentionNorm` (the norm on the attention output) exists for
    /// Gemma 2 only.
    struct DecoderLayer {
        let inputNorm: Tensor
        let attention: AttentionWeights
        let postAttentionNorm: Tensor?                 // Gemma 2 only
        let preFeedforwardNorm: Tensor
        let mlp: MLPWeights
        let postFeedforwardNorm: Tensor?               // Gemma 2 only
    }

    let layers: [DecoderLayer]
    /// [V, D], packed for the tied LM head (rows are read back for embedding lookups); present when
    /// this decoder embeds tokens or computes logits.
    public let embedding: PackedWeight?
    let finalNorm: Tensor?

    /// Loads layers `layerRange`; the embedding when `embed || head`; the final norm when `head`.
    public init(hyper h: DecoderHyperparameters, layers layerRange: Range<Int>, embed: Bool, head: Bool,
                weights: WeightSource) throws {
        precondition(layerRange.lowerBound >= 0 && layerRange.upperBound <= h.layers, "layer range \(layerRange) outside 0..<\(h.layers)")
        hyper = h
        self.layerRange = layerRange
        let d = h.width, f = h.mlpWidth
        layers = try layerRange.map { i in
            let p = TensorName.decoderLayer(i)
            func t(_ n: String, _ s: [Int]) throws -> Tensor { try weights.tensor(p + n, shape: s) }
            func w(_ n: String, _ s: [Int]) throws -> PackedWeight { try weights.packed(p + n, shape: s) }
            // The checkpoint's post_attention_layernorm is Gemma 2's norm on the
            // attention output and Gemma 1's norm before the MLP.
            let inputNorm = try t("input_layernorm.weight", [d])
            let attention = AttentionWeights(
                q: try w("self_attn.q_proj.weight", [h.queryWidth, d]),
                k: try w("self_attn.k_proj.weight", [h.kvWidth, d]),
                v: try w("self_attn.v_proj.weight", [h.kvWidth, d]),
                o: try w("self_attn.o_proj.weight", [d, h.queryWidth]))
            let postAttention = try t("post_attention_layernorm.weight", [d])
            let preFeedforward = h.gemma2 ? try t("pre_feedforward_layernorm.weight", [d]) : postAttention
            let postFeedforward = h.gemma2 ? try t("post_feedforward_layernorm.weight", [d]) : nil
            let mlp = MLPWeights(
                gate: try w("mlp.gate_proj.weight", [f, d]),
                up: try w("mlp.up_proj.weight", [f, d]),
                down: try w("mlp.down_proj.weight", [d, f]))
            return DecoderLayer(
                inputNorm: inputNorm,
                attention: attention,
                postAttentionNorm: h.gemma2 ? postAttention : nil,
                preFeedforwardNorm: preFeedforward,
                mlp: mlp,
                postFeedforwardNorm: postFeedforward)
        }
        embedding = (embed || head)
            ? try weights.packed("\(TensorName.decoder)embed_tokens.weight", shape: [h.vocabSize, d], rowLookups: true) : nil
        finalNorm = head ? try weights.tensor("\(TensorName.decoder)norm.weight", shape: [d]) : nil
    }

    /// Bytes of the packed matrices held (layers, and the tied embedding / LM head when held).
    public var packedBytes: Int {
        (embedding?.byteCount ?? 0) + layers.reduce(0) { total, l in
            total + [l.attention.q, l.attention.k, l.attention.v, l.attention.o, l.mlp.gate, l.mlp.up, l.mlp.down]
                .reduce(0) { $0 + $1.byteCount }
        }
    }

    /// A cache sized for this decoder's layers.
    public func makeCache(capacity: Int) -> KVCache {
        KVCache(layers: layerRange, kvWidth: hyper.kvWidth, capacity: capacity)
    }

    // MARK: Embedding

    /// Text embeddings × √D: ids [R] → [R, D]. Ids outside the vocabulary embed as id 0 (their rows
    /// are image positions, overwritten by the caller, as transformers does).
    public func embed(_ ids: [Int]) -> Tensor {
        guard let embedding else { preconditionFailure("this decoder holds no embedding") }
        let d = hyper.width, scale = hyper.embedScale
        let out = Tensor(zeros: [ids.count, d])
        for (r, id) in ids.enumerated() {
            let row = (id >= 0 && id < hyper.vocabSize) ? id : 0
            embedding.row(row, scaledBy: scale, into: out.data + r * d)
        }
        return out
    }

    // MARK: Layers

    /// Runs this decoder's layers over `hidden` [R, D] in place and appends the new keys/values to each
    /// sequence's cache (then advances `cache.length`). Rows are grouped by sequence in `steps` order.
    ///
    /// `readRows` (ascending row indices): the only rows of `hidden` the caller reads afterwards, as the
    /// LM head after the model's last layer does (one row per sequence at prefill). The last layer here
    /// then computes keys and values for every row (the cache needs them) but queries, attention,
    /// o_proj and the MLP for these rows only; the other rows are left as that layer's input. At
    /// prefill that skips almost all of one layer's work (1/18 of PaliGemma-3B's prefill). Each kept
    /// row gets the same result as without `readRows` up to the attention kernel's summation order (a
    /// lone query runs sgemv, a block of queries our GEMM kernel), and the same bits whatever else is
    /// in the step.
    public func forward(_ hidden: Tensor, steps: [SequenceStep], readRows: [Int]? = nil) {
        let h = hyper, d = h.width, rows = hidden.rows
        precondition(hidden.columns == d && steps.reduce(0, { $0 + $1.tokens }) == rows,
                     "hidden \(hidden.shape) does not match \(steps.map(\.tokens)) new tokens")
        if let readRows {
            precondition(zip(readRows, readRows.dropFirst()).allSatisfy { $0 < $1 }
                         && readRows.allSatisfy { (0..<rows).contains($0) },
                         "readRows \(readRows) must be ascending rows of 0..<\(rows)")
        }
        // Rows whose queries the last layer computes: nil for all of them.
        let lastLayerRows = readRows.flatMap { $0.count < rows ? $0 : nil }

        // 1-based positions as transformers uses them (RoPE depends only on differences).
        var positions: [Int] = []
        positions.reserveCapacity(rows)
        for s in steps {
            s.cache.reserve(s.cache.length + s.tokens)
            for j in 0..<s.tokens { positions.append(s.cache.length + j + 1) }
        }
        let rope = RoPETable(positions: positions, headDim: h.headDim, theta: h.ropeTheta)
        // Masks per sequence: global, and sliding where this model has sliding layers.
        let masks = steps.map { s in
            AttentionMask.prefixLM(queryStart: s.cache.length, queries: s.tokens, keys: s.cache.length + s.tokens,
                                   prefixLength: s.prefixLength)
        }
        let slidingMasks: [[Float]]? = h.slidingWindow.map { w in
            steps.map { s in
                AttentionMask.prefixLM(queryStart: s.cache.length, queries: s.tokens, keys: s.cache.length + s.tokens,
                                       prefixLength: s.prefixLength, window: w)
            }
        }
        let maxScratch = steps.map { Attention.scratchCount(queries: $0.tokens, keys: $0.cache.length + $0.tokens, headDim: h.headDim) }.max() ?? 0

        let y = Tensor(zeros: [rows, d])
        let q = Tensor(zeros: [rows, h.queryWidth])
        let k = Tensor(zeros: [rows, h.kvWidth]), v = Tensor(zeros: [rows, h.kvWidth])
        let attn = Tensor(zeros: [rows, h.queryWidth])
        let gate = Tensor(zeros: [rows, h.mlpWidth]), up = Tensor(zeros: [rows, h.mlpWidth])
        let scratch = Tensor(zeros: [max(maxScratch, 1)])

        for (li, layer) in layers.enumerated() {
            let index = layerRange.lowerBound + li
            // The rows this layer carries past attention: all, or in the last layer the rows read back.
            let kept = li == layers.count - 1 ? lastLayerRows : nil
            let n = kept?.count ?? rows
            // input_layernorm, then GemmaAttention: q/k/v projections, RoPE, the new keys and values into
            // each sequence's cache, eager attention per sequence, o_proj.
            Norms.rmsNorm(hidden.data, rows: rows, width: d, weight: layer.inputNorm.data, eps: h.eps, into: y.data)
            Linear.forward(y.data, rows: rows, inFeatures: d, weight: layer.attention.k, bias: nil, into: k.data)
            Linear.forward(y.data, rows: rows, inFeatures: d, weight: layer.attention.v, bias: nil, into: v.data)
            rope.apply(k.data, rows: rows, rowStride: h.kvWidth, heads: h.kvHeads)
            if let kept {
                // The kept rows' normed inputs, packed at the top of y (ascending, so no row is overwritten
                // before it is read), then their queries with their own positions.
                for (i, r) in kept.enumerated() where i != r { (y.data + i * d).update(from: y.data + r * d, count: d) }
                Linear.forward(y.data, rows: n, inFeatures: d, weight: layer.attention.q, bias: nil, into: q.data)
                RoPETable(positions: kept.map { positions[$0] }, headDim: h.headDim, theta: h.ropeTheta)
                    .apply(q.data, rows: n, rowStride: h.queryWidth, heads: h.heads)
            } else {
                Linear.forward(y.data, rows: rows, inFeatures: d, weight: layer.attention.q, bias: nil, into: q.data)
                rope.apply(q.data, rows: rows, rowStride: h.queryWidth, heads: h.heads)
            }

            let sliding = h.slidingLayers[index] && slidingMasks != nil
            var row = 0, next = 0   // next: the first kept row (index into `kept`) not yet attended
            for (si, s) in steps.enumerated() {
                let start = s.cache.length, keys = start + s.tokens
                let kc = s.cache.key(layer: index), vc = s.cache.value(layer: index)
                (kc + start * h.kvWidth).update(from: k.data + row * h.kvWidth, count: s.tokens * h.kvWidth)
                (vc + start * h.kvWidth).update(from: v.data + row * h.kvWidth, count: s.tokens * h.kvWidth)
                let mask = sliding ? slidingMasks![si] : masks[si]
                // Runs of consecutive query rows of this sequence: (first local query, first q row, count).
                var runs: [(query: Int, qRow: Int, count: Int)] = []
                if let kept {
                    while next < kept.count && kept[next] < row + s.tokens {
                        var end = next + 1
                        while end < kept.count && kept[end] == kept[end - 1] + 1 && kept[end] < row + s.tokens { end += 1 }
                        runs.append((kept[next] - row, next, end - next))
                        next = end
                    }
                } else {
                    runs = [(0, row, s.tokens)]
                }
                mask.withUnsafeBufferPointer { m in
                    for run in runs {
                        Attention.forward(q: q.data + run.qRow * h.queryWidth, qStride: h.queryWidth,
                                          k: kc, v: vc, kvStride: h.kvWidth, queries: run.count, keys: keys,
                                          heads: h.attention, scale: h.attentionScale, softcap: h.attentionSoftcap,
                                          mask: m.baseAddress! + run.query * keys, scratch: scratch.data,
                                          scratchCount: scratch.count,
                                          out: attn.data + run.qRow * h.queryWidth, outStride: h.queryWidth)
                    }
                }
                row += s.tokens
            }
            Linear.forward(attn.data, rows: n, inFeatures: h.queryWidth, weight: layer.attention.o, bias: nil, into: y.data)
            if let post = layer.postAttentionNorm {
                Norms.rmsNorm(y.data, rows: n, width: d, weight: post.data, eps: h.eps, into: y.data)
            }
            // The residual stream of the carried rows: hidden itself, or the kept rows gathered.
            let x: Tensor
            if let kept {
                x = Tensor(zeros: [n, d])
                for (i, r) in kept.enumerated() { (x.data + i * d).update(from: hidden.data + r * d, count: d) }
            } else {
                x = hidden
            }
            Elementwise.add(y.data, into: x.data, count: n * d)

            // The pre-MLP norm, then GemmaMLP (GeGLU).
            Norms.rmsNorm(x.data, rows: n, width: d, weight: layer.preFeedforwardNorm.data, eps: h.eps, into: y.data)
            Linear.forward(y.data, rows: n, inFeatures: d, weight: layer.mlp.gate, bias: nil, into: gate.data)
            Linear.forward(y.data, rows: n, inFeatures: d, weight: layer.mlp.up, bias: nil, into: up.data)
            Activations.geglu(gate: gate.data, up: up.data, count: n * h.mlpWidth, into: gate.data)
            Linear.forward(gate.data, rows: n, inFeatures: h.mlpWidth, weight: layer.mlp.down, bias: nil, into: y.data)
            if let post = layer.postFeedforwardNorm {
                Norms.rmsNorm(y.data, rows: n, width: d, weight: post.data, eps: h.eps, into: y.data)
            }
            Elementwise.add(y.data, into: x.data, count: n * d)
            if let kept {
                for (i, r) in kept.enumerated() { (hidden.data + r * d).update(from: x.data + i * d, count: d) }
            }
            withExtendedLifetime(x) {}
        }
        // The kernels above get raw pointers (`.data`), which do not keep a tensor alive: without this,
        // Swift may free `scratch` right after the last layer reads its pointer, while that layer's
        // attention threads still write to it (found by AddressSanitizer; crashed 1 run in ~7).
        withExtendedLifetime((y, q, k, v, attn, gate, up, scratch)) {}
        for s in steps { s.cache.length += s.tokens }
    }

    // MARK: Head

    /// Final RMSNorm (GemmaModel.norm) and tied LM head (GemmaForCausalLM.lm_head, + Gemma 2's final
    /// logit soft-cap) on the selected rows of hidden [R, D] → logits [rows.count, V].
    public func logits(_ hidden: Tensor, rows selected: [Int]) -> Tensor {
        guard let embedding, let finalNorm else { preconditionFailure("this decoder holds no LM head") }
        let d = hyper.width, v = hyper.vocabSize
        let picked = Tensor(zeros: [selected.count, d])
        for (i, r) in selected.enumerated() {
            (picked.data + i * d).update(from: hidden.data + r * d, count: d)
        }
        Norms.rmsNorm(picked.data, rows: selected.count, width: d, weight: finalNorm.data, eps: hyper.eps, into: picked.data)
        let out = Tensor(zeros: [selected.count, v])
        withExtendedLifetime(picked) {   // a raw pointer does not keep `picked` alive through the product
            Linear.forward(picked.data, rows: selected.count, inFeatures: d, weight: embedding, bias: nil, into: out.data)
        }
        if let cap = hyper.finalSoftcap { Activations.softcap(out.data, count: out.count, cap: cap) }
        return out
    }
}
