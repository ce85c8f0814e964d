// A weights file held open, read by ranges: the header with pread, tensors through mappings of just
// their own pages (`MappedRegion`). Nothing maps the whole file, so a process maps only the tensors it
// reads (a vision rank never maps the decoder's bytes), and a tensor handed out in place keeps only
// its own region alive.
//
// Mappings are PROT_READ, MAP_PRIVATE: writing through a weight tensor's pointer faults, which is a bug
// in the writer (weights are read-only). A file truncated by another process while mapped raises
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
    /// Size of the file in bytes.
    let count: Int
    private let fd: Int32

    init(path: String) throws {
        self.path = path
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw WeightsError.cannotOpen(path: path, reason: Self.errnoText()) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            let reason = Self.errnoText()
            close(fd)
            throw WeightsError.cannotOpen(path: path, reason: reason)
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            close(fd)
            throw WeightsError.cannotOpen(path: path, reason: "not a regular file")
        }
        self.fd = fd
        count = Int(st.st_size)
    }

    deinit { close(fd) }

    /// The bytes at `range` (inside the file), read with pread.
    func read(_ range: Range<Int>) throws -> [UInt8] {
        precondition(range.lowerBound >= 0 && range.upperBound <= count, "read \(range) outside a \(count)-byte file")
        var out = [UInt8](repeating: 0, count: range.count)
        var done = 0
        while done < range.count {
            let n = out.withUnsafeMutableBytes { buffer in
                pread(fd, buffer.baseAddress! + done, range.count - done, off_t(range.lowerBound + done))
            }
            if n < 0 {
                if errno == EINTR { continue }
                throw WeightsError.cannotOpen(path: path, reason: "read failed: " + Self.errnoText())
            }
            if n == 0 { throw WeightsError.truncated(path: path, detail: "the file ended while reading byte \(range.lowerBound + done)") }
            done += n
        }
        return out
    }

    /// Maps the pages holding `range` (non-empty, inside the file). `populate`: map every page at once
    /// (MAP_POPULATE) rather than fault them in one by one.
    func map(_ range: Range<Int>, populate: Bool = false) throws -> MappedRegion {
        precondition(!range.isEmpty && range.lowerBound >= 0 && range.upperBound <= count, "map \(range) outside a \(count)-byte file")
        let page = Int(getpagesize())
        let start = range.lowerBound / page * page, length = range.upperBound - start
        var flags = MAP_PRIVATE
        #if os(Linux)
        if populate { flags |= MAP_POPULATE }
        #endif
        let p = mmap(nil, length, PROT_READ, flags, fd, off_t(start))
        guard let p, p != MAP_FAILED else {
            throw WeightsError.cannotOpen(path: path, reason: "mmap of bytes \(range.lowerBound)..<\(range.upperBound) failed: " + Self.errnoText())
        }
        return MappedRegion(file: self, mapping: p, length: length, base: UnsafeRawPointer(p) + (range.lowerBound - start))
    }

    fileprivate static func errnoText() -> String {
        String(cString: strerror(errno))
    }
}

/// Some pages of a `MappedFile`, unmapped when the last reference goes.
final class MappedRegion: @unchecked Sendable {
    let file: MappedFile
    private let mapping: UnsafeMutableRawPointer
    private let length: Int
    /// The first requested byte (inside the first page).
    let base: UnsafeRawPointer

    init(file: MappedFile, mapping: UnsafeMutableRawPointer, length: Int, base: UnsafeRawPointer) {
        self.file = file
        self.mapping = mapping
        self.length = length
        self.base = base
    }

    deinit { munmap(mapping, length) }
}
