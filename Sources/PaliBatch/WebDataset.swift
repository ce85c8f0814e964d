// WebDataset input: tar shards whose members are grouped into samples by key, as webdataset writes them.
//
//   data/00042.tar:  000000017.jpg  000000017.json  000000017.txt  000000018.png  000000018.json ...
//
// A member's key is its path up to the first dot of its basename ("000000017"); consecutive members
// with the same key form a sample. The sample's image is its jpg/jpeg/png member; its json member's
// fields go to the record's "source" (and may hold the prompt, `ManifestOptions.promptField`). The record
// id is "SHARD/KEY", SHARD the tar's basename without .tar/.tar.gz/.tgz.
//
// Nothing in a shard stops the job: a sample without an image, with two images or an unsupported one
// (webp, ...), or with an unreadable json member becomes an error record; a corrupt or truncated tar ends
// that shard with an error record (the sample being read, or "SHARD" itself when the error falls between
// samples) and the reader goes on with the next shard.
import Foundation
import PaliJSON

/// The tar paths of `--shards`: a brace pattern, one tar, or a text file listing tars.
public enum ShardList {
    /// `pattern` as webdataset's brace expansion reads it: "data/{00000..00099}.tar" (zero-padded
    /// ranges keep their width), "{a,b}" alternatives, several groups (every combination, in order).
    /// Without braces, a path ending in .tar/.tar.gz/.tgz is one tar, any other a list file: one tar path
    /// a line (blank lines and lines starting with # skipped; relative paths against the file's folder).
    public static func resolve(_ pattern: String) throws -> [URL] {
        if pattern.contains("{") {
            return try expand(pattern).map { URL(fileURLWithPath: $0).standardizedFileURL }
        }
        if isTarName(pattern) { return [URL(fileURLWithPath: pattern).standardizedFileURL] }
        let list = URL(fileURLWithPath: pattern).standardizedFileURL
        let text: String
        do {
            text = try String(contentsOf: list, encoding: .utf8)
        } catch {
            throw ManifestError.unreadable(path: list.path, reason: "not a readable list of tar paths (a pattern "
                                           + "ends in .tar, .tar.gz or .tgz, or has {N..M} ranges)")
        }
        let folder = list.deletingLastPathComponent()
        let tars = text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty && !$0.hasPrefix("#") }
            .map { $0.hasPrefix("/") ? URL(fileURLWithPath: $0) : folder.appendingPathComponent($0) }
            .map(\.standardizedFileURL)
        if tars.isEmpty { throw ManifestError.unreadable(path: list.path, reason: "it lists no tar path") }
        return tars
    }

    static func isTarName(_ path: String) -> Bool {
        let lower = path.lowercased()
        return lower.hasSuffix(".tar") || lower.hasSuffix(".tar.gz") || lower.hasSuffix(".tgz")
    }

    /// "00042" for ".../00042.tar", ".../00042.tar.gz" or ".../00042.tgz".
    public static func shardName(_ url: URL) -> String {
        let name = url.lastPathComponent
        for suffix in [".tar.gz", ".tgz", ".tar"] where name.lowercased().hasSuffix(suffix) && name.count > suffix.count {
            return String(name.dropLast(suffix.count))
        }
        return name
    }

    /// Checks that no two tars have the same shard name (their records would share an output shard).
    public static func checkNames(_ tars: [URL]) throws {
        var first: [String: URL] = [:]
        for tar in tars {
            let name = shardName(tar)
            if let earlier = first.updateValue(tar, forKey: name) {
                throw ManifestError.unreadable(path: tar.path, reason: "its shard name \(name) is also that of "
                                               + "\(earlier.path); output shards are named after input shards, so "
                                               + "tar basenames must be unique")
            }
        }
    }

    /// Brace expansion. Throws on an unclosed brace or a malformed range.
    public static func expand(_ pattern: String) throws -> [String] {
        guard let open = pattern.firstIndex(of: "{") else { return [pattern] }
        guard let close = pattern[open...].firstIndex(of: "}") else {
            throw ManifestError.unreadable(path: pattern, reason: "an unclosed { in the shard pattern")
        }
        let head = String(pattern[..<open]), body = String(pattern[pattern.index(after: open)..<close])
        let tails = try expand(String(pattern[pattern.index(after: close)...]))
        let choices: [String]
        if let range = body.range(of: "..") {
            let low = String(body[..<range.lowerBound]), high = String(body[range.upperBound...])
            guard let a = Int(low), let b = Int(high), a >= 0, b >= a, low.allSatisfy(\.isASCII) else {
                throw ManifestError.unreadable(path: pattern, reason: "{\(body)} is not a range N..M of numbers, N ≤ M")
            }
            let width = low.hasPrefix("0") || high.hasPrefix("0") ? max(low.count, high.count) : 0
            choices = (a...b).map { n in
                let digits = String(n)
                return String(repeating: "0", count: max(0, width - digits.count)) + digits
            }
        } else {
            choices = body.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        }
        return choices.flatMap { choice in tails.map { head + choice + $0 } }
    }
}

/// Reads the samples of tar shards in order, as manifest entries.
final class WebDatasetReader {
    let tars: [URL]
    let options: ManifestOptions
    /// False while validating: image bytes are skipped, not read.
    let readImages: Bool
    private var tarIndex = -1
    private var tar: TarReader?
    private var shard = ""
    private var position = 0
    /// A member read ahead: the first of the next sample.
    private var lookahead: (key: String, name: String, data: [UInt8]?)?
    private var pending: [ManifestEntry] = []

    static let imageExtensions: Set<String> = ["jpg", "jpeg", "png"]
    static let otherImageExtensions: Set<String> = ["webp", "gif", "bmp", "tif", "tiff", "ppm", "pgm", "pnm", "jxl",
                                                    "avif", "heic", "jp2"]
    static let maxMemberBytes = 256 << 20

    init(tars: [URL], options: ManifestOptions, readImages: Bool) throws {
        try ShardList.checkNames(tars)
        self.tars = tars
        self.options = options
        self.readImages = readImages
    }

    /// "dir/000017" and "jpg" for "dir/000017.seg.jpg": the key ends at the basename's first dot, the
    /// extension is the last one (what decides the member's use).
    static func split(_ name: String) -> (key: String, ext: String) {
        let slash = name.lastIndex(of: "/").map { name.index(after: $0) } ?? name.startIndex
        guard let dot = name[slash...].firstIndex(of: ".") else { return (name, "") }
        let ext = name[name.index(after: dot)...].split(separator: ".").last.map { $0.lowercased() } ?? ""
        return (String(name[..<dot]), ext)
    }

    func next() throws -> ManifestEntry? {
        while true {
            if !pending.isEmpty { return pending.removeFirst() }
            if tar == nil {
                tarIndex += 1
                guard tarIndex < tars.count else { return nil }
                shard = ShardList.shardName(tars[tarIndex])
                position = 0
                lookahead = nil
                do {
                    tar = try TarReader(path: tars[tarIndex].path)
                } catch let error as TarError {
                    pending.append(shardError(error, key: nil))
                    continue
                }
            }
            try readSample()
        }
    }

    /// Reads the next sample of the open tar into `pending` (nothing at its end, and the tar is closed).
    private func readSample() throws {
        guard let reader = tar else { return }
        var members: [(name: String, ext: String, data: [UInt8]?)] = []
        var key: String?
        if let first = lookahead {
            key = first.key
            members.append((first.name, Self.split(first.name).ext, first.data))
            lookahead = nil
        }
        var reading: String?   // the key of the member whose data is being read
        do {
            while let member = try reader.next() {
                guard member.isFile else { continue }
                let (memberKey, ext) = Self.split(member.name)
                let wanted = ext == "json" || (readImages && Self.imageExtensions.contains(ext))
                reading = memberKey
                let data = wanted ? try reader.readData(limit: Self.maxMemberBytes) : nil
                reading = nil
                if let key, memberKey != key {
                    lookahead = (memberKey, member.name, data)
                    break
                }
                key = memberKey
                members.append((member.name, ext, data))
            }
        } catch let error as TarError {
            // A sample read whole is kept; the one whose member failed (or the shard itself, when a header
            // failed) gets the error record, and the rest of the shard is lost.
            if let key, reading == key {
                pending.append(shardError(error, key: key))
            } else {
                if let key { pending.append(sample(key: key, members: members)) }
                pending.append(shardError(error, key: reading))
            }
            tar = nil
            return
        }
        guard let key else { tar = nil; return }
        pending.append(sample(key: key, members: members))
        if lookahead == nil { tar = nil }   // the end of the tar
    }

    private func shardError(_ error: TarError, key: String?) -> ManifestEntry {
        position += 1
        let id = key.map { shard + "/" + $0 } ?? shard
        var entry = ManifestEntry(line: position, id: id, image: "", imagePath: nil, pathError: nil,
                                  prompts: options.defaultPrompts.isEmpty ? [""] : options.defaultPrompts)
        entry.shard = shard
        entry.problem = RecordError(kind: RecordErrorKind.corruptShard,
                                    message: "\(error); the rest of shard \(shard) is skipped")
        return entry
    }

    private func sample(key: String, members: [(name: String, ext: String, data: [UInt8]?)]) -> ManifestEntry {
        position += 1
        let id = shard + "/" + key
        let images = members.filter { Self.imageExtensions.contains($0.ext) }
        var problem: String?
        var kind = RecordErrorKind.badSample
        var source: JSONValue?
        var prompts = options.defaultPrompts
        if let json = members.first(where: { $0.ext == "json" }) {
            if case .object? = try? JSONValue.parse(utf8: json.data ?? []) {
                source = try? JSONValue.parse(utf8: json.data ?? [])
            } else {
                problem = "member \(json.name) of shard \(shard) is not a JSON object"
            }
        }
        if let field = options.promptField, problem == nil {
            switch source?[field] {
            case .string(let text)?: prompts = [text]
            case .array(let items)? where !items.isEmpty && items.allSatisfy({ $0.stringValue != nil }):
                prompts = items.compactMap(\.stringValue)
            default:
                problem = "sample \(key) of shard \(shard) has no string (or array of strings) field \"\(field)\" "
                    + "in a json member"
            }
        }
        if images.count > 1 {
            problem = "sample \(key) of shard \(shard) has \(images.count) images (\(images.map(\.name).joined(separator: ", "))); "
                + "a sample has one"
        } else if images.isEmpty {
            if let other = members.first(where: { Self.otherImageExtensions.contains($0.ext) }) {
                problem = "member \(other.name) of shard \(shard): .\(other.ext) images are not supported (jpg, jpeg, png)"
            } else {
                kind = RecordErrorKind.missingImage
                problem = "sample \(key) of shard \(shard) has no jpg, jpeg or png member (members: "
                    + members.map(\.name).joined(separator: ", ") + ")"
            }
        }
        if prompts.isEmpty { prompts = [""] }
        var entry = ManifestEntry(line: position, id: id, image: images.first?.name ?? "", imagePath: nil,
                                  pathError: nil, prompts: prompts, extra: source.map { [("source", $0)] } ?? [])
        entry.shard = shard
        if let problem {
            entry.problem = RecordError(kind: kind, message: problem)
        } else {
            entry.imageData = images[0].data ?? []
        }
        return entry
    }
}
