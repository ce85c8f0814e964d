import Testing
@testable import PaliTensor

/// Slow, obviously correct reference: C = A · Bᵀ with B stored [N, K].
func naiveMatmulBT(_ a: [Float], _ b: [Float], m: Int, n: Int, k: Int) -> [Float] {
    var c = [Float](repeating: 0, count: m * n)
    for i in 0..<m {
        for j in 0..<n {
            var s: Double = 0
            for p in 0..<k { s += Double(a[i * k + p]) * Double(b[j * k + p]) }
            c[i * n + j] = Float(s)
        }
    }
    return c
}

@Test(arguments: [(1, 1, 1), (3, 5, 7), (17, 33, 65), (64, 1, 129)])
func sgemmMatchesNaive(shape: (Int, Int, Int)) {
    let (m, n, k) = shape
    var rng = SystemRandomNumberGenerator()
    let a = (0..<m * k).map { _ in Float.random(in: -1...1, using: &rng) }
    let b = (0..<n * k).map { _ in Float.random(in: -1...1, using: &rng) }
    var c = [Float](repeating: .nan, count: m * n)
    a.withUnsafeBufferPointer { pa in
        b.withUnsafeBufferPointer { pb in
            c.withUnsafeMutableBufferPointer { pc in
                BLAS.sgemm(m: m, n: n, k: k, a: pa.baseAddress!, lda: k, b: pb.baseAddress!, ldb: k,
                           transposeB: true, c: pc.baseAddress!, ldc: n)
            }
        }
    }
    let ref = naiveMatmulBT(a, b, m: m, n: n, k: k)
    for i in 0..<(m * n) {
        #expect(abs(c[i] - ref[i]) <= 1e-5 * Float(k), "element \(i): \(c[i]) vs \(ref[i])")
    }
}
