// What travels with a job from the coordinator to the last decoder stage: the token budget and the
// sampling settings, plus what the vision rank learned about the image (its original size, for
// boxes and masks) and how long it took. Encoded as a small JSON object in the messages.
import Foundation
import PaliGeneration

public struct JobParameters: Codable, Sendable, Equatable {
    public var maxNewTokens: Int
    public var temperature: Float
    public var topK: Int?
    public var topP: Float?
    /// The job's own seed (`--seed` mixed with the id, see `JobParameters.seed(base:id:)`).
    public var seed: UInt64
    public var imageWidth: Int?
    public var imageHeight: Int?
    public var visionSeconds: Double?

    public init(maxNewTokens: Int, sampling: SamplingParameters) {
        self.maxNewTokens = maxNewTokens
        temperature = sampling.temperature
        topK = sampling.topK
        topP = sampling.topP
        seed = sampling.seed
    }

    public var sampling: SamplingParameters {
        SamplingParameters(temperature: temperature, topK: topK, topP: topP, seed: seed)
    }

    public var json: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: (try? encoder.encode(self)) ?? Data("{}".utf8), as: UTF8.self)
    }

    public init(json: String) throws {
        do {
            self = try JSONDecoder().decode(JobParameters.self, from: Data(json.utf8))
        } catch {
            throw RunError.internalMessage("job parameters \(json.prefix(200)) do not decode: \(error)")
        }
    }

    /// A job's sampling seed: `base` mixed with the job id (FNV-1a), so every job draws its own
    /// reproducible stream whatever it is batched with, and `generate --seed` with this value
    /// reproduces the job alone. Greedy decoding ignores it.
    public static func seed(base: UInt64, id: String) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in id.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01b3
        }
        return base ^ hash
    }
}

/// Errors of the batch run that are not a single record's fault: they end the job.
public enum RunError: Error, CustomStringConvertible {
    case internalMessage(String)
    case setup(String)
    case peer(String)

    public var description: String {
        switch self {
        case .internalMessage(let text): return "internal error: \(text); please report it with the command line"
        case .setup(let text): return text
        case .peer(let text): return text
        }
    }
}

/// A record-level failure as the coordinator writes it (`error: {kind, message}`).
public struct JobFailure: Codable, Sendable, Equatable {
    public var kind: String
    public var message: String

    public init(kind: String, message: String) { self.kind = kind; self.message = message }

    public var json: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: (try? encoder.encode(self)) ?? Data("{}".utf8), as: UTF8.self)
    }

    public init(json: String) {
        self = (try? JSONDecoder().decode(JobFailure.self, from: Data(json.utf8)))
            ?? JobFailure(kind: "internal", message: json)
    }
}
