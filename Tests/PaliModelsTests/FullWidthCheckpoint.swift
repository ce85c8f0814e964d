// A full-width, reduced-depth PaliGemma-3B-224 checkpoint written at test time: the real widths
// (SPEC §1.1: So400m/14 at 224 px + Gemma-2B, vocabulary 257216) with 1 vision and 2 decoder layers,
// laid out as the hub does (BF16, 4 shards + model.safetensors.index.json, legacy tensor names).
// ~1.5 GB, so it is not committed: every weight is a function of (tensor name, element index) that
// Tests/Oracle/make_fullwidth_golden.py computes identically, bit for bit, and only transformers'
// outputs for it are committed (Tests/Fixtures/fullwidth/).
//
// WEIGHT RECIPE (keep identical to make_fullwidth_golden.py)
//   seed(N)  = FNV-1a 64 of the UTF-8 bytes of the on-disk tensor name N
//              (offset basis 0xcbf29ce484222325, prime 0x100000001b3)
//   z(N, i)  = the (i+1)-th output of SplitMix64 seeded with seed(N), i = row-major element index
//              (x = seed + (i+1)·0x9E3779B97F4A7C15; x = (x ^ x>>30)·0xBF58476D1CE4E5B9;
//               x = (x ^ x>>27)·0x94D049BB133111EB; z = x ^ x>>31, all mod 2^64)
//   k(N, i)  = (z >> (64 − b)) − 2^(b−1)
//   value    = base + k · 2^−s, exact in BF16
//   (b, base, s), first matching rule:
//     vision LayerNorm weight (layer_norm1/2.weight, post_layernorm.weight)      (4, 1, 6)
//     Gemma RMSNorm weight (language_model.…norm.weight; the model uses 1 + w)   (8, 0, 9)
//     any …bias                                                                 (8, 0, 10)
//     …position_embedding.weight                                                (8, 0, 8)
//     …embed_tokens.weight (also the tied head; scaled down so outputs vary)    (8, 0, 16)
//     other weights, fan_in = product of the dims after the first               (8, 0, 6 + ⌊log2 fan_in⌋ / 2)
//   (std of k ≈ 74: linear weights ≈ 1.2…1.8/√fan_in, embedding ≈ 0.0011; tuned so that the 8 greedy
//   tokens differ and their top-2 gaps are far above the numerical error; see the Python docstring.)
//   checksum(N) = Σ_i bits_i · (i + 1) mod 2^64, bits = the BF16 pattern (golden.json has them, in hex).
import Foundation
import PaliWeights

enum FullWidthCheckpoint {
    static let visionLayers = 1, textLayers = 2
    static let dv = 1152, fv = 4304, patch = 14, imageTokens = 256
    static let d = 2048, f = 16384, heads = 8, kvHeads = 1, headDim = 256, vocab = 257_216
    static let embedShift = 16

    /// (shard file, [(on-disk name, shape)]), in shard order, as make_fullwidth_golden.py lays them out.
    static func shards() -> [(file: String, tensors: [(name: String, shape: [Int])])] {
        let v = "vision_tower.vision_model."
        var vision: [(name: String, shape: [Int])] = [
            (v + "embeddings.patch_embedding.weight", [dv, 3, patch, patch]),
            (v + "embeddings.patch_embedding.bias", [dv]),
            (v + "embeddings.position_embedding.weight", [imageTokens, dv]),
        ]
        for i in 0..<visionLayers {
            let p = "\(v)encoder.layers.\(i)."
            vision += [(p + "layer_norm1.weight", [dv]), (p + "layer_norm1.bias", [dv])]
            for proj in ["q", "k", "v"] {
                vision += [(p + "self_attn.\(proj)_proj.weight", [dv, dv]), (p + "self_attn.\(proj)_proj.bias", [dv])]
            }
            vision += [(p + "self_attn.out_proj.weight", [dv, dv]), (p + "self_attn.out_proj.bias", [dv]),
                       (p + "layer_norm2.weight", [dv]), (p + "layer_norm2.bias", [dv]),
                       (p + "mlp.fc1.weight", [fv, dv]), (p + "mlp.fc1.bias", [fv]),
                       (p + "mlp.fc2.weight", [dv, fv]), (p + "mlp.fc2.bias", [dv])]
        }
        vision += [(v + "post_layernorm.weight", [dv]), (v + "post_layernorm.bias", [dv]),
                   ("multi_modal_projector.linear.weight", [d, dv]), ("multi_modal_projector.linear.bias", [d])]
        var groups = [vision, [("language_model.model.embed_tokens.weight", [vocab, d])]]
        for i in 0..<textLayers {
            let p = "language_model.model.layers.\(i)."
            groups.append([(p + "input_layernorm.weight", [d]),
                           (p + "self_attn.q_proj.weight", [heads * headDim, d]),
                           (p + "self_attn.k_proj.weight", [kvHeads * headDim, d]),
                           (p + "self_attn.v_proj.weight", [kvHeads * headDim, d]),
                           (p + "self_attn.o_proj.weight", [d, heads * headDim]),
                           (p + "post_attention_layernorm.weight", [d]),
                           (p + "mlp.gate_proj.weight", [f, d]), (p + "mlp.up_proj.weight", [f, d]),
                           (p + "mlp.down_proj.weight", [d, f])])
        }
        groups[groups.count - 1].append(("language_model.model.norm.weight", [d]))
        let n = groups.count
        return groups.enumerated().map { k, g in
            (String(format: "model-%05d-of-%05d.safetensors", k + 1, n), g)
        }
    }

    static func fnv1a64(_ s: String) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in s.utf8 { h = (h ^ UInt64(byte)) &* 0x0000_0100_0000_01b3 }
        return h
    }

    /// (bits b, base, shift s) of the recipe for one tensor.
    static func rule(_ name: String, shape: [Int]) -> (bits: Int, base: Float, shift: Int) {
        if name.hasSuffix("layer_norm1.weight") || name.hasSuffix("layer_norm2.weight")
            || name.hasSuffix("post_layernorm.weight") { return (4, 1, 6) }
        if name.hasPrefix("language_model.") && name.hasSuffix("norm.weight") { return (8, 0, 9) }
        if name.hasSuffix(".bias") { return (8, 0, 10) }
        if name.hasSuffix("position_embedding.weight") { return (8, 0, 8) }
        if name.hasSuffix("embed_tokens.weight") { return (8, 0, embedShift) }
        let fanIn = shape.dropFirst().reduce(1, *)
        let log2FanIn = Int.bitWidth - 1 - fanIn.leadingZeroBitCount
        return (8, 0, 6 + log2FanIn / 2)
    }

    /// The tensor's values as F32 (exactly the BF16 values), for checks that need them.
    static func values(_ name: String, shape: [Int]) -> [Float] {
        let count = shape.reduce(1, *)
        var bits = [UInt16](repeating: 0, count: count)
        _ = bits.withUnsafeMutableBufferPointer { fill($0.baseAddress!, range: 0..<count, name: name, shape: shape) }
        return bits.map { Float(bitPattern: UInt32($0) << 16) }
    }

    /// Writes elements `range` of tensor `name` as BF16 bit patterns into `out[range]`; returns the
    /// partial checksum Σ bits_i · (i + 1) mod 2^64. Written for debug builds (tests run unoptimised,
    /// ~0.8 G elements): a while loop, the SplitMix64 state advanced by addition, and the 2^b possible
    /// values looked up in a table (value = base + k · 2^−s, computed once per tensor).
    static func fill(_ out: UnsafeMutablePointer<UInt16>, range: Range<Int>, name: String, shape: [Int]) -> UInt64 {
        let (b, base, shift) = rule(name, shape: shape)
        let scale = Float(sign: .plus, exponent: -shift, significand: 1)
        let table = (0..<(1 << b)).map { u -> UInt16 in
            let value = base + Float(u - (1 << (b - 1))) * scale
            precondition(value.bitPattern & 0xFFFF == 0, "\(name): \(value) is not exact in BF16")
            return UInt16(truncatingIfNeeded: value.bitPattern >> 16)
        }
        let drop = UInt64(64 - b), end = range.upperBound
        return table.withUnsafeBufferPointer { t -> UInt64 in
            let values = t.baseAddress!
            var checksum: UInt64 = 0
            var i = range.lowerBound
            var state = fnv1a64(name) &+ UInt64(i + 1) &* 0x9E37_79B9_7F4A_7C15
            while i < end {
                var z = (state ^ (state >> 30)) &* 0xBF58_476D_1CE4_E5B9
                z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
                z ^= z >> 31
                let bits = values[Int(truncatingIfNeeded: z >> drop)]
                out[i] = bits
                i += 1
                checksum &+= UInt64(bits) &* UInt64(truncatingIfNeeded: i)
                state &+= 0x9E37_79B9_7F4A_7C15
            }
            return checksum
        }
    }

    /// Writes the shards and the index into `directory`; returns each tensor's checksum.
    @discardableResult
    static func write(to directory: URL, threads: Int = ProcessInfo.processInfo.activeProcessorCount) throws -> [String: UInt64] {
        var checksums: [String: UInt64] = [:]
        var weightMap: [String: String] = [:]
        var total = 0
        for (file, tensors) in shards() {
            var entries: [SafetensorsEntry] = []
            for (name, shape) in tensors {
                let count = shape.reduce(1, *)
                var bytes = [UInt8](repeating: 0, count: 2 * count)
                let parts = count >= 1 << 20 ? threads : 1
                let sums = UnsafeMutablePointer<UInt64>.allocate(capacity: parts)
                defer { sums.deallocate() }
                bytes.withUnsafeMutableBytes { raw in
                    let p = raw.baseAddress!.assumingMemoryBound(to: UInt16.self)
                    DispatchQueue.concurrentPerform(iterations: parts) { c in
                        sums[c] = fill(p, range: (count * c / parts)..<(count * (c + 1) / parts), name: name, shape: shape)
                    }
                }
                checksums[name] = (0..<parts).reduce(0) { $0 &+ sums[$1] }
                weightMap[name] = file
                total += bytes.count
                entries.append(SafetensorsEntry(name: name, dtype: .bf16, shape: shape, bytes: bytes))
            }
            try SafetensorsWriter.write(entries, to: directory.appendingPathComponent(file))
        }
        let index: [String: Any] = ["metadata": ["total_size": total], "weight_map": weightMap]
        let data = try JSONSerialization.data(withJSONObject: index, options: [.prettyPrinted, .sortedKeys])
        try data.write(to: directory.appendingPathComponent(Checkpoint.indexFileName))
        return checksums
    }
}
