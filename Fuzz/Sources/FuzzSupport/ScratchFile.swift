// For parsers whose public entry point takes a path (safetensors, NPZ, manifests): each input is
// written to one file per process, in /dev/shm when there is one (no disk I/O), and rewritten in
// place for the next input.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

public final class ScratchFile {
    public let path: String
    public var url: URL { URL(fileURLWithPath: path) }

    /// A file named like `fuzz-<pid><suffix>` (the suffix picks the format where the parser looks at it).
    public init(suffix: String) {
        var isDirectory: ObjCBool = false
        let shm = FileManager.default.fileExists(atPath: "/dev/shm", isDirectory: &isDirectory) && isDirectory.boolValue
        let folder = shm ? "/dev/shm" : NSTemporaryDirectory()
        path = (folder as NSString).appendingPathComponent("paligemma-fuzz-\(getpid())\(suffix)")
        atexit_paths.append(path)
        if atexit_paths.count == 1 { atexit { for p in atexit_paths { unlink(p) } } }
    }

    /// Replaces the file's contents with `size` bytes at `data`.
    public func write(_ data: UnsafePointer<UInt8>, _ size: Int) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        precondition(fd >= 0, "cannot create \(path): \(String(cString: strerror(errno)))")
        var done = 0
        while done < size {
            let n = Glibc.write(fd, data + done, size - done)
            precondition(n > 0 || errno == EINTR, "cannot write \(path): \(String(cString: strerror(errno)))")
            if n > 0 { done += n }
        }
        close(fd)
    }
}

nonisolated(unsafe) private var atexit_paths: [String] = []
