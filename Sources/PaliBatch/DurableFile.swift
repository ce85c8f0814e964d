// Writing files so that a crash at any moment leaves either the old file or the whole new one:
// write a temporary file in the same folder, fsync it, rename it into place, fsync the folder.
import Foundation
import PaliJSON

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
    /// Another run holds the output directory's lock (`OutputLock`): `holder` is "pid@host".
    case directoryInUse(lock: String, holder: String, startedAt: String, sameHost: Bool)
    /// The lock file exists but does not say which process holds it.
    case badLock(path: String, reason: String)
    /// The output directory disappeared during the run (deleted, unmounted).
    case directoryGone(path: String)

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
        case .directoryInUse(let lock, let holder, let startedAt, let sameHost):
            let folder = (lock as NSString).deletingLastPathComponent
            let pid = holder.prefix { $0 != "@" }, host = holder.drop { $0 != "@" }.dropFirst()
            if sameHost {
                return "\(folder) is in use by another paligemma run: process \(holder) (started \(startedAt)) holds "
                    + "\(lock). Two runs in one folder would lose and duplicate records: wait for that run to end, "
                    + "stop it (kill -USR1 \(pid) keeps its work; rerun to resume), or use another --output-dir."
            }
            return "\(folder) is in use by another paligemma run: process \(holder) on host \(host) (started "
                + "\(startedAt)) holds \(lock). This run cannot check another host's processes, so it never removes "
                + "that lock itself: if no paligemma run on \(host) uses this folder any more (it was killed, or the "
                + "host is gone), delete \(lock) and run again; otherwise wait for it or use another --output-dir."
        case .badLock(let path, let reason):
            return "\(path) exists but \(reason), so this run cannot tell which run holds the output directory. If "
                + "no paligemma run uses the folder, delete \(path) and run again."
        case .directoryGone(let path):
            return "the output directory \(path) was removed while the run was writing to it (deleted, or its file "
                + "system unmounted): the records it held are lost. Run the same command again to start afresh."
        }
    }
}

public enum DurableFile {
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

    /// Gives the complete file `temp` its final name `final`, failing with `shardExists` when that name is
    /// taken: link() refuses an existing name atomically (on NFS too), where a check followed by rename()
    /// could overwrite a file created in between. The temporary name is then removed (were that lost in a
    /// crash, it names the same bytes as the final file, and a resume deletes it). On a file system
    /// without hard links, the check and rename() are the fallback.
    static func publish(_ temp: String, as final: String) throws {
        if link(temp, final) == 0 {
            unlink(temp)
            return
        }
        switch errno {
        case EEXIST:
            throw OutputError.shardExists(path: final)
        case EPERM, EOPNOTSUPP, ENOSYS, EMLINK, EXDEV:
            if access(final, F_OK) == 0 { throw OutputError.shardExists(path: final) }
            try rename(temp, final)
        default:
            throw OutputError.io(path: final, operation: "linking \(temp) to", reason: errnoText())
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

    /// The file `name` for `url`, which names either that file or the folder to put it in; decided by the
    /// name, never by what exists (a folder deleted meanwhile must not become a file of that name). Throws
    /// `directoryGone` when the folder does not exist.
    static func metadataFile(_ url: URL, named name: String) throws -> URL {
        let file = url.lastPathComponent == name ? url : url.appendingPathComponent(name)
        let folder = file.deletingLastPathComponent()
        guard isDirectory(folder) else { throw OutputError.directoryGone(path: folder.path) }
        return file
    }

    /// Whether anything (even a dangling symlink) has this path.
    public static func exists(_ url: URL) -> Bool {
        var info = stat()
        return lstat(url.path, &info) == 0
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
