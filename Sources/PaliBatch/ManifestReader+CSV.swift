// CSV manifests (RFC 4180): a header row naming the columns ("id" and "image" required, "prompt"
// optional when a default prompt is given), then one record per row; quoted fields may hold commas,
// doubled quotes and line breaks. Every other column is kept as a string extra field.
import Foundation
import PaliJSON

extension ManifestReader {
    struct CSVLayout {
        let columns: [String]
        let id: Int
        let image: Int
        let prompt: Int?
    }

    /// The next CSV record (RFC 4180) and the line it starts on; blank lines between records are skipped.
    func nextCSVRecord() throws -> (fields: [String], line: Int, text: [UInt8])? {
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

    func readHeader() throws -> CSVLayout {
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

    func nextCSV() throws -> ManifestEntry? {
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
        // A row without a prompt takes every --prompt (several: one record each).
        let prompts = (written ?? "").isEmpty && options.defaultPrompts.count > 1 ? options.defaultPrompts : [prompt]
        return entry(line: line, id: id, image: image, prompts: prompts, extra: extra)
    }
}
