// The output directory's lock: at most one `paligemma run` writes a folder at a time.
//
//   out/run.lock    {"pid":4242,"host":"node7","started_at":"2025-01-31T12:00:00Z","process_start":9182734}
//
// Created with open(O_CREAT | O_EXCL), which is atomic on local file systems and on NFS v3 and later
// (Linux clients since 2.6); it needs no lock daemon, unlike flock/fcntl locks, which NFS either ignores
// (flock on older clients) or serves through NLM (lost with a client or server crash). A second run
// finds the file and is refused, naming the holder. A lock whose holder is gone is recognized only on
// the holder's own host (same host name, and its pid no longer runs, or now runs another program whose
// start time differs from `process_start`): it is taken over with a note. A lock of another host is
// never taken: the message says how to check and remove it. The holder removes the file when it ends
// (every return path of the coordinator, and `exit`); after SIGKILL or a crash it stays, stale.
import Foundation
import PaliJSON
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

public final class OutputLock: @unchecked Sendable {
    public static let fileName = "run.lock"

    /// Which process holds (or held) a lock.
    public struct Owner: Equatable, Sendable, CustomStringConvertible {
        public var pid: Int32
        public var host: String
        /// ISO 8601 UTC.
        public var startedAt: String
        /// The process's start time in clock ticks since boot (/proc/PID/stat field 22), when known:
        /// tells a reused pid from the holder.
        public var processStart: UInt64?

        public init(pid: Int32, host: String, startedAt: String, processStart: UInt64?) {
            self.pid = pid
            self.host = host
            self.startedAt = startedAt
            self.processStart = processStart
        }

        /// "4242@node7".
        public var description: String { "\(pid)@\(host)" }

        /// This process.
        public static var current: Owner {
            Owner(pid: getpid(), host: OutputLock.hostName, startedAt: RunInfo.timestamp(Date()),
                  processStart: OutputLock.processStart(getpid()))
        }

        var json: JSONValue {
            var members: [(String, JSONValue)] = [("pid", .int(Int(pid))), ("host", .string(host)),
                                                  ("started_at", .string(startedAt))]
            if let processStart { members.append(("process_start", .number(String(processStart)))) }
            return .object(members)
        }

        init?(json: JSONValue) {
            guard let pid = json["pid"]?.intValue, let pid32 = Int32(exactly: pid), pid32 > 0,
                  let host = json["host"]?.stringValue else { return nil }
            self.pid = pid32
            self.host = host
            startedAt = json["started_at"]?.stringValue ?? "?"
            processStart = json["process_start"]?.numberText.flatMap { UInt64($0) }
        }
    }

    /// The lock file.
    public let path: String
    /// This process, as written in the file.
    public let owner: Owner
    /// Set when a stale lock was taken over: what happened, for stderr.
    public let note: String?
    private let lock = NSLock()
    private var held = true

    private init(path: String, owner: Owner, note: String?) {
        self.path = path
        self.owner = owner
        self.note = note
    }

    /// Takes the lock of `directory` (which must exist), or throws `OutputError.directoryInUse` naming the
    /// holder (`OutputError.badLock` when the file does not say who holds it).
    public static func acquire(directory: URL) throws -> OutputLock {
        let path = directory.appendingPathComponent(fileName).path
        let me = Owner.current
        let text = me.json.encoded + "\n"
        var notes: [String] = []
        var unreadable = 0, alive = 0
        for _ in 0..<30 {
            let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
            if fd >= 0 {
                do {
                    try DurableFile.writeAll(fd, Array(text.utf8), path: path)
                    try DurableFile.fsyncFD(fd, path: path)
                    close(fd)
                    try DurableFile.syncDirectory(directory.path)
                } catch {
                    close(fd)
                    unlink(path)
                    throw error
                }
                let acquired = OutputLock(path: path, owner: me, note: notes.isEmpty ? nil : notes.joined(separator: "\n"))
                register(acquired)
                return acquired
            }
            guard errno == EEXIST else {
                throw OutputError.io(path: path, operation: "creating", reason: DurableFile.errnoText())
            }
            let existing: (text: String, owner: Owner?)
            switch readLockFile(path) {
            case .missing: continue             // released meanwhile: try again
            case .failed(let reason): throw OutputError.io(path: path, operation: "reading", reason: reason)
            case .text(let content): existing = (content, parse(content))
            }
            guard let holder = existing.owner else {
                // Empty or partial: a run between its create and its write, or a damaged file.
                unreadable += 1
                if unreadable >= 10 {
                    throw OutputError.badLock(path: path, reason: existing.text.isEmpty ? "the file is empty"
                                                  : "it does not name a process (\(existing.text.prefix(80)))")
                }
                usleep(50_000)
                continue
            }
            if let reason = staleReason(holder, me: me) {
                // Move the stale file aside under a name of our own, and delete it only if it is still the
                // stale one: another starting run may have taken it over and written its own meanwhile.
                let aside = path + ".stale-" + String(me.pid)
                guard Foundation.rename(path, aside) == 0 else {
                    if errno == ENOENT { continue }
                    throw OutputError.io(path: path, operation: "renaming", reason: DurableFile.errnoText())
                }
                if case .text(let moved) = readLockFile(aside), moved == existing.text {
                    unlink(aside)
                    notes.append("took over \(path) of pid \(holder) (started \(holder.startedAt)): \(reason)")
                } else {
                    _ = link(aside, path)       // a live holder's file: put it back (unless a third run's is there)
                    unlink(aside)
                }
                continue
            }
            // A holder of this host that is alive: look again for up to a second before refusing, since a run
            // killed a moment ago (SIGKILL to it, or its mpirun) may not have finished dying yet.
            if holder.host == me.host && holder.pid != me.pid && alive < 8 {
                alive += 1
                usleep(125_000)
                continue
            }
            throw OutputError.directoryInUse(lock: path, holder: holder.description, startedAt: holder.startedAt,
                                             sameHost: holder.host == me.host)
        }
        throw OutputError.badLock(path: path, reason: "it kept changing while this run tried to take it")
    }

    /// Removes the lock file if it is still this process's. Idempotent.
    public func release() {
        let wasHeld: Bool = lock.locked {
            defer { held = false }
            return held
        }
        guard wasHeld else { return }
        OutputLock.unregister(self)
        if case .text(let content) = OutputLock.readLockFile(path), OutputLock.parse(content) == owner {
            unlink(path)
            let folder = (path as NSString).deletingLastPathComponent
            try? DurableFile.syncDirectory(folder)
        }
    }

    // MARK: Who is alive

    /// Why `holder`'s lock is stale, or nil when its process may still run (or runs on another host).
    static func staleReason(_ holder: Owner, me: Owner) -> String? {
        guard holder.host == me.host else { return nil }
        if holder.pid == me.pid {
            // Ours only if this process took it (then it is in use); otherwise an earlier process with our
            // pid (a container restarted) left it.
            if heldLocks().contains(where: { $0.owner == holder }) { return nil }
            return "that run is gone (pid \(holder.pid) is this process now)"
        }
        if kill(holder.pid, 0) != 0 && errno == ESRCH { return "that process no longer exists" }
        if isZombie(holder.pid) { return "that process has ended (its parent has not reaped it yet)" }
        if let recorded = holder.processStart, let now = processStart(holder.pid), recorded != now {
            return "pid \(holder.pid) now belongs to another process"
        }
        return nil
    }

    /// The host name (sanitized for use in file names).
    public static let hostName: String = {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "localhost" }
        let name = String(cString: buffer)
        let safe = String(name.unicodeScalars.map { scalar -> Character in
            let allowed = CharacterSet.alphanumerics.contains(scalar) && scalar.isASCII || "-._".unicodeScalars.contains(scalar)
            return allowed ? Character(scalar) : "_"
        })
        return safe.isEmpty ? "localhost" : safe
    }()

    /// The start time of process `pid` in clock ticks since boot (Linux), nil when unknown.
    static func processStart(_ pid: Int32) -> UInt64? {
        guard let fields = statFields(pid), fields.count > 19 else { return nil }
        return UInt64(fields[19])   // field 22, starttime
    }

    /// Whether `pid` has ended but is not reaped yet (Linux state Z or X): kill(pid, 0) still succeeds for
    /// it, and a killed run's processes can stay so (orphans of a killed mpirun wait for init to reap them).
    static func isZombie(_ pid: Int32) -> Bool {
        guard let state = statFields(pid)?.first else { return false }
        return state == "Z" || state == "X"
    }

    /// Fields 3... of /proc/PID/stat ("pid (comm) state ppid ..."; comm may hold spaces and parentheses,
    /// so the fields restart after the last ')'): element 0 is field 3, the state.
    private static func statFields(_ pid: Int32) -> [Substring]? {
        guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/stat") else { return nil }
        let text = String(decoding: data, as: UTF8.self)
        guard let close = text.lastIndex(of: ")") else { return nil }
        return text[text.index(after: close)...].split(separator: " ")
    }

    /// Whether temporary files tagged `tag` ("pid@host", `ShardWriter.tempName`) may be deleted: they are
    /// this process's, or of a process of this host that no longer runs.
    public static func isDeadOrSelf(tag: String) -> Bool {
        guard let at = tag.firstIndex(of: "@"), let pid = Int32(tag[..<at]), pid > 0 else { return false }
        guard String(tag[tag.index(after: at)...]) == hostName else { return false }
        if pid == getpid() { return true }
        return (kill(pid, 0) != 0 && errno == ESRCH) || isZombie(pid)
    }

    // MARK: File

    private enum ReadResult { case missing, failed(String), text(String) }

    private static func readLockFile(_ path: String) -> ReadResult {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return errno == ENOENT ? .missing : .failed(DurableFile.errnoText()) }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while bytes.count < 1 << 16 {
            let n = read(fd, &chunk, chunk.count)
            if n < 0 { if errno == EINTR { continue }; return .failed(DurableFile.errnoText()) }
            if n == 0 { break }
            bytes.append(contentsOf: chunk[0..<n])
        }
        return .text(String(decoding: bytes, as: UTF8.self))
    }

    private static func parse(_ text: String) -> Owner? {
        // A partial write (a run between its create and its write) does not parse.
        guard let value = try? JSONValue.parse(text.trimmingCharacters(in: .whitespacesAndNewlines)) else { return nil }
        return Owner(json: value)
    }

    // MARK: Locks held by this process (released at exit)

    nonisolated(unsafe) private static var held: [ObjectIdentifier: OutputLock] = [:]
    private static let registry = NSLock()
    nonisolated(unsafe) private static var exitHandlerInstalled = false

    private static func register(_ lock: OutputLock) {
        registry.locked {
            held[ObjectIdentifier(lock)] = lock
            if !exitHandlerInstalled {
                exitHandlerInstalled = true
                atexit { OutputLock.releaseAll() }
            }
        }
    }

    private static func unregister(_ lock: OutputLock) {
        _ = registry.locked { held.removeValue(forKey: ObjectIdentifier(lock)) }
    }

    private static func heldLocks() -> [OutputLock] { registry.locked { Array(held.values) } }

    /// Releases every lock this process still holds (at `exit`, e.g. when an in-process rank aborts).
    static func releaseAll() {
        for lock in heldLocks() { lock.release() }
    }
}
