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
    /// The micro-kernel family matrices are packed for (GEMMKernel.best unless a test picks one).
    var gemmKernel: GEMMKernel { get }
    /// Told the source bytes of each piece of a matrix packed (load progress); may be called from any thread.
    func loaded(bytes: Int)
}

extension WeightSource {
    public func matrix(_ name: String, shape: [Int]) throws -> MatrixRows {
        TensorRows(try tensor(name, shape: shape))
    }
    public var weightsMode: WeightsMode { .auto }
    public var gemmKernel: GEMMKernel { .best }
    public func loaded(bytes: Int) {}

    /// The matrices `names` (each of `shape`s) stacked into one packed weight (a fused q|k|v, or just
    /// one), at the precision `weightsMode` gives for the first's element type (mixed types: F32 unless
    /// the mode says BF16).
    func packed(_ parts: [(name: String, shape: [Int])]) throws -> PackedWeight {
        let rows = try parts.map { try matrix($0.name, shape: $0.shape) }
        let element = rows.allSatisfy({ $0.element == rows[0].element }) ? rows[0].element : .f32
        return try PackedWeight(stacking: rows, precision: weightsMode.precision(for: element), kernel: gemmKernel) { [self] in loaded(bytes: $0) }
    }

    func packed(_ name: String, shape: [Int]) throws -> PackedWeight { try packed([(name, shape)]) }
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
