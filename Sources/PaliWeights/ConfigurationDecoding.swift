// Shared pieces of config.json decoding: where the file came from (for error messages), absent
// vs. null keys, and the checks every configuration struct makes.
import Foundation

extension CodingUserInfoKey {
    /// The path of the config file being decoded (a String), used in error messages.
    public static let configurationPath = CodingUserInfoKey(rawValue: "PaliWeights.configurationPath")!
}

/// GELU spellings that all mean the tanh approximation this engine implements
/// (transformers' `gelu_pytorch_tanh` / `gelu_python_tanh`; `gelu_tanh` as some exporters write it).
let supportedTanhGELUs: Set<String> = ["gelu_pytorch_tanh", "gelu_python_tanh", "gelu_tanh"]

struct ConfigurationContext {
    let path: String
    let prefix: String

    init(_ decoder: Decoder) {
        path = decoder.userInfo[.configurationPath] as? String ?? "config.json"
        prefix = decoder.codingPath.map(\.stringValue).joined(separator: ".")
    }

    func key(_ k: CodingKey) -> String { prefix.isEmpty ? k.stringValue : prefix + "." + k.stringValue }

    func invalid(_ k: CodingKey, _ detail: String) -> WeightsError {
        .invalidConfiguration(path: path, key: key(k), detail: detail)
    }

    func unsupported(_ k: CodingKey, _ value: String, _ detail: String) -> WeightsError {
        .unsupportedConfiguration(path: path, key: key(k), value: value, detail: detail)
    }

    func requirePositive(_ value: Int, _ k: CodingKey) throws {
        guard value > 0 else { throw invalid(k, "must be a positive integer, got \(value)") }
    }

    func requirePositive(_ value: Double, _ k: CodingKey) throws {
        guard value > 0, value.isFinite else { throw invalid(k, "must be a positive number, got \(value)") }
    }
}

extension KeyedDecodingContainer {
    /// The value for `key`; `absent` when the key is missing, nil when it is JSON null.
    func decodeNullable<T: Decodable>(_ type: T.Type, forKey key: Key, absent: T?) throws -> T? {
        guard contains(key) else { return absent }
        if try decodeNil(forKey: key) { return nil }
        return try decode(T.self, forKey: key)
    }

    /// The value for `key`, or `fallback` when it is missing or null.
    func decode<T: Decodable>(_ type: T.Type, forKey key: Key, default fallback: T) throws -> T {
        try decodeIfPresent(T.self, forKey: key) ?? fallback
    }

    /// An `eos_token_id`-style value: an integer, a list of integers, or null.
    func decodeTokenIDs(forKey key: Key, absent: [Int]) throws -> [Int] {
        guard contains(key) else { return absent }
        if try decodeNil(forKey: key) { return [] }
        if let one = try? decode(Int.self, forKey: key) { return [one] }
        return try decode([Int].self, forKey: key)
    }
}

extension KeyedEncodingContainer {
    mutating func encodeTokenIDs(_ ids: [Int], forKey key: Key) throws {
        switch ids.count {
        case 0: try encodeNil(forKey: key)
        case 1: try encode(ids[0], forKey: key)
        default: try encode(ids, forKey: key)
        }
    }
}
