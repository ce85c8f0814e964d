// The one error type of PaliWeights. Every case names the file (and the tensor or config key) that
// failed, and its description says what to do next.

public enum WeightsError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The file could not be opened, inspected or mapped (`reason` is the system's message).
    case cannotOpen(path: String, reason: String)
    /// The file is shorter than its own 8-byte header length says.
    case truncated(path: String, detail: String)
    /// The JSON header (or its overall structure) is invalid.
    case invalidHeader(path: String, detail: String)
    /// A header entry names a dtype this reader does not know.
    case unknownDType(path: String, tensor: String, dtype: String)
    /// A header entry is invalid: shape, data offsets, size, or overlap with another tensor.
    case invalidTensor(path: String, tensor: String, detail: String)
    /// The same tensor name appears twice in one header.
    case duplicateTensor(path: String, tensor: String)
    /// No tensor of that name (in the file, or in the checkpoint after name normalisation).
    case tensorNotFound(path: String, tensor: String)
    /// The tensor exists but has a dtype the requested accessor cannot return.
    case dtypeMismatch(path: String, tensor: String, dtype: String, expected: String)
    /// The tensor exists but has another shape than the model expects.
    case shapeMismatch(path: String, tensor: String, expected: [Int], actual: [Int])
    /// `model.safetensors.index.json` is malformed.
    case invalidIndex(path: String, detail: String)
    /// The index maps `tensor` to a shard file that does not exist.
    case missingShard(index: String, shard: String, tensor: String)
    /// The index maps `tensor` to `shard`, but the shard does not hold it.
    case tensorMissingFromShard(index: String, shard: String, tensor: String)
    /// A shard holds a tensor that the index does not map to that shard.
    case unlistedTensor(index: String, shard: String, tensor: String)
    /// Two on-disk names normalise to the same canonical name.
    case nameCollision(path: String, canonical: String, first: String, second: String)
    /// A directory holds no usable weights (or several files and no index).
    case noWeights(directory: String, detail: String)
    /// After loading, these checkpoint tensors were never used by the model.
    case unusedTensors(path: String, names: [String])
    /// `config.json` is not valid JSON or a key has the wrong type or an impossible value.
    case invalidConfiguration(path: String, key: String, detail: String)
    /// `config.json` asks for something this engine does not implement.
    case unsupportedConfiguration(path: String, key: String, value: String, detail: String)

    /// The file or directory the error is about.
    public var path: String {
        switch self {
        case .cannotOpen(let p, _), .truncated(let p, _), .invalidHeader(let p, _),
             .unknownDType(let p, _, _), .invalidTensor(let p, _, _), .duplicateTensor(let p, _),
             .tensorNotFound(let p, _), .dtypeMismatch(let p, _, _, _), .shapeMismatch(let p, _, _, _),
             .invalidIndex(let p, _), .missingShard(let p, _, _), .tensorMissingFromShard(let p, _, _),
             .unlistedTensor(let p, _, _), .nameCollision(let p, _, _, _), .noWeights(let p, _),
             .unusedTensors(let p, _), .invalidConfiguration(let p, _, _),
             .unsupportedConfiguration(let p, _, _, _):
            return p
        }
    }

    /// The tensor the error is about, when there is one.
    public var tensor: String? {
        switch self {
        case .unknownDType(_, let t, _), .invalidTensor(_, let t, _), .duplicateTensor(_, let t),
             .tensorNotFound(_, let t), .dtypeMismatch(_, let t, _, _), .shapeMismatch(_, let t, _, _),
             .missingShard(_, _, let t), .tensorMissingFromShard(_, _, let t), .unlistedTensor(_, _, let t):
            return t
        case .nameCollision(_, let canonical, _, _):
            return canonical
        default:
            return nil
        }
    }

    public var description: String {
        switch self {
        case .cannotOpen(let path, let reason):
            return "\(path): cannot open (\(reason)). Check that the path exists, is a regular file and is readable."
        case .truncated(let path, let detail):
            return "\(path): truncated safetensors file: \(detail). Download or copy the file again."
        case .invalidHeader(let path, let detail):
            return "\(path): invalid safetensors header: \(detail). The file is damaged or not a safetensors file; "
                + "re-download it or re-export it with the safetensors library."
        case .unknownDType(let path, let tensor, let dtype):
            let known = SafetensorsDType.allCases.map(\.rawValue).joined(separator: ", ")
            return "\(path): tensor '\(tensor)' has dtype \"\(dtype)\", which this reader does not know (known: \(known)). "
                + "Convert the checkpoint to float32, bfloat16 or float16."
        case .invalidTensor(let path, let tensor, let detail):
            return "\(path): tensor '\(tensor)': \(detail). The file is damaged; re-download or re-export it."
        case .duplicateTensor(let path, let tensor):
            return "\(path): tensor '\(tensor)' is listed twice in the header. The file is damaged; re-export it."
        case .tensorNotFound(let path, let tensor):
            return "\(path): no tensor named '\(tensor)'. Check that the checkpoint is a PaliGemma checkpoint "
                + "matching config.json (names are normalised to the hub's scheme, see docs/weights.md)."
        case .dtypeMismatch(let path, let tensor, let dtype, let expected):
            return "\(path): tensor '\(tensor)' is \(dtype) but \(expected) was asked for. "
                + "Use the accessor for its dtype, or re-export the tensor as \(expected)."
        case .shapeMismatch(let path, let tensor, let expected, let actual):
            return "\(path): tensor '\(tensor)' has shape \(actual) but the model expects \(expected). "
                + "Check that config.json belongs to these weights."
        case .invalidIndex(let path, let detail):
            return "\(path): invalid sharded-checkpoint index: \(detail). Re-download the index file or the checkpoint."
        case .missingShard(let index, let shard, let tensor):
            return "\(index): tensor '\(tensor)' is mapped to shard '\(shard)', which does not exist next to the index. "
                + "Download the missing shard."
        case .tensorMissingFromShard(let index, let shard, let tensor):
            return "\(index): tensor '\(tensor)' is mapped to shard '\(shard)', but that shard does not hold it. "
                + "The index and the shards come from different exports; download them again together."
        case .unlistedTensor(let index, let shard, let tensor):
            return "\(index): shard '\(shard)' holds tensor '\(tensor)', which the index does not map to that shard. "
                + "The index and the shards come from different exports; download them again together."
        case .nameCollision(let path, let canonical, let first, let second):
            return "\(path): tensors '\(first)' and '\(second)' both normalise to '\(canonical)'. "
                + "The checkpoint mixes naming schemes; keep one copy of each tensor."
        case .noWeights(let directory, let detail):
            return "\(directory): \(detail). Point at a directory with model.safetensors, or with "
                + "model.safetensors.index.json and its shards, or at one .safetensors file."
        case .unusedTensors(let path, let names):
            let shown = names.prefix(8).joined(separator: ", ") + (names.count > 8 ? ", … (\(names.count) in all)" : "")
            return "\(path): the model did not use these checkpoint tensors: \(shown). "
                + "config.json probably describes a different model than the weights; check both."
        case .invalidConfiguration(let path, let key, let detail):
            let subject = key.isEmpty ? "invalid configuration" : "invalid configuration key '\(key)'"
            return "\(path): \(subject): \(detail). Fix config.json (see docs/weights.md)."
        case .unsupportedConfiguration(let path, let key, let value, let detail):
            return "\(path): '\(key)' = \(value) is not supported: \(detail). "
                + "This engine implements PaliGemma 1 and 2 as released (see docs/weights.md)."
        }
    }
}
