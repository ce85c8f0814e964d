// Gemma and Gemma 2 decoders (SPEC §2.3, §1.2), over a range of layers so that a pipeline stage runs
// the same code as the single-process path.
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

    struct Layer {
        let inputNorm: Tensor
        let q, k, v, o: PackedWeight
        let postAttentionNorm: Tensor
        let preFeedforwardNorm, postFeedforwardNorm: Tensor?   // Gemma 2 only
        let gate, up, down: PackedWeight
    }

    let layers: [Layer]
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
            return Layer(
                inputNorm: try t("input_layernorm.weight", [d]),
                q: try w("self_attn.q_proj.weight", [h.queryWidth, d]),
                k: try w("self_attn.k_proj.weight", [h.kvWidth, d]),
                v: try w("self_attn.v_proj.weight", [h.kvWidth, d]),
                o: try w("self_attn.o_proj.weight", [d, h.queryWidth]),
                postAttentionNorm: try t("post_attention_layernorm.weight", [d]),
                preFeedforwardNorm: h.gemma2 ? try t("pre_feedforward_layernorm.weight", [d]) : nil,
                postFeedforwardNorm: h.gemma2 ? try t("post_feedforward_layernorm.weight", [d]) : nil,
                gate: try w("mlp.gate_proj.weight", [f, d]),
                up: try w("mlp.up_proj.weight", [f, d]),
                down: try w("mlp.down_proj.weight", [d, f]))
        }
        embedding = (embed || head)
            ? try weights.packed("\(TensorName.decoder)embed_tokens.weight", shape: [h.vocabSize, d]) : nil
        finalNorm = head ? try weights.tensor("\(TensorName.decoder)norm.weight", shape: [d]) : nil
    }

    /// Bytes of the packed matrices held (layers, and the tied embedding / LM head when held).
    public var packedBytes: Int {
        (embedding?.byteCount ?? 0) + layers.reduce(0) { total, l in
            total + [l.q, l.k, l.v, l.o, l.gate, l.up, l.down].reduce(0) { $0 + $1.byteCount }
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
    public func forward(_ hidden: Tensor, steps: [SequenceStep]) {
        let h = hyper, d = h.width, rows = hidden.rows
        precondition(hidden.columns == d && steps.reduce(0, { $0 + $1.tokens }) == rows,
                     "hidden \(hidden.shape) does not match \(steps.map(\.tokens)) new tokens")

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
            // Attention block.
            Norms.rmsNorm(hidden.data, rows: rows, width: d, weight: layer.inputNorm.data, eps: h.eps, into: y.data)
            Linear.forward(y.data, rows: rows, inFeatures: d, weight: layer.q, bias: nil, into: q.data)
            Linear.forward(y.data, rows: rows, inFeatures: d, weight: layer.k, bias: nil, into: k.data)
            Linear.forward(y.data, rows: rows, inFeatures: d, weight: layer.v, bias: nil, into: v.data)
            rope.apply(q.data, rows: rows, rowStride: h.queryWidth, heads: h.heads)
            rope.apply(k.data, rows: rows, rowStride: h.kvWidth, heads: h.kvHeads)

            let sliding = h.slidingLayers[index] && slidingMasks != nil
            var row = 0
            for (si, s) in steps.enumerated() {
                let start = s.cache.length, keys = start + s.tokens
                let kc = s.cache.key(layer: index), vc = s.cache.value(layer: index)
                (kc + start * h.kvWidth).update(from: k.data + row * h.kvWidth, count: s.tokens * h.kvWidth)
                (vc + start * h.kvWidth).update(from: v.data + row * h.kvWidth, count: s.tokens * h.kvWidth)
                let mask = sliding ? slidingMasks![si] : masks[si]
                mask.withUnsafeBufferPointer { m in
                    Attention.forward(q: q.data + row * h.queryWidth, qStride: h.queryWidth,
                                      k: kc, v: vc, kvStride: h.kvWidth, queries: s.tokens, keys: keys,
                                      heads: h.attention, scale: h.attentionScale, softcap: h.attentionSoftcap,
                                      mask: m.baseAddress!, scratch: scratch.data,
                                      out: attn.data + row * h.queryWidth, outStride: h.queryWidth)
                }
                row += s.tokens
            }
            Linear.forward(attn.data, rows: rows, inFeatures: h.queryWidth, weight: layer.o, bias: nil, into: y.data)
            if h.gemma2 {
                Norms.rmsNorm(y.data, rows: rows, width: d, weight: layer.postAttentionNorm.data, eps: h.eps, into: y.data)
            }
            Elementwise.add(y.data, into: hidden.data, count: rows * d)

            // MLP block (GeGLU). Gemma 1 names its pre-MLP norm post_attention_layernorm.
            let mlpNorm = h.gemma2 ? layer.preFeedforwardNorm! : layer.postAttentionNorm
            Norms.rmsNorm(hidden.data, rows: rows, width: d, weight: mlpNorm.data, eps: h.eps, into: y.data)
            Linear.forward(y.data, rows: rows, inFeatures: d, weight: layer.gate, bias: nil, into: gate.data)
            Linear.forward(y.data, rows: rows, inFeatures: d, weight: layer.up, bias: nil, into: up.data)
            Activations.geglu(gate: gate.data, up: up.data, count: rows * h.mlpWidth, into: gate.data)
            Linear.forward(gate.data, rows: rows, inFeatures: h.mlpWidth, weight: layer.down, bias: nil, into: y.data)
            if let post = layer.postFeedforwardNorm {
                Norms.rmsNorm(y.data, rows: rows, width: d, weight: post.data, eps: h.eps, into: y.data)
            }
            Elementwise.add(y.data, into: hidden.data, count: rows * d)
        }
        for s in steps { s.cache.length += s.tokens }
    }

    // MARK: Head

    /// Final RMSNorm and tied LM head (+ Gemma 2 final soft-cap) on the selected rows of hidden [R, D]
    /// → logits [rows.count, V].
    public func logits(_ hidden: Tensor, rows selected: [Int]) -> Tensor {
        guard let embedding, let finalNorm else { preconditionFailure("this decoder holds no LM head") }
        let d = hyper.width, v = hyper.vocabSize
        let picked = Tensor(zeros: [selected.count, d])
        for (i, r) in selected.enumerated() {
            (picked.data + i * d).update(from: hidden.data + r * d, count: d)
        }
        Norms.rmsNorm(picked.data, rows: selected.count, width: d, weight: finalNorm.data, eps: hyper.eps, into: picked.data)
        let out = Tensor(zeros: [selected.count, v])
        Linear.forward(picked.data, rows: selected.count, inFeatures: d, weight: embedding, bias: nil, into: out.data)
        if let cap = hyper.finalSoftcap { Activations.softcap(out.data, count: out.count, cap: cap) }
        return out
    }
}
