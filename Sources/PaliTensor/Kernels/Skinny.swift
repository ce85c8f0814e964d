// y[M, N] = x[M, K] · W[N, K]ᵀ for few rows (decode steps, LM head of a few sequences).
// Memory-bound: each weight row is read once from memory and used for all M input rows, which stay
// in cache. Every output element is accumulated in the same order whatever M is (two 8-lane
// accumulators over K, then a fixed reduction), so a sequence's logits do not depend on how many
// others share the step: batched decoding gives exactly the tokens of one-by-one decoding.

public enum Skinny {
    /// Rows up to which `Linear.forward` uses this kernel instead of sgemm.
    public static let maxRows = 16

    public static func matmulBT(_ x: UnsafePointer<Float>, rows m: Int, inFeatures k: Int,
                                weight w: UnsafePointer<Float>, outFeatures n: Int,
                                into y: UnsafeMutablePointer<Float>) {
        // Blocks of 4 weight rows × 2 input rows: 8 accumulators, 6 loads per 8 FMAs, and the input
        // rows are re-read from cache once per 4 weight rows.
        Parallel.forEachChunk((n + 3) / 4, grain: 16) { blocks in
            var j = blocks.lowerBound * 4
            let jEnd = min(n, blocks.upperBound * 4)
            while j < jEnd {
                let wr = min(4, jEnd - j)
                var r = 0
                while r < m {
                    let xr = min(2, m - r)
                    if wr == 4 && xr == 2 {
                        block4x2(w + j * k, x + r * k, k: k, out: y + r * n + j, outStride: n)
                    } else {
                        for a in 0..<wr {
                            for b in 0..<xr {
                                y[(r + b) * n + j + a] = dot(w + (j + a) * k, x + (r + b) * k, k: k)
                            }
                        }
                    }
                    r += xr
                }
                j += wr
            }
        }
    }

    /// One dot product in the canonical order: one 8-lane accumulator over k rounded down to 8,
    /// lanes summed, then the scalar tail. `block4x2` reproduces exactly this order per element.
    @inline(__always)
    static func dot(_ w: UnsafePointer<Float>, _ x: UnsafePointer<Float>, k: Int) -> Float {
        typealias V = SIMD8<Float>
        let wr = UnsafeRawPointer(w), xr = UnsafeRawPointer(x)
        var acc = V()
        var kk = 0
        while kk + 8 <= k {
            acc.addProduct(wr.loadUnaligned(fromByteOffset: kk * 4, as: V.self),
                           xr.loadUnaligned(fromByteOffset: kk * 4, as: V.self))
            kk += 8
        }
        var s = acc.sum()
        while kk < k { s += w[kk] * x[kk]; kk += 1 }
        return s
    }

    @inline(__always)
    static func block4x2(_ w: UnsafePointer<Float>, _ x: UnsafePointer<Float>, k: Int,
                         out: UnsafeMutablePointer<Float>, outStride: Int) {
        typealias V = SIMD8<Float>
        let w0 = UnsafeRawPointer(w), w1 = UnsafeRawPointer(w + k), w2 = UnsafeRawPointer(w + 2 * k)
        let w3 = UnsafeRawPointer(w + 3 * k)
        let x0 = UnsafeRawPointer(x), x1 = UnsafeRawPointer(x + k)
        var a00 = V(), a10 = V(), a20 = V(), a30 = V(), a01 = V(), a11 = V(), a21 = V(), a31 = V()
        var kk = 0
        while kk + 8 <= k {
            let o = kk * 4
            let u = x0.loadUnaligned(fromByteOffset: o, as: V.self)
            let v = x1.loadUnaligned(fromByteOffset: o, as: V.self)
            let p0 = w0.loadUnaligned(fromByteOffset: o, as: V.self)
            a00.addProduct(p0, u); a01.addProduct(p0, v)
            let p1 = w1.loadUnaligned(fromByteOffset: o, as: V.self)
            a10.addProduct(p1, u); a11.addProduct(p1, v)
            let p2 = w2.loadUnaligned(fromByteOffset: o, as: V.self)
            a20.addProduct(p2, u); a21.addProduct(p2, v)
            let p3 = w3.loadUnaligned(fromByteOffset: o, as: V.self)
            a30.addProduct(p3, u); a31.addProduct(p3, v)
            kk += 8
        }
        out[0] = a00.sum(); out[1] = a10.sum(); out[2] = a20.sum(); out[3] = a30.sum()
        out[outStride] = a01.sum(); out[outStride + 1] = a11.sum()
        out[outStride + 2] = a21.sum(); out[outStride + 3] = a31.sum()
        if kk < k {
            for a in 0..<4 {
                for b in 0..<2 {
                    var t = out[b * outStride + a]
                    for q in kk..<k { t += w[a * k + q] * x[b * k + q] }
                    out[b * outStride + a] = t
                }
            }
        }
    }
}
