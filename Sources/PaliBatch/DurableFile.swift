// Writing files so that a crash at any moment leaves either the old file or the whole new one:
// write a temporary file in the same folder, fsync it, rename it into place, fsync the folder.
import Foundation

/// What went wrong in the output directory (shards, run.json, stats.json).
public enum OutputError: Error, CustomStringConvertible, Equatable {
    /// A system call failed.
    case io(path: String, operation: String, reason: String)
    /// A shard this run would write already exists (it is never overwritten).
    case shardExists(path: String)
    case invalidShardSize(Int)
    /// A line of a complete shard that our writer could not have written.
    case corruptShard(path: String, line: Int, reason: String)
    /// The same id in two complete shard lines.
    case duplicateID(id: String, path: String, line: Int, firstPath: String, firstLine: Int)
    /// run.json or stats.json that cannot be read.
    case badMetadata(path: String, reason: String)

    public var description: String {
        switch self {
        case .io(let path, let operation, let reason):
            return "\(operation) \(path) failed: \(reason). Check free space and permissions of the output directory."
        case .shardExists(let path):
            return "\(path) already exists and will not be overwritten: another run may be writing to the same "
                + "output directory. Use one output directory per run (a rerun resumes it)."
        case .invalidShardSize(let size):
            return "shard size \(size) is not positive: give --shard-size 1 or more."
        case .corruptShard(let path, let line, let reason):
            return "\(path):\(line): \(reason). Shards are written whole by paligemma run, so something else "
                + "changed this file: move it out of the output directory (its ids will be redone) or restore "
                + "it, then run again."
        case .duplicateID(let id, let path, let line, let firstPath, let firstLine):
            return "\(path):\(line): id \(JSONValue.string(id).encoded) is already recorded at \(firstPath):"
                + "\(firstLine). A run never writes an id twice (were shards of another run copied in?): remove "
                + "one of the two records, then run again."
        case .badMetadata(let path, let reason):
            return "\(path): \(reason). Remove the file to start the run's bookkeeping afresh, or use a new "
                + "output directory."
        }
    }
}

enum DurableFile {
    static func errnoText() -> String { String(cString: strerror(errno)) }

    static func createDirectory(_ url: URL) throws {
        do {
            try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        } catch {
            throw OutputError.io(path: url.path, operation: "creating", reason: "\(error.localizedDescription)")
        }
    }

    /// Writes every byte of `bytes` to `fd`.
    static func writeAll(_ fd: Int32, _ bytes: [UInt8], path: String) throws {
        try bytes.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = write(fd, raw.baseAddress! + offset, raw.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw OutputError.io(path: path, operation: "writing", reason: errnoText())
                }
                offset += n
            }
        }
    }

    static func fsyncFD(_ fd: Int32, path: String) throws {
        while fsync(fd) != 0 {
            if errno == EINTR { continue }
            throw OutputError.io(path: path, operation: "fsync of", reason: errnoText())
        }
    }

    /// Makes a rename or unlink in `directory` durable.
    static func syncDirectory(_ directory: String) throws {
        let fd = open(directory, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw OutputError.io(path: directory, operation: "opening", reason: errnoText()) }
        defer { close(fd) }
        try fsyncFD(fd, path: directory)
    }

    static func openForWriting(_ path: String) throws -> Int32 {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw OutputError.io(path: path, operation: "creating", reason: errnoText()) }
        return fd
    }

    static func rename(_ from: String, _ to: String) throws {
        guard Foundation.rename(from, to) == 0 else {
            throw OutputError.io(path: to, operation: "renaming \(from) to", reason: errnoText())
        }
    }

    /// Replaces `url` with `contents` atomically (temporary ".<name>.tmp" beside it, fsync, rename, fsync folder).
    static func replace(_ url: URL, with contents: String) throws {
        let folder = url.deletingLastPathComponent().path
        let temp = folder + "/." + url.lastPathComponent + ".tmp"
        let fd = try openForWriting(temp)
        do {
            try writeAll(fd, Array(contents.utf8), path: temp)
            try fsyncFD(fd, path: temp)
        } catch {
            close(fd)
            unlink(temp)
            throw error
        }
        close(fd)
        try rename(temp, url.path)
        try syncDirectory(folder)
    }

    static func isDirectory(_ url: URL) -> Bool {
        var isDirectory: ObjCBool = false
        return FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) && isDirectory.boolValue
    }
}

extension NSLock {
    /// Runs `body` holding the lock.
    func locked<T>(_ body: () throws -> T) rethrows -> T {
        lock()
        defer { unlock() }
        return try body()
    }
}
