// Shards of output records. A shard is written under a temporary name and put in place only when
// whole, so after a crash the output directory holds complete shards and at most one temporary file:
//
//   out/shard-00000.jsonl                    complete: shardSize records, fsynced, linked, folder fsynced
//   out/shard-00001.jsonl                    complete
//   out/.shard-00002.jsonl.4242@node7.tmp    being written by process 4242 on node7 (a killed run leaves
//                                            it; ResumeState deletes it once that process is gone)
import Foundation

/// Appends records to numbered shards of `shardSize` records each. Thread-safe: `finish()` may be called
/// from a signal handler's queue while another thread appends.
public final class ShardWriter: @unchecked Sendable {
    public let directory: URL
    public let shardSize: Int
    private let lock = NSLock()
    private var index: Int
    private var fd: Int32 = -1
    private var buffer: [UInt8] = []
    private var count = 0
    private var completed: [String] = []
    private var failure: Error?
    private static let flushBytes = 1 << 20

    /// "shard-00042.jsonl".
    public static func shardName(_ index: Int) -> String { "shard-" + pad(index) + ".jsonl" }
    /// "pid@host" of this process: temporary shards carry it, so that a resume deletes only those of this
    /// process or of a dead one (`ResumeState.scan`), never another live run's.
    public static var ownerTag: String { "\(getpid())@\(OutputLock.hostName)" }

    /// ".shard-00042.jsonl.4242@node7.tmp" (`tag`: the writing process, `ownerTag`).
    public static func tempName(_ index: Int, tag: String = ownerTag) -> String {
        ".shard-" + pad(index) + ".jsonl." + tag + ".tmp"
    }

    private static func pad(_ index: Int) -> String {
        let digits = String(index)
        return String(repeating: "0", count: max(0, 5 - digits.count)) + digits
    }

    /// Output dir must exist or is created. Records go to ".shard-%05d.jsonl.PID@HOST.tmp"; when it holds
    /// `shardSize` records it is flushed, fsynced, linked to "shard-%05d.jsonl" (never over an existing
    /// file) and the folder fsynced.
    /// `firstIndex` is the first shard number to use (`ResumeState.nextShardIndex` on a resume).
    public init(directory: URL, shardSize: Int, firstIndex: Int) throws {
        guard shardSize >= 1 else { throw OutputError.invalidShardSize(shardSize) }
        self.directory = directory
        self.shardSize = shardSize
        self.index = firstIndex
        try DurableFile.createDirectory(directory)
    }

    /// Dropping a writer does not complete its partial shard (it stays a temporary file, as after a crash):
    /// call `finish()` first.
    deinit {
        if fd >= 0 { close(fd) }
    }

    /// File names of the shards this writer completed, in order.
    public var shardsCompleted: [String] { lock.locked { completed } }

    /// Records appended to the current shard, not yet durable.
    public var pendingRecords: Int { lock.locked { count } }

    /// The number the next shard completed by this writer will get.
    public var nextShardIndex: Int { lock.locked { index } }

    public func append(_ record: OutputRecord) throws {
        try lock.locked {
            try checkHealthy()
            do {
                if fd < 0 { fd = try DurableFile.openForWriting(tempPath) }
                buffer.append(contentsOf: record.jsonLine.utf8)
                buffer.append(0x0A)
                count += 1
                if count >= shardSize {
                    try complete()
                } else if buffer.count >= ShardWriter.flushBytes {
                    try DurableFile.writeAll(fd, buffer, path: tempPath)
                    buffer.removeAll(keepingCapacity: true)
                }
            } catch {
                let error = explained(error)
                failure = error
                throw error
            }
        }
    }

    /// Completes the current partial shard (if it holds any record) the same way as a full one. For the
    /// end of a run and for SIGTERM/SIGUSR1; appending afterwards starts the next shard.
    public func finish() throws {
        try lock.locked {
            try checkHealthy()
            guard count > 0 else { return }
            do {
                try complete()
            } catch {
                let error = explained(error)
                failure = error
                throw error
            }
        }
    }

    private let tag = ShardWriter.ownerTag
    private var tempPath: String { directory.appendingPathComponent(ShardWriter.tempName(index, tag: tag)).path }

    /// A failure caused by the output directory's disappearance says so.
    private func explained(_ error: Error) -> Error {
        DurableFile.isDirectory(directory) ? error : OutputError.directoryGone(path: directory.path)
    }

    private func checkHealthy() throws {
        // After a failed write the temporary shard's content is unknown: never complete it.
        if let failure { throw failure }
    }

    /// Caller holds the lock; fd is open and `count > 0`.
    private func complete() throws {
        let temp = tempPath
        let name = ShardWriter.shardName(index)
        let final = directory.appendingPathComponent(name).path
        try DurableFile.writeAll(fd, buffer, path: temp)
        buffer.removeAll(keepingCapacity: true)
        try DurableFile.fsyncFD(fd, path: temp)
        close(fd)
        fd = -1
        try DurableFile.publish(temp, as: final)
        try DurableFile.syncDirectory(directory.path)
        completed.append(name)
        index += 1
        count = 0
    }
}
