// Naming the key behind a config.json error that Foundation's JSONDecoder reports without one.
//
// swift-corelibs-foundation's JSONDecoder (Swift 6) reports a number that does not fit the type a key
// asks for (`"num_hidden_layers": 4.5` or `1e400` for an Int) as "The given data was not valid JSON." with
// an empty coding path, the same words as for a syntax error. Given such an error, this finds out which:
// a file that does not parse is a syntax error (said with its byte offset); otherwise the culprit is a
// number written with a fraction or exponent (or too large): each one is replaced by a plain integer in
// turn, and the one whose replacement makes the error go away is named.
import Foundation
import PaliJSON

enum ConfigurationDiagnosis {
    /// What is wrong, for `invalidConfiguration`: the key path ("" when unknown) and the detail.
    static func explain(_ data: Data, failsWithoutPath: (Data) -> Bool) -> (key: String, detail: String) {
        let root: JSONValue
        do {
            root = try JSONValue.parse(utf8: data, options: .weights)
        } catch let error as JSONParseError {
            return ("", "the file is not valid JSON (\(error.message) at byte \(error.offset))")
        } catch {
            return ("", "the file is not valid JSON (\(error))")
        }
        var numbers: [(path: String, literal: String)] = []
        collect(root, path: "", into: &numbers)
        let candidates = numbers.filter { Int($0.literal) == nil }
        let all = Set(candidates.indices)
        if !candidates.isEmpty, !failsWithoutPath(render(root, replacing: candidates, only: all)) {
            for i in candidates.indices where failsWithoutPath(render(root, replacing: candidates, only: all.subtracting([i]))) {
                let (path, literal) = candidates[i]
                guard let value = Double(literal), value.isFinite, abs(value) < 9.2e18 else {
                    return (path, "\(literal) is out of range")
                }
                return (path, value == value.rounded() ? "\(literal) is not written as an integer (write \(Int64(value)))"
                                                       : "\(literal) is not an integer")
            }
        }
        return ("", "a value does not have the type its key needs (an integer written with a fraction or exponent?)")
    }

    private static func collect(_ value: JSONValue, path: String, into numbers: inout [(path: String, literal: String)]) {
        switch value {
        case .object(let members):
            for (key, member) in members { collect(member, path: path.isEmpty ? key : path + "." + key, into: &numbers) }
        case .array(let elements):
            for (i, element) in elements.enumerated() { collect(element, path: path + "[\(i)]", into: &numbers) }
        case .number(let literal):
            numbers.append((path, literal))
        case .string, .bool, .null:
            break
        }
    }

    /// The document as JSON text, with the numbers of `candidates` at the indices `only` replaced by a
    /// plain integer near their value (1 when that would be 0 or out of range).
    private static func render(_ root: JSONValue, replacing candidates: [(path: String, literal: String)],
                               only: Set<Int>) -> Data {
        var replacements: [String: String] = [:]
        for i in only {
            let value = Double(candidates[i].literal)?.rounded() ?? 1
            replacements[candidates[i].path] = value.isFinite && abs(value) >= 1 && abs(value) < 1e15
                ? String(Int64(value)) : "1"
        }
        return Data(replacingNumbers(root, path: "", replacements).encoded.utf8)
    }

    /// `value` with the numbers at the paths of `replacements` written as the replacement text.
    private static func replacingNumbers(_ value: JSONValue, path: String, _ replacements: [String: String]) -> JSONValue {
        switch value {
        case .object(let members):
            return .object(members.map { key, member in
                (key, replacingNumbers(member, path: path.isEmpty ? key : path + "." + key, replacements))
            })
        case .array(let elements):
            return .array(elements.enumerated().map { i, element in replacingNumbers(element, path: path + "[\(i)]", replacements) })
        case .number(let literal): return .number(replacements[path] ?? literal)
        case .string, .bool, .null: return value
        }
    }
}
