// Int8 weights (`--weights int8`): packing quantizes each output channel as `Reference.quantizeInt8`
// does, and every int8 product variant this CPU runs (portable C, AVX2, AVX-VNNI, AVX512-VNNI) on every
// panel layout it serves matches `Reference.int8Linear` (exact integer sums, then scales) on edge shapes:
// one row, odd N and K, K not a multiple of 4 or 64, partial panels, several row blocks. W8A8 variants
// agree bit for bit (exact integer sums, same float steps); so do the W8A32 ones (same summation order).
import Testing
@testable import PaliTensor
import CKernels

/// (layout, variant) pairs runnable here: each variant on the layout its fast code needs, and the
/// portable code on every layout.
let int8Pairs: [(GEMMKernel, Int8Variant)] = {
    var pairs: [(GEMMKernel, Int8Variant)] = []
    for kernel in GEMMKernel.allCases where kernel.isAvailable && kernel.isOurs {
        for v in Int8Variant.allCases where v.isAvailable && (v == .portable || (v.panelWidth == kernel.panelWidth && kernel != .portable)) {
            pairs.append((kernel, v))
        }
    }
    return pairs
}()

let int8Shapes: [(m: Int, n: Int, k: Int)] = [
    (1, 1, 1), (1, 33, 7), (2, 17, 5), (3, 40, 64), (7, 65, 130), (9, 100, 259), (13, 31, 1), (1, 64, 2051),
    (25, 70, 300), (300, 20, 2000),
]

@Test func int8PackingQuantizesEachOutputChannel() {
    var rng = SeededRandom(seed: 101)
    for kernel in GEMMKernel.allCases where kernel.isAvailable && kernel.isOurs {
        for (n, k) in [(1, 1), (33, 7), (40, 130), (5, 2051)] {
            var w = randomFloats(n * k, &rng, scale: 3)
            for q in 0..<k { w[q] = 0 }                         // an all-zero row: scale 0, q 0
            if n > 2 { w[2 * k] = 1e-30 }                        // a tiny value in a row
            let packed = PackedWeight(Tensor(shape: [n, k], values: w), precision: .int8, kernel: kernel)
            #expect(packed.byteCount == packed.panels * (kernel.panelWidth * 8 + (k + 3) / 4 * 4 * kernel.panelWidth))
            for j in 0..<n {
                let (q, scale) = Reference.quantizeInt8(w[(j * k)..<(j * k + k)])
                let got = packed.int8Row(j)
                #expect(got.scale.bitPattern == scale.bitPattern && got.values == q, "\(kernel) [\(n), \(k)] row \(j)")
                #expect(got.sum == Int32(q.reduce(0) { $0 + Int($1) }))
                #expect(q.allSatisfy { $0 >= -127 } && (scale == 0 || q.contains { abs(Int($0)) == 127 }))
                var row = [Float](repeating: 0, count: k)
                packed.row(j, scaledBy: 2, into: &row)
                #expect(row == q.map { Float($0) * scale * 2 }, "tied-embedding lookup of row \(j)")
            }
            #expect(packed.int8Row(0).scale == 0 && packed.int8Row(0).values.allSatisfy { $0 == 0 })
        }
    }
}

@Test func int8PackingFromBF16EqualsFromItsF32Widening() throws {
    var rng = SeededRandom(seed: 103)
    let (n, k) = (45, 67)
    let bits = randomFloats(n * k, &rng).map { UInt16($0.bitPattern >> 16) }
    let widened = Tensor(shape: [n, k], values: bits.map { Float(bitPattern: UInt32($0) << 16) })
    let fromBF16 = try PackedWeight(stacking: [HalfRows(bits: bits, rowCount: n, columnCount: k, element: .bf16)],
                                    precision: .int8, kernel: .best)
    #expect(panelBytes(fromBF16) == panelBytes(PackedWeight(widened, precision: .int8, kernel: .best)))
}

@Test(arguments: int8Pairs.indices)
func int8ProductsMatchReference(pair: Int) {
    let (kernel, variant) = int8Pairs[pair]
    for (m, n, k) in int8Shapes {
        var rng = SeededRandom(seed: UInt64(m * 7919 + n * 31 + k))
        let x = randomFloats(m * k, &rng, scale: 4), w = randomFloats(n * k, &rng), b = randomFloats(n, &rng)
        let packed = PackedWeight(Tensor(shape: [n, k], values: w), precision: .int8, kernel: kernel)
        for bias in [nil, b] {
            for activations in [Int8Activations.int8, .f32] {
                var y = [Float](repeating: .nan, count: m * n)
                bias.withOptionalPointer { bp in
                    Linear.int8Forward(x, rows: m, inFeatures: k, weight: packed, bias: bp, into: &y,
                                       activations: activations, variant: variant)
                }
                let ref = Reference.int8Linear(x, rows: m, inFeatures: k, weight: packed, bias: bias, activations: activations)
                // Bound: a few float roundings of each product's magnitude (the integer sum itself is exact
                // in W8A8; W8A32 sums K float products).
                var worst = 0.0
                for i in 0..<m {
                    let xmax = Double(x[(i * k)..<(i * k + k)].map { abs($0) }.max()!)
                    for j in 0..<n {
                        let sw = Double(packed.int8Row(j).scale)
                        let magnitude = xmax * 127 * sw * Double(k) + abs(Double(bias?[j] ?? 0))
                        let tolerance = (activations == .int8 ? 4 : Double(k) + 4) * Double(Float.ulpOfOne) * magnitude
                        worst = max(worst, abs(Double(y[i * n + j]) - ref[i * n + j]) / max(tolerance, .leastNormalMagnitude))
                    }
                }
                #expect(worst <= 1, "\(kernel) \(variant) \(activations) m \(m) n \(n) k \(k) bias \(bias != nil): error \(worst) × tolerance")
                // Every variant gives the portable code's bits.
                var portable = [Float](repeating: .nan, count: m * n)
                bias.withOptionalPointer { bp in
                    Linear.int8Forward(x, rows: m, inFeatures: k, weight: packed, bias: bp, into: &portable,
                                       activations: activations, variant: .portable)
                }
                #expect(y.map(\.bitPattern) == portable.map(\.bitPattern), "\(kernel) \(variant) \(activations) m \(m) n \(n) k \(k)")
            }
        }
    }
}

// Integer activations and weights whose row maxima are exactly 127 have scales of exactly 1: the
// result must be the integer dot product itself (|Σ| < 2²⁴, so F32 holds it exactly), extremes
// included (−127 · −127, the u8 offset's corner cases, an all-zero row).
@Test(arguments: int8Pairs.indices)
func int8IntegerProductsAreExact(pair: Int) {
    let (kernel, variant) = int8Pairs[pair]
    let (m, n, k) = (11, 37, 1001)
    var rng = SeededRandom(seed: 107)
    func intRow(_ count: Int, _ i: Int) -> [Float] {
        var r = (0..<count).map { _ in Float(Int.random(in: -127...127, using: &rng)) }
        switch i % 4 {
        case 0: r = r.map { _ in -127 }
        case 1: r = r.map { $0 < 0 ? -127 : 127 }
        default: r[i % count] = i % 2 == 0 ? 127 : -127
        }
        return r
    }
    let x = (0..<m).flatMap { intRow(k, $0) }
    var w = (0..<n).flatMap { intRow(k, $0 + 1) }
    for q in 0..<k { w[5 * k + q] = 0 }
    let packed = PackedWeight(Tensor(shape: [n, k], values: w), precision: .int8, kernel: kernel)
    for activations in [Int8Activations.int8, .f32] {
        var y = [Float](repeating: .nan, count: m * n)
        Linear.int8Forward(x, rows: m, inFeatures: k, weight: packed, bias: nil, into: &y, activations: activations, variant: variant)
        for i in 0..<m {
            for j in 0..<n {
                var exact = 0
                for t in 0..<k { exact += Int(x[i * k + t]) * Int(w[j * k + t]) }
                #expect(y[i * n + j] == Float(exact), "\(kernel) \(variant) \(activations) [\(i), \(j)]: \(y[i * n + j]) vs \(exact)")
            }
        }
    }
}

// A row's result must not depend on the rows batched with it, nor on the thread count.
@Test(arguments: int8Pairs.indices)
func int8ProductsAreBatchInvariant(pair: Int) {
    let (kernel, variant) = int8Pairs[pair]
    let (m, n, k) = (29, 75, 530)
    var rng = SeededRandom(seed: 109)
    let x = randomFloats(m * k, &rng, scale: 2)
    let packed = PackedWeight(Tensor(shape: [n, k], values: randomFloats(n * k, &rng)), precision: .int8, kernel: kernel)
    for activations in [Int8Activations.int8, .f32] {
        var all = [Float](repeating: 0, count: m * n)
        Linear.int8Forward(x, rows: m, inFeatures: k, weight: packed, bias: nil, into: &all, activations: activations, variant: variant)
        for i in [0, 1, 7, 28] {
            var one = [Float](repeating: 0, count: n)
            Array(x[(i * k)..<(i * k + k)]).withUnsafeBufferPointer { row in
                Linear.int8Forward(row.baseAddress!, rows: 1, inFeatures: k, weight: packed, bias: nil, into: &one,
                                   activations: activations, variant: variant)
            }
            #expect(one.map(\.bitPattern) == all[(i * n)..<(i * n + n)].map(\.bitPattern), "\(kernel) \(variant) \(activations) row \(i)")
        }
    }
}

// The default product (`Linear.forward` on an int8 weight) is W8A8 with this CPU's variant.
@Test func linearForwardOnInt8IsW8A8() {
    var rng = SeededRandom(seed: 113)
    let (m, n, k) = (5, 40, 99)
    let x = Tensor(shape: [m, k], values: randomFloats(m * k, &rng))
    let packed = PackedWeight(Tensor(shape: [n, k], values: randomFloats(n * k, &rng)), precision: .int8)
    let y = Linear.forward(x, weight: packed)
    var want = [Float](repeating: 0, count: m * n)
    Linear.int8Forward(x.scalars, rows: m, inFeatures: k, weight: packed, bias: nil, into: &want, variant: .portable)
    #expect(y.scalars.map(\.bitPattern) == want.map(\.bitPattern))
}

extension Optional where Wrapped == [Float] {
    func withOptionalPointer(_ body: (UnsafePointer<Float>?) -> Void) {
        if let self { self.withUnsafeBufferPointer { body($0.baseAddress) } } else { body(nil) }
    }
}

// Activation quantization has SIMD code (AVX-512, AVX2) beside the scalar loop the portable variant
// runs: the same scales and the same bytes (less the u8 offset of the VNNI variants) for every row
// width around the vector lengths, an all-zero row, exact ±127 maxima and halves (round to even).
@Test func int8ActivationQuantizationIsTheSameInEveryVariant() {
    var rng = SeededRandom(seed: 211)
    for k in Array(1...40) + [63, 64, 65, 127, 1152, 1155, 4304] {
        let m = 4, ldq = (k + 3) / 4 * 4 + 64
        var x = randomFloats(m * k, &rng, scale: 9)
        for t in 0..<k { x[k + t] = 0 }                                   // row 1: all zero
        for t in 0..<k { x[2 * k + t] = Float(t % 255 - 127) / 2 }        // row 2: halves, maximum 63.5
        x[3 * k] = -127; if k > 1 { x[3 * k + 1] = 127 }                  // row 3: maximum 127, scale 1
        func quantize(_ v: Int8Variant) -> ([UInt8], [Float]) {
            var q = [UInt8](repeating: 0xEE, count: m * ldq), s = [Float](repeating: .nan, count: m)
            pg_i8_quantize_rows(v.rawValue, Int32(m), Int32(k), x, Int32(k), &q, Int32(ldq), &s)
            return (q, s)
        }
        let (q0, s0) = quantize(.portable)
        for v in Int8Variant.allCases where v.isAvailable && v != .portable {
            let (q, s) = quantize(v)
            let off = UInt8(truncatingIfNeeded: pg_i8_offset(v.rawValue))
            #expect(s.map(\.bitPattern) == s0.map(\.bitPattern), "\(v) k \(k): scales")
            var same = true
            for i in 0..<m { for t in 0..<((k + 3) / 4 * 4) where q[i * ldq + t] != q0[i * ldq + t] &+ off { same = false } }
            #expect(same, "\(v) k \(k): quantized bytes differ from the portable code's")
        }
    }
}

/// Int8 weights for oneDNN's int8 matmul, where this machine has it (libdnnl.so.2 running VNNI or AMX).
private let oneDNNInt8Here = GEMMKernel.onednn.isAvailable && GEMMKernel.onednn.supports(.int8)

/// Int8 rows already quantized, as a `paligemma quantize`d checkpoint gives them.
private struct Int8Rows: MatrixRows {
    let values: [Int8]
    let rowCount: Int, columnCount: Int
    var element: SourceElement { .int8 }
    func withRows(_ rows: Range<Int>, _ body: (UnsafeRawPointer) throws -> Void) throws {
        try values.withUnsafeBytes { try body($0.baseAddress! + rows.lowerBound * columnCount) }
    }
}

// oneDNN's int8 matmul returns exact integer sums and our epilogue scales them: the same bits as our
// portable int8 code on every edge shape (so batch invariant too), from the same quantization (F32 rows
// and pre-quantized rows alike), with the rows read back as stored.
@Test(.enabled(if: oneDNNInt8Here, "oneDNN's int8 matmul with VNNI or AMX is not available here"))
func oneDNNInt8EqualsOurKernelsBitForBit() throws {
    for (m, n, k) in int8Shapes + [(64, 130, 1152), (256, 40, 4304)] {
        var rng = SeededRandom(seed: UInt64(m * 7919 + n * 31 + k + 5))
        let x = randomFloats(m * k, &rng, scale: 4), w = randomFloats(n * k, &rng), b = randomFloats(n, &rng)
        let ours = PackedWeight(Tensor(shape: [n, k], values: w), precision: .int8, kernel: .portable)
        let theirs = PackedWeight(Tensor(shape: [n, k], values: w), precision: .int8, kernel: .onednn)
        #expect(theirs.kernel == .onednn && theirs.byteCount >= n * k)
        // A quantized checkpoint's rows (ours, read back) give the same weight.
        let rows = (0..<n).map { ours.int8Row($0) }
        let prequantized = try PackedWeight(stacking: [QuantizedRows(values: Int8Rows(values: rows.flatMap(\.values), rowCount: n, columnCount: k),
                                                                     scales: rows.map(\.scale))],
                                            precision: .int8, kernel: .onednn)
        for j in [0, n / 2, n - 1] {
            let got = theirs.int8Row(j)
            #expect(got.values == rows[j].values && got.scale.bitPattern == rows[j].scale.bitPattern && got.sum == rows[j].sum,
                    "[\(n), \(k)] row \(j)")
            var a = [Float](repeating: 0, count: k), c = [Float](repeating: 0, count: k)
            ours.row(j, scaledBy: 3, into: &a)
            theirs.row(j, scaledBy: 3, into: &c)
            #expect(a.map(\.bitPattern) == c.map(\.bitPattern))
        }
        for bias in [nil, b] {
            var want = [Float](repeating: .nan, count: m * n), got = want, got2 = want
            bias.withOptionalPointer { bp in
                Linear.int8Forward(x, rows: m, inFeatures: k, weight: ours, bias: bp, into: &want, variant: .portable)
                Linear.forward(x, rows: m, inFeatures: k, weight: theirs, bias: bp, into: &got)
                Linear.forward(x, rows: m, inFeatures: k, weight: prequantized, bias: bp, into: &got2)
            }
            #expect(got.map(\.bitPattern) == want.map(\.bitPattern), "m \(m) n \(n) k \(k) bias \(bias != nil)")
            #expect(got2.map(\.bitPattern) == want.map(\.bitPattern), "pre-quantized: m \(m) n \(n) k \(k)")
            // One row at a time: the batch's bits.
            for i in Set([0, m - 1]) {
                var one = [Float](repeating: .nan, count: n)
                Array(x[(i * k)..<(i * k + k)]).withUnsafeBufferPointer { row in
                    bias.withOptionalPointer { bp in
                        Linear.forward(row.baseAddress!, rows: 1, inFeatures: k, weight: theirs, bias: bp, into: &one)
                    }
                }
                #expect(one.map(\.bitPattern) == got[(i * n)..<(i * n + n)].map(\.bitPattern), "row \(i) alone, m \(m) n \(n) k \(k)")
            }
        }
    }
    #expect(GEMMKernel.onednn.isBatchInvariant(for: .int8) && !GEMMKernel.onednn.isBatchInvariant(for: .f32))
}
