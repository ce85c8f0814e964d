// The strict JSON reader behind `JSONValue.parse`: RFC 8259 and nothing more (no comments, trailing
// commas, NaN or leading zeros; one value with only whitespace around it), strict UTF-8, bounded
// nesting, and duplicate object keys as errors unless the caller allows them. Recursive descent over
// UTF-8 bytes; it never reads outside the buffer it is given.
import Foundation

/// How `JSONValue.parse` treats what RFC 8259 leaves to the reader.
public struct JSONParseOptions: Sendable {
    /// Deepest nesting of arrays and objects accepted (an error, not a stack overflow, past it).
    public var maxDepth: Int
    /// Whether an object may repeat a key (then every member is kept, in order, and `subscript` finds
    /// the first). Records, manifests and safetensors headers reject them.
    public var allowsDuplicateKeys: Bool

    public init(maxDepth: Int = 512, allowsDuplicateKeys: Bool = false) {
        self.maxDepth = maxDepth
        self.allowsDuplicateKeys = allowsDuplicateKeys
    }

    public static let strict = JSONParseOptions()
}

extension JSONValue {
    /// Parses one JSON text (RFC 8259, strict; see `JSONParseOptions`).
    public static func parse(_ text: String, options: JSONParseOptions = .strict) throws -> JSONValue {
        var text = text
        return try text.withUTF8 { try parse(utf8: UnsafeRawBufferPointer($0), options: options) }
    }

    /// Parses one JSON text; see `parse(_: String)`.
    public static func parse(_ text: Substring, options: JSONParseOptions = .strict) throws -> JSONValue {
        var text = text
        return try text.withUTF8 { try parse(utf8: UnsafeRawBufferPointer($0), options: options) }
    }

    /// Parses UTF-8 bytes; invalid UTF-8 inside strings is an error.
    public static func parse(utf8 bytes: UnsafeRawBufferPointer, options: JSONParseOptions = .strict) throws -> JSONValue {
        var parser = JSONParser(bytes: bytes.bindMemory(to: UInt8.self), options: options)
        return try parser.parseDocument()
    }

    /// Parses UTF-8 bytes; invalid UTF-8 inside strings is an error.
    public static func parse(utf8 bytes: [UInt8], options: JSONParseOptions = .strict) throws -> JSONValue {
        try bytes.withUnsafeBytes { try parse(utf8: $0, options: options) }
    }

    /// Parses UTF-8 bytes; invalid UTF-8 inside strings is an error.
    public static func parse(utf8 data: Data, options: JSONParseOptions = .strict) throws -> JSONValue {
        try data.withUnsafeBytes { try parse(utf8: $0, options: options) }
    }
}

/// Where and why a JSON text is not valid.
public struct JSONParseError: Error, Equatable, CustomStringConvertible {
    /// A repeated object key, and the nesting depth of its object (0 = the top-level object).
    public struct DuplicateKey: Equatable, Sendable {
        public let key: String
        public let depth: Int
    }

    /// 1-based column (in Unicode scalars) of the offending character.
    public let column: Int
    /// 0-based byte offset of the offending character.
    public let offset: Int
    public let message: String
    /// Set when the error is a repeated key.
    public let duplicateKey: DuplicateKey?

    public var description: String { "column \(column): \(message)" }
}

/// Recursive descent over UTF-8 bytes.
struct JSONParser {
    let bytes: UnsafeBufferPointer<UInt8>
    var pos = 0
    let options: JSONParseOptions
    var depth = 0

    init(bytes: UnsafeBufferPointer<UInt8>, options: JSONParseOptions) {
        self.bytes = bytes
        self.options = options
    }

    mutating func parseDocument() throws -> JSONValue {
        skipWhitespace()
        let value = try parseValue()
        skipWhitespace()
        if pos < bytes.count { throw error("unexpected \(describe(pos)) after the JSON value") }
        return value
    }

    func error(_ message: String, at offset: Int? = nil, duplicateKey: JSONParseError.DuplicateKey? = nil) -> JSONParseError {
        let end = min(offset ?? pos, bytes.count)
        // Count scalars: every byte that is not a UTF-8 continuation byte starts one.
        var column = 1
        for k in 0..<end where bytes[k] & 0xC0 != 0x80 { column += 1 }
        return JSONParseError(column: column, offset: end, message: message, duplicateKey: duplicateKey)
    }

    func describe(_ offset: Int) -> String {
        guard offset < bytes.count else { return "end of input" }
        let b = bytes[offset]
        if b >= 0x21 && b < 0x7F { return "'\(Character(UnicodeScalar(b)))'" }
        return String(format: "byte 0x%02X", b)
    }

    mutating func skipWhitespace() {
        while pos < bytes.count {
            switch bytes[pos] {
            case 0x20, 0x09, 0x0A, 0x0D: pos += 1
            default: return
            }
        }
    }

    mutating func parseValue() throws -> JSONValue {
        guard pos < bytes.count else { throw error("expected a value, found end of input") }
        switch bytes[pos] {
        case UInt8(ascii: "{"): return try parseObject()
        case UInt8(ascii: "["): return try parseArray()
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try parseNumber())
        default: throw error("expected a value, found \(describe(pos))")
        }
    }

    mutating func literal(_ word: StaticString) throws {
        let n = word.utf8CodeUnitCount
        let w = UnsafeBufferPointer(start: word.utf8Start, count: n)
        guard pos + n <= bytes.count, (0..<n).allSatisfy({ bytes[pos + $0] == w[$0] }) else {
            throw error("invalid literal (expected \(word))")
        }
        pos += n
    }

    mutating func enter() throws {
        depth += 1
        if depth > options.maxDepth { throw error("nesting deeper than \(options.maxDepth) levels") }
    }

    mutating func parseObject() throws -> JSONValue {
        try enter()
        defer { depth -= 1 }
        pos += 1
        var members: [(String, JSONValue)] = []
        var keys = Set<String>()
        skipWhitespace()
        if pos < bytes.count, bytes[pos] == UInt8(ascii: "}") { pos += 1; return .object(members) }
        while true {
            skipWhitespace()
            guard pos < bytes.count, bytes[pos] == UInt8(ascii: "\"") else {
                throw error("expected a string key, found \(describe(pos))")
            }
            let keyStart = pos
            let key = try parseString()
            guard keys.insert(key).inserted || options.allowsDuplicateKeys else {
                throw error("duplicate key \"\(key)\"", at: keyStart, duplicateKey: .init(key: key, depth: depth - 1))
            }
            skipWhitespace()
            guard pos < bytes.count, bytes[pos] == UInt8(ascii: ":") else {
                throw error("expected ':' after a key, found \(describe(pos))")
            }
            pos += 1
            skipWhitespace()
            members.append((key, try parseValue()))
            skipWhitespace()
            guard pos < bytes.count else { throw error("unterminated object: expected ',' or '}'") }
            if bytes[pos] == UInt8(ascii: ",") { pos += 1; continue }
            if bytes[pos] == UInt8(ascii: "}") { pos += 1; return .object(members) }
            throw error("expected ',' or '}' in an object, found \(describe(pos))")
        }
    }

    mutating func parseArray() throws -> JSONValue {
        try enter()
        defer { depth -= 1 }
        pos += 1
        var items: [JSONValue] = []
        skipWhitespace()
        if pos < bytes.count, bytes[pos] == UInt8(ascii: "]") { pos += 1; return .array(items) }
        while true {
            skipWhitespace()
            items.append(try parseValue())
            skipWhitespace()
            guard pos < bytes.count else { throw error("unterminated array: expected ',' or ']'") }
            if bytes[pos] == UInt8(ascii: ",") { pos += 1; continue }
            if bytes[pos] == UInt8(ascii: "]") { pos += 1; return .array(items) }
            throw error("expected ',' or ']' in an array, found \(describe(pos))")
        }
    }

    mutating func parseNumber() throws -> String {
        let start = pos
        func digit(_ k: Int) -> Bool { k < bytes.count && bytes[k] >= 0x30 && bytes[k] <= 0x39 }
        if bytes[pos] == UInt8(ascii: "-") { pos += 1 }
        guard digit(pos) else { throw error("a number needs a digit after '-'") }
        if bytes[pos] == UInt8(ascii: "0") {
            pos += 1
            if digit(pos) { throw error("numbers must not have leading zeros") }
        } else {
            while digit(pos) { pos += 1 }
        }
        if pos < bytes.count, bytes[pos] == UInt8(ascii: ".") {
            pos += 1
            guard digit(pos) else { throw error("a number needs digits after '.'") }
            while digit(pos) { pos += 1 }
        }
        if pos < bytes.count, bytes[pos] == UInt8(ascii: "e") || bytes[pos] == UInt8(ascii: "E") {
            pos += 1
            if pos < bytes.count, bytes[pos] == UInt8(ascii: "+") || bytes[pos] == UInt8(ascii: "-") { pos += 1 }
            guard digit(pos) else { throw error("a number needs digits in its exponent") }
            while digit(pos) { pos += 1 }
        }
        return String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<pos]), as: UTF8.self)
    }

    func hex4(_ k: Int) throws -> UInt32 {
        guard k + 4 <= bytes.count else { throw error("\\u needs four hex digits", at: k) }
        var v: UInt32 = 0
        for j in k..<(k + 4) {
            let b = bytes[j]
            let d: UInt32
            switch b {
            case 0x30...0x39: d = UInt32(b - 0x30)
            case 0x41...0x46: d = UInt32(b - 0x41 + 10)
            case 0x61...0x66: d = UInt32(b - 0x61 + 10)
            default: throw error("\\u needs four hex digits", at: j)
            }
            v = v << 4 | d
        }
        return v
    }

    mutating func parseString() throws -> String {
        let open = pos
        pos += 1
        var out: [UInt8] = []
        var runStart = pos
        while true {
            guard pos < bytes.count else { throw error("unterminated string", at: open) }
            let b = bytes[pos]
            if b == UInt8(ascii: "\"") {
                out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[runStart..<pos]))
                pos += 1
                return String(decoding: out, as: UTF8.self)
            }
            if b < 0x20 { throw error("control character (byte 0x\(String(format: "%02X", b))) in a string must be escaped") }
            if b < 0x80 && b != UInt8(ascii: "\\") { pos += 1; continue }
            if b >= 0x80 {
                guard let n = UTF8Check.sequenceLength(bytes, at: pos) else { throw error("invalid UTF-8 in a string") }
                pos += n
                continue
            }
            // An escape.
            out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[runStart..<pos]))
            let escapeStart = pos
            pos += 1
            guard pos < bytes.count else { throw error("unterminated string", at: open) }
            let scalar: UInt32
            switch bytes[pos] {
            case UInt8(ascii: "\""): scalar = 0x22
            case UInt8(ascii: "\\"): scalar = 0x5C
            case UInt8(ascii: "/"): scalar = 0x2F
            case UInt8(ascii: "b"): scalar = 0x08
            case UInt8(ascii: "f"): scalar = 0x0C
            case UInt8(ascii: "n"): scalar = 0x0A
            case UInt8(ascii: "r"): scalar = 0x0D
            case UInt8(ascii: "t"): scalar = 0x09
            case UInt8(ascii: "u"):
                let high = try hex4(pos + 1)
                pos += 4
                if (0xD800..<0xDC00).contains(high) {
                    guard pos + 2 < bytes.count, bytes[pos + 1] == UInt8(ascii: "\\"), bytes[pos + 2] == UInt8(ascii: "u")
                    else { throw error("unpaired surrogate \\u\(String(high, radix: 16))", at: escapeStart) }
                    let low = try hex4(pos + 3)
                    guard (0xDC00..<0xE000).contains(low) else {
                        throw error("unpaired surrogate \\u\(String(high, radix: 16))", at: escapeStart)
                    }
                    pos += 6
                    scalar = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
                } else if (0xDC00..<0xE000).contains(high) {
                    throw error("unpaired surrogate \\u\(String(high, radix: 16))", at: escapeStart)
                } else {
                    scalar = high
                }
            default:
                throw error("invalid escape \\\(describe(pos))", at: escapeStart)
            }
            pos += 1
            UTF8.encode(UnicodeScalar(scalar)!) { out.append($0) }
            runStart = pos
        }
    }
}

/// Strict UTF-8 (no overlongs, no surrogates, nothing past U+10FFFF).
public enum UTF8Check {
    /// The length of the valid sequence starting at `k`, or nil.
    public static func sequenceLength(_ b: UnsafeBufferPointer<UInt8>, at k: Int) -> Int? {
        let lead = b[k]
        func cont(_ j: Int, _ range: ClosedRange<UInt8> = 0x80...0xBF) -> Bool { j < b.count && range.contains(b[j]) }
        switch lead {
        case 0x00...0x7F: return 1
        case 0xC2...0xDF: return cont(k + 1) ? 2 : nil
        case 0xE0: return cont(k + 1, 0xA0...0xBF) && cont(k + 2) ? 3 : nil
        case 0xE1...0xEC, 0xEE...0xEF: return cont(k + 1) && cont(k + 2) ? 3 : nil
        case 0xED: return cont(k + 1, 0x80...0x9F) && cont(k + 2) ? 3 : nil
        case 0xF0: return cont(k + 1, 0x90...0xBF) && cont(k + 2) && cont(k + 3) ? 4 : nil
        case 0xF1...0xF3: return cont(k + 1) && cont(k + 2) && cont(k + 3) ? 4 : nil
        case 0xF4: return cont(k + 1, 0x80...0x8F) && cont(k + 2) && cont(k + 3) ? 4 : nil
        default: return nil
        }
    }

    /// The byte offset of the first invalid sequence, or nil when all of `b` is valid UTF-8.
    public static func firstInvalid(_ b: UnsafeBufferPointer<UInt8>) -> Int? {
        var k = 0
        while k < b.count {
            if b[k] < 0x80 { k += 1; continue }
            guard let n = sequenceLength(b, at: k) else { return k }
            k += n
        }
        return nil
    }
}
