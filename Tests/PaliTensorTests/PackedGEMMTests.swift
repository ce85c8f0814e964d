// The packed-weight GEMM (CKernels) against the double-precision reference, for every kernel this CPU
// runs (portable C everywhere; AVX2 and AVX-512 where present), on shapes that hit every edge: short
// row panels, partial column panels, several K blocks (256), several row blocks (384), bias or none.
import Testing
@testable import PaliTensor

let kernelsHere = GEMMKernel.allCases.filter(\.isAvailable)

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

@Test(arguments: kernelsHere)
func packingFromEitherLayoutKeepsEveryElement(kernel: GEMMKernel) {
    var rng = SeededRandom(seed: 7)
    for (n, k) in [(1, 1), (33, 7), (64, 3), (70, 129)] {
        let w = Tensor(shape: [n, k], values: randomFloats(n * k, &rng))
        var wT = [Float](repeating: 0, count: n * k)
        for j in 0..<n { for p in 0..<k { wT[p * n + j] = w.data[j * k + p] } }
        let a = PackedWeight(w, kernel: kernel)
        let b = PackedWeight(transposed: Tensor(shape: [k, n], values: wT), kernel: kernel)
        #expect(a.unpacked().scalars == w.scalars && b.unpacked().scalars == w.scalars)
        #expect(a.storage.count == b.storage.count && a.storage.count == a.panels * kernel.panelWidth * k)
        // Padding columns of the last panel are zero (the kernel multiplies them).
        #expect(Array(UnsafeBufferPointer(start: a.storage.pointer, count: a.storage.count))
                == Array(UnsafeBufferPointer(start: b.storage.pointer, count: b.storage.count)))
        var row = [Float](repeating: 0, count: k)
        a.row(n - 1, scaledBy: 2, into: &row)
        #expect(row == (0..<k).map { w.data[(n - 1) * k + $0] * 2 })
    }
}

// A row's result must not depend on how many rows share the call or on the thread count: batched
// generation is promised to equal one-by-one generation exactly.
@Test(arguments: kernelsHere)
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
