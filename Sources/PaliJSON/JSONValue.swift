// The project's one JSON layer: a value that keeps what was written, object keys in order and numbers
// as their text, a strict parser (JSONParser.swift) and a compact encoder that escapes as
// JSONSerialization does.
//
// Every JSON the project reads or writes passes through this type: manifest lines and output records
// (extra manifest fields come out exactly as they went in, so 1.50 or 12345678901234567890 is never
// rounded through Double, and records list their keys in a fixed order), run.json and stats.json,
// safetensors headers and index files (duplicate keys are errors, integers exact), config.json
// diagnosis, and the task fields of records. Neither JSONSerialization nor Codable keeps both order and
// number text, which is why this exists.
import Foundation

/// A JSON document: objects keep their key order, numbers keep their text.
public indirect enum JSONValue: Equatable, Sendable {
    case null
    case bool(Bool)
    /// The number's text as written (already valid JSON number syntax).
    case number(String)
    case string(String)
    case array([JSONValue])
    /// Members in the order written. `parse` rejects duplicate keys.
    case object([(String, JSONValue)])

    public static func == (a: JSONValue, b: JSONValue) -> Bool {
        switch (a, b) {
        case (.null, .null): return true
        case (.bool(let x), .bool(let y)): return x == y
        case (.number(let x), .number(let y)): return x == y
        case (.string(let x), .string(let y)): return x == y
        case (.array(let x), .array(let y)): return x == y
        case (.object(let x), .object(let y)):
            return x.count == y.count && zip(x, y).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        default: return false
        }
    }

    /// The member `key` of an object (the first one); nil for other values or a missing key.
    public subscript(key: String) -> JSONValue? {
        guard case .object(let members) = self else { return nil }
        return members.first { $0.0 == key }?.1
    }

    /// The string of a `.string`; nil otherwise.
    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    /// "an object", "a string", ... for messages.
    public var kindName: String {
        switch self {
        case .null: return "null"
        case .bool: return "a boolean"
        case .number: return "a number"
        case .string: return "a string"
        case .array: return "an array"
        case .object: return "an object"
        }
    }

    /// The text of a `.number`; nil otherwise.
    public var numberText: String? {
        if case .number(let s) = self { return s }
        return nil
    }

    /// A `.number` read as an Int, when its text is an integer (no fraction or exponent) that fits.
    public var intValue: Int? {
        if case .number(let s) = self { return Int(s) }
        return nil
    }

    /// A `.number` read as a Double.
    public var doubleValue: Double? {
        if case .number(let s) = self { return Double(s) }
        return nil
    }

    /// An integer number.
    public static func int(_ value: Int) -> JSONValue { .number(String(value)) }

    /// A floating-point number with at most `decimals` digits after the point (non-finite values become
    /// null, which is all JSON can say about them).
    public static func double(_ value: Double, decimals: Int = 6) -> JSONValue {
        guard value.isFinite else { return .null }
        let scale = pow(10.0, Double(decimals))
        let rounded = (value * scale).rounded() / scale
        if rounded == rounded.rounded(), abs(rounded) < 1e15 { return .number(String(Int64(rounded))) }
        return .number("\(rounded)")
    }

    // MARK: Encoding

    /// Compact JSON: no spaces, keys in order, numbers as their text, strings escaped as
    /// JSONSerialization escapes them (`\"`, `\\`, `\b \f \n \r \t`, other controls as `\u00xx`; `/` and
    /// non-ASCII written as they are, in UTF-8).
    public var encoded: String {
        var out = ""
        encode(into: &out)
        return out
    }

    public func encode(into out: inout String) {
        switch self {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .number(let text): out += text
        case .string(let s): JSONValue.encodeString(s, into: &out)
        case .array(let items):
            out += "["
            for (i, item) in items.enumerated() {
                if i > 0 { out += "," }
                item.encode(into: &out)
            }
            out += "]"
        case .object(let members):
            out += "{"
            for (i, (key, value)) in members.enumerated() {
                if i > 0 { out += "," }
                JSONValue.encodeString(key, into: &out)
                out += ":"
                value.encode(into: &out)
            }
            out += "}"
        }
    }

    public static func encodeString(_ s: String, into out: inout String) {
        out += "\""
        var run = s.unicodeScalars.startIndex
        var i = run
        let scalars = s.unicodeScalars
        while i != scalars.endIndex {
            let c = scalars[i]
            let escape: String?
            switch c {
            case "\"": escape = "\\\""
            case "\\": escape = "\\\\"
            case "\u{08}": escape = "\\b"
            case "\u{0C}": escape = "\\f"
            case "\n": escape = "\\n"
            case "\r": escape = "\\r"
            case "\t": escape = "\\t"
            default:
                if c.value < 0x20 {
                    let hex = String(c.value, radix: 16)
                    escape = "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    escape = nil
                }
            }
            if let escape {
                out.unicodeScalars.append(contentsOf: scalars[run..<i])
                out += escape
                i = scalars.index(after: i)
                run = i
            } else {
                i = scalars.index(after: i)
            }
        }
        out.unicodeScalars.append(contentsOf: scalars[run..<i])
        out += "\""
    }
}

extension JSONValue: CustomStringConvertible {
    public var description: String { encoded }
}

extension JSONValue {
    /// JSON with two-space indentation (objects and arrays of scalars on one line are not folded).
    public func prettyEncoded(indent: String = "") -> String {
        let inner = indent + "  "
        switch self {
        case .array(let items) where !items.isEmpty:
            return "[\n" + items.map { inner + $0.prettyEncoded(indent: inner) }.joined(separator: ",\n")
                + "\n" + indent + "]"
        case .object(let members) where !members.isEmpty:
            return "{\n" + members.map { key, value in
                inner + JSONValue.string(key).encoded + ": " + value.prettyEncoded(indent: inner)
            }.joined(separator: ",\n") + "\n" + indent + "}"
        default:
            return encoded
        }
    }

    /// The value with the members of every object sorted by key (as JSONSerialization's `.sortedKeys`
    /// writes them, for ASCII keys).
    public var sortingKeys: JSONValue {
        switch self {
        case .array(let items): return .array(items.map(\.sortingKeys))
        case .object(let members):
            return .object(members.sorted { $0.0.utf8.lexicographicallyPrecedes($1.0.utf8) }.map { ($0.0, $0.1.sortingKeys) })
        default: return self
        }
    }
}

