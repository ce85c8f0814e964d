// Where model code gets its tensors from: a checkpoint on disk, or random weights made in memory
// (benchmarks). Names are canonical checkpoint names (SPEC §6, hub legacy scheme).
import PaliTensor

public protocol WeightSource: AnyObject {
    /// The tensor `name` as F32, which must have exactly `shape`; throws naming the tensor and both shapes.
    func tensor(_ name: String, shape: [Int]) throws -> Tensor
    /// Whether the source has a tensor of that name.
    func contains(_ name: String) -> Bool
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
