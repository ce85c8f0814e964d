// A whole file mapped read-only into memory. Tensors handed out in place keep this object alive
// through their storage's owner, so the mapping lasts as long as any tensor that points into it.
//
// The mapping is PROT_READ: writing through a weight tensor's pointer faults, which is a bug in
// the writer (weights are read-only). A file truncated by another process while mapped raises
// SIGBUS on access; that cannot be detected up front and is not guarded against.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

final class MappedFile: @unchecked Sendable {
    let path: String
    /// Start of the mapping; nil for an empty file (nothing to map).
    let base: UnsafeRawPointer?
    let count: Int

    init(path: String) throws {
        self.path = path
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw WeightsError.cannotOpen(path: path, reason: Self.errnoText()) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw WeightsError.cannotOpen(path: path, reason: Self.errnoText()) }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw WeightsError.cannotOpen(path: path, reason: "not a regular file")
        }
        count = Int(st.st_size)
        if count == 0 {
            base = nil
            return
        }
        let p = mmap(nil, count, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let p, p != MAP_FAILED else {
            throw WeightsError.cannotOpen(path: path, reason: "mmap failed: " + Self.errnoText())
        }
        base = UnsafeRawPointer(p)
    }

    deinit {
        if let base { munmap(UnsafeMutableRawPointer(mutating: base), count) }
    }

    /// The mapped bytes (empty for an empty file).
    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }

    func contains(_ pointer: UnsafeRawPointer) -> Bool {
        guard let base else { return false }
        return pointer >= base && pointer < base + count
    }

    private static func errnoText() -> String {
        String(cString: strerror(errno))
    }
}
