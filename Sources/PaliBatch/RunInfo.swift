// run.json: what a run was started with, so that a resume with other settings can be refused.
//
//   {"version": "...", "started_at": "2025-01-31T12:00:00Z",
//    "model": {"directory": "/models/pg", "config_sha256": "…", "weights": [{"name": "…", "bytes": 123}]},
//    "settings": {"max_tokens": 32, ...}, "layout": {...}}
import Crypto
import Foundation
import PaliJSON

/// Which model a run used: the SHA-256 of its config.json and the names and sizes of its weight files
/// (hashing gigabytes of weights at every start would cost minutes; names and sizes catch a swap).
public struct ModelIdentity: Sendable, Equatable {
    public struct WeightFile: Sendable, Equatable {
        public var name: String
        public var bytes: Int64

        public init(name: String, bytes: Int64) {
            self.name = name
            self.bytes = bytes
        }
    }

    public var configSHA256: String
    /// *.safetensors files of the model folder, sorted by name.
    public var weights: [WeightFile]

    public init(configSHA256: String, weights: [WeightFile]) {
        self.configSHA256 = configSHA256
        self.weights = weights
    }

    /// The identity of the model in `directory` (its config.json and *.safetensors files).
    public static func of(modelDirectory directory: URL) throws -> ModelIdentity {
        let config = directory.appendingPathComponent("config.json")
        let data: Data
        do {
            data = try Data(contentsOf: config)
        } catch {
            throw OutputError.io(path: config.path, operation: "reading", reason: "\(error.localizedDescription)")
        }
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: directory.path)
        } catch {
            throw OutputError.io(path: directory.path, operation: "listing", reason: "\(error.localizedDescription)")
        }
        var weights: [WeightFile] = []
        for name in names.sorted(by: { $0.utf8.lexicographicallyPrecedes($1.utf8) }) where name.hasSuffix(".safetensors") {
            var info = stat()
            let path = directory.appendingPathComponent(name).path
            guard stat(path, &info) == 0 else {
                throw OutputError.io(path: path, operation: "stat of", reason: DurableFile.errnoText())
            }
            weights.append(WeightFile(name: name, bytes: Int64(info.st_size)))
        }
        return ModelIdentity(configSHA256: sha256Hex(data), weights: weights)
    }

    /// SHA-256 (swift-crypto) as 64 lowercase hex digits.
    static func sha256Hex<D: DataProtocol>(_ data: D) -> String {
        SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined()
    }
}

public struct RunInfo: Sendable {
    public static let fileName = "run.json"

    /// Settings whose change would make a resumed run's records differ from the earlier ones. The
    /// `paligemma run` command writes its settings under these names (`beams` and `token_logprobs` only
    /// when not the default, so the run.json of a run from before they existed still matches).
    public static let resultAffectingSettings = [
        "max_tokens", "sampling", "temperature", "top_k", "top_p", "seed", "default_prompt", "image_size", "beams",
        "token_logprobs",
    ]

    public var version: String
    /// ISO 8601, UTC.
    public var startedAt: String
    public var model: ModelIdentity
    /// Where the model was loaded from (informative: a moved model with the same identity is the same).
    public var modelDirectory: String?
    /// Command-line settings, in order.
    public var settings: [(String, JSONValue)]
    /// The rank layout (replicas, vision ranks, stages, layers per stage...), informative.
    public var layout: JSONValue

    public init(version: String, model: ModelIdentity, modelDirectory: String? = nil,
                settings: [(String, JSONValue)], layout: JSONValue, startedAt: Date = Date()) {
        self.version = version
        self.model = model
        self.modelDirectory = modelDirectory
        self.settings = settings
        self.layout = layout
        self.startedAt = RunInfo.timestamp(startedAt)
    }

    static func timestamp(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        return formatter.string(from: date)
    }

    public var json: JSONValue {
        var model: [(String, JSONValue)] = []
        if let modelDirectory { model.append(("directory", .string(modelDirectory))) }
        model.append(("config_sha256", .string(self.model.configSHA256)))
        model.append(("weights", .array(self.model.weights.map {
            .object([("name", .string($0.name)), ("bytes", .number(String($0.bytes)))])
        })))
        return .object([
            ("version", .string(version)),
            ("started_at", .string(startedAt)),
            ("model", .object(model)),
            ("settings", .object(settings)),
            ("layout", layout),
        ])
    }

    /// Writes run.json atomically; `url` is the file (a path ending in "run.json") or the output directory,
    /// which must exist (`OutputError.directoryGone` otherwise).
    public func write(to url: URL) throws {
        try DurableFile.replace(DurableFile.metadataFile(url, named: RunInfo.fileName), with: json.prettyEncoded() + "\n")
    }

    /// Reads run.json; `url` is the file or the output directory.
    public static func load(from url: URL) throws -> RunInfo {
        let file = RunInfo.file(url)
        let data: Data
        do {
            data = try Data(contentsOf: file)
        } catch {
            throw OutputError.io(path: file.path, operation: "reading", reason: "\(error.localizedDescription)")
        }
        func bad(_ reason: String) -> OutputError { .badMetadata(path: file.path, reason: reason) }
        let value: JSONValue
        do {
            value = try JSONValue.parse(utf8: [UInt8](data))
        } catch {
            throw bad("not valid JSON (\(error))")
        }
        guard let version = value["version"]?.stringValue, let startedAt = value["started_at"]?.stringValue
        else { throw bad("\"version\" or \"started_at\" is missing") }
        guard let model = value["model"], let sha = model["config_sha256"]?.stringValue,
              case .array(let weightValues)? = model["weights"] else {
            throw bad("\"model\" lacks \"config_sha256\" or \"weights\"")
        }
        var weights: [ModelIdentity.WeightFile] = []
        for weight in weightValues {
            guard let name = weight["name"]?.stringValue, let bytes = weight["bytes"]?.numberText.flatMap({ Int64($0) })
            else { throw bad("a model weight entry lacks \"name\" or \"bytes\"") }
            weights.append(.init(name: name, bytes: bytes))
        }
        guard case .object(let settings)? = value["settings"] else { throw bad("\"settings\" is not an object") }
        var info = RunInfo(version: version, model: ModelIdentity(configSHA256: sha, weights: weights),
                           modelDirectory: model["directory"]?.stringValue, settings: settings,
                           layout: value["layout"] ?? .null)
        info.startedAt = startedAt
        return info
    }

    static func file(_ url: URL) -> URL {
        DurableFile.isDirectory(url) ? url.appendingPathComponent(fileName) : url
    }

    /// What differs between this run and `other` (the run.json found in the output directory) in what
    /// decides the records: the model identity and the settings named in `keys`. Empty when a resume is
    /// safe. Each difference reads "max_tokens: 32 in the earlier run, 64 now".
    public func differences(from other: RunInfo, keys: [String] = RunInfo.resultAffectingSettings) -> [String] {
        var out: [String] = []
        if model.configSHA256 != other.model.configSHA256 {
            out.append("model config.json: sha256 \(other.model.configSHA256.prefix(12))… in the earlier run, "
                       + "\(model.configSHA256.prefix(12))… now")
        }
        if model.weights != other.model.weights {
            func list(_ w: [ModelIdentity.WeightFile]) -> String {
                w.isEmpty ? "none" : w.map { "\($0.name) (\($0.bytes) bytes)" }.joined(separator: ", ")
            }
            out.append("model weight files: \(list(other.model.weights)) in the earlier run, \(list(model.weights)) now")
        }
        func setting(_ info: RunInfo, _ key: String) -> JSONValue? { info.settings.first { $0.0 == key }?.1 }
        for key in keys {
            let before = setting(other, key)
            let now = setting(self, key)
            if before != now {
                out.append("\(key): \(before?.encoded ?? "absent") in the earlier run, \(now?.encoded ?? "absent") now")
            }
        }
        return out
    }
}
