// The jobs of a batch run: a JSONL or CSV manifest, or a folder of images, read as a stream of entries.
//
//   {"id": "a1", "image": "imgs/a1.jpg", "prompt": "caption en", "source": "web"}     one JSONL line
//   id,image,prompt,source                                                          CSV header
//   a1,imgs/a1.jpg,caption en,web                                                   CSV row
//
// Relative image paths resolve against the manifest's folder. With an image root, a path whose
// resolved form ("..", symlinks) lies outside it gets a per-entry `pathError` (the run goes on).
import Foundation
import PaliJSON

public enum ManifestFormat: Sendable, Equatable {
    /// One JSON object per line.
    case jsonl
    /// RFC 4180 CSV with a header row.
    case csv
}

/// Where the jobs come from.
public enum ManifestSource: Sendable {
    /// A manifest file in the given format.
    case file(URL, ManifestFormat)
    /// Every *.jpg, *.jpeg and *.png (any case) directly in the folder, by name; each with `prompt`.
    case directory(URL, prompt: String)

    /// A manifest file whose format follows from its extension: .jsonl, .json, .ndjson → JSONL; .csv → CSV.
    public static func file(_ url: URL) throws -> ManifestSource {
        switch url.pathExtension.lowercased() {
        case "jsonl", "json", "ndjson": return .file(url, .jsonl)
        case "csv": return .file(url, .csv)
        default: throw ManifestError.unknownFormat(path: url.path)
        }
    }

    /// The manifest file or image folder, as a path for messages.
    public var path: String {
        switch self {
        case .file(let url, _): return url.path
        case .directory(let url, _): return url.path
        }
    }
}

/// One job of the manifest.
public struct ManifestEntry: Sendable {
    /// 1-based line in the manifest where the entry starts (for a folder: its position by name).
    public let line: Int
    public let id: String
    /// The image path as written in the manifest.
    public let image: String
    /// The resolved absolute path (symlinks of existing parts resolved): the file to open. Nil when
    /// `pathError` is set.
    public let imagePath: String?
    /// Why this entry's image may not be read (it escapes the image root): a per-record error.
    public let pathError: String?
    public let prompt: String
    /// The manifest's other fields, in order (CSV cells as strings).
    public let extra: [(String, JSONValue)]

    public init(line: Int, id: String, image: String, imagePath: String?, pathError: String?, prompt: String,
                extra: [(String, JSONValue)] = []) {
        self.line = line
        self.id = id
        self.image = image
        self.imagePath = imagePath
        self.pathError = pathError
        self.prompt = prompt
        self.extra = extra
    }
}

public struct ManifestOptions: Sendable {
    /// When set, every image must resolve to a path inside this folder.
    public var imageRoot: URL?
    /// The prompt of entries that give none (JSONL: no "prompt" or null; CSV: no column or an empty cell).
    public var defaultPrompt: String?

    public init(imageRoot: URL? = nil, defaultPrompt: String? = nil) {
        self.imageRoot = imageRoot
        self.defaultPrompt = defaultPrompt
    }
}

/// A manifest that cannot be used. Each case names the file (and line) and says what to do.
public enum ManifestError: Error, CustomStringConvertible, Equatable {
    case unreadable(path: String, reason: String)
    case unknownFormat(path: String)
    case malformedLine(path: String, line: Int, reason: String, excerpt: String)
    case badHeader(path: String, reason: String)
    case duplicateID(path: String, id: String, line: Int, firstLine: Int)
    case lineTooLong(path: String, line: Int, limit: Int)

    /// The line the error is about, when there is one.
    public var line: Int? {
        switch self {
        case .malformedLine(_, let line, _, _), .duplicateID(_, _, let line, _), .lineTooLong(_, let line, _):
            return line
        case .badHeader: return 1
        case .unreadable, .unknownFormat: return nil
        }
    }

    public var description: String {
        switch self {
        case .unreadable(let path, let reason):
            return "cannot read manifest \(path): \(reason). Check the path and its permissions."
        case .unknownFormat(let path):
            return "cannot tell the format of manifest \(path) from its extension: name it .jsonl (or .json, "
                + ".ndjson) for one JSON object per line, .csv for CSV with a header row, or pass a folder of "
                + "images with --images DIR."
        case .malformedLine(let path, let line, let reason, let excerpt):
            return "\(path):\(line): \(reason): \(excerpt)\nFix this line and run again (nothing has been "
                + "processed); each entry needs an id, an image path and a prompt (or a default prompt)."
        case .badHeader(let path, let reason):
            return "\(path):1: \(reason). The first row of a CSV manifest names the columns: id and image, "
                + "and prompt unless a default prompt is given; other columns are carried to the output."
        case .duplicateID(let path, let id, let line, let firstLine):
            return "\(path):\(line): id \(JSONValue.string(id).encoded) is already used on line \(firstLine). "
                + "Ids must be unique (results and resume are keyed by id): rename one of them."
        case .lineTooLong(let path, let line, let limit):
            return "\(path):\(line): an entry longer than \(limit) bytes (a missing newline or an unclosed "
                + "CSV quote?). Fix the manifest and run again."
        }
    }
}

/// Reads a manifest entry by entry without loading it whole.
public final class ManifestReader {
    public let source: ManifestSource
    public let options: ManifestOptions
    private let resolver: PathResolver?
    private var lines: LineReader?
    private var csv: CSVLayout?
    private var images: [String] = []
    private var imageIndex = 0

    public convenience init(_ source: ManifestSource, options: ManifestOptions) throws {
        try self.init(source, options: options, resolvePaths: true)
    }

    init(_ source: ManifestSource, options: ManifestOptions, resolvePaths: Bool) throws {
        self.source = source
        self.options = options
        let folder: URL
        switch source {
        case .file(let url, _): folder = url.deletingLastPathComponent()
        case .directory(let url, _): folder = url
        }
        resolver = resolvePaths ? PathResolver(base: folder, root: options.imageRoot) : nil
        switch source {
        case .file(let url, let format):
            do {
                lines = try LineReader(path: url.path)
            } catch let error as LineReadError {
                throw ManifestReader.convert(error, path: url.path, line: 1)
            }
            if format == .csv { csv = try readHeader() }
        case .directory(let url, _):
            images = try ManifestReader.listImages(url)
        }
    }

    /// The next entry, or nil at the end. Throws on a malformed line.
    public func next() throws -> ManifestEntry? {
        switch source {
        case .directory(_, let prompt):
            guard imageIndex < images.count else { return nil }
            let name = images[imageIndex]
            imageIndex += 1
            return entry(line: imageIndex, id: name, image: name, prompt: prompt, extra: [])
        case .file(_, .jsonl):
            return try nextJSONL()
        case .file(_, .csv):
            return try nextCSV()
        }
    }

    /// Reads the whole manifest once before any work starts: every line well-formed, ids unique.
    /// Returns the number of entries. Image paths are not checked here (a bad one is a per-record error).
    public static func validate(_ source: ManifestSource, options: ManifestOptions) throws -> Int {
        let reader = try ManifestReader(source, options: options, resolvePaths: false)
        var firstLine: [String: Int] = [:]
        var count = 0
        while let entry = try reader.next() {
            if let first = firstLine.updateValue(entry.line, forKey: entry.id) {
                throw ManifestError.duplicateID(path: source.path, id: entry.id, line: entry.line, firstLine: first)
            }
            count += 1
        }
        return count
    }

    // MARK: Entries

    private func entry(line: Int, id: String, image: String, prompt: String,
                       extra: [(String, JSONValue)]) -> ManifestEntry {
        guard let resolver else {
            return ManifestEntry(line: line, id: id, image: image, imagePath: nil, pathError: nil, prompt: prompt,
                                 extra: extra)
        }
        let (path, error) = resolver.resolve(image)
        return ManifestEntry(line: line, id: id, image: image, imagePath: path, pathError: error, prompt: prompt,
                             extra: extra)
    }

    private var path: String { source.path }

    private func malformed(_ line: Int, _ reason: String, _ bytes: [UInt8]) -> ManifestError {
        .malformedLine(path: path, line: line, reason: reason, excerpt: ManifestReader.excerpt(bytes))
    }

    static func excerpt(_ bytes: [UInt8], limit: Int = 80) -> String {
        let text = String(decoding: bytes, as: UTF8.self)
        if text.count <= limit { return text }
        return String(text.prefix(limit)) + "…"
    }

    static func convert(_ error: LineReadError, path: String, line: Int) -> ManifestError {
        switch error {
        case .open(let reason), .read(let reason): return .unreadable(path: path, reason: reason)
        case .tooLong(let limit): return .lineTooLong(path: path, line: line, limit: limit)
        }
    }

    private func readLine() throws -> (bytes: [UInt8], crlf: Bool, line: Int)? {
        guard let lines else { return nil }
        do {
            guard let (bytes, crlf) = try lines.next() else { return nil }
            let invalid = bytes.withUnsafeBufferPointer { UTF8Check.firstInvalid($0) }
            if let invalid {
                throw malformed(lines.lineNumber, "invalid UTF-8 at byte \(invalid + 1) (manifests must be UTF-8)",
                                Array(bytes[..<invalid]))
            }
            return (bytes, crlf, lines.lineNumber)
        } catch let error as LineReadError {
            throw ManifestReader.convert(error, path: path, line: lines.lineNumber + 1)
        }
    }

    private static func isBlank(_ bytes: [UInt8]) -> Bool {
        bytes.allSatisfy { $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }
    }

    private func resolvedPrompt(_ prompt: String?) -> String? {
        if let prompt, !prompt.isEmpty { return prompt }
        return options.defaultPrompt
    }

    // MARK: JSONL

    private func nextJSONL() throws -> ManifestEntry? {
        while let (bytes, _, line) = try readLine() {
            if ManifestReader.isBlank(bytes) { continue }
            let value: JSONValue
            do {
                value = try JSONValue.parse(utf8: bytes)
            } catch let error as JSONParseError {
                throw malformed(line, "not valid JSON (\(error))", bytes)
            }
            guard case .object(let members) = value else {
                throw malformed(line, "expected a JSON object, found \(value.kindName)", bytes)
            }
            let id: String
            switch value["id"] {
            case .string(let s)?: id = s
            case .number(let text)?: id = text
            case nil: throw malformed(line, "missing \"id\"", bytes)
            case let other?: throw malformed(line, "\"id\" must be a string or a number, found \(other.kindName)", bytes)
            }
            if id.isEmpty { throw malformed(line, "\"id\" is empty", bytes) }
            guard let imageValue = value["image"] else { throw malformed(line, "missing \"image\"", bytes) }
            guard case .string(let image) = imageValue else {
                throw malformed(line, "\"image\" must be a string, found \(imageValue.kindName)", bytes)
            }
            if image.isEmpty { throw malformed(line, "\"image\" is empty", bytes) }
            var written: String?
            switch value["prompt"] {
            case .string(let s)?: written = s
            case nil, .null?: written = nil
            case let other?: throw malformed(line, "\"prompt\" must be a string, found \(other.kindName)", bytes)
            }
            // A prompt written as "" is an empty prefix, which PaliGemma accepts; only a missing one
            // takes the default.
            guard let prompt = written ?? options.defaultPrompt else {
                throw malformed(line, "missing \"prompt\" and no default prompt was given", bytes)
            }
            let extra = members.filter { $0.0 != "id" && $0.0 != "image" && $0.0 != "prompt" }
            return entry(line: line, id: id, image: image, prompt: prompt, extra: extra)
        }
        return nil
    }

    // MARK: CSV

    private struct CSVLayout {
        let columns: [String]
        let id: Int
        let image: Int
        let prompt: Int?
    }

    /// The next CSV record (RFC 4180) and the line it starts on; blank lines between records are skipped.
    private func nextCSVRecord() throws -> (fields: [String], line: Int, text: [UInt8])? {
        var fields: [String] = []
        var field: [UInt8] = []
        var text: [UInt8] = []
        var inQuotes = false
        var quoted = false          // the current field was quoted (and its closing quote seen)
        var startLine = 0
        while true {
            guard let (bytes, crlf, line) = try readLine() else {
                if inQuotes {
                    throw malformed(startLine, "a quoted field opened on this line is never closed", text)
                }
                return nil
            }
            if startLine == 0 {
                if ManifestReader.isBlank(bytes) { continue }
                startLine = line
            } else {
                text.append(0x0A)
            }
            text.append(contentsOf: bytes.prefix(200 - min(200, text.count)))
            var i = 0
            while i < bytes.count {
                let b = bytes[i]
                if inQuotes {
                    if b == UInt8(ascii: "\"") {
                        if i + 1 < bytes.count, bytes[i + 1] == UInt8(ascii: "\"") {
                            field.append(b)
                            i += 2
                            continue
                        }
                        inQuotes = false
                        quoted = true
                    } else {
                        field.append(b)
                    }
                } else if b == UInt8(ascii: ",") {
                    fields.append(String(decoding: field, as: UTF8.self))
                    field.removeAll(keepingCapacity: true)
                    quoted = false
                } else if quoted {
                    throw malformed(line, "unexpected character after a closing quote in field \(fields.count + 1) "
                                    + "(a quote inside a field must be doubled: \"\")", bytes)
                } else if b == UInt8(ascii: "\"") {
                    guard field.isEmpty else {
                        throw malformed(line, "a quote inside unquoted field \(fields.count + 1) (quote the whole "
                                        + "field and double the quote: \"5\"\" screen\")", bytes)
                    }
                    inQuotes = true
                } else {
                    field.append(b)
                }
                i += 1
            }
            if inQuotes {
                if field.count > ManifestReader.maxRecordBytes {
                    throw ManifestError.lineTooLong(path: path, line: startLine, limit: ManifestReader.maxRecordBytes)
                }
                // A line break inside quotes belongs to the field, as written.
                field.append(contentsOf: crlf ? [0x0D, 0x0A] : [0x0A])
                continue
            }
            fields.append(String(decoding: field, as: UTF8.self))
            return (fields, startLine, text)
        }
    }

    private func readHeader() throws -> CSVLayout {
        guard let (fields, _, _) = try nextCSVRecord() else {
            throw ManifestError.badHeader(path: path, reason: "the CSV file is empty (no header row)")
        }
        let columns = fields.map { $0.trimmingCharacters(in: .whitespaces) }
        var seen = Set<String>()
        for column in columns {
            if column.isEmpty { throw ManifestError.badHeader(path: path, reason: "the header has an empty column name") }
            if !seen.insert(column).inserted {
                throw ManifestError.badHeader(path: path, reason: "column \"\(column)\" appears twice in the header")
            }
        }
        guard let id = columns.firstIndex(of: "id"), let image = columns.firstIndex(of: "image") else {
            throw ManifestError.badHeader(path: path, reason: "the header \(columns.joined(separator: ",")) lacks "
                                          + "an \"id\" or an \"image\" column")
        }
        let prompt = columns.firstIndex(of: "prompt")
        if prompt == nil, options.defaultPrompt == nil {
            throw ManifestError.badHeader(path: path, reason: "there is no \"prompt\" column and no default prompt")
        }
        return CSVLayout(columns: columns, id: id, image: image, prompt: prompt)
    }

    private func nextCSV() throws -> ManifestEntry? {
        guard let layout = csv, let (fields, line, text) = try nextCSVRecord() else { return nil }
        guard fields.count == layout.columns.count else {
            throw malformed(line, "\(fields.count) field(s) but the header has \(layout.columns.count)", text)
        }
        let id = fields[layout.id]
        if id.isEmpty { throw malformed(line, "empty id", text) }
        let image = fields[layout.image]
        if image.isEmpty { throw malformed(line, "empty image", text) }
        let written = layout.prompt.map { fields[$0] }
        guard let prompt = resolvedPrompt(written) else {
            throw malformed(line, "empty prompt and no default prompt was given", text)
        }
        var extra: [(String, JSONValue)] = []
        for (k, column) in layout.columns.enumerated() where k != layout.id && k != layout.image && k != layout.prompt {
            extra.append((column, .string(fields[k])))
        }
        return entry(line: line, id: id, image: image, prompt: prompt, extra: extra)
    }

    // MARK: Folder

    static let maxRecordBytes = 64 << 20

    static let imageExtensions: Set<String> = ["jpg", "jpeg", "png"]

    /// Image files directly in `url` (not hidden, not folders), sorted by the bytes of their names.
    static func listImages(_ url: URL) throws -> [String] {
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: url.path)
        } catch {
            throw ManifestError.unreadable(path: url.path, reason: "not a readable folder")
        }
        return names.filter { name in
            guard !name.hasPrefix("."),
                  imageExtensions.contains((name as NSString).pathExtension.lowercased()) else { return false }
            var info = stat()
            guard stat(url.appendingPathComponent(name).path, &info) == 0 else { return true }
            return (info.st_mode & S_IFMT) != S_IFDIR
        }.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
    }
}

/// Turns manifest image paths into absolute, resolved paths and checks them against the image root.
struct PathResolver {
    /// The folder relative paths start from (resolved).
    let base: String
    /// The resolved image root, and the root as given (for messages).
    let root: String?
    let rootAsGiven: String?

    init(base: URL, root: URL?) {
        self.base = PathResolver.canonical(base.path)
        self.root = root.map { PathResolver.canonical($0.path) }
        self.rootAsGiven = root?.path
    }

    func resolve(_ image: String) -> (path: String?, error: String?) {
        let joined = image.hasPrefix("/") ? image : (base == "/" ? "/" : base + "/") + image
        let resolved = PathResolver.canonical(joined)
        if let root, !PathResolver.isInside(resolved, root) {
            let shown = resolved == image ? "" : " (resolves to \(resolved))"
            return (nil, "image path \(image)\(shown) escapes --image-root \(rootAsGiven ?? root)")
        }
        return (resolved, nil)
    }

    static func isInside(_ path: String, _ root: String) -> Bool {
        root == "/" || path == root || path.hasPrefix(root + "/")
    }

    /// The absolute path with symlinks resolved as the system would resolve them (realpath of the
    /// longest existing prefix), then "." and ".." of the missing rest removed.
    static func canonical(_ path: String) -> String {
        let absolute = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
        if let real = realPath(absolute) { return real }
        let parts = absolute.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
        var k = parts.count - 1
        while k >= 0 {
            let prefix = "/" + parts[..<k].joined(separator: "/")
            if let real = realPath(prefix) {
                return normalize(real + "/" + parts[k...].joined(separator: "/"))
            }
            k -= 1
        }
        return normalize(absolute)
    }

    static func realPath(_ path: String) -> String? {
        guard let p = realpath(path, nil) else { return nil }
        defer { free(p) }
        return String(cString: p)
    }

    /// Removes ".", ".." and repeated slashes without touching the file system.
    static func normalize(_ path: String) -> String {
        var out: [Substring] = []
        for part in path.split(separator: "/", omittingEmptySubsequences: true) {
            if part == "." { continue }
            if part == ".." { _ = out.popLast(); continue }
            out.append(part)
        }
        return "/" + out.joined(separator: "/")
    }
}
