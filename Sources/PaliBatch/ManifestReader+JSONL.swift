// JSONL manifests: one JSON object per line, "id" (string or number), "image" (string), "prompt"
// (string; a missing one takes the default prompt), every other member kept as an extra field, in
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
}
