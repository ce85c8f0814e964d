// Output shards named after input shards (`paligemma run --shards`): the records of input shard 00042.tar
// go to out/00042.jsonl. Each input shard's records are written under a temporary name and published
// once the coordinator has every record of it (`complete(shard:)`), as ShardWriter does for numbered
// shards:
//
//   out/00041.jsonl                           every record of 00041.tar (the ones an earlier run did not
//                                             already publish)
//   out/.00042.jsonl.4242@node7.tmp           being written by process 4242 on node7
//   out/00043.part-00000.jsonl                what a stopped run (SIGTERM, a failure) had of 00043.tar;
//                                             the rerun publishes the rest as 00043.jsonl
//
// A name that is taken (a rerun completing an input shard an earlier run had published part of) gets the
// first free ".part-NNNNN" instead: the union of an input shard's output files holds each record once.
import Foundation

/// Where the coordinator's records go: numbered shards (`ShardWriter`) or shards named after the input's.
public protocol RecordSink: AnyObject {
    /// Appends `record`, which belongs to input shard `shard` (nil for manifests).
    func append(_ record: OutputRecord, shard: String?) throws
    /// Every record of input shard `shard` has been appended: publish its output shard.
    func complete(shard: String) throws
    /// Publishes whatever is pending (the end of the run, or a stop).
    func finish() throws
    /// File names of the shards this writer published, in order.
    var shardsCompleted: [String] { get }
}

extension ShardWriter: RecordSink {
    public func append(_ record: OutputRecord, shard: String?) throws { try append(record) }
    public func complete(shard: String) throws {}
}

public final class NamedShardWriter: RecordSink, @unchecked Sendable {
    public let directory: URL
    private let lock = NSLock()
    private struct Open {
        var fd: Int32
        var buffer: [UInt8] = []
        var count = 0
    }
    private var open: [String: Open] = [:]
    private var completed: [String] = []
    private var failure: Error?
    private let tag = ShardWriter.ownerTag
    private static let flushBytes = 1 << 20

    public init(directory: URL) throws {
        self.directory = directory
        try DurableFile.createDirectory(directory)
    }

    deinit {
        for state in open.values { close(state.fd) }
    }

    /// ".00042.jsonl.4242@node7.tmp".
    public static func tempName(_ shard: String, tag: String = ShardWriter.ownerTag) -> String {
        "." + shard + ".jsonl." + tag + ".tmp"
    }

    public var shardsCompleted: [String] { lock.locked { completed } }

    /// Records appended and not yet published, over every open shard.
    public var pendingRecords: Int { lock.locked { open.values.reduce(0) { $0 + $1.count } } }

    private func tempPath(_ shard: String) -> String {
        directory.appendingPathComponent(Self.tempName(shard, tag: tag)).path
    }

    public func append(_ record: OutputRecord, shard: String?) throws {
        let shard = shard ?? "unsharded"
        try guarded {
            var state = try open[shard] ?? Open(fd: DurableFile.openForWriting(tempPath(shard)))
            state.buffer.append(contentsOf: record.jsonLine.utf8)
            state.buffer.append(0x0A)
            state.count += 1
            if state.buffer.count >= Self.flushBytes {
                try DurableFile.writeAll(state.fd, state.buffer, path: tempPath(shard))
                state.buffer.removeAll(keepingCapacity: true)
            }
            open[shard] = state
        }
    }

    public func complete(shard: String) throws {
        try guarded { try publish(shard, asPart: false) }
    }

    /// Publishes every open shard as a part (its input shard is not done).
    public func finish() throws {
        try guarded {
            for shard in open.keys.sorted() { try publish(shard, asPart: true) }
        }
    }

    private func guarded(_ body: () throws -> Void) throws {
        try lock.locked {
            // After a failed write a temporary shard's content is unknown: never publish it.
            if let failure { throw failure }
            do {
                try body()
            } catch {
                let error = DurableFile.isDirectory(directory) ? error : OutputError.directoryGone(path: directory.path)
                failure = error
                throw error
            }
        }
    }

    /// Caller holds the lock.
    private func publish(_ shard: String, asPart: Bool) throws {
        guard let state = open.removeValue(forKey: shard) else { return }
        let temp = tempPath(shard)
        try DurableFile.writeAll(state.fd, state.buffer, path: temp)
        try DurableFile.fsyncFD(state.fd, path: temp)
        close(state.fd)
        let name = freeName(shard, asPart: asPart)
        try DurableFile.publish(temp, as: directory.appendingPathComponent(name).path)
        try DurableFile.syncDirectory(directory.path)
        completed.append(name)
    }

    /// "00042.jsonl", or (taken, or `asPart`) the first free "00042.part-NNNNN.jsonl".
    private func freeName(_ shard: String, asPart: Bool) -> String {
        let whole = shard + ".jsonl"
        if !asPart && !DurableFile.exists(directory.appendingPathComponent(whole)) { return whole }
        var part = 0
        while true {
            let digits = String(part)
            let name = shard + ".part-" + String(repeating: "0", count: max(0, 5 - digits.count)) + digits + ".jsonl"
            if !DurableFile.exists(directory.appendingPathComponent(name)) { return name }
            part += 1
        }
    }
}
