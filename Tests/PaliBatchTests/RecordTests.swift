// Output records: exact keys and order, values that parse back, extras that never overwrite.
import Foundation
import PaliJSON
import Testing
@testable import PaliBatch

private func keys(_ line: String) throws -> [String] {
    guard case .object(let members) = try JSONValue.parse(line) else { return [] }
    return members.map(\.0)
}

@Test func okRecordHasTheSchemaKeysInOrder() throws {
    let record = OutputRecord(
        id: "a1", image: "imgs/a1.jpg", prompt: "detect cat", status: .ok, text: "<loc0001> cat", tokens: [5, 6, 1],
        taskFields: [("objects", .array([.object([("label", .string("cat")), ("box", .array([.int(1), .int(2)]))])]))],
        timings: [("vision_s", 0.1234567), ("decode_s", 2)],
        extra: [("source", .string("web")), ("score", .number("0.50"))])
    let line = record.jsonLine
    #expect(!line.contains("\n"))
    #expect(try keys(line) == ["id", "image", "prompt", "status", "text", "tokens", "objects", "error", "timings",
                               "source", "score"])
    #expect(line == #"{"id":"a1","image":"imgs/a1.jpg","prompt":"detect cat","status":"ok","text":"<loc0001> cat","#
            + #""tokens":[5,6,1],"objects":[{"label":"cat","box":[1,2]}],"error":null,"#
            + #""timings":{"vision_s":0.123457,"decode_s":2},"source":"web","score":0.50}"#)

    let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
    #expect(object["id"] as? String == "a1")
    #expect(object["status"] as? String == "ok")
    #expect(object["tokens"] as? [Int] == [5, 6, 1])
    #expect(object["error"] is NSNull)
    #expect((object["timings"] as? [String: Double])?["vision_s"] == 0.123457)
}

@Test func errorRecordHasNullTextAndAnErrorObject() throws {
    let entry = ManifestEntry(line: 3, id: "b", image: "../b.jpg", imagePath: nil,
                              pathError: "image path ../b.jpg escapes --image-root /data", prompt: "ocr",
                              extra: [("batch", .int(7))])
    let record = OutputRecord.failure(entry, kind: RecordErrorKind.imagePathOutsideRoot, message: entry.pathError!)
    let object = try #require(try JSONSerialization.jsonObject(with: Data(record.jsonLine.utf8)) as? [String: Any])
    #expect(Set(object.keys) == ["id", "image", "prompt", "status", "text", "tokens", "error", "timings", "batch"])
    #expect(object["status"] as? String == "error")
    #expect(object["text"] is NSNull)
    #expect(object["tokens"] as? [Int] == [])
    let error = try #require(object["error"] as? [String: String])
    #expect(error == ["kind": "image_path_outside_root", "message": "image path ../b.jpg escapes --image-root /data"])
    #expect(try keys(record.jsonLine).last == "batch")
}

@Test func collidingExtrasAreNestedUnderExtra() throws {
    let record = OutputRecord(id: "real", image: "x.jpg", prompt: "p", status: .ok, text: "t",
                              taskFields: [("objects", .array([])), ("status", .string("task says"))],
                              extra: [("id", .string("manifest id")), ("note", .string("n")),
                                      ("text", .int(3)), ("extra", .bool(true)), ("objects", .null)])
    let value = try JSONValue.parse(record.jsonLine)
    #expect(try keys(record.jsonLine) == ["id", "image", "prompt", "status", "text", "tokens", "objects", "error",
                                          "timings", "note", "extra"])
    #expect(value["id"]?.stringValue == "real")
    #expect(value["status"]?.stringValue == "ok")
    #expect(value["text"]?.stringValue == "t")
    #expect(value["extra"] == .object([("status", .string("task says")), ("id", .string("manifest id")),
                                       ("text", .int(3)), ("extra", .bool(true)), ("objects", .null)]))
}

@Test func unicodeAndControlCharactersSurviveTheRoundTrip() throws {
    let text = "Größe\n\"quoted\"\t😀 \u{1}"
    let record = OutputRecord(id: "ü/1", image: "bilder/ä.jpg", prompt: "caption de", status: .ok, text: text)
    let object = try #require(try JSONSerialization.jsonObject(with: Data(record.jsonLine.utf8)) as? [String: Any])
    #expect(object["text"] as? String == text)
    #expect(object["id"] as? String == "ü/1")
    #expect(record.jsonLine.contains("Größe"))   // UTF-8, not \u escapes
    #expect(record.jsonLine.contains("ü/1"))     // no escaped slash
}

@Test func errorKindsListIsTheDocumentedOne() throws {
    #expect(RecordErrorKind.all == ["missing_image", "unreadable_image", "image_too_large", "prompt_too_long",
                                    "image_path_outside_root", "internal", "bad_sample", "corrupt_shard"])
    // docs/records.md documents every kind.
    let docs = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("docs/records.md")
    let text = try String(contentsOf: docs, encoding: .utf8)
    for kind in RecordErrorKind.all { #expect(text.contains("`\(kind)`"), "\(kind)") }
    for key in OutputRecord.standardKeys { #expect(text.contains("`\(key)`"), "\(key)") }
}

/// `OutputRecord(jsonLine:)` reads back what `jsonLine` writes (the report reads shards through it).
@Test func recordsReadBackFromTheirLine() throws {
    let record = OutputRecord(
        id: "a1", image: "imgs/a1.jpg", prompt: "detect cat", status: .ok, text: "<loc0001> cat", tokens: [5, 6, 1],
        taskFields: [("objects", .array([.object([("label", .string("cat")), ("box", .array([.int(1), .int(2)]))])]))],
        timings: [("vision_s", 0.25), ("decode_s", 2)], extra: [("source", .string("web")), ("score", .number("0.50"))])
    let back = try #require(OutputRecord(jsonLine: Substring(record.jsonLine)))
    #expect(back.jsonLine == record.jsonLine)
    #expect(back.taskField("objects") == record.taskFields[0].1)
    #expect(back.extra.map(\.0) == ["source", "score"])

    let entry = ManifestEntry(line: 1, id: "b", image: "b.jpg", imagePath: nil, pathError: nil, prompt: "ocr")
    let failed = OutputRecord.failure(entry, kind: RecordErrorKind.missingImage, message: "no such file")
    #expect(OutputRecord(jsonLine: Substring(failed.jsonLine))?.error == failed.error)

    for line in ["[]", "{}", #"{"id":"x","status":"maybe"}"#, #"{"id":1,"status":"ok"}"#,
                 #"{"id":"x","status":"ok","tokens":[1.5]}"#, "not json"] {
        #expect(OutputRecord(jsonLine: Substring(line)) == nil, "\(line)")
    }
}

/// `logprob` and `token_logprobs` follow `tokens` (before task fields), 7 decimals, and read back; a
/// manifest field with one of their names goes under "extra".
@Test func scoresFollowTokensAndReadBack() throws {
    let record = OutputRecord(id: "s", image: "s.png", prompt: "caption en", status: .ok, text: "a b", tokens: [7, 1],
                              logprob: -1.234567891, tokenLogprobs: [-1.2345, -0.000000111],
                              taskFields: [("objects", .array([]))], extra: [("logprob", .string("manifest's"))])
    let line = record.jsonLine
    #expect(try keys(line) == ["id", "image", "prompt", "status", "text", "tokens", "logprob", "token_logprobs",
                               "objects", "error", "timings", "extra"])
    #expect(line.contains(#""tokens":[7,1],"logprob":-1.2345679,"token_logprobs":[-1.2345,-1e-07],"objects":[]"#), "\(line)")
    let back = try #require(OutputRecord(jsonLine: Substring(line)))
    #expect(back.logprob == -1.2345679)
    #expect(back.tokenLogprobs == [-1.2345, -1e-07])
    #expect(back.taskFields.map(\.0) == ["objects"])
    #expect(back.extra.map(\.0) == ["logprob"])
    #expect(back.jsonLine == line)
    // Without scores (error records, records of earlier versions): neither key.
    let plain = OutputRecord(id: "p", image: "p.png", prompt: "", status: .ok, text: "", tokens: [1])
    #expect(try keys(plain.jsonLine) == ["id", "image", "prompt", "status", "text", "tokens", "error", "timings"])
    #expect(OutputRecord(jsonLine: Substring(plain.jsonLine))?.logprob == nil)
}
