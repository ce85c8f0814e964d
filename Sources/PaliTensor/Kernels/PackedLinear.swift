// Linear layers over weights packed once at load for our own GEMM micro-kernels (Sources/CKernels).
//
// OpenBLAS re-packs every weight panel on every call and, in the Debian build, runs its Haswell
// (AVX2) kernel even on AVX-512 CPUs; with the weights packed at load the AVX-512 kernel reaches
// about 1.8–2× OpenBLAS's rate on the model's shapes here (docs/performance.md). The same kernel
// serves prefill (hundreds of rows) and decode (a few rows: it streams each weight panel once), and
// every output element is summed in an order fixed by K alone, so a row's result never depends on
// how many rows share the call: batched generation equals one-by-one exactly.
import CKernels

/// The micro-kernel family a packed weight is laid out for.
public enum GEMMKernel: Int32, CaseIterable, Sendable, CustomStringConvertible {
    case portable = 0, avx2 = 1, avx512 = 2

    /// The fastest kernel this CPU runs, or the one `PALIGEMMA_GEMM=portable|avx2|avx512` names.
    public static let best = GEMMKernel(rawValue: pg_gemm_best()) ?? .portable

    /// Whether this CPU (and OS) can run the kernel.
    public var isAvailable: Bool { pg_gemm_available(rawValue) != 0 }
    /// Output columns per packed panel.
    public var panelWidth: Int { Int(pg_gemm_nr(rawValue)) }
    public var description: String {
        switch self {
        case .portable: return "portable"
        case .avx2: return "avx2"
        case .avx512: return "avx512"
        }
    }
}

/// A Linear weight W [N, K] (y = x · Wᵀ) packed for a `GEMMKernel`: panels of `panelWidth` output
/// columns, each holding its K × panelWidth values contiguously. Immutable once made.
public final class PackedWeight: @unchecked Sendable {
    public let outFeatures: Int
    public let inFeatures: Int
    public let kernel: GEMMKernel
    let storage: TensorStorage

    public var panels: Int { (outFeatures + kernel.panelWidth - 1) / kernel.panelWidth }

    /// Packs W given as [N, K] (PyTorch's Linear layout).
    public convenience init(_ w: Tensor, kernel: GEMMKernel = .best) {
        precondition(w.rank == 2, "PackedWeight needs a matrix [N, K], got \(w.shape)")
        self.init(n: w.shape[0], k: w.shape[1], kernel: kernel) { p, lo, hi in
            pg_gemm_pack_nk(kernel.rawValue, w.data, Int32(w.shape[0]), Int32(w.shape[1]), p, Int32(lo), Int32(hi))
        }
    }

    /// Packs W given transposed, as [K, N].
    public convenience init(transposed wT: Tensor, kernel: GEMMKernel = .best) {
        precondition(wT.rank == 2, "PackedWeight needs a matrix [K, N], got \(wT.shape)")
        self.init(n: wT.shape[1], k: wT.shape[0], kernel: kernel) { p, lo, hi in
            pg_gemm_pack_kn(kernel.rawValue, wT.data, Int32(wT.shape[0]), Int32(wT.shape[1]), p, Int32(lo), Int32(hi))
        }
    }

    private init(n: Int, k: Int, kernel: GEMMKernel,
                 pack: (UnsafeMutablePointer<Float>, Int, Int) -> Void) {
        precondition(kernel.isAvailable, "GEMM kernel \(kernel) is not available on this CPU")
        precondition(n > 0 && k >= 0 && n < Int(Int32.max) && k < Int(Int32.max), "PackedWeight: bad shape [\(n), \(k)]")
        outFeatures = n
        inFeatures = k
        self.kernel = kernel
        storage = TensorStorage(count: Int(pg_gemm_packed_count(kernel.rawValue, Int32(n), Int32(k))))
        let panels = (n + kernel.panelWidth - 1) / kernel.panelWidth
        let p = storage.pointer
        Parallel.forEachChunk(panels, grain: max(1, 1 << 16 / max(k * kernel.panelWidth, 1))) { r in
            pack(p, r.lowerBound, r.upperBound)
        }
    }

    /// Row j of W (length K): the embedding row of a tied embedding matrix.
    public func row(_ j: Int, scaledBy scale: Float = 1, into dst: UnsafeMutablePointer<Float>) {
        precondition(j >= 0 && j < outFeatures, "row \(j) outside 0..<\(outFeatures)")
        let nr = kernel.panelWidth
        var src = UnsafePointer(storage.pointer) + (j / nr) * inFeatures * nr + j % nr
        for i in 0..<inFeatures {
            dst[i] = src.pointee * scale
            src += nr
        }
    }

    /// The unpacked matrix [N, K] (a copy; for tests and tools).
    public func unpacked() -> Tensor {
        let t = Tensor(zeros: [outFeatures, inFeatures])
        for j in 0..<outFeatures { row(j, into: t.data + j * inFeatures) }
        return t
    }
}

extension Linear {
    /// y[M, N] = x[M, K] · Wᵀ (+ bias[N]) with W packed. Threads split the output panels.
    public static func forward(_ x: UnsafePointer<Float>, rows m: Int, inFeatures k: Int, weight w: PackedWeight,
                               bias: UnsafePointer<Float>?, into y: UnsafeMutablePointer<Float>) {
        precondition(k == w.inFeatures, "Linear: input width \(k) vs packed weight [\(w.outFeatures), \(w.inFeatures)]")
        guard m > 0 else { return }
        let n = w.outFeatures, nr = w.kernel.panelWidth, kind = w.kernel.rawValue
        let packed = UnsafePointer(w.storage.pointer)
        // A thread is worth it from about a quarter of a million multiply-adds.
        let grain = max(1, (1 << 18) / max(m * max(k, 1) * nr, 1))
        Parallel.forEachChunk(w.panels, grain: grain) { r in
            pg_gemm_packed(kind, Int32(m), Int32(n), Int32(k), x, Int32(k), packed, bias, y, Int32(n),
                           Int32(r.lowerBound), Int32(r.upperBound))
        }
    }

    /// Tensor form: x [..., K], packed weight [N, K], bias [N] → [..., N].
    public static func forward(_ x: Tensor, weight w: PackedWeight, bias: Tensor? = nil) -> Tensor {
        precondition(bias == nil || bias!.count == w.outFeatures, "Linear: bias \(bias!.shape) vs \(w.outFeatures) outputs")
        var outShape = x.shape
        outShape[outShape.count - 1] = w.outFeatures
        let y = Tensor(zeros: outShape)
        forward(x.data, rows: x.rows, inFeatures: x.columns, weight: w, bias: bias?.data, into: y.data)
        return y
    }
}
