// Where model code gets its tensors from: a checkpoint on disk, or random weights made in memory
// (benchmarks). Names are canonical checkpoint names (SPEC §6, hub legacy scheme).
import PaliTensor

public protocol WeightSource: AnyObject {
    /// The tensor `name` as F32, which must have exactly `shape`; throws naming the tensor and both shapes.
    func tensor(_ name: String, shape: [Int]) throws -> Tensor
    /// Whether the source has a tensor of that name.
    func contains(_ name: String) -> Bool
    /// The rows of matrix `name` (shape exactly `shape`; rows = shape[0]) to pack, read in pieces.
    func matrix(_ name: String, shape: [Int]) throws -> MatrixRows
    /// How packed matrices are kept (`--weights`).
    var weightsMode: WeightsMode { get }
    /// How each matrix gets its GEMM kernel (`--gemm`; our fastest by CPUID unless told otherwise).
    var gemm: GEMMPolicy { get }
    /// Told the source bytes of each piece of a matrix packed (load progress); may be called from any thread.
    func loaded(bytes: Int)
}

extension WeightSource {
    public func matrix(_ name: String, shape: [Int]) throws -> MatrixRows {
        TensorRows(try tensor(name, shape: shape))
    }
    public var weightsMode: WeightsMode { .auto }
    public var gemm: GEMMPolicy { .fixed(.best) }
    public func loaded(bytes: Int) {}

    /// The matrices `names` (each of `shape`s) stacked into one packed weight (a fused q|k|v, or just
    /// one), at the precision `weightsMode` gives for the first's name and element type (mixed types: F32
    /// unless the mode says BF16 or int8).
    /// `rowLookups`: its rows are also read one by one (a tied embedding; see `GEMMPolicy`).
    func packed(_ parts: [(name: String, shape: [Int])], rowLookups: Bool = false) throws -> PackedWeight {
        let rows = try parts.map { try matrix($0.name, shape: $0.shape) }
        let element = rows.allSatisfy({ $0.element == rows[0].element }) ? rows[0].element : .f32
        let precision = weightsMode.precision(for: element, name: parts[0].name)
        let n = rows.reduce(0) { $0 + $1.rowCount }
        let kernel = gemm.kernel(n: n, k: rows[0].columnCount, precision: precision, rowLookups: rowLookups)
        return try PackedWeight(stacking: rows, precision: precision, kernel: kernel) { [self] in loaded(bytes: $0) }
    }

    func packed(_ name: String, shape: [Int], rowLookups: Bool = false) throws -> PackedWeight {
        try packed([(name, shape)], rowLookups: rowLookups)
    }
}

/// Checkpoint tensor names, written once (SPEC §6).
enum TensorName {
    static let vision = "vision_tower.vision_model."
    static let projector = "multi_modal_projector.linear."
    static let decoder = "language_model.model."
    static let lmHead = "language_model.lm_head.weight"

    static func visionLayer(_ i: Int) -> String { "\(vision)encoder.layers.\(i)." }
    static func decoderLayer(_ i: Int) -> String { "\(decoder)layers.\(i)." }
}
