// The output directory's lock (OutputLock), which temporary shards a resume may delete, shards that are
// never published over an existing one, and metadata that is never written where a deleted folder was.
import Foundation
import PaliJSON
import Testing
@testable import PaliBatch

/// A pid no process can have: above the largest pid_max Linux allows (2^22), so kill(pid, 0) is ESRCH.
private func deadPID() throws -> Int32 { (1 << 22) + 7 }

private func lockText(pid: Int32, host: String, processStart: UInt64? = nil) -> String {
    #"{"pid":\#(pid),"host":"\#(host)","started_at":"2025-01-31T12:00:00Z""#
        + (processStart.map { #","process_start":\#($0)"# } ?? "") + "}\n"
}

@Test func theLockNamesItsHolderAndASecondTakerIsRefused() throws {
    let dir = try TempDir()
    defer { dir.remove() }
    let lock = try OutputLock.acquire(directory: dir.url)
    #expect(lock.note == nil)
    let text = try String(contentsOf: dir.file("run.lock"), encoding: .utf8)
    let json = try JSONValue.parse(text.trimmingCharacters(in: .newlines))
    #expect(json["pid"]?.intValue == Int(getpid()) && json["host"]?.stringValue == OutputLock.hostName)
    #expect(json["process_start"]?.numberText != nil, "Linux: the holder's start time tells a reused pid")
    do {
        _ = try OutputLock.acquire(directory: dir.url)
        Issue.record("a held lock was taken twice")
    } catch let OutputError.directoryInUse(path, holder, _, sameHost) {
        #expect(path == dir.file("run.lock").path && holder == "\(getpid())@\(OutputLock.hostName)" && sameHost)
    }
    lock.release()
    #expect(!FileManager.default.fileExists(atPath: dir.file("run.lock").path))
    lock.release()   // idempotent
    let again = try OutputLock.acquire(directory: dir.url)
    again.release()
}

@Test func aStaleLockOfThisHostIsTakenOverAndAnotherHostsIsNot() throws {
    let dir = try TempDir()
    defer { dir.remove() }
    let dead = try deadPID()
    try dir.write("run.lock", lockText(pid: dead, host: OutputLock.hostName))
    let lock = try OutputLock.acquire(directory: dir.url)
    #expect(lock.note?.contains("\(dead)@\(OutputLock.hostName)") == true, "\(lock.note ?? "no note")")
    lock.release()

    // A live pid whose start time differs from the one recorded: the pid was reused, the lock is stale.
    let parent = getppid()
    let start = try #require(OutputLock.processStart(parent))
    try dir.write("run.lock", lockText(pid: parent, host: OutputLock.hostName, processStart: start + 1))
    let reused = try OutputLock.acquire(directory: dir.url)
    #expect(reused.note?.contains("another process") == true, "\(reused.note ?? "no note")")
    reused.release()

    // The same live process: in use.
    try dir.write("run.lock", lockText(pid: parent, host: OutputLock.hostName, processStart: start))
    #expect(throws: OutputError.self) { _ = try OutputLock.acquire(directory: dir.url) }

    // Another host: never taken, whatever its pid.
    try dir.write("run.lock", lockText(pid: dead, host: "elsewhere"))
    do {
        _ = try OutputLock.acquire(directory: dir.url)
        Issue.record("another host's lock was taken")
    } catch let error as OutputError {
        guard case .directoryInUse(_, let holder, _, let sameHost) = error else { Issue.record("\(error)"); return }
        #expect(holder == "\(dead)@elsewhere" && !sameHost)
        #expect(error.description.contains("delete \(dir.file("run.lock").path)"), "\(error)")
    }
    #expect(FileManager.default.fileExists(atPath: dir.file("run.lock").path))

    // An empty file (a run between create and write, or damage): refused, saying how to remove it.
    try dir.write("run.lock", "")
    #expect(throws: OutputError.badLock(path: dir.file("run.lock").path, reason: "the file is empty")) {
        _ = try OutputLock.acquire(directory: dir.url)
    }
}

/// Two processes' temporary shards: a resume deletes this process's, a dead process's of this host and
/// untagged ones of earlier versions; it keeps another host's and a live process's.
@Test func resumeDeletesOnlyTheTemporaryShardsOfDeadRuns() throws {
    let dir = try TempDir()
    defer { dir.remove() }
    let host = OutputLock.hostName, dead = try deadPID()
    let deleted = [ShardWriter.tempName(0), ".shard-00001.jsonl.\(dead)@\(host).tmp", ".shard-00002.jsonl.tmp"]
    let kept = [".shard-00003.jsonl.\(getppid())@\(host).tmp", ".shard-00004.jsonl.\(dead)@elsewhere.tmp"]
    for name in deleted + kept { try dir.write(name, "{\"id\":\"half") }
    let state = try ResumeState.scan(dir.url)
    #expect(state.removedTempFiles == deleted.count)
    #expect(state.keptTempFiles == kept.sorted())
    #expect(try dir.names() == kept.sorted())
}

/// A shard is never put in place over an existing file, even one that appears after any check.
@Test func publishingAShardNeverReplacesAnExistingFile() throws {
    let dir = try TempDir()
    defer { dir.remove() }
    let temp = try dir.write(".t.tmp", "new\n"), final = try dir.write("final.jsonl", "old\n")
    #expect(throws: OutputError.shardExists(path: final.path)) { try DurableFile.publish(temp.path, as: final.path) }
    #expect(try String(contentsOf: final, encoding: .utf8) == "old\n")
    try FileManager.default.removeItem(at: final)
    try DurableFile.publish(temp.path, as: final.path)
    #expect(try dir.names() == ["final.jsonl"])
    #expect(try String(contentsOf: final, encoding: .utf8) == "new\n")
}

/// stats.json and run.json for a folder that has been deleted: an error, never a file at the folder's path.
@Test func metadataIsNeverWrittenWhereADeletedFolderWas() throws {
    let dir = try TempDir()
    defer { dir.remove() }
    let out = dir.file("out")
    try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
    let stats = RunStats()
    try FileManager.default.removeItem(at: out)
    #expect(throws: OutputError.directoryGone(path: out.path)) { try stats.write(to: out) }
    #expect(!FileManager.default.fileExists(atPath: out.path))
    // Naming the file itself still works.
    try stats.write(to: dir.file("stats.json"))
    #expect(try dir.names() == ["stats.json"])

    // A writer whose folder disappears says so.
    try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
    let writer = try ShardWriter(directory: out, shardSize: 2, firstIndex: 0)
    try writer.append(OutputRecord(id: "a", image: "a.jpg", prompt: "", status: .ok, text: "t", tokens: [1], error: nil))
    try FileManager.default.removeItem(at: out)
    #expect(throws: OutputError.directoryGone(path: out.path)) {
        try writer.append(OutputRecord(id: "b", image: "b.jpg", prompt: "", status: .ok, text: "t", tokens: [1], error: nil))
    }
    #expect(!FileManager.default.fileExists(atPath: out.path))
}
