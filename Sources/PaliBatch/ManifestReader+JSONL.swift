// JSONL manifests: one JSON object per line, "id" (string or number), "image" (string), "prompt"
// (string; a missing one takes the default prompts) or "prompts" (a non-empty array of strings: one
// record per prompt, the image encoded once), every other member kept as an extra field, in
// order and with its number text as written. Blank lines are skipped.
import PaliJSON

extension ManifestReader {
    func nextJSONL() throws -> ManifestEntry? {
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
            var written: [String]?
            switch value["prompt"] {
            case .string(let s)?: written = [s]
            case nil, .null?: written = nil
            case let other?: throw malformed(line, "\"prompt\" must be a string, found \(other.kindName)", bytes)
            }
            switch value["prompts"] {
            case nil, .null?: break
            case .array(let items)? where written == nil:
                let texts = items.compactMap(\.stringValue)
                guard texts.count == items.count, !texts.isEmpty else {
                    throw malformed(line, "\"prompts\" must be a non-empty array of strings", bytes)
                }
                written = texts
            case _? where written != nil:
                throw malformed(line, "give either \"prompt\" or \"prompts\", not both", bytes)
            case let other?: throw malformed(line, "\"prompts\" must be an array of strings, found \(other.kindName)", bytes)
            }
            // A prompt written as "" is an empty prefix, which PaliGemma accepts; only a missing one
            // takes the default (every --prompt).
            let prompts = written ?? options.defaultPrompts
            if prompts.isEmpty {
                throw malformed(line, "missing \"prompt\" and no default prompt was given", bytes)
            }
            let extra = members.filter { $0.0 != "id" && $0.0 != "image" && $0.0 != "prompt" && $0.0 != "prompts" }
            return entry(line: line, id: id, image: image, prompts: prompts, extra: extra)
        }
        return nil
    }
}
