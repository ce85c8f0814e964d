// A model's weights on disk: one safetensors file or a sharded set, with tensor names normalised
// (TensorNames) and a record of which tensors the model read, so loading can fail on any weight
// that was never used.
//
// Layouts, in order of preference (docs/weights.md):
//   1. <dir>/model.safetensors.index.json + the shards it names
//   2. <dir>/model.safetensors
//   3. <dir>/<exactly one>.safetensors
// Index rules: every shard named must exist and be a valid safetensors file; every mapped tensor
// must be in its shard; a tensor in a shard that the index does not map to that shard is an error
// (the index and shards then come from different exports).
import Foundation
import PaliJSON
import PaliTensor

public final class Checkpoint: @unchecked Sendable {
    public static let indexFileName = "model.safetensors.index.json"
    public static let singleFileName = "model.safetensors"

    /// The directory the checkpoint was read from.
    public let directory: URL
    /// The safetensors files, in shard order.
    public let files: [SafetensorsFile]
    /// Canonical tensor names, sorted.
    public let tensorNames: [String]

    private struct Location {
        let file: SafetensorsFile
        let diskName: String
    }
    private let locations: [String: Location]
    private let lock = NSLock()
    private var used = Set<String>()
    private var bytesLoaded = 0

    /// How matrices are kept when a model packs them (`--weights`); auto keeps the file's precision.
    public var weightsMode: WeightsMode = .auto
    /// How each matrix gets its GEMM kernel (`--gemm`).
    public var gemm: GEMMPolicy = .fixed(.best)
    /// Told the bytes of each matrix piece packed (load progress), from the loading thread.
    public var progress: (@Sendable (Int) -> Void)?

    /// Opens the checkpoint in `directory` (layouts above).
    public convenience init(directory: URL) throws {
        let fm = FileManager.default
        let index = directory.appendingPathComponent(Self.indexFileName)
        if fm.fileExists(atPath: index.path) {
            try self.init(indexURL: index)
            return
        }
        let single = directory.appendingPathComponent(Self.singleFileName)
        if fm.fileExists(atPath: single.path) {
            try self.init(directory: directory, files: [SafetensorsFile(contentsOf: single)])
            return
        }
        let contents: [String]
        do {
            contents = try fm.contentsOfDirectory(atPath: directory.path)
        } catch {
            throw WeightsError.noWeights(directory: directory.path, detail: "cannot list the directory (\(error.localizedDescription))")
        }
        let candidates = contents.filter { $0.hasSuffix(".safetensors") }.sorted()
        guard candidates.count == 1 else {
            throw WeightsError.noWeights(directory: directory.path, detail: candidates.isEmpty
                ? "no \(Self.indexFileName), no \(Self.singleFileName) and no other .safetensors file"
                : "\(candidates.count) .safetensors files (\(candidates.joined(separator: ", "))) but no \(Self.indexFileName)")
        }
        try self.init(directory: directory, files: [SafetensorsFile(contentsOf: directory.appendingPathComponent(candidates[0]))])
    }

    /// Opens one `.safetensors` file, or a `model.safetensors.index.json` and its shards.
    public convenience init(file: URL) throws {
        if file.lastPathComponent.hasSuffix(".index.json") {
            try self.init(indexURL: file)
        } else {
            try self.init(directory: file.deletingLastPathComponent(), files: [SafetensorsFile(contentsOf: file)])
        }
    }

    private convenience init(indexURL: URL) throws {
        let directory = indexURL.deletingLastPathComponent()
        let weightMap = try Self.readWeightMap(indexURL)
        let indexPath = indexURL.path

        // Open each shard once, in name order.
        var shards: [String: SafetensorsFile] = [:]
        for (tensor, shard) in weightMap where shards[shard] == nil {
            let url = directory.appendingPathComponent(shard)
            guard FileManager.default.fileExists(atPath: url.path) else {
                throw WeightsError.missingShard(index: indexPath, shard: shard, tensor: tensor)
            }
            shards[shard] = try SafetensorsFile(contentsOf: url)
        }
        for (tensor, shard) in weightMap where shards[shard]?.contains(tensor) != true {
            throw WeightsError.tensorMissingFromShard(index: indexPath, shard: shard, tensor: tensor)
        }
        let mapped = Dictionary(uniqueKeysWithValues: weightMap.map { ($0.tensor, $0.shard) })
        for (shardName, file) in shards.sorted(by: { $0.key < $1.key }) {
            for tensor in file.tensorNames where mapped[tensor] != shardName {
                throw WeightsError.unlistedTensor(index: indexPath, shard: shardName, tensor: tensor)
            }
        }
        try self.init(directory: directory, files: shards.sorted { $0.key < $1.key }.map(\.value))
    }

    /// A checkpoint made of already-opened files (names normalised; no two may collide).
    public init(directory: URL, files: [SafetensorsFile]) throws {
        self.directory = directory
        self.files = files
        var locations: [String: Location] = [:]
        for file in files {
            for diskName in file.tensorNames {
                let canonical = TensorNames.canonical(diskName)
                if let other = locations[canonical] {
                    let first = other.file === file ? other.diskName : "\(other.diskName) (\(other.file.url.lastPathComponent))"
                    let second = other.file === file ? diskName : "\(diskName) (\(file.url.lastPathComponent))"
                    throw WeightsError.nameCollision(path: directory.path, canonical: canonical, first: first, second: second)
                }
                locations[canonical] = Location(file: file, diskName: diskName)
            }
        }
        self.locations = locations
        self.tensorNames = locations.keys.sorted()
    }

    /// Reads `weight_map` (tensor name → shard file name) from an index file.
    private static func readWeightMap(_ url: URL) throws -> [(tensor: String, shard: String)] {
        let path = url.path
        let data: Data
        do {
            data = try Data(contentsOf: url)
        } catch {
            throw WeightsError.cannotOpen(path: path, reason: error.localizedDescription)
        }
        let root: JSONValue
        do {
            root = try JSONValue.parse(utf8: data, options: .weights)
        } catch let e as JSONParseError {
            throw WeightsError.invalidIndex(path: path, detail: "\(e.message) at byte \(e.offset)")
        }
        guard case .object = root else {
            throw WeightsError.invalidIndex(path: path, detail: "the file is \(root.kindName), not an object")
        }
        guard let mapValue = root["weight_map"] else {
            throw WeightsError.invalidIndex(path: path, detail: "no \"weight_map\"")
        }
        guard case .object(let entries) = mapValue else {
            throw WeightsError.invalidIndex(path: path, detail: "\"weight_map\" is \(mapValue.kindName), not an object")
        }
        return try entries.map { tensor, value in
            guard case .string(let shard) = value else {
                throw WeightsError.invalidIndex(path: path, detail: "weight_map[\"\(tensor)\"] is \(value.kindName), not a file name")
            }
            // Shards live next to the index: plain file names only.
            guard !shard.isEmpty, !shard.contains("/"), !shard.contains("\\"), shard != ".", shard != ".." else {
                throw WeightsError.invalidIndex(path: path, detail: "weight_map[\"\(tensor)\"] = \"\(shard)\" is not a "
                                                + "file name in the index's directory")
            }
            return (tensor, shard)
        }
    }

    // MARK: - Lookup

    public func hasTensor(_ name: String) -> Bool { locations[TensorNames.canonical(name)] != nil }

    /// Same as `hasTensor` (the spelling model code's weight sources use).
    public func contains(_ name: String) -> Bool { hasTensor(name) }

    public func shape(of name: String) -> [Int]? { info(name)?.shape }

    /// The header entry (dtype, shape, offsets) of a tensor, by canonical or on-disk name.
    public func info(_ name: String) -> TensorInfo? {
        locations[TensorNames.canonical(name)].flatMap { $0.file.info($0.diskName) }
    }

    /// The file holding a tensor and its name there.
    public func location(of name: String) -> (file: URL, diskName: String)? {
        locations[TensorNames.canonical(name)].map { ($0.file.url, $0.diskName) }
    }

    // MARK: - Loading

    /// The tensor as F32, which must have exactly `expected` shape. Marks it used.
    public func tensor(_ name: String, shape expected: [Int]) throws -> Tensor {
        try read(name, shape: expected) { try $0.tensor($1) }
    }

    /// The tensor as F32, whatever its shape. Marks it used.
    public func tensor(_ name: String) throws -> Tensor {
        try read(name, shape: nil) { try $0.tensor($1) }
    }

    /// The rows of matrix `name` (which must have exactly `expected` shape) for packing in pieces whose
    /// file pages are released as packing goes (`SafetensorsFile.matrixRows`). Marks it used.
    /// An I8 matrix (a `paligemma quantize`d checkpoint) comes with its per-row scales, the F32 tensor
    /// `<name>_scale` [rows] (docs/weights.md), which is marked used with it.
    public func matrix(_ name: String, shape expected: [Int]) throws -> MatrixRows {
        let rows = try read(name, shape: expected) { try $0.matrixRows($1) }
        guard rows.element == .int8 else { return rows }
        let scaleName = TensorNames.canonical(name) + Self.int8ScaleSuffix
        guard hasTensor(scaleName) else {
            throw WeightsError.tensorNotFound(path: directory.path, tensor: scaleName)
        }
        let scales = try tensor(scaleName, shape: [rows.rowCount])
        return QuantizedRows(values: rows, scales: scales.scalars)
    }

    /// The suffix of an int8 matrix's scales tensor in a quantized checkpoint (`<name>_scale`).
    public static let int8ScaleSuffix = "_scale"

    /// Finds `name`, checks its shape (when `expected` is given), reads it with `body` (file, on-disk
    /// name) and marks it used.
    private func read<T>(_ name: String, shape expected: [Int]?, _ body: (SafetensorsFile, String) throws -> T) throws -> T {
        let canonical = TensorNames.canonical(name)
        guard let location = locations[canonical], let info = location.file.info(location.diskName) else {
            throw WeightsError.tensorNotFound(path: directory.path, tensor: canonical)
        }
        if let expected, info.shape != expected {
            throw WeightsError.shapeMismatch(path: location.file.path, tensor: canonical, expected: expected, actual: info.shape)
        }
        let value = try body(location.file, location.diskName)
        markUsed(canonical)
        return value
    }

    /// Called by model code with the source bytes of each matrix piece packed.
    public func loaded(bytes: Int) {
        lock.lock()
        bytesLoaded += bytes
        lock.unlock()
        progress?(bytes)
    }

    /// Source bytes of matrices packed so far.
    public var matrixBytesLoaded: Int { lock.lock(); defer { lock.unlock() }; return bytesLoaded }

    /// Records `name` as used without loading it (e.g. a tied copy checked or deliberately skipped).
    public func markUsed(_ name: String) {
        lock.lock(); defer { lock.unlock() }
        used.insert(TensorNames.canonical(name))
    }

    /// Canonical names of tensors never loaded or marked used, sorted. Optional tied copies
    /// (`language_model.lm_head.weight`) are left out unless `includingTiedCopies`.
    public func unusedTensorNames(includingTiedCopies: Bool = false) -> [String] {
        lock.lock(); defer { lock.unlock() }
        return tensorNames.filter {
            !used.contains($0) && (includingTiedCopies || !TensorNames.optionalTiedCopies.contains($0))
        }
    }

    /// Throws `WeightsError.unusedTensors` when any tensor (tied copies aside) was never used.
    public func verifyAllUsed() throws {
        let unused = unusedTensorNames()
        guard unused.isEmpty else { throw WeightsError.unusedTensors(path: directory.path, names: unused) }
    }
}
