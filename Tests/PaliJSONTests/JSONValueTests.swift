// JSONValue: strict parsing, key order and number text kept, encoding as JSONSerialization escapes.
import Foundation
import Testing
@testable import PaliJSON

@Test func parsesNestedValuesKeepingOrderAndNumberText() throws {
    let text = #"{"z":1,"a":[true,false,null,-0.50,1E+3,12345678901234567890],"m":{"k":"v","b":{}},"e":[]}"#
    let value = try JSONValue.parse(text)
    guard case .object(let members) = value else { Issue.record("not an object"); return }
    #expect(members.map(\.0) == ["z", "a", "m", "e"])
    #expect(value["a"] == .array([.bool(true), .bool(false), .null, .number("-0.50"), .number("1E+3"),
                                  .number("12345678901234567890")]))
    #expect(value["m"]?["k"]?.stringValue == "v")
    #expect(value["missing"] == nil)
    // Compact, byte for byte the input (no reformatting of numbers, no reordering).
    #expect(value.encoded == text)
}

@Test func whitespaceAroundTokensIsAllowed() throws {
    let value = try JSONValue.parse(" \t{ \"a\" : [ 1 , 2 ] }\r\n")
    #expect(value.encoded == #"{"a":[1,2]}"#)
}

@Test func escapesDecodeToTheRightScalars() throws {
    let value = try JSONValue.parse(#""q\"b\\s\/n\nt\tr\rb\bf\fu\u00e9\u0001e\ud83d\ude00""#)
    #expect(value.stringValue == "q\"b\\s/n\nt\tr\rb\u{08}f\u{0C}u\u{E9}\u{01}e😀")
}

@Test func rawUnicodeIsKept() throws {
    let value = try JSONValue.parse(#"{"text":"Größe 日本 😀 \u2028"}"#)
    #expect(value["text"]?.stringValue == "Größe 日本 😀 \u{2028}")
    #expect(value.encoded == "{\"text\":\"Größe 日本 😀 \u{2028}\"}")
}

@Test func encodingMatchesJSONSerialization() throws {
    var all = ""
    for scalar in 0..<0x80 { all.unicodeScalars.append(UnicodeScalar(UInt8(scalar))) }
    let samples = [all, "é/😀\u{2028}", "", "\"\\", "line\nbreak"]
    for sample in samples {
        let reference = try JSONSerialization.data(withJSONObject: [sample], options: [.withoutEscapingSlashes])
        #expect(JSONValue.array([.string(sample)]).encoded == String(decoding: reference, as: UTF8.self))
        // And back.
        #expect(try JSONValue.parse(JSONValue.string(sample).encoded).stringValue == sample)
    }
}

@Test func roundTripsThroughJSONSerialization() throws {
    let value = JSONValue.object([("id", .string("x\u{7}y")), ("n", .number("2.5")),
                                  ("list", .array([.null, .bool(true), .object([("k", .string("é"))])]))])
    let parsed = try JSONSerialization.jsonObject(with: Data(value.encoded.utf8)) as? [String: Any]
    #expect(parsed?["id"] as? String == "x\u{7}y")
    #expect((parsed?["n"] as? NSNumber)?.doubleValue == 2.5)
    #expect(try JSONValue.parse(value.encoded) == value)
}

@Test(arguments: [
    ("", 1), ("{", 2), ("[1,]", 4), ("{\"a\":1,}", 8), ("{'a':1}", 2), ("01", 2), ("1.", 3), ("-", 2),
    (".5", 1), ("1e", 3), ("NaN", 1), ("tru", 1), ("\"abc", 1), ("\"a\u{01}\"", 3), ("\"\\x\"", 2),
    ("\"\\ud800\"", 2), ("\"\\udc00x\"", 2), ("\"\\u12g4\"", 6), ("[1] 2", 5), ("{\"a\" 1}", 6),
    ("{\"a\":1,\"a\":2}", 8), ("// c\n1", 1), ("[1,,2]", 4), ("+1", 1),
])
func malformedTextIsRejectedWithColumn(_ text: String, _ column: Int) {
    do {
        let value = try JSONValue.parse(text)
        Issue.record("accepted \(text.debugDescription) as \(value)")
    } catch let error as JSONParseError {
        #expect(error.column == column, "\(text.debugDescription): \(error)")
    } catch {
        Issue.record("unexpected error \(error)")
    }
}

@Test func invalidUTF8IsRejected() throws {
    #expect(throws: JSONParseError.self) { try JSONValue.parse(utf8: [0x22, 0xC3, 0x28, 0x22]) }
    #expect(throws: JSONParseError.self) { try JSONValue.parse(utf8: [0x22, 0xED, 0xA0, 0x80, 0x22]) }  // surrogate
    #expect(throws: JSONParseError.self) { try JSONValue.parse(utf8: [0x22, 0xC0, 0x80, 0x22]) }  // overlong
    #expect(try JSONValue.parse(utf8: [0x22, 0xC3, 0xA9, 0x22]).stringValue == "é")
}

@Test func deepNestingIsAnErrorNotACrash() {
    let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
    #expect(throws: JSONParseError.self) { try JSONValue.parse(deep) }
    let fine = String(repeating: "[", count: 100) + String(repeating: "]", count: 100)
    #expect((try? JSONValue.parse(fine)) != nil)
}

@Test func substringParsing() throws {
    let line = "xx{\"a\":\"b\"}yy"
    let inner = line.dropFirst(2).dropLast(2)
    #expect(try JSONValue.parse(inner)["a"]?.stringValue == "b")
}

@Test func doubleFormatting() {
    #expect(JSONValue.double(0.12) == .number("0.12"))
    #expect(JSONValue.double(1.23456789) == .number("1.234568"))
    #expect(JSONValue.double(3) == .number("3"))
    #expect(JSONValue.double(.nan) == .null)
    #expect(JSONValue.double(.infinity) == .null)
    #expect(JSONValue.int(-42) == .number("-42"))
}

@Test func duplicateKeysAreErrorsUnlessAllowed() throws {
    let text = #"{"a":{"b":1,"b":2}}"#
    do {
        _ = try JSONValue.parse(text)
        Issue.record("accepted a duplicate key")
    } catch let error as JSONParseError {
        #expect(error.duplicateKey == .init(key: "b", depth: 1))
        #expect(error.offset == 12 && error.column == 13)
    }
    let kept = try JSONValue.parse(text, options: JSONParseOptions(allowsDuplicateKeys: true))
    #expect(kept["a"] == .object([("b", .number("1")), ("b", .number("2"))]))
    #expect(kept["a"]?["b"] == .number("1"))
}

@Test func depthLimitIsTheCallersChoice() {
    let nested = String(repeating: "[", count: 65) + String(repeating: "]", count: 65)
    #expect((try? JSONValue.parse(nested)) != nil)
    #expect(throws: JSONParseError.self) { try JSONValue.parse(nested, options: JSONParseOptions(maxDepth: 64)) }
}

@Test func integersAndKinds() throws {
    #expect(JSONValue.number("12").intValue == 12)
    #expect(JSONValue.number("1e2").intValue == nil)
    #expect(JSONValue.number("12345678901234567890").intValue == nil)
    #expect(JSONValue.number("1.5").kindName == "a number")
    #expect(try JSONValue.parse(#"{"b":[{"z":1,"y":2}],"a":null}"#).sortingKeys.encoded == #"{"a":null,"b":[{"y":2,"z":1}]}"#)
}
