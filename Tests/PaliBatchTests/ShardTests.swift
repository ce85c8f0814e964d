// Shards: sizes, numbering, temporary files, finish; resume after a simulated crash; corrupt shards.
import Foundation
import PaliJSON
import Testing
@testable import PaliBatch

private func record(_ id: String, status: RecordStatus = .ok) -> OutputRecord {
    OutputRecord(id: id, image: "\(id).jpg", prompt: "caption en", status: status,
                 text: status == .ok ? "text of \(id)" : nil, tokens: status == .ok ? [1, 2, 3] : [],
                 error: status == .ok ? nil : RecordError(kind: RecordErrorKind.missingImage, message: "no file"))
}

private func lines(_ url: URL) throws -> [String] {
    let text = try String(contentsOf: url, encoding: .utf8)
    #expect(text.hasSuffix("\n"))
    return text.split(separator: "\n", omittingEmptySubsequences: false).dropLast().map(String.init)
}

private func ids(_ url: URL) throws -> [String] {
    try lines(url).map { try #require(JSONValue.parse($0)["id"]?.stringValue) }
}

@Test func shardNames() {
    #expect(ShardWriter.shardName(0) == "shard-00000.jsonl")
    #expect(ShardWriter.shardName(42) == "shard-00042.jsonl")
    #expect(ShardWriter.shardName(123_456) == "shard-123456.jsonl")
    #expect(ShardWriter.tempName(7, tag: "4242@node7") == ".shard-00007.jsonl.4242@node7.tmp")
    #expect(ShardWriter.tempName(7) == ".shard-00007.jsonl.\(getpid())@\(OutputLock.hostName).tmp")
    #expect(ResumeState.tempShardTag(".shard-00042.jsonl.4242@node7.example.tmp") == "4242@node7.example")
    #expect(ResumeState.tempShardTag(".shard-00042.jsonl.tmp") == "")
    #expect(ResumeState.tempShardTag(".shard-00042.jsonl.notag.tmp") == nil)
    #expect(ResumeState.shardIndex("shard-00042.jsonl") == 42)
    #expect(ResumeState.shardIndex("shard-123456.jsonl") == 123_456)
    #expect(ResumeState.shardIndex("shard-42.jsonl") == nil)
    #expect(ResumeState.shardIndex("shard-00042.jsonl.tmp") == nil)
    #expect(ResumeState.isTempShard(".shard-00042.jsonl.tmp"))
    #expect(!ResumeState.isTempShard(".run.json.tmp"))
}

@Test func writerFillsShardsInOrderAndFinishCompletesThePartialOne() throws {
    let dir = try TempDir()
    defer { dir.remove() }
    let out = dir.file("out/nested")   // created by the writer
    let writer = try ShardWriter(directory: out, shardSize: 3, firstIndex: 0)
    for i in 0..<7 { try writer.append(record("r\(i)")) }
    #expect(writer.shardsCompleted == ["shard-00000.jsonl", "shard-00001.jsonl"])
    #expect(writer.pendingRecords == 1)
    // The partial shard exists only under its temporary name.
    #expect(try FileManager.default.contentsOfDirectory(atPath: out.path).sorted()
            == [ShardWriter.tempName(2), "shard-00000.jsonl", "shard-00001.jsonl"])
    #expect(try ids(out.appendingPathComponent("shard-00000.jsonl")) == ["r0", "r1", "r2"])
    #expect(try ids(out.appendingPathComponent("shard-00001.jsonl")) == ["r3", "r4", "r5"])

    try writer.finish()
    #expect(writer.pendingRecords == 0)
    #expect(writer.shardsCompleted.last == "shard-00002.jsonl")
    #expect(try FileManager.default.contentsOfDirectory(atPath: out.path).sorted()
            == ["shard-00000.jsonl", "shard-00001.jsonl", "shard-00002.jsonl"])
    #expect(try ids(out.appendingPathComponent("shard-00002.jsonl")) == ["r6"])
    // Finishing again with nothing pending writes nothing.
    try writer.finish()
    #expect(writer.shardsCompleted.count == 3)
    // Appending after finish starts the next shard.
    try writer.append(record("r7"))
    try writer.finish()
    #expect(writer.shardsCompleted.last == "shard-00003.jsonl")
    #expect(try ids(out.appendingPathComponent("shard-00003.jsonl")) == ["r7"])
}

@Test func writerStartsAtFirstIndexAndNeverOverwrites() throws {
    let dir = try TempDir()
    defer { dir.remove() }
    try dir.write("shard-00005.jsonl", record("old").jsonLine + "\n")
    let writer = try ShardWriter(directory: dir.url, shardSize: 2, firstIndex: 4)
    try writer.append(record("a"))
    try writer.append(record("b"))
    #expect(writer.shardsCompleted == ["shard-00004.jsonl"])
    try writer.append(record("c"))
    #expect(throws: OutputError.shardExists(path: dir.file("shard-00005.jsonl").path)) { try writer.finish() }
    #expect(try ids(dir.file("shard-00005.jsonl")) == ["old"])
    // A failed writer stays failed rather than writing around the problem.
    #expect(throws: OutputError.self) { try writer.append(record("d")) }
    #expect(throws: OutputError.invalidShardSize(0)) { _ = try ShardWriter(directory: dir.url, shardSize: 0, firstIndex: 0) }
}

@Test func largeShardsFlushThroughTheBuffer() throws {
    let dir = try TempDir()
    defer { dir.remove() }
    let writer = try ShardWriter(directory: dir.url, shardSize: 5000, firstIndex: 0)
    let long = String(repeating: "é", count: 300)
    for i in 0..<4000 {
        var r = record("id\(i)")
        r.text = long
        try writer.append(r)
    }
    try writer.finish()
    let got = try ids(dir.file("shard-00000.jsonl"))
    #expect(got.count == 4000)
    #expect(got.last == "id3999")
}

@Test func resumeAfterACrashSeesOnlyCompleteShards() throws {
    let dir = try TempDir()
    defer { dir.remove() }
    // A run that dies (no finish) with two complete shards and one partial temporary shard.
    do {
        let writer = try ShardWriter(directory: dir.url, shardSize: 4, firstIndex: 0)
        for i in 0..<10 { try writer.append(record("job\(i)", status: i == 5 ? .error : .ok)) }
        #expect(writer.pendingRecords == 2)
    }
    #expect(try dir.names() == [ShardWriter.tempName(2), "shard-00000.jsonl", "shard-00001.jsonl"])
    try dir.write("run.json", "{}")     // other files are ignored

    let state = try ResumeState.scan(dir.url)
    #expect(state.doneIDs == Set((0..<8).map { "job\($0)" }))
    #expect(state.records == 8)
    #expect(state.errorRecords == 1)
    #expect(state.shards == 2)
    #expect(state.nextShardIndex == 2)
    #expect(state.removedTempFiles == 1)
    #expect(state.removedTempNames == [ShardWriter.tempName(2)], "named, so the coordinator can tell the operator")
    #expect(try dir.names() == ["run.json", "shard-00000.jsonl", "shard-00001.jsonl"])

    // The rerun does the rest; afterwards every id is present exactly once.
    let writer = try ShardWriter(directory: dir.url, shardSize: 4, firstIndex: state.nextShardIndex)
    for i in 0..<10 where !state.doneIDs.contains("job\(i)") { try writer.append(record("job\(i)")) }
    try writer.finish()
    let final = try ResumeState.scan(dir.url)
    #expect(final.records == 10)
    #expect(final.doneIDs == Set((0..<10).map { "job\($0)" }))
    #expect(final.nextShardIndex == 3)
}

@Test func resumeOfAMissingOrEmptyDirectory() throws {
    let dir = try TempDir()
    defer { dir.remove() }
    let missing = try ResumeState.scan(dir.file("not-yet"))
    #expect(missing.doneIDs.isEmpty && missing.nextShardIndex == 0 && missing.shards == 0)
    let empty = try ResumeState.scan(dir.url)
    #expect(empty.records == 0 && empty.nextShardIndex == 0)
}

@Test func resumeNextIndexFollowsTheHighestShard() throws {
    let dir = try TempDir()
    defer { dir.remove() }
    try dir.write("shard-00000.jsonl", record("a").jsonLine + "\n")
    try dir.write("shard-00007.jsonl", record("b").jsonLine + "\n" + record("c").jsonLine)   // no final newline
    let state = try ResumeState.scan(dir.url)
    #expect(state.nextShardIndex == 8)
    #expect(state.doneIDs == ["a", "b", "c"])
}

@Test(arguments: [
    ("{\"id\":\"x\"}\nnot json\n", 2, "not valid JSON"),
    ("{\"id\":\"x\"}\n{\"image\":\"a.jpg\"}\n", 2, "no string \"id\""),
    ("{\"id\":\"x\"}\n{\"id\":3}\n", 2, "no string \"id\""),
    ("[1]\n", 1, "not a JSON object"),
    ("{\"id\":\"x\"}\n\n{\"id\":\"y\"}\n", 2, "not valid JSON"),
])
func corruptShardLineIsNamed(_ text: String, _ line: Int, _ reason: String) throws {
    let dir = try TempDir()
    defer { dir.remove() }
    try dir.write("shard-00000.jsonl", record("fine").jsonLine + "\n")
    let bad = try dir.write("shard-00001.jsonl", text)
    do {
        _ = try ResumeState.scan(dir.url)
        Issue.record("scan accepted a corrupt shard")
    } catch let OutputError.corruptShard(path, found, why) {
        #expect(path == bad.path)
        #expect(found == line)
        #expect(why.contains(reason), "\(why)")
        #expect(OutputError.corruptShard(path: path, line: found, reason: why).description
                .hasPrefix("\(bad.path):\(line): "))
    }
}

@Test func duplicateIDAcrossShardsNamesBothPlaces() throws {
    let dir = try TempDir()
    defer { dir.remove() }
    try dir.write("shard-00000.jsonl", [record("a"), record("b")].map { $0.jsonLine + "\n" }.joined())
    try dir.write("shard-00001.jsonl", [record("c"), record("b")].map { $0.jsonLine + "\n" }.joined())
    #expect(throws: OutputError.duplicateID(id: "b", path: dir.file("shard-00001.jsonl").path, line: 2,
                                            firstPath: dir.file("shard-00000.jsonl").path, firstLine: 2)) {
        _ = try ResumeState.scan(dir.url)
    }
}
