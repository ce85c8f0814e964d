// The packed-weight GEMM (CKernels) against the double-precision reference, for every kernel this CPU
// runs (portable C everywhere; AVX2 and AVX-512 where present), on shapes that hit every edge: short
// row panels, partial column panels, several K blocks (256), several row blocks (384), bias or none.
import Dispatch
import Testing
@testable import PaliTensor

let kernelsHere = GEMMKernel.allCases.filter(\.isAvailable)
/// Kernels whose layout is panels in memory (ours) or plain rows (OpenBLAS): bytes can be compared.
let panelKernelsHere = kernelsHere.filter { $0 != .onednn }

let packedShapes: [(m: Int, n: Int, k: Int)] = [
    (1, 1, 1), (1, 33, 7), (3, 40, 64), (7, 17, 100), (8, 64, 256), (9, 100, 257), (16, 9, 600),
    (29, 65, 513), (265, 97, 300), (400, 50, 33), (2, 300, 15),
]

@Test(arguments: kernelsHere)
func packedLinearMatchesReference(kernel: GEMMKernel) {
    for (m, n, k) in packedShapes {
        var rng = SeededRandom(seed: UInt64(m * 7919 + n * 31 + k))
        let x = randomFloats(m * k, &rng), w = randomFloats(n * k, &rng), b = randomFloats(n, &rng)
        let xt = Tensor(shape: [m, k], values: x), wt = Tensor(shape: [n, k], values: w)
        let packed = PackedWeight(wt, kernel: kernel)
        for bias in [nil, Tensor(shape: [n], values: b)] {
            let y = Linear.forward(xt, weight: packed, bias: bias)
            let ref = Reference.linear(x, rows: m, inFeatures: k, weight: w, outFeatures: n, bias: bias?.scalars)
            let err = maxRelativeError(y.scalars, ref)
            #expect(y.shape == [m, n] && err < 1e-5, "\(kernel) m \(m) n \(n) k \(k) bias \(bias != nil): error \(err)")
        }
    }
}

@Test(arguments: panelKernelsHere)
func packingFromEitherLayoutKeepsEveryElement(kernel: GEMMKernel) {
    var rng = SeededRandom(seed: 7)
    for (n, k) in [(1, 1), (33, 7), (64, 3), (70, 129)] {
        let w = Tensor(shape: [n, k], values: randomFloats(n * k, &rng))
        var wT = [Float](repeating: 0, count: n * k)
        for j in 0..<n { for p in 0..<k { wT[p * n + j] = w.data[j * k + p] } }
        let a = PackedWeight(w, kernel: kernel)
        let b = PackedWeight(transposed: Tensor(shape: [k, n], values: wT), kernel: kernel)
        #expect(a.unpacked().scalars == w.scalars && b.unpacked().scalars == w.scalars)
        #expect(a.byteCount == b.byteCount && a.byteCount == a.panels * kernel.panelWidth * k * 4)
        // Padding columns of the last panel are zero (the kernel multiplies them).
        #expect(panelBytes(a) == panelBytes(b))
        var row = [Float](repeating: 0, count: k)
        a.row(n - 1, scaledBy: 2, into: &row)
        #expect(row == (0..<k).map { w.data[(n - 1) * k + $0] * 2 })
    }
}

// A row's result must not depend on how many rows share the call or on the thread count: batched
// generation is promised to equal one-by-one generation exactly. Promised by our kernels only:
// OpenBLAS fails this test; oneDNN 2.6 passed it on an AVX-512 CPU, but does not promise it.
@Test(arguments: kernelsHere.filter(\.isBatchInvariant))
func packedLinearIsBatchAndThreadInvariant(kernel: GEMMKernel) {
    let (m, n, k) = (397, 75, 530)
    var rng = SeededRandom(seed: 11)
    let x = Tensor(shape: [m, k], values: randomFloats(m * k, &rng))
    let w = PackedWeight(Tensor(shape: [n, k], values: randomFloats(n * k, &rng)), kernel: kernel)
    let bias = Tensor(shape: [n], values: randomFloats(n, &rng))
    let saved = Parallel.threads
    defer { Parallel.threads = saved }
    Parallel.threads = 2
    let all = Linear.forward(x, weight: w, bias: bias)
    Parallel.threads = 1
    #expect(Linear.forward(x, weight: w, bias: bias).scalars == all.scalars)
    for (start, rows) in [(0, 1), (5, 1), (396, 1), (3, 8), (100, 9), (13, 260)] {
        let part = Tensor(shape: [rows, k], values: Array(x.scalars[(start * k)..<((start + rows) * k)]))
        let y = Linear.forward(part, weight: w, bias: bias)
        #expect(y.scalars == Array(all.scalars[(start * n)..<((start + rows) * n)]), "\(kernel) rows \(start)..<\(start + rows)")
    }
}

@Test func bestKernelRunsHere() {
    #expect(GEMMKernel.best.isAvailable)
    #expect(GEMMKernel.portable.isAvailable)
    #if arch(x86_64)
    // The package is built for Haswell-class CPUs (AVX2 + FMA): that kernel must be usable.
    #expect(GEMMKernel.avx2.isAvailable)
    #endif
}

func panelBytes(_ w: PackedWeight) -> [UInt8] {
    Array(UnsafeRawBufferPointer(start: w.storage, count: w.byteCount))
}

/// F32 → BF16 bits, round to nearest even (NaN → quiet NaN): the reference for packing.
func bf16Bits(_ f: Float) -> UInt16 {
    if f.isNaN { return UInt16(f.bitPattern >> 16) | 0x40 }
    let u = f.bitPattern
    return UInt16((u &+ 0x7FFF &+ ((u >> 16) & 1)) >> 16)
}

func bf16Value(_ h: UInt16) -> Float { Float(bitPattern: UInt32(h) << 16) }

/// Rows given as BF16 (or F16) bytes, as a checkpoint holds them.
struct HalfRows: MatrixRows {
    let bits: [UInt16]
    let rowCount: Int
    let columnCount: Int
    let element: SourceElement
    func withRows(_ rows: Range<Int>, _ body: (UnsafeRawPointer) throws -> Void) throws {
        try bits.withUnsafeBytes { try body($0.baseAddress! + rows.lowerBound * columnCount * 2) }
    }
}

// BF16 panels hold exactly the BF16 values and the GEMM over them equals, bit for bit, the GEMM over
// F32 panels of the same (widened) values: both the direct BF16 micro-kernels (one row panel: decode)
// and the widened-micro-panel path (several row panels: prefill), with or without bias.
@Test(arguments: kernelsHere.filter { $0.supports(.bf16) })
func bf16PanelsEqualWidenedF32BitForBit(kernel: GEMMKernel) throws {
    for (m, n, k) in packedShapes + [(1, 64, 2048), (8, 70, 300), (9, 31, 513)] {
        var rng = SeededRandom(seed: UInt64(m * 131 + n * 7 + k))
        let bits = randomFloats(n * k, &rng).map { bf16Bits($0 * 3) }
        let widened = Tensor(shape: [n, k], values: bits.map(bf16Value))
        let x = Tensor(shape: [m, k], values: randomFloats(m * k, &rng))
        let bias = Tensor(shape: [n], values: randomFloats(n, &rng))
        let f32 = PackedWeight(widened, kernel: kernel)
        let fromBF16 = try PackedWeight(stacking: [HalfRows(bits: bits, rowCount: n, columnCount: k, element: .bf16)],
                                    precision: .bf16, kernel: kernel)
        let rounded = PackedWeight(widened, precision: .bf16, kernel: kernel)   // F32 source rounded: exact here
        let widenedAtLoad = try PackedWeight(stacking: [HalfRows(bits: bits, rowCount: n, columnCount: k, element: .bf16)],
                                         precision: .f32, kernel: kernel)
        #expect(fromBF16.byteCount * 2 == f32.byteCount && panelBytes(fromBF16) == panelBytes(rounded))
        #expect(panelBytes(widenedAtLoad) == panelBytes(f32))
        #expect(fromBF16.unpacked().scalars == widened.scalars)
        for b in [nil, bias] {
            let want = Linear.forward(x, weight: f32, bias: b).scalars
            #expect(Linear.forward(x, weight: fromBF16, bias: b).scalars == want, "\(kernel) m \(m) n \(n) k \(k) bias \(b != nil)")
        }
    }
}

// Packing F32 into BF16 rounds to nearest even, ties to even, NaN stays NaN, ±inf and ±0 stay.
@Test func packingRoundsF32ToBF16NearestEven() {
    var rng = SeededRandom(seed: 3)
    var values = randomFloats(4000, &rng).map { $0 * 1000 }
    values += [0, -0.0, .infinity, -.infinity, .nan, .greatestFiniteMagnitude, .leastNonzeroMagnitude,
               Float(bitPattern: 0x3F80_8000), Float(bitPattern: 0x3F81_8000), Float(bitPattern: 0x3F80_8001)]
    let n = values.count / 2, k = 2
    let w = PackedWeight(Tensor(shape: [n, k], values: Array(values.prefix(n * k))), precision: .bf16)
    let got = w.unpacked().scalars
    for (i, v) in values.prefix(n * k).enumerated() {
        let want = bf16Value(bf16Bits(v))
        #expect(got[i].bitPattern == want.bitPattern || (got[i].isNaN && v.isNaN), "\(v) → \(got[i]), want \(want)")
    }
}

// A fused matrix from parts whose sizes are not multiples of the panel width, read in small pieces,
// equals packing the concatenated matrix; F16 sources widen exactly.
@Test(arguments: kernelsHere)
func stackedPartsInPiecesEqualOneMatrix(kernel: GEMMKernel) throws {
    var rng = SeededRandom(seed: 19)
    let k = 37, sizes = [45, 3, 70]
    let parts = sizes.map { Tensor(shape: [$0, k], values: randomFloats($0 * k, &rng)) }
    let whole = Tensor.concatenatingRows(parts)
    for precision in WeightPrecision.allCases where kernel.supports(precision) {
        let one = PackedWeight(whole, precision: precision, kernel: kernel)
        let stacked = try PackedWeight(stacking: parts.map(TensorRows.init), precision: precision, kernel: kernel,
                                   pieceBytes: 5 * k * 4)
        if kernel == .onednn && precision == .int8 {   // quantized as our panels are, read back
            let ours = PackedWeight(whole, precision: .int8, kernel: .portable).unpacked().scalars
            #expect(stacked.unpacked().scalars == ours && one.unpacked().scalars == ours)
        } else if kernel == .onednn {   // its layout is oneDNN's: compare what it holds, read back
            #expect(stacked.unpacked().scalars == whole.scalars && one.unpacked().scalars == whole.scalars)
        } else {
            #expect(panelBytes(one) == panelBytes(stacked), "\(kernel) \(precision)")
        }
    }
    let halfBits = randomFloats(20 * k, &rng).map { Float16($0).bitPattern }
    let f16 = try PackedWeight(stacking: [HalfRows(bits: halfBits, rowCount: 20, columnCount: k, element: .f16)],
                           precision: .f32, kernel: kernel)
    #expect(f16.unpacked().scalars == halfBits.map { Float(Float16(bitPattern: $0)) })
}

// The vision role and a decoder stage of one process multiply at the same time, each on its own
// weights: every library must allow that (oneDNN's streams must not be shared between threads).
@Test(arguments: kernelsHere)
func productsOnSeveralThreadsAtOnceEqualOneByOne(kernel: GEMMKernel) {
    var rng = SeededRandom(seed: 23)
    let (m, n, k) = (37, 70, 300)
    let weights = (0..<4).map { _ in PackedWeight(Tensor(shape: [n, k], values: randomFloats(n * k, &rng)), kernel: kernel) }
    let x = Tensor(shape: [m, k], values: randomFloats(m * k, &rng))
    let alone = weights.map { Linear.forward(x, weight: $0).scalars }
    let together = UnsafeMutableBufferPointer<[Float]>.allocate(capacity: 4 * 8)
    defer { together.deallocate() }
    DispatchQueue.concurrentPerform(iterations: 4 * 8) { i in
        (together.baseAddress! + i).initialize(to: Linear.forward(x, weight: weights[i % 4]).scalars)
    }
    for i in 0..<(4 * 8) { #expect(together[i] == alone[i % 4], "\(kernel) call \(i)") }
}
