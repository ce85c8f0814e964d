import Foundation
import Testing
@testable import PaliTensor

// Each fast kernel against its slow double-precision reference on random shapes.

@Test(arguments: [(1, 7, 5), (3, 16, 9), (17, 33, 65), (1, 300, 64), (40, 8, 130)])
func linearMatchesReference(shape: (Int, Int, Int)) {
    let (m, n, k) = shape
    var rng = SeededRandom(seed: UInt64(m * 1000 + n * 10 + k))
    let x = randomFloats(m * k, &rng), w = randomFloats(n * k, &rng), b = randomFloats(n, &rng)
    let y = Linear.forward(Tensor(shape: [m, k], values: x), weight: Tensor(shape: [n, k], values: w),
                           bias: Tensor(shape: [n], values: b))
    let ref = Reference.linear(x, rows: m, inFeatures: k, weight: w, outFeatures: n, bias: b)
    #expect(y.shape == [m, n])
    #expect(maxRelativeError(y.scalars, ref) < 1e-5)
}

@Test(arguments: [(1, 8), (5, 32), (3, 1152)])
func layerNormMatchesReference(shape: (Int, Int)) {
    let (r, d) = shape
    var rng = SeededRandom(seed: UInt64(r * 31 + d))
    let x = randomFloats(r * d, &rng, scale: 3).map { $0 + 0.7 }
    let g = randomFloats(d, &rng), b = randomFloats(d, &rng)
    let y = Norms.layerNorm(Tensor(shape: [r, d], values: x), gamma: Tensor(shape: [d], values: g),
                            beta: Tensor(shape: [d], values: b), eps: 1e-6)
    #expect(maxRelativeError(y.scalars, Reference.layerNorm(x, width: d, gamma: g, beta: b, eps: 1e-6)) < 1e-5)
}

@Test(arguments: [(1, 8), (5, 64), (2, 2048)])
func rmsNormMatchesReference(shape: (Int, Int)) {
    let (r, d) = shape
    var rng = SeededRandom(seed: UInt64(r * 17 + d))
    let x = randomFloats(r * d, &rng, scale: 5), w = randomFloats(d, &rng, scale: 0.5)
    let y = Norms.rmsNorm(Tensor(shape: [r, d], values: x), weight: Tensor(shape: [d], values: w), eps: 1e-6)
    #expect(maxRelativeError(y.scalars, Reference.rmsNorm(x, width: d, weight: w, eps: 1e-6)) < 1e-5)
}

@Test func geluAndGegluMatchReference() {
    var rng = SeededRandom(seed: 7)
    let f = 37, r = 3
    let gu = randomFloats(r * 2 * f, &rng, scale: 6)
    var out = [Float](repeating: 0, count: r * f)
    let gate = Array(gu[0..<(r * f)]), up = Array(gu[(r * f)...])
    gate.withUnsafeBufferPointer { g in up.withUnsafeBufferPointer { u in out.withUnsafeMutableBufferPointer { o in
        Activations.geglu(gate: g.baseAddress!, up: u.baseAddress!, count: r * f, into: o.baseAddress!) } } }
    let ref = (0..<(r * f)).map { Float(Reference.geluTanh(Double(gate[$0])) * Double(up[$0])) }
    #expect(maxRelativeError(out, ref) < 1e-5)
    // Known values of the tanh approximation.
    #expect(abs(Activations.geluTanh(0)) == 0)
    #expect(abs(Activations.geluTanh(1) - 0.8411920) < 1e-6)
    #expect(abs(Activations.geluTanh(-3) - (-0.0036373)) < 1e-6)
}

@Test func softmaxMatchesReferenceAndHandlesMaskedRows() {
    var rng = SeededRandom(seed: 9)
    var x = randomFloats(4 * 11, &rng, scale: 20)
    x[3] = -.infinity
    for i in 22..<33 { x[i] = -.infinity }  // a fully masked row
    let input = x
    x.withUnsafeMutableBufferPointer { Softmax.rows($0.baseAddress!, rows: 4, width: 11) }
    for r in 0..<4 {
        let ref = Reference.softmax((0..<11).map { Double(input[r * 11 + $0]) })
        for i in 0..<11 { #expect(abs(Double(x[r * 11 + i]) - ref[i]) < 1e-6) }
    }
    #expect(x[3] == 0)
}

/// A vocabulary-sized row (Gemma's 257,152), odd sizes (the scalar tail) and a row of equal values.
@Test(arguments: [1, 7, 300, 257_152])
func logSumExpMatchesReference(count: Int) {
    var rng = SeededRandom(seed: UInt64(count))
    let x = randomFloats(count, &rng, scale: 30)
    let fast = x.withUnsafeBufferPointer { Softmax.logSumExp($0.baseAddress!, count: count) }
    let ref = Reference.logSumExp(x.map(Double.init))
    #expect(abs(fast - ref) <= 1e-6 * max(1, abs(ref)), "\(count): \(fast) vs \(ref)")
    let flat = [Float](repeating: -2.5, count: count)
    let flatSum = flat.withUnsafeBufferPointer { Softmax.logSumExp($0.baseAddress!, count: count) }
    #expect(abs(flatSum - (-2.5 + log(Double(count)))) < 1e-6)
}

@Test(arguments: [8, 16, 256])
func ropeMatchesReference(headDim: Int) {
    var rng = SeededRandom(seed: UInt64(headDim))
    let positions = [1, 2, 17, 300]
    let heads = 3
    let x = randomFloats(positions.count * heads * headDim, &rng)
    var y = x
    let table = RoPETable(positions: positions, headDim: headDim, theta: 10_000)
    y.withUnsafeMutableBufferPointer { table.apply($0.baseAddress!, rows: positions.count, rowStride: heads * headDim, heads: heads) }
    for (r, pos) in positions.enumerated() {
        for h in 0..<heads {
            let start = (r * heads + h) * headDim
            let ref = Reference.rope(Array(x[start..<start + headDim]), position: pos, theta: 10_000)
            // f32 angles at position 300 carry ~1e-5 relative error in θ.
            #expect(maxRelativeError(Array(y[start..<start + headDim]), ref) < 5e-4)
        }
    }
}

// Heads split over threads (the last two cases are large enough for 2 threads) with products of
// T > 1 through the packed GEMM: equal to the reference, and the same bits on 1 or 2 threads and
// whatever the block of query rows (the default block is all T here; 1, 3 and 8 rows split it).
@Test(arguments: [
    (1, 9, 4, 1, 8, false), (5, 5, 4, 2, 6, true), (7, 12, 8, 8, 16, false), (3, 20, 6, 3, 10, true),
    (40, 60, 8, 2, 48, false), (33, 70, 4, 1, 72, true),
])
func attentionMatchesReference(c: (Int, Int, Int, Int, Int, Bool)) {
    let (t, s, h, kv, hd, cap) = c
    var rng = SeededRandom(seed: UInt64(t * 100 + s))
    let heads = AttentionHeads(heads: h, kvHeads: kv, headDim: hd)
    let q = randomFloats(t * h * hd, &rng, scale: 2), k = randomFloats(s * kv * hd, &rng, scale: 2)
    let v = randomFloats(s * kv * hd, &rng)
    let mask = AttentionMask.prefixLM(queryStart: s - t, queries: t, keys: s, prefixLength: max(1, s - t - 1),
                                      window: cap ? 4 : nil)
    let scale = 1 / Float(hd).squareRoot()
    func run(threads: Int, queryBlock: Int? = nil) -> [Float] {
        let saved = Parallel.threads
        defer { Parallel.threads = saved }
        Parallel.threads = threads
        var out = [Float](repeating: 0, count: t * h * hd)
        var scratch = [Float](repeating: 0, count: Attention.scratchCount(queries: t, keys: s, headDim: hd))
        q.withUnsafeBufferPointer { qp in k.withUnsafeBufferPointer { kp in v.withUnsafeBufferPointer { vp in
            mask.withUnsafeBufferPointer { mp in scratch.withUnsafeMutableBufferPointer { sp in
                out.withUnsafeMutableBufferPointer { op in
                    Attention.forward(q: qp.baseAddress!, qStride: h * hd, k: kp.baseAddress!, v: vp.baseAddress!,
                                      kvStride: kv * hd, queries: t, keys: s, heads: heads, scale: scale,
                                      softcap: cap ? 1.5 : nil, mask: mp.baseAddress!, scratch: sp.baseAddress!,
                                      out: op.baseAddress!, outStride: h * hd, queryBlock: queryBlock)
                } } } } } }
        return out
    }
    #expect(Attention.queryBlock(queries: t, keys: s) == t)
    let out = run(threads: 2)
    let ref = Reference.attention(q: q, k: k, v: v, queries: t, keys: s, heads: heads, scale: Double(scale),
                                  softcap: cap ? 1.5 : nil, mask: mask)
    #expect(maxRelativeError(out, ref) < 1e-5)
    #expect(run(threads: 1) == out)
    for block in [1, 3, 8] { #expect(run(threads: 2, queryBlock: block) == out, "query blocks of \(block)") }
}

@Test func attentionQueryBlockKeepsScoresInL2() {
    // 512 KB of scores a block, whole multiples of 24 rows, never fewer than 24 nor more than T.
    #expect(Attention.queryBlock(queries: 4096, keys: 4096) == 24)
    #expect(Attention.queryBlock(queries: 1033, keys: 1033) == 120)
    #expect(Attention.queryBlock(queries: 265, keys: 265) == 265)
    #expect(Attention.queryBlock(queries: 100, keys: 1 << 20) == 24)
    #expect(Attention.queryBlock(queries: 3, keys: 1 << 20) == 3)
}

@Test func prefixLMMaskRules() {
    // 4 prefix tokens, then 3 generated; window 2 for the sliding variant.
    let full = AttentionMask.prefixLM(queryStart: 0, queries: 7, keys: 7, prefixLength: 4)
    for q in 0..<7 { for k in 0..<7 {
        let expected = (q < 4 && k < 4) || k <= q
        #expect((full[q * 7 + k] == 0) == expected, "q \(q) k \(k)")
    } }
    let sliding = AttentionMask.prefixLM(queryStart: 0, queries: 7, keys: 7, prefixLength: 4, window: 2)
    #expect(sliding[0 * 7 + 3] == 0)           // prefix sees the whole prefix
    #expect(sliding[5 * 7 + 4] == 0)           // q − k = 1 < 2
    #expect(sliding[5 * 7 + 3] == -.infinity)  // q − k = 2, outside the window
    #expect(sliding[4 * 7 + 5] == -.infinity)  // never the future
}

@Test func softcapOfAnElementDoesNotDependOnItsPlaceInTheArray() {
    // Attention soft-caps blocks of score rows of any length: the last < 8 elements of an array must get
    // the vector arithmetic's bits too, and both stay within 2e-6 of cap · tanh(x / cap) in Double.
    var rng = SeededRandom(seed: 11)
    let xs = randomFloats(29, &rng, scale: 40)
    var whole = xs
    whole.withUnsafeMutableBufferPointer { VectorMath.softcap($0.baseAddress!, count: 29, cap: 30) }
    for start in [0, 3, 21, 26] {
        var part = Array(xs[start...])
        part.withUnsafeMutableBufferPointer { VectorMath.softcap($0.baseAddress!, count: $0.count, cap: 30) }
        #expect(part == Array(whole[start...]), "from element \(start)")
    }
    for (x, y) in zip(xs, whole) { #expect(abs(Double(y) - 30 * tanh(Double(x) / 30)) < 2e-6 * 30) }
}

@Test func vectorExpAndTanhMatchLibm() {
    // Dense grids over the ranges that matter; exp within a few ulp, tanh within 2e-7 absolute.
    let xs = stride(from: -90.0 as Float, through: 88.3, by: 0.0137).map { $0 }
    var worstExp: Float = 0, worstTanh: Float = 0
    var i = 0
    while i + 8 <= xs.count {
        let v = SIMD8<Float>(xs[i..<i + 8])
        let e = VectorMath.exp(v), t = VectorMath.tanh(v)
        for l in 0..<8 {
            let ref = expf(v[l])
            if v[l] >= -87.3 { worstExp = max(worstExp, abs(e[l] - ref) / ref) }
            worstTanh = max(worstTanh, abs(t[l] - tanhf(v[l])))
        }
        i += 8
    }
    #expect(worstExp < 5e-7, "exp relative error \(worstExp)")
    #expect(worstTanh < 3e-7, "tanh absolute error \(worstTanh)")
    #expect(VectorMath.tanh(SIMD8(repeating: 1e4))[0] == 1)
    #expect(VectorMath.tanh(SIMD8(repeating: -1e4))[0] == -1)
    #expect(VectorMath.exp(SIMD8(repeating: -.infinity))[0] == 0)
}

@Test func rowConcatenationMovesEveryElement() {
    let a = Tensor(shape: [2, 3], values: [1, 2, 3, 4, 5, 6])
    let c = Tensor.concatenatingRows([a, Tensor(shape: [1, 3], values: [7, 8, 9])])
    #expect(c.shape == [3, 3] && c.scalars == [1, 2, 3, 4, 5, 6, 7, 8, 9])
    #expect(Tensor.concatenatingRows([Tensor(shape: [2], values: [1, 2]), Tensor(shape: [1], values: [3])]).scalars == [1, 2, 3])
}

// GELU/GeGLU split over threads at multiples of 8: every element equals the one-thread result,
// including the scalar tail, for counts around the chunk grain.
@Test(arguments: [1, 9, 8 * 8192 + 3, 3 * 8 * 8192 + 13])
func parallelActivationsEqualOneThread(count: Int) {
    var rng = SeededRandom(seed: UInt64(count))
    let g = randomFloats(count, &rng, scale: 6), u = randomFloats(count, &rng)
    let saved = Parallel.threads
    defer { Parallel.threads = saved }
    func run(_ threads: Int) -> ([Float], [Float]) {
        Parallel.threads = threads
        var gelu = g, glu = [Float](repeating: 0, count: count)
        gelu.withUnsafeMutableBufferPointer { Activations.geluTanh($0.baseAddress!, count: count) }
        g.withUnsafeBufferPointer { gp in u.withUnsafeBufferPointer { up in glu.withUnsafeMutableBufferPointer { o in
            Activations.geglu(gate: gp.baseAddress!, up: up.baseAddress!, count: count, into: o.baseAddress!) } } }
        return (gelu, glu)
    }
    let one = run(1), three = run(3)
    #expect(one.0 == three.0)
    #expect(one.1 == three.1)
    let ref = (0..<min(count, 2000)).map { Float(Reference.geluTanh(Double(g[$0]))) }
    #expect(maxRelativeError(Array(three.0.prefix(ref.count)), ref) < 1e-5)
}

@Test func largeTensorsAreZeroedAndHugePageAligned() {
    let t = Tensor(zeros: [3, 1 << 20])   // 12 MiB
    #expect(Int(bitPattern: t.data) % (2 << 20) == 0)
    #expect((0..<t.count).allSatisfy { t.data[$0] == 0 })
    let s = Tensor(zeros: [5])
    #expect(Int(bitPattern: s.data) % 64 == 0)
}
