// Linear layers over weights packed once at load for our own GEMM micro-kernels (Sources/CKernels).
//
// OpenBLAS re-packs every weight panel on every call and, in the Debian build, runs its Haswell
// (AVX2) kernel even on AVX-512 CPUs; with the weights packed at load the AVX-512 kernel reaches
// about 1.8–2× OpenBLAS's rate on the model's shapes here (docs/performance.md). The same kernel
// serves prefill (hundreds of rows) and decode (a few rows: it streams each weight panel once), and
// every output element is summed in an order fixed by K alone, so a row's result never depends on
// how many rows share the call: batched generation equals one-by-one exactly.
import CKernels
import Foundation

/// The GEMM a packed weight is laid out for: one of our micro-kernel families, or OpenBLAS's sgemm
/// over the weight's plain [N, K] rows (`--gemm NAME`; `GEMMChoice` picks among them by measurement).
public enum GEMMKernel: Int32, CaseIterable, Sendable, CustomStringConvertible {
    case portable = 0, avx2 = 1, avx512 = 2
    /// OpenBLAS `cblas_sgemm` (F32 weights only). Not batch invariant: OpenBLAS picks its blocking and
    /// small-matrix paths from M, so a row's last bits can depend on the rows batched with it.
    case openblas = 3
    /// oneDNN's f32 matmul (its JIT brgemm kernels, the weight reordered once into its layout), where
    /// libdnnl.so.2 is installed. F32 weights only; not batch invariant either.
    case onednn = 4

    /// The fastest of our own kernels this CPU runs (by instruction set), or the one
    /// `PALIGEMMA_GEMM=portable|avx2|avx512` names.
    public static let best = GEMMKernel(rawValue: pg_gemm_best()) ?? .portable

    /// Whether this CPU (and OS) can run the kernel.
    public var isAvailable: Bool { pg_gemm_available(rawValue) != 0 }
    /// Output columns per packed panel (1 for OpenBLAS: the weight's rows as they are).
    public var panelWidth: Int { Int(pg_gemm_nr(rawValue)) }
    /// Whether every output row is summed in an order fixed by K alone (batched = one by one, bit for bit).
    public var isBatchInvariant: Bool { self != .openblas && self != .onednn }
    /// Whether the kernel is batch invariant for weights of `precision`: oneDNN's int8 matmul is (exact
    /// integer sums, then our epilogue), its f32 one is not.
    public func isBatchInvariant(for precision: WeightPrecision) -> Bool {
        isBatchInvariant || (self == .onednn && precision == .int8)
    }
    /// Which precisions the kernel multiplies.
    public func supports(_ precision: WeightPrecision) -> Bool {
        isOurs || precision == .f32 || (self == .onednn && precision == .int8 && pg_onednn_i8_available() != 0)
    }
    /// The int8 product variant this kernel's panels run on this CPU (AVX512-VNNI on the AVX-512 layout;
    /// AVX-VNNI, else AVX2, on the AVX2 layout; portable C on the portable one).
    public var int8Variant: Int8Variant { Int8Variant(rawValue: pg_i8_best_variant(rawValue)) ?? .portable }
    /// One of our own micro-kernels (rows of the weight can be read back cheaply: embedding lookups).
    public var isOurs: Bool { self == .portable || self == .avx2 || self == .avx512 }
    public var description: String {
        switch self {
        case .portable: return "portable"
        case .avx2: return "avx2"
        case .avx512: return "avx512"
        case .openblas: return "openblas"
        case .onednn: return "onednn"
        }
    }
    /// The kernel named `name` (its description), if any.
    public init?(name: String) {
        guard let k = Self.allCases.first(where: { $0.description == name }) else { return nil }
        self = k
    }
}

/// A weight a GEMM library could not take.
public struct GEMMError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The element type of a packed weight's panels.
public enum WeightPrecision: String, Sendable, CaseIterable, CustomStringConvertible {
    /// F32 panels (what f32 and f16 checkpoints give, and `--weights f32`).
    case f32
    /// BF16 panels: half the memory; widened to F32 in registers, summed exactly as F32 panels holding
    /// the same values (bit for bit).
    case bf16
    /// Int8 panels with an F32 scale per output column (per-channel symmetric, `--weights int8`): a quarter
    /// of the memory. Multiplied by activations quantized per row to int8 (W8A8, exact int32 sums), see
    /// `Linear.forward` and Sources/CKernels/gemm_i8.c. Our own kernels only.
    case int8

    var code: Int32 {
        switch self {
        case .f32: return Int32(PG_F32)
        case .bf16: return Int32(PG_BF16)
        case .int8: return Int32(PG_I8)
        }
    }
    public var bytesPerElement: Int {
        switch self {
        case .f32: return 4
        case .bf16: return 2
        case .int8: return 1
        }
    }
    public var description: String { rawValue }
}

/// The element type of rows a packed weight is made from (a checkpoint's dtype).
public enum SourceElement: Sendable {
    case f32, bf16, f16
    /// Int8 values already quantized per row, with their F32 scales (`MatrixRows.rowScales`): a
    /// `paligemma quantize`d checkpoint. Packs only into int8 panels.
    case int8
    var code: Int32 {
        switch self {
        case .f32: return Int32(PG_F32)
        case .bf16: return Int32(PG_BF16)
        case .f16: return Int32(PG_F16)
        case .int8: return Int32(PG_I8)
        }
    }
    public var byteSize: Int {
        switch self {
        case .f32: return 4
        case .bf16, .f16: return 2
        case .int8: return 1
        }
    }
}

/// Rows of a weight matrix [N, K] that can be read in pieces: a tensor in memory, or a tensor in a
/// checkpoint file whose pages are mapped only while a piece is packed and released right after, so
/// loading never holds more than the packed weights plus one piece of the file.
public protocol MatrixRows {
    var rowCount: Int { get }
    var columnCount: Int { get }
    var element: SourceElement { get }
    /// Calls `body` with rows `rows` (consecutive, `columnCount` elements each, any alignment).
    func withRows(_ rows: Range<Int>, _ body: (UnsafeRawPointer) throws -> Void) throws
    /// The F32 scale of each row, for `element == .int8` (nil otherwise).
    var rowScales: [Float]? { get }
}

extension MatrixRows {
    public var rowScales: [Float]? { nil }
}

/// Rows of int8 values with a scale per row (a quantized checkpoint's `<name>` and `<name>_scale`).
public struct QuantizedRows: MatrixRows {
    public let values: MatrixRows
    public let scales: [Float]
    public init(values: MatrixRows, scales: [Float]) {
        precondition(values.element == .int8 && scales.count == values.rowCount,
                     "QuantizedRows: \(values.rowCount) int8 rows need as many scales, got \(scales.count)")
        (self.values, self.scales) = (values, scales)
    }
    public var rowCount: Int { values.rowCount }
    public var columnCount: Int { values.columnCount }
    public var element: SourceElement { .int8 }
    public var rowScales: [Float]? { scales }
    public func withRows(_ rows: Range<Int>, _ body: (UnsafeRawPointer) throws -> Void) throws {
        try values.withRows(rows, body)
    }
}

/// A matrix already in memory as F32 (random weights, tests, tools).
public struct TensorRows: MatrixRows {
    public let tensor: Tensor
    public init(_ tensor: Tensor) {
        precondition(tensor.rank >= 1, "TensorRows needs a matrix, got \(tensor.shape)")
        self.tensor = tensor
    }
    public var rowCount: Int { tensor.shape[0] }
    public var columnCount: Int { tensor.rank == 1 ? 1 : tensor.shape.dropFirst().reduce(1, *) }
    public var element: SourceElement { .f32 }
    public func withRows(_ rows: Range<Int>, _ body: (UnsafeRawPointer) throws -> Void) throws {
        try body(UnsafeRawPointer(tensor.data + rows.lowerBound * columnCount))
    }
}

/// A Linear weight W [N, K] (y = x · Wᵀ) packed for a `GEMMKernel`: panels of `panelWidth` output
/// columns, each holding its K × panelWidth values contiguously, as F32 or BF16. Immutable once made.
public final class PackedWeight: @unchecked Sendable {
    public let outFeatures: Int
    public let inFeatures: Int
    public let kernel: GEMMKernel
    public let precision: WeightPrecision
    let storage: UnsafeMutableRawPointer
    /// Bytes of the packed panels (what this weight holds in memory).
    public let byteCount: Int
    /// The weight in oneDNN's layout (kernel `.onednn`; `storage` is then unused).
    let onednn: OpaquePointer?

    public var panels: Int { (outFeatures + kernel.panelWidth - 1) / kernel.panelWidth }

    /// Packs W given as [N, K] (PyTorch's Linear layout).
    public convenience init(_ w: Tensor, precision: WeightPrecision = .f32, kernel: GEMMKernel = .best) {
        precondition(w.rank == 2, "PackedWeight needs a matrix [N, K], got \(w.shape)")
        try! self.init(stacking: [TensorRows(w)], precision: precision, kernel: kernel)   // memory: cannot fail
    }

    /// Packs W given transposed, as [K, N] (F32).
    public init(transposed wT: Tensor, kernel: GEMMKernel = .best) {
        precondition(wT.rank == 2, "PackedWeight needs a matrix [K, N], got \(wT.shape)")
        let n = wT.shape[1], k = wT.shape[0]
        precondition(kernel != .onednn, "PackedWeight(transposed:) does not make oneDNN weights")
        (outFeatures, inFeatures, self.kernel, precision, onednn) = (n, k, kernel, .f32, nil)
        (storage, byteCount) = Self.allocate(n: n, k: k, kernel: kernel, precision: .f32)
        let p = storage.assumingMemoryBound(to: Float.self), panels = (n + kernel.panelWidth - 1) / kernel.panelWidth
        Parallel.forEachChunk(panels, grain: max(1, 1 << 16 / max(k * kernel.panelWidth, 1))) { r in
            pg_gemm_pack_kn(kernel.rawValue, wT.data, Int32(k), Int32(n), p, Int32(r.lowerBound), Int32(r.upperBound))
        }
    }

    /// Packs the rows of `parts` one after another as one W [ΣN, K] (fused q|k|v), reading each part
    /// in pieces of about `pieceBytes` of its source (all threads pack a piece; see `MatrixRows`).
    /// `progress`, when given, is told the source bytes of each piece packed. Throws what reading a
    /// piece throws (a file that cannot be mapped).
    public init(stacking parts: [MatrixRows], precision: WeightPrecision, kernel: GEMMKernel = .best,
                pieceBytes: Int = 64 << 20, progress: ((Int) -> Void)? = nil) throws {
        precondition(!parts.isEmpty, "PackedWeight: no rows to pack")
        let k = parts[0].columnCount
        precondition(parts.allSatisfy { $0.columnCount == k },
                     "PackedWeight: stacked parts have different widths \(parts.map(\.columnCount))")
        let n = parts.reduce(0) { $0 + $1.rowCount }
        precondition(kernel.isAvailable, "GEMM kernel \(kernel) is not available on this CPU")
        precondition(kernel.supports(precision), "GEMM kernel \(kernel) does not multiply \(precision) weights")
        precondition(n > 0 && k >= 0 && n < Int(Int32.max) && k < Int(Int32.max), "PackedWeight: bad shape [\(n), \(k)]")
        if parts.contains(where: { $0.element == .int8 }) && precision != .int8 {
            throw GEMMError("int8-quantized rows pack only into int8 weights (got \(precision)): load the quantized checkpoint with --weights int8 or auto")
        }
        (outFeatures, inFeatures, self.kernel, self.precision) = (n, k, kernel, precision)
        if kernel == .onednn && precision != .int8 {
            // oneDNN reorders the whole matrix at once: gather it as F32 rows first (one matrix of extra memory, briefly).
            let rows = Tensor(zeros: [n, max(k, 1)])
            var row0 = 0
            for part in parts {
                let rowBytes = max(1, k * part.element.byteSize), piece = max(1, pieceBytes / rowBytes)
                for lo in stride(from: 0, to: part.rowCount, by: piece) {
                    let hi = min(part.rowCount, lo + piece)
                    try part.withRows(lo..<hi) { src in
                        Parallel.forEachChunk(hi - lo, grain: max(1, (1 << 18) / max(k, 1))) { r in
                            pg_convert_to_f32(part.element.code, src + r.lowerBound * k * part.element.byteSize,
                                              r.count * k, rows.data + (row0 + lo + r.lowerBound) * k)
                        }
                    }
                    progress?((hi - lo) * rowBytes)
                }
                row0 += part.rowCount
            }
            guard let handle = pg_onednn_weight_create(Int32(n), Int32(k), rows.data) else {
                throw GEMMError("oneDNN could not take a weight [\(n), \(k)]; use --gemm with another kernel")
            }
            onednn = handle
            (storage, byteCount) = (UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 64), pg_onednn_weight_bytes(handle))
            return
        }
        // Int8 for oneDNN: quantized here into rows of one column's panel ([scale][Σq][K4 values], the
        // same quantization as our panels), then reordered into oneDNN's layout.
        let (dst, dstBytes) = Self.allocate(n: n, k: k, kernel: kernel, precision: precision)
        let nr = kernel.panelWidth
        var row0 = 0
        for part in parts {
            let rowBytes = max(1, k * part.element.byteSize)
            // Pieces are whole panels of the destination where they can be, so threads never share a line.
            let piece = max(nr, pieceBytes / rowBytes / nr * nr)
            var lo = 0
            while lo < part.rowCount {
                // Pieces end on panel boundaries of W (but the part's last), threads split whole panels.
                let hi = min(part.rowCount, (row0 + lo + piece) / nr * nr - row0)
                let g0 = row0 + lo, g1 = row0 + hi, firstPanel = g0 / nr
                try part.withRows(lo..<hi) { src in
                    let panelsHere = (g1 - 1) / nr - firstPanel + 1
                    let scales = part.rowScales
                    Parallel.forEachChunk(panelsHere, grain: max(1, (1 << 18) / max(k * nr, 1))) { r in
                        let a = max(g0, (firstPanel + r.lowerBound) * nr), b = min(g1, (firstPanel + r.upperBound) * nr)
                        guard a < b else { return }
                        if let scales {
                            scales.withUnsafeBufferPointer { sp in
                                pg_i8_pack_quantized_rows(Int32(nr), src + (a - g0) * rowBytes, sp.baseAddress! + (a - row0),
                                                          k, Int32(k), Int32(a), Int32(b), dst)
                            }
                            return
                        }
                        pg_gemm_pack_rows(kernel.rawValue, precision.code, part.element.code,
                                          src + (a - g0) * rowBytes, k, Int32(k), Int32(a), Int32(b), dst)
                    }
                }
                progress?((hi - lo) * rowBytes)
                lo = hi
            }
            row0 += part.rowCount
        }
        pg_gemm_pack_pad(kernel.rawValue, precision.code, Int32(n), Int32(k), dst)
        guard kernel == .onednn else {
            (storage, byteCount, onednn) = (dst, dstBytes, nil)
            return
        }
        defer { dst.deallocate() }
        let stride = 8 + (k + 3) / 4 * 4
        var scales = [Float](repeating: 0, count: n), sums = [Int32](repeating: 0, count: n)
        for j in 0..<n {
            scales[j] = dst.load(fromByteOffset: j * stride, as: Float.self)
            sums[j] = dst.load(fromByteOffset: j * stride + 4, as: Int32.self)
        }
        let u8: Int32 = Int8Variant.onednnActivations.offset == 128 ? 1 : 0
        guard let handle = pg_onednn_i8_weight_create(Int32(n), Int32(k), dst + 8, stride, scales, sums, u8) else {
            throw GEMMError("oneDNN could not take an int8 weight [\(n), \(k)]; use --gemm with another kernel")
        }
        onednn = handle
        (storage, byteCount) = (UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 64), pg_onednn_weight_bytes(handle))
    }

    /// Uninitialised panel memory (every byte is written by packing): 64-byte aligned, 2 MiB aligned
    /// from 4 MiB up, so the kernel can back it with transparent huge pages where they come free.
    /// Deliberately no MADV_HUGEPAGE: with the usual `defrag=madvise` setting it makes every fault wait
    /// for compaction when memory is full of page cache (a 3B checkpoint just read): measured here, a
    /// 5.8 GB load spent 19.7 s in the kernel with it and 2.5 s without.
    private static func allocate(n: Int, k: Int, kernel: GEMMKernel,
                                 precision: WeightPrecision) -> (UnsafeMutableRawPointer, Int) {
        let bytes = Int(pg_gemm_packed_bytes(kernel.rawValue, precision.code, Int32(n), Int32(k)))
        let raw = UnsafeMutableRawPointer.allocate(byteCount: max(bytes, 64), alignment: bytes >= 4 << 20 ? 2 << 20 : 64)
        return (raw, bytes)
    }

    deinit {
        storage.deallocate()
        if let onednn { pg_onednn_weight_destroy(onednn) }
    }

    /// Row j of W (length K), times `scale`, as F32: the embedding row of a tied embedding matrix.
    /// (A oneDNN weight reorders the whole matrix back for it: tests and tools only.)
    public func row(_ j: Int, scaledBy scale: Float = 1, into dst: UnsafeMutablePointer<Float>) {
        precondition(j >= 0 && j < outFeatures, "row \(j) outside 0..<\(outFeatures)")
        if onednn != nil, precision == .int8 {
            let r = int8Row(j)
            for q in 0..<inFeatures { dst[q] = Float(r.values[q]) * r.scale * scale }   // as pg_i8_row
            return
        }
        if let onednn {
            let all = Tensor(zeros: [outFeatures, max(inFeatures, 1)])
            precondition(pg_onednn_weight_unpack(onednn, all.data) != 0, "oneDNN could not reorder a weight back")
            for q in 0..<inFeatures { dst[q] = all.data[j * inFeatures + q] * scale }
            return
        }
        pg_gemm_packed_row(kernel.rawValue, precision.code, Int32(outFeatures), Int32(inFeatures), storage,
                           Int32(j), scale, dst)
    }

    /// The unpacked matrix [N, K] (a copy; for tests and tools).
    public func unpacked() -> Tensor {
        let t = Tensor(zeros: [outFeatures, inFeatures])
        if let onednn, inFeatures > 0, precision == .int8 {
            let all = oneDNNInt8Rows(onednn)
            for j in 0..<outFeatures {
                for q in 0..<inFeatures { t.data[j * inFeatures + q] = Float(all.values[j * inFeatures + q]) * all.scales[j] }
            }
            return t
        }
        if let onednn, inFeatures > 0 {
            precondition(pg_onednn_weight_unpack(onednn, t.data) != 0, "oneDNN could not reorder a weight back")
            return t
        }
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
        if w.kernel == .openblas { return blasForward(x, rows: m, inFeatures: k, weight: w, bias: bias, into: y) }
        if let handle = w.onednn, w.precision != .int8 {
            precondition(pg_onednn_matmul(handle, Int32(m), x, bias, y, Int32(Parallel.threads)) != 0,
                         "oneDNN matmul failed for [\(m), \(k)] · [\(w.outFeatures), \(k)]ᵀ")
            return
        }
        if w.precision == .int8 {
            return int8Forward(x, rows: m, inFeatures: k, weight: w, bias: bias, into: y, activations: Int8Activations.standard)
        }
        let n = w.outFeatures, nr = w.kernel.panelWidth, kind = w.kernel.rawValue
        let packed = UnsafeRawPointer(w.storage), wtype = w.precision.code
        // A thread is worth it from about a quarter of a million multiply-adds.
        let grain = max(1, (1 << 18) / max(m * max(k, 1) * nr, 1))
        Parallel.forEachChunk(w.panels, grain: grain) { r in
            pg_gemm_packed_w(kind, wtype, Int32(m), Int32(n), Int32(k), x, Int32(k), packed, bias, y, Int32(n),
                             Int32(r.lowerBound), Int32(r.upperBound))
        }
    }

    /// y = x · Wᵀ (+ bias) with W int8: W8A8 (each row of x quantized to int8 with its own scale, exact
    /// integer sums, then scaled) or, with `activations: .f32`, W8A32 (x as F32 times W widened in
    /// registers). Either way a row's result depends on that row alone. W8A8 was the faster on every row
    /// count measured (docs/performance.md), so it is the default at every M. `variant` picks the
    /// product's code (tests run each); nil: the fastest this CPU runs for the weight's layout.
    public static func int8Forward(_ x: UnsafePointer<Float>, rows m: Int, inFeatures k: Int, weight w: PackedWeight,
                                   bias: UnsafePointer<Float>?, into y: UnsafeMutablePointer<Float>,
                                   activations: Int8Activations = .int8, variant: Int8Variant? = nil) {
        precondition(w.precision == .int8, "Linear.int8Forward: weight is \(w.precision)")
        precondition(k == w.inFeatures, "Linear: input width \(k) vs packed weight [\(w.outFeatures), \(w.inFeatures)]")
        guard m > 0 else { return }
        if let handle = w.onednn { return oneDNNInt8Forward(x, rows: m, inFeatures: k, weight: w, handle: handle, bias: bias, into: y) }
        let v = variant ?? w.kernel.int8Variant
        precondition(v.isAvailable, "int8 variant \(v) is not available on this CPU")
        precondition(v == .portable || v.panelWidth == w.kernel.panelWidth,
                     "int8 variant \(v) needs panels of \(v.panelWidth) columns, the weight has \(w.kernel.panelWidth)")
        let n = w.outFeatures, nr = Int32(w.kernel.panelWidth), packed = UnsafeRawPointer(w.storage)
        let grain = max(1, (1 << 19) / max(m * max(k, 1) * Int(nr), 1))
        switch activations {
        case .f32:
            Parallel.forEachChunk(w.panels, grain: grain) { r in
                pg_gemm_i8f(v.rawValue, nr, Int32(m), Int32(n), Int32(k), x, Int32(k), packed, bias, y, Int32(n),
                            Int32(r.lowerBound), Int32(r.upperBound))
            }
        case .int8:
            let ldq = (k + 3) / 4 * 4 + 64   // rows 64 bytes apart beyond K4: no two rows share a line at the end
            withQuantizedRows(x, rows: m, inFeatures: k, variant: v, rowBytes: ldq) { q, scales in
                Parallel.forEachChunk(w.panels, grain: grain) { r in
                    pg_gemm_i8(v.rawValue, nr, Int32(m), Int32(n), Int32(k), q, Int32(ldq), scales, packed, bias, y,
                               Int32(n), Int32(r.lowerBound), Int32(r.upperBound))
                }
            }
        }
    }

    /// Each row of x quantized to int8 for `variant` (per-row scale; threads split the rows), rows `ldq`
    /// bytes apart, handed to `body` with their scales.
    static func withQuantizedRows(_ x: UnsafePointer<Float>, rows m: Int, inFeatures k: Int, variant v: Int8Variant,
                                  rowBytes ldq: Int, _ body: (UnsafeRawPointer, UnsafePointer<Float>) -> Void) {
        let q = UnsafeMutableRawPointer.allocate(byteCount: max(1, m * ldq), alignment: 64)
        let scales = UnsafeMutablePointer<Float>.allocate(capacity: m)
        defer { q.deallocate(); scales.deallocate() }
        Parallel.forEachChunk(m, grain: max(1, (1 << 16) / max(k, 1))) { r in
            pg_i8_quantize_rows(v.rawValue, Int32(r.count), Int32(k), x + r.lowerBound * k, Int32(k),
                                q + r.lowerBound * ldq, Int32(ldq), scales + r.lowerBound)
        }
        body(q, scales)
    }

    /// W8A8 through oneDNN: rows quantized as for our VNNI kernels, oneDNN's exact int32 sums written into
    /// y, then our epilogue in place: the same bits as `int8Forward` on our panels.
    static func oneDNNInt8Forward(_ x: UnsafePointer<Float>, rows m: Int, inFeatures k: Int, weight w: PackedWeight,
                                  handle: OpaquePointer, bias: UnsafePointer<Float>?, into y: UnsafeMutablePointer<Float>) {
        let v = Int8Variant.onednnActivations, n = w.outFeatures
        let ldq = (k + 3) / 4 * 4   // dense rows (K a multiple of 4): oneDNN's fast kernels take no other stride
        withQuantizedRows(x, rows: m, inFeatures: k, variant: v, rowBytes: ldq) { q, scales in
            let sums = UnsafeMutableRawPointer(y).assumingMemoryBound(to: Int32.self)
            precondition(pg_onednn_i8_matmul(handle, Int32(m), q, Int32(ldq), sums, Int32(Parallel.threads)) != 0,
                         "oneDNN int8 matmul failed for [\(m), \(k)] · [\(n), \(k)]ᵀ")
            Parallel.forEachChunk(m, grain: max(1, (1 << 16) / max(n, 1))) { r in
                pg_onednn_i8_finish(handle, Int32(r.count), sums + r.lowerBound * n, scales + r.lowerBound, bias,
                                    y + r.lowerBound * n)
            }
        }
    }

    /// OpenBLAS over the weight's [N, K] rows: threads split the output columns in blocks of 64, each
    /// block one single-threaded sgemm (C preset to the bias, beta 1).
    static func blasForward(_ x: UnsafePointer<Float>, rows m: Int, inFeatures k: Int, weight w: PackedWeight,
                            bias: UnsafePointer<Float>?, into y: UnsafeMutablePointer<Float>) {
        let n = w.outFeatures, block = 64, blocks = (n + block - 1) / block
        let rows = UnsafePointer(w.storage.assumingMemoryBound(to: Float.self))
        let grain = max(1, (1 << 18) / max(m * max(k, 1) * block, 1))
        Parallel.forEachChunk(blocks, grain: grain) { r in
            let lo = r.lowerBound * block, hi = min(n, r.upperBound * block)
            if let bias {
                for i in 0..<m { (y + i * n + lo).update(from: bias + lo, count: hi - lo) }
            }
            BLAS.sgemm(m: m, n: hi - lo, k: k, a: x, lda: k, b: rows + lo * k, ldb: k, transposeB: true,
                       beta: bias == nil ? 0 : 1, c: y + lo, ldc: n)
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

/// How a model keeps its matrices (`--weights`).
public enum WeightsMode: String, Sendable, CaseIterable, CustomStringConvertible {
    /// At the precision they were shipped in: BF16 stays BF16, F32 stays F32, F16 is widened to F32.
    case auto
    /// Always F32 (BF16 and F16 widened exactly).
    case f32
    /// Always BF16 (F32 rounded to nearest even at load: not exact).
    case bf16
    /// Int8 with an F32 scale per output channel, quantized at load (lossy); the matrices named in
    /// `int8KeptNames` keep the precision `auto` gives them. Never chosen by `auto`.
    case int8

    /// The panel precision for a matrix stored as `element`.
    public func precision(for element: SourceElement) -> WeightPrecision {
        if element == .int8 { return .int8 }   // a quantized checkpoint stays int8 (there is no way back)
        switch self {
        case .f32: return .f32
        case .bf16: return .bf16
        case .int8: return .int8
        case .auto: return element == .bf16 ? .bf16 : .f32
        }
    }

    /// The panel precision for the matrix `name` (a checkpoint tensor name) stored as `element`: under
    /// int8, a matrix whose name contains one of `int8KeptNames` keeps `auto`'s precision.
    public func precision(for element: SourceElement, name: String) -> WeightPrecision {
        if self == .int8, element != .int8, Self.int8KeptNames.contains(where: { name.contains($0) }) {
            return WeightsMode.auto.precision(for: element)
        }
        return precision(for: element)
    }

    /// Matrices `--weights int8` keeps at higher precision (substrings of tensor names), chosen by
    /// measurement (docs/weights.md): the patch embedding. `PALIGEMMA_INT8_KEEP=a,b` replaces the list
    /// (measuring other choices; empty: every matrix int8).
    public static let int8KeptNames: [String] = {
        if let env = ProcessInfo.processInfo.environment["PALIGEMMA_INT8_KEEP"] {
            return env.split(separator: ",").map { String($0) }.filter { !$0.isEmpty }
        }
        return ["patch_embedding"]
    }()
    public var description: String { rawValue }
}

/// What int8 weights are multiplied by (`Linear.int8Forward`).
public enum Int8Activations: String, Sendable {
    /// Each row quantized to int8 (per-row scale): W8A8, integer dot products.
    case int8
    /// F32 activations times the weights widened in registers: W8A32.
    case f32

    /// What `Linear.forward` uses for int8 weights at every row count: W8A8, the faster at every M
    /// measured (docs/performance.md); `PALIGEMMA_INT8_ACTIVATIONS=f32` selects W8A32 (measuring quality).
    public static let standard: Int8Activations =
        ProcessInfo.processInfo.environment["PALIGEMMA_INT8_ACTIVATIONS"].flatMap(Int8Activations.init(rawValue:)) ?? .int8
}

/// The code of an int8 product (all multiply the same panels; see Sources/CKernels/gemm_i8.c).
public enum Int8Variant: Int32, CaseIterable, Sendable, CustomStringConvertible {
    case portable = 0, avx2 = 1, avxVNNI = 2, avx512VNNI = 3
    public var isAvailable: Bool { pg_i8_variant_available(rawValue) != 0 }
    /// The quantization of activation rows for oneDNN's int8 matmul: a VNNI variant's (u8 = q + 128) where
    /// this CPU has one, else the portable one (s8).
    public static let onednnActivations: Int8Variant =
        [.avx512VNNI, .avxVNNI].first(where: \.isAvailable) ?? .portable
    /// 128 when the variant's quantized activations are u8 (q + 128), 0 when int8.
    public var offset: Int { Int(pg_i8_offset(rawValue)) }
    /// Panel width its fast code needs (the portable one takes any).
    public var panelWidth: Int { Int(pg_i8_variant_nr(rawValue)) }
    public var description: String {
        switch self {
        case .portable: return "portable"
        case .avx2: return "avx2"
        case .avxVNNI: return "avx-vnni"
        case .avx512VNNI: return "avx512-vnni"
        }
    }
}

extension PackedWeight {
    /// Row j of an int8 weight as stored: its scale, K int8 values and their sum (tests, tools).
    public func int8Row(_ j: Int) -> (scale: Float, values: [Int8], sum: Int32) {
        precondition(precision == .int8 && j >= 0 && j < outFeatures, "int8Row(\(j)) of a \(precision) weight [\(outFeatures), \(inFeatures)]")
        var scale: Float = 0, sum: Int32 = 0
        var values = [Int8](repeating: 0, count: inFeatures)
        if let onednn {
            let all = oneDNNInt8Rows(onednn)
            return (all.scales[j], Array(all.values[j * inFeatures..<(j + 1) * inFeatures]), all.sums[j])
        }
        values.withUnsafeMutableBufferPointer { q in
            pg_i8_column(Int32(kernel.panelWidth), Int32(inFeatures), storage, Int32(j), &scale, q.baseAddress, &sum)
        }
        return (scale, values, sum)
    }
}

extension PackedWeight {
    /// An int8 oneDNN weight's rows [N, K], scales and sums, reordered back (tests and tools).
    func oneDNNInt8Rows(_ handle: OpaquePointer) -> (values: [Int8], scales: [Float], sums: [Int32]) {
        var values = [Int8](repeating: 0, count: outFeatures * inFeatures)
        var scales = [Float](repeating: 0, count: outFeatures), sums = [Int32](repeating: 0, count: outFeatures)
        let ok = values.withUnsafeMutableBufferPointer { v in
            pg_onednn_i8_weight_unpack(handle, v.baseAddress, &scales, &sums)
        }
        precondition(ok != 0, "oneDNN could not reorder an int8 weight back")
        return (values, scales, sums)
    }
}

extension Reference {
    /// Symmetric int8 quantization of a vector in the kernels' float steps: scale = max |v| / 127,
    /// q = round-half-even(v / scale) clamped to ±127; a vector of zeros gives scale 0 and q = 0.
    /// (Per output channel for weights at packing, per row for activations in W8A8.)
    public static func quantizeInt8(_ v: ArraySlice<Float>) -> (q: [Int8], scale: Float) {
        let amax = v.reduce(Float(0)) { max($0, abs($1)) }
        let scale = amax / 127
        guard scale != 0 else { return ([Int8](repeating: 0, count: v.count), 0) }
        return (v.map { Int8(max(-127, min(127, ($0 / scale).rounded(.toNearestOrEven)))) }, scale)
    }

    /// y = x · Wᵀ (+ b) for an int8 weight, in double precision from what the weight stores: W8A8
    /// (`activations: .int8`) quantizes each row of x as `quantizeInt8` does and sums Σ q_x·q_w exactly
    /// (integers), then scales by scale_x · scale_w; W8A32 sums x · q_w in double, then scales by scale_w.
    public static func int8Linear(_ x: [Float], rows m: Int, inFeatures k: Int, weight: PackedWeight,
                                  bias: [Float]?, activations: Int8Activations) -> [Double] {
        let n = weight.outFeatures
        let columns = (0..<n).map { weight.int8Row($0) }
        var y = [Double](repeating: 0, count: m * n)
        for i in 0..<m {
            let row = x[(i * k)..<(i * k + k)]
            let (qa, sa) = quantizeInt8(row)
            for j in 0..<n {
                let (sw, qw, _) = columns[j]
                var v: Double
                switch activations {
                case .int8:
                    var acc: Int64 = 0
                    for t in 0..<k { acc += Int64(qa[t]) * Int64(qw[t]) }
                    v = Double(acc) * Double(sa) * Double(sw)
                case .f32:
                    var acc = 0.0
                    for t in 0..<k { acc += Double(row[row.startIndex + t]) * Double(qw[t]) }
                    v = acc * Double(sw)
                }
                if let bias { v += Double(bias[j]) }
                y[i * n + j] = v
            }
        }
        return y
    }
}
