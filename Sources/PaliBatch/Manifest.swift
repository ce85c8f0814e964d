// The jobs of a batch run: a JSONL or CSV manifest, or a folder of images, read as a stream of entries.
// This file has the types and the reader's core (lines, folders, validation); the formats are in
// ManifestReader+JSONL.swift and ManifestReader+CSV.swift (RFC 4180), path resolution in PathResolver.swift.
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
    /// Every *.jpg, *.jpeg and *.png (any case) directly in the folder, by name; each with `prompt`
    /// (and the further prompts of `ManifestOptions.defaultPrompts`).
    case directory(URL, prompt: String)
    /// WebDataset tar shards (`ShardList`), read in order; a sample's prompts are
    /// `ManifestOptions.defaultPrompts` or its json member's `ManifestOptions.promptField`.
    case shards([URL])

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
        case .shards(let tars): return tars.count == 1 ? tars[0].path : "\(tars.count) tar shards"
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
    /// The first (usually only) prompt.
    public var prompt: String { prompts.first ?? "" }
    /// The prompts of the image, one record each (the image is encoded once). With more than one,
    /// records carry `prompt_index`.
    public let prompts: [String]
    /// The manifest's other fields, in order (CSV cells as strings).
    public let extra: [(String, JSONValue)]
    /// The image's bytes, for an image read from a tar shard (`imagePath` is then nil).
    public var imageData: [UInt8]?
    /// The input shard the entry comes from (tar basename without .tar/.tar.gz/.tgz): its records go to
    /// the output shard of that name.
    public var shard: String?
    /// Why this entry cannot run (a malformed sample, a corrupt shard): every prompt gets this error record.
    public var problem: RecordError?

    public init(line: Int, id: String, image: String, imagePath: String?, pathError: String?, prompt: String,
                extra: [(String, JSONValue)] = []) {
        self.init(line: line, id: id, image: image, imagePath: imagePath, pathError: pathError, prompts: [prompt],
                  extra: extra)
    }

    public init(line: Int, id: String, image: String, imagePath: String?, pathError: String?, prompts: [String],
                extra: [(String, JSONValue)] = []) {
        self.line = line
        self.id = id
        self.image = image
        self.imagePath = imagePath
        self.pathError = pathError
        self.prompts = prompts
        self.extra = extra
    }

    /// The record key of prompt `index` (`RecordKey`).
    public func key(_ index: Int) -> String { RecordKey.make(id: id, promptIndex: prompts.count > 1 ? index : nil) }
}

/// What resume counts as one record: the id, or, for an image with several prompts, the id and the
/// prompt's index.
public enum RecordKey {
    public static func make(id: String, promptIndex: Int?) -> String {
        guard let promptIndex else { return id }
        return id + "\u{1F}" + String(promptIndex)
    }
}

public struct ManifestOptions: Sendable {
    /// When set, every image must resolve to a path inside this folder.
    public var imageRoot: URL?
    /// The prompt of entries that give none (JSONL: no "prompt" or null; CSV: no column or an empty cell).
    public var defaultPrompt: String? {
        get { defaultPrompts.first }
        set { defaultPrompts = newValue.map { [$0] } ?? [] }
    }
    /// Every `--prompt`: entries that give none get all of them (several: one record per prompt).
    public var defaultPrompts: [String]
    /// Tar shards: the field of a sample's json member that holds its prompt (a string, or an array of
    /// strings for several), instead of `defaultPrompts`.
    public var promptField: String?

    public init(imageRoot: URL? = nil, defaultPrompt: String? = nil) {
        self.imageRoot = imageRoot
        self.defaultPrompts = defaultPrompt.map { [$0] } ?? []
    }

    public init(imageRoot: URL? = nil, defaultPrompts: [String], promptField: String? = nil) {
        self.imageRoot = imageRoot
        self.defaultPrompts = defaultPrompts
        self.promptField = promptField
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
    var csv: CSVLayout?
    private var images: [String] = []
    private var imageIndex = 0
    private var samples: WebDatasetReader?

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
        case .shards: folder = URL(fileURLWithPath: "/")
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
        case .shards(let tars):
            samples = try WebDatasetReader(tars: tars, options: options, readImages: resolvePaths)
        }
    }

    /// The next entry, or nil at the end. Throws on a malformed line.
    public func next() throws -> ManifestEntry? {
        switch source {
        case .directory(_, let prompt):
            guard imageIndex < images.count else { return nil }
            let name = images[imageIndex]
            imageIndex += 1
            let prompts = options.defaultPrompts.count > 1 ? options.defaultPrompts : [prompt]
            return entry(line: imageIndex, id: name, image: name, prompts: prompts, extra: [])
        case .shards:
            return try samples!.next()
        case .file(_, .jsonl):
            return try nextJSONL()
        case .file(_, .csv):
            return try nextCSV()
        }
    }

    /// Reads the whole manifest once before any work starts: every line well-formed, ids unique.
    /// Returns the number of records (an entry with several prompts counts once per prompt). Image paths are not checked here (a bad one is a per-record error).
    public static func validate(_ source: ManifestSource, options: ManifestOptions) throws -> Int {
        let reader = try ManifestReader(source, options: options, resolvePaths: false)
        var firstLine: [String: Int] = [:]
        var count = 0
        while let entry = try reader.next() {
            if let first = firstLine.updateValue(entry.line, forKey: entry.id) {
                throw ManifestError.duplicateID(path: source.path, id: entry.id, line: entry.line, firstLine: first)
            }
            count += entry.prompts.count
        }
        return count
    }

    // MARK: Entries

    func entry(line: Int, id: String, image: String, prompt: String,
                       extra: [(String, JSONValue)]) -> ManifestEntry {
        entry(line: line, id: id, image: image, prompts: [prompt], extra: extra)
    }

    func entry(line: Int, id: String, image: String, prompts: [String],
               extra: [(String, JSONValue)]) -> ManifestEntry {
        guard let resolver else {
            return ManifestEntry(line: line, id: id, image: image, imagePath: nil, pathError: nil, prompts: prompts,
                                 extra: extra)
        }
        let (path, error) = resolver.resolve(image)
        return ManifestEntry(line: line, id: id, image: image, imagePath: path, pathError: error, prompts: prompts,
                             extra: extra)
    }

    var path: String { source.path }

    func malformed(_ line: Int, _ reason: String, _ bytes: [UInt8]) -> ManifestError {
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

    func readLine() throws -> (bytes: [UInt8], crlf: Bool, line: Int)? {
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

    static func isBlank(_ bytes: [UInt8]) -> Bool {
        bytes.allSatisfy { $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }
    }

    func resolvedPrompt(_ prompt: String?) -> String? {
        if let prompt, !prompt.isEmpty { return prompt }
        return options.defaultPrompt
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
