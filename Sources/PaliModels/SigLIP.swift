// SigLIP vision tower (So400m/14 in PaliGemma) and the projector. Mirrors transformers v5.23.0:
//   src/transformers/models/siglip/modeling_siglip.py        SiglipVisionTransformer: SiglipVisionEmbeddings
//       (patch Conv2d, here one GEMM over flattened patches, + learned positions), SiglipEncoder of
//       SiglipEncoderLayer (layer_norm1 → SiglipAttention → residual; layer_norm2 → SiglipMLP → residual),
//       post_layernorm; PaliGemma takes last_hidden_state, so no SiglipMultiheadAttentionPoolingHead
//   src/transformers/models/paligemma/modeling_paligemma.py  PaliGemmaMultiModalProjector (`Projector`)
// B = images, N = patches per image, D = width, F = MLP width.
import PaliTensor

public final class SiglipVisionTower: @unchecked Sendable {
    public let hyper: VisionHyperparameters

    /// SiglipEncoderLayer; matrices packed at load for the GEMM kernel. SiglipAttention's q/k/v are fused
    /// into one [3D, D] matrix (one GEMM per layer; the columns of the product are q | k | v); fc1/fc2
    /// are SiglipMLP's.
    struct EncoderLayer {
        let ln1w, ln1b: Tensor
        let qkvw: PackedWeight
        let qkvb: Tensor
        let ow: PackedWeight
        let ob, ln2w, ln2b: Tensor
        let fc1w: PackedWeight
        let fc1b: Tensor
        let fc2w: PackedWeight
        let fc2b: Tensor
    }

    let patchWeight: PackedWeight   // [D, 3·P·P] (Conv2d weight [D, 3, P, P] flattened)
    let patchBias: Tensor     // [D]
    let positions: Tensor     // [N, D]
    let layers: [EncoderLayer]
    let postLNWeight, postLNBias: Tensor

    public init(hyper h: VisionHyperparameters, weights: WeightSource) throws {
        hyper = h
        let p = TensorName.vision, d = h.width, f = h.mlpWidth
        patchWeight = try weights.packed("\(p)embeddings.patch_embedding.weight", shape: [d, 3, h.patchSize, h.patchSize])
        patchBias = try weights.tensor("\(p)embeddings.patch_embedding.bias", shape: [d])
        positions = try weights.tensor("\(p)embeddings.position_embedding.weight", shape: [h.tokens, d])
        layers = try (0..<h.layers).map { i in
            let l = TensorName.visionLayer(i)
            func t(_ n: String, _ s: [Int]) throws -> Tensor { try weights.tensor(l + n, shape: s) }
            func w(_ n: String, _ s: [Int]) throws -> PackedWeight { try weights.packed(l + n, shape: s) }
            let qkv = try weights.packed([(l + "self_attn.q_proj.weight", [d, d]), (l + "self_attn.k_proj.weight", [d, d]),
                                          (l + "self_attn.v_proj.weight", [d, d])])
            let qkvBias = [try t("self_attn.q_proj.bias", [d]), try t("self_attn.k_proj.bias", [d]),
                           try t("self_attn.v_proj.bias", [d])]
            return EncoderLayer(
                ln1w: try t("layer_norm1.weight", [d]), ln1b: try t("layer_norm1.bias", [d]),
                qkvw: qkv, qkvb: Tensor.concatenatingRows(qkvBias),
                ow: try w("self_attn.out_proj.weight", [d, d]), ob: try t("self_attn.out_proj.bias", [d]),
                ln2w: try t("layer_norm2.weight", [d]), ln2b: try t("layer_norm2.bias", [d]),
                fc1w: try w("mlp.fc1.weight", [f, d]), fc1b: try t("mlp.fc1.bias", [f]),
                fc2w: try w("mlp.fc2.weight", [d, f]), fc2b: try t("mlp.fc2.bias", [d]))
        }
        postLNWeight = try weights.tensor("\(p)post_layernorm.weight", shape: [d])
        postLNBias = try weights.tensor("\(p)post_layernorm.bias", shape: [d])
    }

    /// Bytes of the packed matrices held (the bulk of the tower's memory).
    public var packedBytes: Int {
        patchWeight.byteCount + layers.reduce(0) { $0 + $1.qkvw.byteCount + $1.ow.byteCount + $1.fc1w.byteCount + $1.fc2w.byteCount }
    }

    /// pixel values [B, 3, S, S] → last_hidden_state [B, N, D] (after post_layernorm).
    public func callAsFunction(_ pixels: Tensor) -> Tensor {
        forward(pixels, record: nil)
    }

    /// Every intermediate state, for per-layer comparisons (transformers' SiglipVisionModel with
    /// `output_hidden_states=True`): `hyper.layers + 2` tensors [B, N, D]: the embeddings (patches +
    /// positions) = transformers' `hidden_states[0]`, the output of each encoder layer = `hidden_states[1...L]`,
    /// and last the output after post_layernorm (`last_hidden_state`, equal to `callAsFunction(pixels)`).
    public func hiddenStates(_ pixels: Tensor) -> [Tensor] {
        var states: [Tensor] = []
        let output = forward(pixels) { states.append($0.copy()) }
        return states + [output]
    }

    /// The forward pass; `record` (when given) sees the residual stream [B, N, D] after the embeddings
    /// and after each encoder layer (it must copy what it keeps: the buffer is updated in place).
    private func forward(_ pixels: Tensor, record: ((Tensor) -> Void)?) -> Tensor {
        let h = hyper, s = h.imageSize, ps = h.patchSize, n = h.patchesPerSide, d = h.width
        precondition(pixels.rank == 4 && pixels.shape[1] == 3 && pixels.shape[2] == s && pixels.shape[3] == s,
                     "vision tower expects pixel values [B, 3, \(s), \(s)], got \(pixels.shape)")
        let b = pixels.shape[0], rows = b * h.tokens

        // Flatten each patch in (channel, ky, kx) order: row t = pr·n + pc of image b.
        let patches = Tensor(zeros: [rows, h.patchInputs])
        for img in 0..<b {
            for pr in 0..<n { for pc in 0..<n {
                var dst = patches.data + ((img * h.tokens) + pr * n + pc) * h.patchInputs
                for c in 0..<3 { for ky in 0..<ps {
                    let src = pixels.data + ((img * 3 + c) * s + pr * ps + ky) * s + pc * ps
                    dst.update(from: src, count: ps)
                    dst += ps
                } }
            } }
        }
        let x = Linear.forward(patches, weight: patchWeight, bias: patchBias)
        for img in 0..<b {
            let base = x.data + img * h.tokens * d
            for i in 0..<(h.tokens * d) { base[i] += positions.data[i] }
        }
        record?(x.reshaped([b, h.tokens, d]))

        let y = Tensor(zeros: [rows, d])
        let qkv = Tensor(zeros: [rows, 3 * d])
        let attn = Tensor(zeros: [rows, d])
        let hidden = Tensor(zeros: [rows, h.mlpWidth])
        let scratch = Tensor(zeros: [Attention.scratchCount(queries: h.tokens, keys: h.tokens, headDim: h.headDim)])
        let heads = AttentionHeads(heads: h.heads, kvHeads: h.heads, headDim: h.headDim)
        let scale = 1 / Float(h.headDim).squareRoot()

        for layer in layers {
            // layer_norm1, SiglipAttention (fused q/k/v, eager attention per image, out_proj), residual.
            Norms.layerNorm(x.data, rows: rows, width: d, gamma: layer.ln1w.data, beta: layer.ln1b.data, eps: h.eps, into: y.data)
            Linear.forward(y.data, rows: rows, inFeatures: d, weight: layer.qkvw, bias: layer.qkvb.data, into: qkv.data)
            for img in 0..<b {
                let q = qkv.data + img * h.tokens * 3 * d
                Attention.forward(q: q, qStride: 3 * d, k: q + d, v: q + 2 * d, kvStride: 3 * d,
                                  queries: h.tokens, keys: h.tokens, heads: heads, scale: scale, softcap: nil,
                                  mask: nil, scratch: scratch.data, scratchCount: scratch.count,
                                  out: attn.data + img * h.tokens * d, outStride: d)
            }
            Linear.forward(attn.data, rows: rows, inFeatures: d, weight: layer.ow, bias: layer.ob.data, into: y.data)
            Elementwise.add(y.data, into: x.data, count: rows * d)

            // layer_norm2, SiglipMLP (fc1, gelu_pytorch_tanh, fc2), residual.
            Norms.layerNorm(x.data, rows: rows, width: d, gamma: layer.ln2w.data, beta: layer.ln2b.data, eps: h.eps, into: y.data)
            Linear.forward(y.data, rows: rows, inFeatures: d, weight: layer.fc1w, bias: layer.fc1b.data, into: hidden.data)
            Activations.geluTanh(hidden.data, count: rows * h.mlpWidth)
            Linear.forward(hidden.data, rows: rows, inFeatures: h.mlpWidth, weight: layer.fc2w, bias: layer.fc2b.data, into: y.data)
            Elementwise.add(y.data, into: x.data, count: rows * d)
            record?(x.reshaped([b, h.tokens, d]))
        }
        Norms.layerNorm(x.data, rows: rows, width: d, gamma: postLNWeight.data, beta: postLNBias.data, eps: h.eps, into: y.data)
        // Raw pointers do not keep tensors alive (see GemmaDecoder.forward): the scratch tensors live to here.
        withExtendedLifetime((x, qkv, attn, hidden, scratch)) {}
        return y.reshaped([b, h.tokens, d])
    }
}

/// PaliGemmaMultiModalProjector (`multi_modal_projector.linear`): vision width → decoder width, with
/// bias, no activation.
public final class Projector: @unchecked Sendable {
    let weight: PackedWeight
    let bias: Tensor
    public init(visionWidth: Int, textWidth: Int, weights: WeightSource) throws {
        weight = try weights.packed("\(TensorName.projector)weight", shape: [textWidth, visionWidth])
        bias = try weights.tensor("\(TensorName.projector)bias", shape: [textWidth])
    }
    public var packedBytes: Int { weight.byteCount }
    /// [B, N, Dv] → [B, N, D]
    public func callAsFunction(_ x: Tensor) -> Tensor { Linear.forward(x, weight: weight, bias: bias) }
}
