// Decoding JPEG and PNG files into RGBImage, matching what transformers 5.23's
// SiglipImageProcessor (PIL backend) sees: `Image.open(path)` then `convert_to_rgb`.
// The codecs (libjpeg-turbo, libpng) run behind the C shim CImageCodecs; the conversion of their
// raw samples to RGB follows Pillow 13's rules and lives in PillowConversion.swift.
// Not here: EXIF orientation (neither Pillow's open nor transformers applies it), colour
// management (ICC profiles, PNG gAMA/sRGB chunks are ignored by both).
import CImageCodecs
import Foundation

/// The container format of an image file.
public enum ImageFormat: String, Sendable {
    case jpeg, png
}

/// What a file's header declares, read without decoding pixels.
public struct ImageHeader: Sendable, Equatable {
    public var format: ImageFormat
    public var width: Int
    public var height: Int
    /// The mode Pillow 13 opens the file as ("L", "RGB", "CMYK", "I;16", "P", "LA", "RGBA", "1").
    public var pillowMode: String
    public var pixelCount: Int { width * height }
}

/// Decodes JPEG and PNG files to 8-bit RGB exactly as Pillow 13 + transformers 5.23 do
/// (alpha composited onto white; palettes, 16-bit and CMYK converted by Pillow's rules).
/// Refuses images whose header declares more than `maxPixels` pixels before decoding them.
public struct ImageDecoder: Sendable {
    public var maxPixels: Int = 64_000_000

    public init(maxPixels: Int = 64_000_000) {
        self.maxPixels = maxPixels
    }

    /// Reads and decodes one file.
    public func decode(contentsOf url: URL) throws -> RGBImage {
        try decode(data: Self.readFile(url), name: url.path)
    }

    /// Decodes an image held in memory; `name` is used in error messages (usually the path).
    public func decode(data: [UInt8], name: String) throws -> RGBImage {
        try data.withUnsafeBufferPointer { buffer in
            let session = try CodecSession(buffer, name: name)
            defer { session.close() }
            let header = session.header
            guard header.width * header.height <= maxPixels else {
                throw ImageError.tooLarge(path: name, width: header.width, height: header.height,
                                          maxPixels: maxPixels)
            }
            let raw = try session.readPixels()
            switch header.format {
            case .jpeg:
                return PillowConversion.jpegToRGB(raw, width: header.width, height: header.height,
                                                  channels: Int(session.info.channels))
            case .png:
                let chunks = try PNGChunks(buffer, name: name)
                return try PillowConversion.pngToRGB(raw, info: session.info, chunks: chunks, name: name)
            }
        }
    }

    /// Reads only the header: format, size and Pillow mode. Cheap; no pixel memory.
    public func header(data: [UInt8], name: String) throws -> ImageHeader {
        try data.withUnsafeBufferPointer { buffer in
            let session = try CodecSession(buffer, name: name)
            defer { session.close() }
            return session.header
        }
    }

    /// Reads only the header of a file.
    public func header(contentsOf url: URL) throws -> ImageHeader {
        try header(data: Self.readFile(url), name: url.path)
    }

    /// The file's bytes. Errors say what the system said ("No such file or directory", "Too many levels of
    /// symbolic links", "Permission denied"), or that the path is a directory, a FIFO or a socket (opened
    /// without blocking, so a FIFO with no writer cannot hang the caller).
    static func readFile(_ url: URL) throws -> [UInt8] {
        let path = url.path
        func failure(_ reason: String) -> ImageError { .unreadable(path: path, reason: reason) }
        func systemError() -> ImageError { failure(String(cString: strerror(errno))) }
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw systemError() }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw systemError() }
        switch info.st_mode & S_IFMT {
        case S_IFDIR: throw failure("it is a directory, not an image file")
        case S_IFIFO: throw failure("it is a FIFO, not an image file")
        case S_IFSOCK: throw failure("it is a socket, not an image file")
        default: break
        }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
        var bytes: [UInt8] = []
        if info.st_mode & S_IFMT == S_IFREG { bytes.reserveCapacity(Int(info.st_size)) }
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let n = read(fd, &chunk, chunk.count)
            if n < 0 {
                if errno == EINTR { continue }
                throw systemError()
            }
            if n == 0 { return bytes }
            bytes.append(contentsOf: chunk[0..<n])
        }
    }
}

/// One open decoder of the C shim over a buffer that outlives it.
private struct CodecSession {
    let handle: OpaquePointer
    let info: cimg_info
    let header: ImageHeader
    let name: String

    init(_ buffer: UnsafeBufferPointer<UInt8>, name: String) throws {
        self.name = name
        var handle: OpaquePointer?
        var info = cimg_info()
        var message = [CChar](repeating: 0, count: 512)
        let rc = cimg_open(buffer.baseAddress, buffer.count, &handle, &info, &message, message.count)
        guard rc == Int32(CIMG_OK), let handle else {
            if rc == Int32(CIMG_ERR_FORMAT) {
                let signature = buffer.prefix(8).map { String(format: "%02x", $0) }.joined(separator: " ")
                throw ImageError.unsupportedFormat(path: name, signature: signature.isEmpty ? "empty file" : signature)
            }
            throw Self.error(rc, message, name: name)
        }
        self.handle = handle
        self.info = info
        let format: ImageFormat = info.format == Int32(CIMG_FORMAT_JPEG) ? .jpeg : .png
        self.header = ImageHeader(format: format, width: Int(info.width), height: Int(info.height),
                                  pillowMode: PillowConversion.pillowMode(info))
        guard info.width > 0, info.height > 0 else {
            cimg_close(handle)
            throw ImageError.corrupt(path: name, reason: "header declares an empty \(info.width)x\(info.height) image")
        }
    }

    func readPixels() throws -> [UInt8] {
        let count = Int(info.width) * Int(info.height) * Int(info.channels) * Int(info.bytes_per_sample)
        var message = [CChar](repeating: 0, count: 512)
        var rc = Int32(CIMG_OK)
        let pixels = [UInt8](unsafeUninitializedCapacity: count) { out, initialized in
            rc = cimg_read(handle, out.baseAddress, count, &message, message.count)
            // On failure the bytes are unspecified but the array is thrown away below.
            initialized = count
        }
        guard rc == Int32(CIMG_OK) else { throw Self.error(rc, message, name: name) }
        return pixels
    }

    func close() {
        cimg_close(handle)
    }

    static func error(_ rc: Int32, _ message: [CChar], name: String) -> ImageError {
        let text = String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        switch rc {
        case Int32(CIMG_ERR_TRUNCATED): return .truncated(path: name, reason: text)
        case Int32(CIMG_ERR_UNSUPPORTED): return .unsupportedContent(path: name, reason: text)
        default: return .corrupt(path: name, reason: text)
        }
    }
}
