// Line-by-line reading of files that may be far larger than memory (manifests, shards).
import Foundation

/// Why a file could not be read line by line.
enum LineReadError: Error {
    case open(String)
    case read(String)
    case tooLong(limit: Int)
}

/// Reads a file in fixed-size chunks and hands out one line at a time, so only the current chunk and the
/// current line are ever in memory. Lines end at "\n"; a "\r" before it is dropped (and reported); the
/// last line may lack its "\n". A UTF-8 byte order mark at the start of the file is skipped.
final class LineReader {
    let path: String
    private let handle: FileHandle
    private var buffer: [UInt8] = []
    private var start = 0          // first unread byte of `buffer`
    private var scanned = 0        // bytes from `start` known to hold no "\n"
    private var eof = false
    private let chunkSize: Int
    private let maxLineBytes: Int
    /// 1-based number of the line last returned (0 before the first).
    private(set) var lineNumber = 0

    init(path: String, chunkSize: Int = 1 << 20, maxLineBytes: Int = 64 << 20) throws {
        self.path = path
        self.chunkSize = chunkSize
        self.maxLineBytes = maxLineBytes
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw LineReadError.open(String(cString: strerror(errno))) }
        var info = stat()
        if fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFDIR {
            close(fd)
            throw LineReadError.open("it is a directory")
        }
        self.handle = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
        // A UTF-8 byte order mark (EF BB BF) opens some files written on Windows: skip it.
        let head: Data?
        do {
            head = try handle.read(upToCount: 3)
        } catch {
            throw LineReadError.read("\(error.localizedDescription)")
        }
        if let head, head != Data([0xEF, 0xBB, 0xBF]) { buffer.append(contentsOf: head) }
    }

    /// The next line without its terminator, and whether it ended in "\r\n"; nil at the end of the file.
    func next() throws -> (bytes: [UInt8], crlf: Bool)? {
        while true {
            let found: Int? = buffer.withUnsafeBufferPointer { buf in
                let from = start + scanned
                guard from < buf.count, let base = buf.baseAddress,
                      let hit = memchr(base + from, 0x0A, buf.count - from) else { return nil }
                return base.distance(to: hit.assumingMemoryBound(to: UInt8.self))
            }
            if let newline = found {
                var end = newline
                let crlf = end > start && buffer[end - 1] == 0x0D
                if crlf { end -= 1 }
                let line = Array(buffer[start..<end])
                start = newline + 1
                scanned = 0
                lineNumber += 1
                return (line, crlf)
            }
            scanned = buffer.count - start
            if scanned > maxLineBytes { throw LineReadError.tooLong(limit: maxLineBytes) }
            if eof {
                guard start < buffer.count else { return nil }
                let line = Array(buffer[start...])
                start = buffer.count
                scanned = 0
                lineNumber += 1
                return (line, false)
            }
            try fill()
        }
    }

    private func fill() throws {
        if start > 0 {
            buffer.removeFirst(start)
            start = 0
        }
        let data: Data?
        do {
            data = try handle.read(upToCount: chunkSize)
        } catch {
            throw LineReadError.read("\(error.localizedDescription)")
        }
        guard let data, !data.isEmpty else { eof = true; return }
        buffer.append(contentsOf: data)
    }
}
