// What an earlier run of the same output directory finished: the ids in its complete shards.
//
// Only complete shards count. A temporary shard of a killed run holds records that were never made
// durable; it is deleted and its jobs are done again, so every id ends up exactly once. Temporary shards
// carry their writer's "pid@host" (`ShardWriter.tempName`): only those of this process or of a process
// of this host that no longer runs are deleted (and untagged ones of versions before the tag); another
// host's, or a live process's, are left alone and listed in `keptTempFiles`.
import Foundation
import PaliJSON

public struct ResumeState: Sendable {
    /// Keys (`RecordKey`: the id, with the prompt index for an image of several prompts) of every record
    /// in a complete shard.
    public let doneIDs: Set<String>
    /// The first shard number free for this run (one past the highest complete shard; 0 when none).
    public let nextShardIndex: Int
    /// Records in complete shards.
    public let records: Int
    /// Records among them with status "error".
    public let errorRecords: Int
    /// Complete shards.
    public let shards: Int
    /// Stale temporary shards (".shard-*.jsonl[.PID@HOST].tmp") deleted by the scan.
    public let removedTempFiles: Int
    /// Temporary shards left in place: another host's, or of a process that still runs.
    public let keptTempFiles: [String]
    /// The names of the stale temporary shards the scan deleted (a run that ended without completing
    /// them: killed, or its host lost), so the coordinator can tell the operator.
    public let removedTempNames: [String]

    public init(doneIDs: Set<String>, nextShardIndex: Int, records: Int, errorRecords: Int, shards: Int,
                removedTempFiles: Int, keptTempFiles: [String] = [], removedTempNames: [String] = []) {
        self.doneIDs = doneIDs
        self.nextShardIndex = nextShardIndex
        self.records = records
        self.errorRecords = errorRecords
        self.shards = shards
        self.removedTempFiles = removedTempFiles
        self.keptTempFiles = keptTempFiles
        self.removedTempNames = removedTempNames
    }

    /// The shard number in a complete shard's file name ("shard-00042.jsonl" → 42), else nil.
    static func shardIndex(_ name: String) -> Int? {
        guard name.hasPrefix("shard-"), name.hasSuffix(".jsonl") else { return nil }
        let digits = name.dropFirst("shard-".count).dropLast(".jsonl".count)
        guard digits.count >= 5, digits.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        return Int(digits)
    }

    static func isTempShard(_ name: String) -> Bool { tempShardTag(name) != nil }

    /// For a temporary shard's name, its writer's tag: "pid@host" (".shard-00042.jsonl.4242@node7.tmp"), or
    /// "" for the untagged name of earlier versions (".shard-00042.jsonl.tmp"); nil for other names.
    static func tempShardTag(_ name: String) -> String? {
        guard name.hasPrefix(".shard-"), name.hasSuffix(".tmp") else { return nil }
        let middle = name.dropFirst(".shard-".count).dropLast(".tmp".count)
        let digits = middle.prefix { $0.isASCII && $0.isNumber }
        guard !digits.isEmpty else { return nil }
        let rest = middle.dropFirst(digits.count)
        if rest == ".jsonl" { return "" }
        guard rest.hasPrefix(".jsonl."), rest.count > ".jsonl.".count else { return nil }
        let tag = String(rest.dropFirst(".jsonl.".count))
        return tag.contains("@") ? tag : nil
    }

    /// For output shards named after input shards (`NamedShardWriter`): the writer's tag of a temporary
    /// shard ".NAME.jsonl.PID@HOST.tmp", else nil.
    static func namedTempTag(_ name: String) -> String? {
        guard name.hasPrefix("."), name.hasSuffix(".tmp"),
              let marker = name.range(of: ".jsonl.", options: .backwards), marker.lowerBound > name.index(after: name.startIndex)
        else { return nil }
        let tag = String(name[marker.upperBound..<name.index(name.endIndex, offsetBy: -".tmp".count)])
        return tag.contains("@") ? tag : nil
    }

    /// A complete shard named after an input shard: any visible "*.jsonl".
    static func isNamedShard(_ name: String) -> Bool {
        !name.hasPrefix(".") && name.hasSuffix(".jsonl") && name.count > ".jsonl".count
    }

    /// Scans `directory` (a missing one is an empty state): reads every complete shard and collects its
    /// record keys; deletes stale temporary shards (see above). A shard line that is not a JSON object with
    /// a string "id", or a key seen twice, is an error naming file and line. `named`: the shards are named
    /// after input shards (`--shards`): every visible *.jsonl is one, ".*.jsonl.PID@HOST.tmp" a temporary one.
    public static func scan(_ directory: URL, named: Bool = false) throws -> ResumeState {
        guard DurableFile.isDirectory(directory) else {
            return ResumeState(doneIDs: [], nextShardIndex: 0, records: 0, errorRecords: 0, shards: 0,
                               removedTempFiles: 0, keptTempFiles: [])
        }
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: directory.path)
        } catch {
            throw OutputError.io(path: directory.path, operation: "listing", reason: "\(error.localizedDescription)")
        }
        var removed: [String] = []
        var kept: [String] = []
        for name in names.sorted() {
            guard let tag = named ? namedTempTag(name) ?? tempShardTag(name) : tempShardTag(name) else { continue }
            guard tag.isEmpty || OutputLock.isDeadOrSelf(tag: tag) else {
                kept.append(name)
                continue
            }
            let path = directory.appendingPathComponent(name).path
            guard unlink(path) == 0 else {
                throw OutputError.io(path: path, operation: "deleting", reason: DurableFile.errnoText())
            }
            removed.append(name)
        }
        if !removed.isEmpty { try DurableFile.syncDirectory(directory.path) }

        let shards = named
            ? names.filter(isNamedShard).sorted().enumerated().map { ($0.offset, $0.element) }
            : names.compactMap { name in shardIndex(name).map { ($0, name) } }.sorted { $0.0 < $1.0 }
        var ids = Set<String>()
        var records = 0
        var errors = 0
        for (position, (_, name)) in shards.enumerated() {
            let path = directory.appendingPathComponent(name).path
            try forEachRecord(path) { line, id, status in
                guard ids.insert(id).inserted else {
                    let first = try locate(id, in: shards[..<(position + 1)].map {
                        directory.appendingPathComponent($0.1).path
                    })
                    throw OutputError.duplicateID(id: id, path: path, line: line, firstPath: first.path,
                                                  firstLine: first.line)
                }
                records += 1
                if status == "error" { errors += 1 }
            }
        }
        return ResumeState(doneIDs: ids, nextShardIndex: named ? 0 : (shards.last?.0).map { $0 + 1 } ?? 0, records: records,
                           errorRecords: errors, shards: shards.count, removedTempFiles: removed.count,
                           keptTempFiles: kept, removedTempNames: removed)
    }

    /// Calls `body(line, key, status)` for every record of a shard (`RecordKey`: the id, with its
    /// "prompt_index" when it has one).
    static func forEachRecord(_ path: String, _ body: (Int, String, String?) throws -> Void) throws {
        let reader: LineReader
        do {
            reader = try LineReader(path: path)
        } catch let LineReadError.open(reason) {
            throw OutputError.io(path: path, operation: "opening", reason: reason)
        }
        while true {
            let next: (bytes: [UInt8], crlf: Bool)?
            do {
                next = try reader.next()
            } catch LineReadError.tooLong(let limit) {
                throw OutputError.corruptShard(path: path, line: reader.lineNumber + 1,
                                               reason: "a line longer than \(limit) bytes")
            } catch LineReadError.read(let reason) {
                throw OutputError.io(path: path, operation: "reading", reason: reason)
            }
            guard let (bytes, _) = next else { return }
            let line = reader.lineNumber
            let value: JSONValue
            do {
                value = try JSONValue.parse(utf8: bytes)
            } catch let error as JSONParseError {
                throw OutputError.corruptShard(path: path, line: line, reason: "not valid JSON (\(error))")
            }
            guard case .object = value else {
                throw OutputError.corruptShard(path: path, line: line, reason: "not a JSON object")
            }
            guard case .string(let id)? = value["id"] else {
                throw OutputError.corruptShard(path: path, line: line, reason: "no string \"id\"")
            }
            var index: Int?
            if let member = value["prompt_index"] {
                guard let number = member.intValue else {
                    throw OutputError.corruptShard(path: path, line: line, reason: "\"prompt_index\" is not an integer")
                }
                index = number
            }
            try body(line, RecordKey.make(id: id, promptIndex: index), value["status"]?.stringValue)
        }
    }

    /// The first place `id` occurs in `paths` (used only to explain a duplicate).
    static func locate(_ id: String, in paths: [String]) throws -> (path: String, line: Int) {
        struct Found: Error { let path: String; let line: Int }
        for path in paths {
            do {
                try forEachRecord(path) { line, other, _ in
                    if other == id { throw Found(path: path, line: line) }
                }
            } catch let found as Found {
                return (found.path, found.line)
            }
        }
        return ("?", 0)
    }
}
