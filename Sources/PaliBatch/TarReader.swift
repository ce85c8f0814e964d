// Reads a tar file member by member through libarchive, streaming: plain tars and gzip-compressed
// ones (.tar.gz, .tgz; the compression is recognised from the bytes, not the name). Nothing is unpacked
// to disk; a member's bytes are read into memory only when asked for (`readData`), otherwise skipped.
import CArchive
import Foundation

/// A tar that cannot be read on: unreadable, not a tar, corrupt or truncated. `after` names the last
/// member read whole, for messages.
public struct TarError: Error, CustomStringConvertible, Equatable {
    public var path: String
    public var reason: String
    public var after: String?

    public var description: String {
        "\(path): \(reason)" + (after.map { " (after member \($0))" } ?? " (before its first member)")
    }
}

/// One member's header.
public struct TarMember: Sendable, Equatable {
    public var name: String
    public var size: Int
    /// A regular file (directories, links and the like are skipped by WebDataset readers).
    public var isFile: Bool
}

public final class TarReader {
    public let path: String
    private var archive: OpaquePointer?
    private var lastName: String?
    private var current: TarMember?
    private var dataRead = true

    /// Opens `path`. Throws `TarError` when it cannot be opened.
    public init(path: String) throws {
        self.path = path
        archive = archive_read_new()
        guard let archive else { throw TarError(path: path, reason: "libarchive could not allocate a reader") }
        archive_read_support_filter_gzip(archive)
        archive_read_support_format_tar(archive)
        archive_read_support_format_gnutar(archive)
        if archive_read_open_filename(archive, path, 1 << 16) != CArchive_ok() {
            let reason = Self.errorText(archive)
            archive_read_free(archive)
            self.archive = nil
            throw TarError(path: path, reason: reason)
        }
    }

    deinit {
        if let archive { archive_read_free(archive) }
    }

    private static func errorText(_ archive: OpaquePointer) -> String {
        archive_error_string(archive).map { String(cString: $0) } ?? "unreadable (libarchive error \(archive_errno(archive)))"
    }

    private func failure(_ reason: String? = nil) -> TarError {
        TarError(path: path, reason: reason ?? archive.map(Self.errorText) ?? "closed", after: lastName)
    }

    /// The next member's header, or nil at the end of the archive. The previous member's data, when it
    /// was not read, is skipped.
    public func next() throws -> TarMember? {
        guard let archive else { return nil }
        if !dataRead, archive_read_data_skip(archive) != CArchive_ok() { throw failure() }
        if let current { lastName = current.name }
        current = nil
        var entry: OpaquePointer?
        let status = archive_read_next_header(archive, &entry)
        if status == CArchive_eof() { return nil }
        guard status == CArchive_ok() || status == CArchive_warn(), let entry else { throw failure() }
        guard let pathname = archive_entry_pathname(entry) else { throw failure("a member without a name") }
        let member = TarMember(name: String(cString: pathname), size: Int(archive_entry_size(entry)),
                               isFile: archive_entry_filetype(entry) == CArchive_filetype_regular())
        current = member
        dataRead = false
        return member
    }

    /// The bytes of the member `next` returned last (at most `limit`; a larger member throws).
    public func readData(limit: Int) throws -> [UInt8] {
        guard let archive, let current else { throw failure("no member to read") }
        guard current.size <= limit else {
            throw failure("member \(current.name) is \(current.size) bytes, more than the \(limit) allowed")
        }
        dataRead = true
        var bytes = [UInt8](repeating: 0, count: current.size)
        var filled = 0
        while filled < bytes.count {
            let n = bytes.withUnsafeMutableBytes { archive_read_data(archive, $0.baseAddress! + filled, $0.count - filled) }
            if n < 0 { throw TarError(path: path, reason: Self.errorText(archive), after: lastName).inMember(current.name) }
            if n == 0 { throw TarError(path: path, reason: "truncated", after: lastName).inMember(current.name) }
            filled += n
        }
        return bytes
    }
}

extension TarError {
    /// The same error, said to be inside member `name`.
    func inMember(_ name: String) -> TarError {
        TarError(path: path, reason: "member \(name): \(reason)", after: after)
    }
}
