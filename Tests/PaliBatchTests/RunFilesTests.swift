// run.json and stats.json: contents, atomic writes, reloading, and refusing a resume with other settings.
import Foundation
import PaliJSON
import Testing
@testable import PaliBatch

@Test func sha256KnownAnswers() {
    #expect(ModelIdentity.sha256Hex([UInt8]()) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    #expect(ModelIdentity.sha256Hex(Array("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    #expect(ModelIdentity.sha256Hex(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8))
            == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
    #expect(ModelIdentity.sha256Hex([UInt8](repeating: 0x61, count: 1_000_000))
            == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    // Block-boundary lengths (55, 56, 64 bytes) take the two padding paths.
    #expect(ModelIdentity.sha256Hex([UInt8](repeating: 0x61, count: 55)) != ModelIdentity.sha256Hex([UInt8](repeating: 0x61, count: 56)))
    #expect(ModelIdentity.sha256Hex([UInt8](repeating: 0x61, count: 64))
            == "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb")
}

private func makeModel(_ dir: TempDir, config: String = #"{"model_type": "paligemma"}"#) throws -> URL {
    try dir.write("model/config.json", config)
    try dir.write("model/model-00002-of-00002.safetensors", String(repeating: "b", count: 20))
    try dir.write("model/model-00001-of-00002.safetensors", String(repeating: "a", count: 10))
    try dir.write("model/tokenizer.model", "t")
    return dir.file("model")
}

@Test func modelIdentityHashesConfigAndListsWeights() throws {
    let dir = try TempDir()
    defer { dir.remove() }
    let model = try makeModel(dir)
    let identity = try ModelIdentity.of(modelDirectory: model)
    #expect(identity.configSHA256 == ModelIdentity.sha256Hex(Array(#"{"model_type": "paligemma"}"#.utf8)))
    #expect(identity.weights == [.init(name: "model-00001-of-00002.safetensors", bytes: 10),
                                 .init(name: "model-00002-of-00002.safetensors", bytes: 20)])
    #expect(throws: OutputError.self) { _ = try ModelIdentity.of(modelDirectory: dir.file("none")) }
}

@Test func runInfoWritesAtomicallyAndLoadsBack() throws {
    let dir = try TempDir()
    defer { dir.remove() }
    let identity = try ModelIdentity.of(modelDirectory: try makeModel(dir))
    let info = RunInfo(version: "0.3.0", model: identity, modelDirectory: "/models/pg",
                       settings: [("max_tokens", .int(32)), ("sampling", .string("greedy")),
                                  ("default_prompt", .string("caption en")), ("shard_size", .int(1000))],
                       layout: .object([("replicas", .int(2)), ("stages", .int(2))]),
                       startedAt: Date(timeIntervalSince1970: 1_700_000_000))
    try info.write(to: dir.url)
    #expect(try dir.names().filter { $0.hasSuffix(".tmp") }.isEmpty)
    let text = try String(contentsOf: dir.file("run.json"), encoding: .utf8)
    let object = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
    #expect(object["started_at"] as? String == "2023-11-14T22:13:20Z")
    #expect(Set(object.keys) == ["version", "started_at", "model", "settings", "layout"])

    let loaded = try RunInfo.load(from: dir.file("run.json"))
    #expect(loaded.version == "0.3.0")
    #expect(loaded.startedAt == "2023-11-14T22:13:20Z")
    #expect(loaded.model == identity)
    #expect(loaded.modelDirectory == "/models/pg")
    #expect(loaded.settings.map(\.0) == ["max_tokens", "sampling", "default_prompt", "shard_size"])
    #expect(loaded.layout == info.layout)
    #expect(loaded.differences(from: info).isEmpty)
    #expect(try RunInfo.load(from: dir.url).json == info.json)
}

@Test func differencesNameEveryResultAffectingChange() throws {
    let identity = ModelIdentity(configSHA256: "aaaa", weights: [.init(name: "m.safetensors", bytes: 10)])
    let before = RunInfo(version: "1", model: identity,
                         settings: [("max_tokens", .int(32)), ("sampling", .string("greedy")),
                                    ("shard_size", .int(1000))],
                         layout: .string("np=3"))
    var now = before
    now.settings = [("max_tokens", .int(64)), ("sampling", .string("greedy")), ("shard_size", .int(10)),
                    ("default_prompt", .string("caption en"))]
    now.layout = .string("np=7")     // layout and shard size do not change results
    now.version = "2"
    #expect(now.differences(from: before) == [
        "max_tokens: 32 in the earlier run, 64 now",
        "default_prompt: absent in the earlier run, \"caption en\" now",
    ])
    now = before
    now.model = ModelIdentity(configSHA256: "bbbb", weights: [.init(name: "m.safetensors", bytes: 11)])
    let changes = now.differences(from: before)
    #expect(changes.count == 2)
    #expect(changes[0].hasPrefix("model config.json"))
    #expect(changes[1] == "model weight files: m.safetensors (10 bytes) in the earlier run, m.safetensors (11 bytes) now")
}

@Test func brokenRunJSONIsAClearError() throws {
    let dir = try TempDir()
    defer { dir.remove() }
    try dir.write("run.json", #"{"version": "1"}"#)
    #expect(throws: OutputError.badMetadata(path: dir.file("run.json").path,
                                            reason: "\"version\" or \"started_at\" is missing")) {
        _ = try RunInfo.load(from: dir.url)
    }
    try dir.write("run.json", "{")
    #expect(throws: OutputError.self) { _ = try RunInfo.load(from: dir.url) }
}

@Test func statsCountRatesAndRoles() throws {
    let dir = try TempDir()
    defer { dir.remove() }
    var now = 100.0
    let stats = RunStats(skipped: 5, startedAt: Date(timeIntervalSince1970: 0), clock: { now })
    stats.record(.ok, prefillTokens: 260, generatedTokens: 10)
    stats.record(.ok, prefillTokens: 260, generatedTokens: 30)
    stats.record(.error)
    stats.setRoles(["stage 1": (busy: 6, idle: 2), "stage 0": (busy: 7.5, idle: 0.5), "idle rank": (busy: 0, idle: 0)])
    now = 104
    stats.finish(outcome: "interrupted", at: Date(timeIntervalSince1970: 4))
    now = 500     // the clock no longer matters once finished
    #expect(stats.wallSeconds == 4)
    try stats.write(to: dir.url)
    let value = try JSONValue.parse(try String(contentsOf: dir.file("stats.json"), encoding: .utf8))
    #expect(value["outcome"]?.stringValue == "interrupted")
    #expect(value["wall_s"] == .number("4"))
    #expect(value["finished_at"]?.stringValue == "1970-01-01T00:00:04Z")
    #expect(value["records"]?.encoded == #"{"ok":2,"error":1,"processed":3,"skipped_done":5}"#)
    #expect(value["images_per_s"] == .number("0.75"))
    #expect(value["prefill_tokens_per_s"] == .number("130"))
    #expect(value["decode_tokens_per_s"] == .number("10"))
    #expect(value["roles"]?.encoded == #"{"idle rank":{"busy_s":0,"idle_s":0,"busy_fraction":null},"#
            + #""stage 0":{"busy_s":7.5,"idle_s":0.5,"busy_fraction":0.9375},"#
            + #""stage 1":{"busy_s":6,"idle_s":2,"busy_fraction":0.75}}"#)
    #expect(try dir.names() == ["stats.json"])
}
