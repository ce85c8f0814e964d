// One output record per job: a single JSON line of a shard. Key order is fixed (see docs/records.md):
//
//   {"id":"a1","image":"imgs/a1.jpg","prompt":"caption en",["prompt_index":1,]"status":"ok","text":"a cat","tokens":[...],
//    "logprob":-1.23,["token_logprobs":[...],]<task fields>,"error":null,"timings":{"vision_s":0.12,...},
//    <manifest extras>}
import Foundation
import PaliJSON

public enum RecordStatus: String, Sendable {
    case ok
    case error
}

/// Why a job produced no text: a machine-readable kind and a message for people.
public struct RecordError: Sendable, Equatable {
    public var kind: String
    public var message: String

    public init(kind: String, message: String) {
        self.kind = kind
        self.message = message
    }
}

/// The error kinds a run writes (docs/records.md lists what each means).
public enum RecordErrorKind {
    public static let missingImage = "missing_image"
    public static let unreadableImage = "unreadable_image"
    public static let imageTooLarge = "image_too_large"
    public static let promptTooLong = "prompt_too_long"
    public static let imagePathOutsideRoot = "image_path_outside_root"
    public static let `internal` = "internal"
    /// A WebDataset sample that cannot run: two images, an unsupported image type, a bad json member, no
    /// prompt field.
    public static let badSample = "bad_sample"
    /// A tar shard that cannot be read on (unreadable, corrupt, truncated): the rest of it is skipped.
    public static let corruptShard = "corrupt_shard"
    public static let all = [missingImage, unreadableImage, imageTooLarge, promptTooLong, imagePathOutsideRoot,
                             `internal`, badSample, corruptShard]
}

public struct OutputRecord: Sendable {
    public var id: String
    /// The image as written in the manifest.
    public var image: String
    public var prompt: String
    /// Which of the image's prompts this record answers, when it has several (written as "prompt_index"
    /// after "prompt"; absent for an image with one prompt).
    public var promptIndex: Int?
    public var status: RecordStatus
    /// The decoded text; nil for a failed job (written as null).
    public var text: String?
    /// Generated token ids, as `generate --json` prints them.
    public var tokens: [Int]
    /// The answer's score (ok records): Σ of its tokens' log-probabilities, or the beam's sequence score
    /// with beam search (docs/records.md). Not written when nil.
    public var logprob: Double?
    /// Each token's log-probability, with `--token-logprobs`. Not written when nil.
    public var tokenLogprobs: [Double]?
    /// Set for a failed job (written as null otherwise).
    public var error: RecordError?
    /// Fields added by task parsing, e.g. ("objects", [...]), written after "tokens".
    public var taskFields: [(String, JSONValue)]
    /// Seconds per phase, e.g. ("vision_s", 0.12).
    public var timings: [(String, Double)]
    /// The manifest's extra fields, written last.
    public var extra: [(String, JSONValue)]

    public init(id: String, image: String, prompt: String, status: RecordStatus, text: String? = nil,
                tokens: [Int] = [], logprob: Double? = nil, tokenLogprobs: [Double]? = nil, error: RecordError? = nil,
                taskFields: [(String, JSONValue)] = [], timings: [(String, Double)] = [],
                extra: [(String, JSONValue)] = []) {
        self.id = id
        self.image = image
        self.prompt = prompt
        self.status = status
        self.text = text
        self.tokens = tokens
        self.logprob = logprob
        self.tokenLogprobs = tokenLogprobs
        self.error = error
        self.taskFields = taskFields
        self.timings = timings
        self.extra = extra
    }

    /// A failed record for a manifest entry (for its prompt `promptIndex`).
    public static func failure(_ entry: ManifestEntry, kind: String, message: String,
                               timings: [(String, Double)] = [], promptIndex: Int = 0) -> OutputRecord {
        var record = OutputRecord(id: entry.id, image: entry.image, prompt: entry.prompts[promptIndex], status: .error,
                                  error: RecordError(kind: kind, message: message), timings: timings, extra: entry.extra)
        if entry.prompts.count > 1 { record.promptIndex = promptIndex }
        return record
    }

    /// What resume counts this record as (`RecordKey`).
    public var key: String { RecordKey.make(id: id, promptIndex: promptIndex) }

    /// Keys every record has, in order; a task field or extra with one of these names (or "extra") goes
    /// under "extra" instead.
    public static let standardKeys = ["id", "image", "prompt", "prompt_index", "status", "text", "tokens", "logprob",
                                      "token_logprobs", "error", "timings"]

    /// Decimals of written log-probabilities (transformers' own are float32: ~7 significant digits).
    public static let logprobDecimals = 7

    public var jsonValue: JSONValue {
        var members: [(String, JSONValue)] = [
            ("id", .string(id)),
            ("image", .string(image)),
            ("prompt", .string(prompt)),
        ]
        if let promptIndex { members.append(("prompt_index", .int(promptIndex))) }
        members += [
            ("status", .string(status.rawValue)),
            ("text", text.map { .string($0) } ?? .null),
            ("tokens", .array(tokens.map { .int($0) })),
        ]
        if let logprob { members.append(("logprob", .double(logprob, decimals: Self.logprobDecimals))) }
        if let tokenLogprobs {
            members.append(("token_logprobs", .array(tokenLogprobs.map { .double($0, decimals: Self.logprobDecimals) })))
        }
        var used = Set(OutputRecord.standardKeys + ["extra"])
        var nested: [(String, JSONValue)] = []
        var nestedKeys = Set<String>()
        func place(_ key: String, _ value: JSONValue) {
            if used.insert(key).inserted {
                members.append((key, value))
            } else if nestedKeys.insert(key).inserted {
                nested.append((key, value))
            }
        }
        for (key, value) in taskFields { place(key, value) }
        members.append(("error", error.map { .object([("kind", .string($0.kind)), ("message", .string($0.message))]) }
                        ?? .null))
        var timingKeys = Set<String>()
        members.append(("timings", .object(timings.filter { timingKeys.insert($0.0).inserted }
                                            .map { ($0.0, JSONValue.double($0.1)) })))
        for (key, value) in extra { place(key, value) }
        if !nested.isEmpty { members.append(("extra", .object(nested))) }
        return .object(members)
    }

    /// The record as one line of JSON, without the newline.
    public var jsonLine: String { jsonValue.encoded }
}

extension OutputRecord {
    /// Reads a record as `jsonValue` writes it: the keys between "tokens" and "error" are task fields, the
    /// keys after "timings" extras (the members of a trailing "extra" object, which holds the names that
    /// collided with standard keys, too). Nil when `value` is not such a record: not an object, no string
    /// "id", a "status" other than "ok" or "error", or a standard key of the wrong type.
    public init?(jsonValue value: JSONValue) {
        guard case .object(let members) = value, let id = value["id"]?.stringValue,
              let status = value["status"]?.stringValue.flatMap(RecordStatus.init(rawValue:)) else { return nil }
        self.init(id: id, image: "", prompt: "", status: status)
        var afterTimings = false
        var beforeError = true
        for (key, member) in members {
            switch key {
            case "id", "status":
                continue
            case "image", "prompt":
                guard let text = member.stringValue else { return nil }
                if key == "image" { image = text } else { prompt = text }
            case "prompt_index":
                guard let index = member.intValue else { return nil }
                promptIndex = index
            case "text":
                guard member == .null || member.stringValue != nil else { return nil }
                text = member.stringValue
            case "tokens":
                guard case .array(let items) = member else { return nil }
                let ids = items.compactMap(\.intValue)
                guard ids.count == items.count else { return nil }
                tokens = ids
            case "logprob" where beforeError:
                guard let value = member.doubleValue else { return nil }
                logprob = value
            case "token_logprobs" where beforeError:
                guard case .array(let items) = member else { return nil }
                let values = items.compactMap(\.doubleValue)
                guard values.count == items.count else { return nil }
                tokenLogprobs = values
            case "error":
                beforeError = false
                if member == .null { continue }
                guard let kind = member["kind"]?.stringValue, let message = member["message"]?.stringValue else { return nil }
                error = RecordError(kind: kind, message: message)
            case "timings":
                afterTimings = true
                guard case .object(let entries) = member else { return nil }
                for (name, seconds) in entries {
                    guard let seconds = seconds.doubleValue else { return nil }
                    timings.append((name, seconds))
                }
            case "extra" where afterTimings:
                guard case .object(let nested) = member else { extra.append((key, member)); continue }
                extra += nested
            default:
                if afterTimings { extra.append((key, member)) } else if beforeError { taskFields.append((key, member)) }
                else { return nil }
            }
        }
    }

    /// Reads one shard line; see `init?(jsonValue:)`.
    public init?(jsonLine: Substring) {
        guard let value = try? JSONValue.parse(jsonLine) else { return nil }
        self.init(jsonValue: value)
    }

    /// The task field `key` ("objects", "problems"), or nil.
    public func taskField(_ key: String) -> JSONValue? { taskFields.first { $0.0 == key }?.1 }
}
