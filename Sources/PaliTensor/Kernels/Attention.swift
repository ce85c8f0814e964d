// Scaled dot-product attention with multi-/grouped-query heads, optional Gemma 2 soft-capping and an
// additive mask. One sequence at a time: batching happens in the linear layers around it.
//
// T = queries, S = keys, H = query heads, KV = key/value heads (head h uses kv head h / (H/KV),
// transformers' repeat_kv), hd = head dim.
//   q   [T, H·hd]   rows `qStride` floats apart
//   k,v [S, KV·hd]  rows `kvStride` floats apart (a KV cache)
//   out [T, H·hd]   rows `outStride` floats apart
// scores = q·kᵀ·scale → softcap → + mask [T, S] (0 or -inf) → softmax (f32) → · v
import CBLAS
import CKernels
import Foundation

public struct AttentionHeads: Sendable, Equatable {
    public var heads: Int
    public var kvHeads: Int
    public var headDim: Int
    public init(heads: Int, kvHeads: Int, headDim: Int) {
        precondition(heads % kvHeads == 0, "\(heads) query heads are not a multiple of \(kvHeads) kv heads")
        self.heads = heads; self.kvHeads = kvHeads; self.headDim = headDim
    }
}

public enum Attention {
    /// Scratch floats `forward` needs for T queries over S keys with heads of `headDim`: per thread, a
    /// block of score rows and one head's keys and values packed for the GEMM kernel.
    public static func scratchCount(queries: Int, keys: Int, headDim: Int) -> Int {
        perThreadScratch(queries: queries, keys: keys, headDim: headDim) * max(1, Parallel.threads)
    }

    /// Score floats a block of query rows may take: 512 KB, an L2 on every CPU we run on, so the
    /// scores of a block are written, scaled, masked, soft-maxed and multiplied by V without leaving
    /// cache. Measured (AMD Zen 3, 2 threads, 896 px SigLIP layers, 4,096 × 4,096 scores a head): see
    /// docs/performance.md, "Attention in query blocks".
    static let scoreBlockFloats = 1 << 17

    /// Query rows per block for S keys: whole multiples of 24, every kernel's row panel (4, 6 or 8 rows:
    /// a block of 32 rows left a 2-row panel that took 5% of a 896-px vision tower on AVX2), at least 24.
    static func queryBlock(queries t: Int, keys s: Int) -> Int {
        min(t, max(24, scoreBlockFloats / max(s, 1) / 24 * 24))
    }

    static func perThreadScratch(queries t: Int, keys s: Int, headDim hd: Int, queryBlock: Int? = nil) -> Int {
        let kind = GEMMKernel.best.rawValue
        let tb = min(t, queryBlock ?? Self.queryBlock(queries: t, keys: s))
        return tb * s + Int(pg_gemm_packed_count(kind, Int32(s), Int32(hd)))
            + Int(pg_gemm_packed_count(kind, Int32(hd), Int32(s)))
    }

    /// Heads are split over `Parallel.threads` threads (each with its own block of `scratch`, sized by
    /// `scratchCount` beforehand, and given here as `scratchCount` floats); every head's arithmetic is the
    /// same whatever the split. Queries go through in blocks of rows (`queryBlock`, by default sized so a
    /// block's scores stay in L2; the T × S scores are never held whole): our GEMM kernels give each row
    /// the same sums whatever rows share its call, so the result does not depend on the block size either.
    public static func forward(
        q: UnsafePointer<Float>, qStride: Int,
        k: UnsafePointer<Float>, v: UnsafePointer<Float>, kvStride: Int,
        queries t: Int, keys s: Int, heads: AttentionHeads,
        scale: Float, softcap: Float?, mask: UnsafePointer<Float>?,
        scratch: UnsafeMutablePointer<Float>, scratchCount: Int = .max,
        out: UnsafeMutablePointer<Float>, outStride: Int,
        queryBlock: Int? = nil
    ) {
        let tb = max(1, min(t, queryBlock ?? Self.queryBlock(queries: t, keys: s)))
        /// Heads `headRange`, with one thread's block of scratch.
        func run(_ headRange: Range<Int>, _ scratch: UnsafeMutablePointer<Float>) {
            let hd = heads.headDim, group = heads.heads / heads.kvHeads
            // Products with T > 1 run our GEMM kernel on this head's keys and values, packed here.
            let kind = GEMMKernel.best.rawValue, nr = GEMMKernel.best.panelWidth
            let panelsK = (s + nr - 1) / nr, panelsV = (hd + nr - 1) / nr
            let packedK = scratch + tb * s
            let packedV = packedK + Int(pg_gemm_packed_count(kind, Int32(s), Int32(hd)))
            for h in headRange {
                let g = h / group
                let qh = q + h * hd, kg = k + g * hd, vg = v + g * hd, oh = out + h * hd
                if t > 1 {
                    pg_gemm_pack_nk_strided(kind, kg, Int32(kvStride), Int32(s), Int32(hd), packedK, 0, Int32(panelsK))
                    pg_gemm_pack_kn_strided(kind, vg, Int32(kvStride), Int32(s), Int32(hd), packedV, 0, Int32(panelsV))
                }
                var i0 = 0
                while i0 < t {
                    let rows = min(tb, t - i0), n = rows * s
                    // scores[rows, S] = (q_h · k_gᵀ) · scale, for queries i0 ..< i0 + rows
                    if t == 1 {
                        cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(s), Int32(hd), scale, kg, Int32(kvStride),
                                    qh, 1, 0, scratch, 1)
                    } else {
                        pg_gemm_packed(kind, Int32(rows), Int32(s), Int32(hd), qh + i0 * qStride, Int32(qStride),
                                       packedK, nil, scratch, Int32(s), 0, Int32(panelsK))
                        Elementwise.scale(scratch, by: scale, count: n)
                    }
                    if let cap = softcap { Activations.softcap(scratch, count: n, cap: cap) }
                    if let mask {
                        let m = mask + i0 * s
                        for i in 0..<n { scratch[i] += m[i] }
                    }
                    Softmax.rows(scratch, rows: rows, width: s)
                    // out_h[rows, hd] = probs[rows, S] · v_g[S, hd]
                    if t == 1 {
                        cblas_sgemv(CblasRowMajor, CblasTrans, Int32(s), Int32(hd), 1, vg, Int32(kvStride),
                                    scratch, 1, 0, oh, 1)
                    } else {
                        pg_gemm_packed(kind, Int32(rows), Int32(hd), Int32(s), scratch, Int32(s), packedV, nil,
                                       oh + i0 * outStride, Int32(outStride), 0, Int32(panelsV))
                    }
                    i0 += rows
                }
            }
        }

        let count = heads.heads
        // A thread is worth it from about 64k multiply-adds of attention.
        let perThread = perThreadScratch(queries: t, keys: s, headDim: heads.headDim, queryBlock: tb)
        // No more parts than `scratchCount` has blocks for, should `Parallel.threads` have grown since
        // the scratch was sized (tests change it while others run).
        let parts = min(max(1, Parallel.threads), count, max(1, t * s * heads.headDim * count / (1 << 16)),
                        max(1, scratchCount / max(perThread, 1)))
        precondition(scratchCount >= perThread, "attention scratch of \(scratchCount) floats, \(perThread) needed")
        if parts == 1 {
            run(0..<count, scratch)
        } else {
            DispatchQueue.concurrentPerform(iterations: parts) { c in
                run((count * c / parts)..<(count * (c + 1) / parts), scratch + c * perThread)
            }
        }
    }
}

/// Which keys a query may see, as an additive mask (0 visible, -inf hidden).
public enum AttentionMask {
    /// PaliGemma's prefix-LM mask for one sequence (SPEC §2.5), with transformers 5.x sliding windows.
    /// Positions are 0-based indices into the sequence: queries are `queryStart ..< queryStart + queries`,
    /// keys `0 ..< keys`. The first `prefixLength` tokens (image + BOS + prompt + "\n") see each other
    /// fully; later tokens see every earlier token and themselves. With `window`, a query outside the
    /// prefix block sees only keys with q − k < window; the prefix block stays fully visible inside itself.
    public static func prefixLM(queryStart: Int, queries: Int, keys: Int, prefixLength: Int,
                                window: Int? = nil) -> [Float] {
        var m = [Float](repeating: -.infinity, count: queries * keys)
        for i in 0..<queries {
            let q = queryStart + i
            for k in 0..<keys where visible(query: q, key: k, prefixLength: prefixLength, window: window) {
                m[i * keys + k] = 0
            }
        }
        return m
    }

    @inline(__always)
    public static func visible(query q: Int, key k: Int, prefixLength p: Int, window: Int?) -> Bool {
        if q < p && k < p { return true }
        guard k <= q else { return false }
        if let w = window { return q - k < w }
        return true
    }
}

extension Reference {
    /// Attention for one sequence in double precision; same layout as `Attention.forward` with packed rows.
    public static func attention(q: [Float], k: [Float], v: [Float], queries t: Int, keys s: Int,
                                 heads: AttentionHeads, scale: Double, softcap: Double?,
                                 mask: [Float]?) -> [Float] {
        let hd = heads.headDim, hq = heads.heads * hd, hkv = heads.kvHeads * hd
        let group = heads.heads / heads.kvHeads
        var out = [Float](repeating: 0, count: t * hq)
        for h in 0..<heads.heads {
            let g = h / group
            for i in 0..<t {
                var scores = [Double](repeating: 0, count: s)
                for j in 0..<s {
                    var d = 0.0
                    for c in 0..<hd { d += Double(q[i * hq + h * hd + c]) * Double(k[j * hkv + g * hd + c]) }
                    d *= scale
                    if let cap = softcap { d = cap * tanh(d / cap) }
                    if let mask { d += Double(mask[i * s + j]) }
                    scores[j] = d
                }
                let p = softmax(scores)
                for c in 0..<hd {
                    var acc = 0.0
                    for j in 0..<s { acc += p[j] * Double(v[j * hkv + g * hd + c]) }
                    out[i * hq + h * hd + c] = Float(acc)
                }
            }
        }
        return out
    }
}
