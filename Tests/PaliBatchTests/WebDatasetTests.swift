// WebDataset input: shard patterns, samples grouped by key from plain and gzip tars (made here with the
// system tar), the malformed samples and corrupt shards that become error entries, and output shards
// named after input shards with exactly-once resume.
import Foundation
import Testing
import PaliJSON
@testable import PaliBatch

/// Writes `members` (name, bytes) into a tar at `url` in that order, with the system `tar`
/// (`gzip`: compressed).
func makeTar(_ url: URL, _ members: [(String, [UInt8])], gzip: Bool = false) throws {
    let staging = url.deletingLastPathComponent().appendingPathComponent(".staging-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: staging, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: staging) }
    for (name, bytes) in members {
        let file = staging.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(bytes).write(to: file)
    }
    let tar = Process()
    tar.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    tar.arguments = ["tar", "--format=ustar", gzip ? "-czf" : "-cf", url.path, "-C", staging.path] + members.map(\.0)
    try tar.run()
    tar.waitUntilExit()
    #expect(tar.terminationStatus == 0, "tar failed")
}

private func entries(_ tars: [URL], _ options: ManifestOptions) throws -> [ManifestEntry] {
    let reader = try ManifestReader(.shards(tars), options: options)
    var out: [ManifestEntry] = []
    while let entry = try reader.next() { out.append(entry) }
    return out
}

private func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

@Test func bracePatternsExpandAsWebDatasetWrites() throws {
    #expect(try ShardList.expand("data/{00000..00003}.tar") == ["data/00000.tar", "data/00001.tar", "data/00002.tar",
                                                                 "data/00003.tar"])
    #expect(try ShardList.expand("{a,b}/{8..10}.tgz") == ["a/8.tgz", "a/9.tgz", "a/10.tgz", "b/8.tgz", "b/9.tgz", "b/10.tgz"])
    #expect(try ShardList.expand("s-{098..101}.tar") == ["s-098.tar", "s-099.tar", "s-100.tar", "s-101.tar"])
    #expect(throws: ManifestError.self) { try ShardList.expand("data/{3..1}.tar") }
    #expect(throws: ManifestError.self) { try ShardList.expand("data/{0..2.tar") }
    #expect(ShardList.shardName(URL(fileURLWithPath: "/d/00042.tar.gz")) == "00042")
    #expect(ShardList.shardName(URL(fileURLWithPath: "/d/train-7.tgz")) == "train-7")
    #expect(ShardList.shardName(URL(fileURLWithPath: "/d/00042.tar")) == "00042")
    #expect(throws: ManifestError.self) {
        try ShardList.checkNames([URL(fileURLWithPath: "/a/1.tar"), URL(fileURLWithPath: "/b/1.tar.gz")])
    }
}

@Test func aListFileNamesTarsRelativeToItsFolder() throws {
    let dir = try TempDir()
    defer { dir.remove() }
    let list = try dir.write("lists/shards.txt", "# train\n../data/00000.tar\n\n/abs/00001.tgz\n")
    #expect(try ShardList.resolve(list.path).map(\.path) == [dir.file("data/00000.tar").standardizedFileURL.path, "/abs/00001.tgz"])
    #expect(try ShardList.resolve(dir.file("x/{1..2}.tar").path).map(\.lastPathComponent) == ["1.tar", "2.tar"])
}

@Test func samplesAreGroupedByKeyWithTheirJSONAsSource() throws {
    let dir = try TempDir()
    defer { dir.remove() }
    let jpg = bytes("JPEGBYTES"), png = bytes("PNGBYTES")
    try makeTar(dir.file("00007.tar"), [
        ("a/000.jpg", jpg), ("a/000.json", bytes(#"{"q": "caption en", "n": 1.50}"#)), ("a/000.txt", bytes("hi")),
        ("a/001.seg.png", png), ("a/001.json", bytes(#"{"q": ["detect cat", "ocr"]}"#)),
    ])
    try makeTar(dir.file("00008.tar.gz"), [("000.jpeg", jpg)], gzip: true)
    let tars = [dir.file("00007.tar"), dir.file("00008.tar.gz")]
    let found = try entries(tars, ManifestOptions(defaultPrompts: ["p1", "p2", "p3"]))
    #expect(found.map(\.id) == ["00007/a/000", "00007/a/001", "00008/000"])
    #expect(found.map(\.shard) == ["00007", "00007", "00008"])
    #expect(found.map(\.image) == ["a/000.jpg", "a/001.seg.png", "000.jpeg"])
    #expect(found.map(\.imageData) == [jpg, png, jpg])
    #expect(found.allSatisfy { $0.problem == nil && $0.prompts == ["p1", "p2", "p3"] })
    #expect(found[0].extra.count == 1 && found[0].extra[0].0 == "source")
    #expect(found[0].extra[0].1.encoded == #"{"q":"caption en","n":1.50}"#)
    #expect(found[2].extra.isEmpty)
    #expect(try ManifestReader.validate(.shards(tars), options: ManifestOptions(defaultPrompts: ["p1", "p2", "p3"])) == 9)

    let byField = try entries(tars, ManifestOptions(defaultPrompts: [], promptField: "q"))
    #expect(byField[0].prompts == ["caption en"])
    #expect(byField[1].prompts == ["detect cat", "ocr"])
    #expect(byField[2].problem?.kind == RecordErrorKind.badSample, "no json member, so no prompt field")
    #expect(byField[2].problem?.message.contains("\"q\"") == true)
}

@Test func malformedSamplesAndCorruptShardsBecomeErrorEntriesAndReadingGoesOn() throws {
    let dir = try TempDir()
    defer { dir.remove() }
    let image = [UInt8](repeating: 7, count: 3000)
    try makeTar(dir.file("00000.tar"), [
        ("k0.jpg", image), ("k0.png", image),               // two images
        ("k1.webp", image), ("k1.json", bytes("{}")),       // unsupported image type
        ("k2.txt", bytes("no image")),                      // no image
        ("k3.jpg", image), ("k3.json", bytes("[1]")),       // json not an object
        ("k4.png", image),                                  // fine
    ])
    // 00001: cut inside k1.jpg's data (truncated); 00002: not a tar; 00003: missing.
    try makeTar(dir.file("full.tar"), [("k0.jpg", image), ("k0.json", bytes(#"{"a":1}"#)), ("k1.jpg", image), ("k2.jpg", image)])
    let full = try Data(contentsOf: dir.file("full.tar"))
    try full.prefix(512 + 3072 + 512 + 512 + 512 + 1500).write(to: dir.file("00001.tar"))
    try Data(repeating: 0x41, count: 3000).write(to: dir.file("00002.tar"))
    try makeTar(dir.file("00004.tar"), [("k0.png", image)])
    let tars = ["00000.tar", "00001.tar", "00002.tar", "00003.tar", "00004.tar"].map(dir.file)
    let found = try entries(tars, ManifestOptions(defaultPrompts: ["caption en"]))
    let byID = Dictionary(found.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
    #expect(found.map(\.id) == ["00000/k0", "00000/k1", "00000/k2", "00000/k3", "00000/k4", "00001/k0", "00001/k1",
                                "00002", "00003", "00004/k0"])
    #expect(byID["00000/k0"]?.problem?.kind == RecordErrorKind.badSample)
    #expect(byID["00000/k0"]?.problem?.message.contains("k0.jpg, k0.png") == true)
    #expect(byID["00000/k1"]?.problem?.kind == RecordErrorKind.badSample)
    #expect(byID["00000/k1"]?.problem?.message.contains("k1.webp") == true)
    #expect(byID["00000/k2"]?.problem?.kind == RecordErrorKind.missingImage)
    #expect(byID["00000/k3"]?.problem?.message.contains("k3.json") == true)
    #expect(byID["00000/k4"]?.problem == nil && byID["00000/k4"]?.imageData == image)
    #expect(byID["00001/k0"]?.problem == nil, "the sample before the cut is whole")
    #expect(byID["00001/k0"]?.extra.first?.1.encoded == #"{"a":1}"#)
    #expect(byID["00001/k1"]?.problem?.kind == RecordErrorKind.corruptShard)
    #expect(byID["00001/k1"]?.problem?.message.contains("k1.jpg") == true, "\(byID["00001/k1"]?.problem?.message ?? "")")
    #expect(byID["00002"]?.problem?.kind == RecordErrorKind.corruptShard)
    #expect(byID["00003"]?.problem?.kind == RecordErrorKind.corruptShard)
    #expect(byID["00004/k0"]?.problem == nil)
    #expect(found.allSatisfy { $0.shard == $0.id.split(separator: "/").first.map(String.init) })
}

@Test func namedShardsArePublishedWholeOrAsPartsAndResumeCountsEachRecordOnce() throws {
    let dir = try TempDir()
    defer { dir.remove() }
    let out = dir.file("out")
    func record(_ id: String, _ index: Int?) -> OutputRecord {
        var r = OutputRecord(id: id, image: "x.jpg", prompt: "p\(index ?? 0)", status: .ok, text: "t")
        r.promptIndex = index
        return r
    }
    let writer = try NamedShardWriter(directory: out)
    try writer.append(record("00000/a", 0), shard: "00000")
    try writer.append(record("00001/a", nil), shard: "00001")
    try writer.append(record("00000/a", 1), shard: "00000")
    try writer.complete(shard: "00000")
    #expect(writer.shardsCompleted == ["00000.jsonl"])
    // A stop with 00001 unfinished publishes what it has as a part.
    try writer.finish()
    #expect(writer.shardsCompleted == ["00000.jsonl", "00001.part-00000.jsonl"])
    // A killed writer's temporary shard is not counted and is deleted by the scan.
    let dead = try NamedShardWriter(directory: out)
    try dead.append(record("00001/b", nil), shard: "00001")
    try Data("{\"id\":\"00001/zz\"}\n".utf8).write(to: out.appendingPathComponent(".00001.jsonl.999999999@\(OutputLock.hostName).tmp"))
    let state = try ResumeState.scan(out, named: true)
    #expect(state.doneIDs == [RecordKey.make(id: "00000/a", promptIndex: 0), RecordKey.make(id: "00000/a", promptIndex: 1),
                              "00001/a"])
    #expect(state.records == 3 && state.shards == 2 && state.removedTempFiles == 2)
    // The rerun completes 00001: its name is free, so it is whole-named; a second completion takes a part.
    let rerun = try NamedShardWriter(directory: out)
    try rerun.append(record("00001/b", nil), shard: "00001")
    try rerun.complete(shard: "00001")
    try rerun.append(record("00000/c", nil), shard: "00000")
    try rerun.complete(shard: "00000")
    #expect(rerun.shardsCompleted == ["00001.jsonl", "00000.part-00000.jsonl"])
    let lines = try String(contentsOf: out.appendingPathComponent("00000.jsonl"), encoding: .utf8).split(separator: "\n")
    #expect(lines.count == 2 && lines[0].contains(#""prompt":"p0","prompt_index":0,"status""#))
    #expect(try ResumeState.scan(out, named: true).records == 5)
}

@Test func jsonlPromptsGiveOneRecordPerPromptAndTheDefaultsFillTheRest() throws {
    let dir = try TempDir()
    defer { dir.remove() }
    let manifest = try dir.write("jobs.jsonl", """
        {"id": "a", "image": "a.jpg", "prompts": ["caption en", "ocr"], "k": 1}
        {"id": "b", "image": "b.jpg", "prompt": "detect cat"}
        {"id": "c", "image": "c.jpg"}
        """)
    let options = ManifestOptions(defaultPrompts: ["p0", "p1", "p2"])
    let reader = try ManifestReader(.file(manifest, .jsonl), options: options)
    var found: [ManifestEntry] = []
    while let entry = try reader.next() { found.append(entry) }
    #expect(found.map(\.prompts) == [["caption en", "ocr"], ["detect cat"], ["p0", "p1", "p2"]])
    #expect(found[0].extra.map(\.0) == ["k"], "\"prompts\" is not carried as an extra field")
    #expect(found[0].key(1) == RecordKey.make(id: "a", promptIndex: 1) && found[1].key(0) == "b")
    #expect(try ManifestReader.validate(.file(manifest, .jsonl), options: options) == 6)
    // A record of one of several prompts carries prompt_index; one of a single prompt does not.
    let failed = OutputRecord.failure(found[0], kind: RecordErrorKind.missingImage, message: "m", promptIndex: 1)
    #expect(failed.prompt == "ocr" && failed.promptIndex == 1 && failed.key == found[0].key(1))
    #expect(OutputRecord.failure(found[1], kind: RecordErrorKind.missingImage, message: "m").jsonLine.contains("prompt_index") == false)
    #expect(OutputRecord(jsonLine: Substring(failed.jsonLine))?.promptIndex == 1)

    for bad in [#"{"id": "x", "image": "x.jpg", "prompt": "p", "prompts": ["q"]}"#,
                #"{"id": "x", "image": "x.jpg", "prompts": []}"#,
                #"{"id": "x", "image": "x.jpg", "prompts": ["p", 3]}"#,
                #"{"id": "x", "image": "x.jpg", "prompts": "p"}"#] {
        let file = try dir.write("bad.jsonl", bad)
        #expect(throws: ManifestError.self, "\(bad)") { _ = try ManifestReader.validate(.file(file, .jsonl), options: options) }
    }
}
