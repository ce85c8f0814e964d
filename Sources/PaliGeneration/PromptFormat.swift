// PaliGemma's prompt (SPEC §3.1): "<image>"×N + "<bos>" + prefix + "\n", i.e. ids
// [image]×N, bos, sp(prefix + "\n"). The "\n" separator ends the prefix block (bidirectional);
// everything generated after it is causal.

public struct PromptFormat: Sendable {
    public var imageTokens: Int
    public var imageTokenID: Int
    public var bosID: Int
    /// Longest prompt + generation the model allows (max_position_embeddings).
    public var maxPositions: Int

    public init(imageTokens: Int, imageTokenID: Int, bosID: Int, maxPositions: Int) {
        self.imageTokens = imageTokens; self.imageTokenID = imageTokenID; self.bosID = bosID
        self.maxPositions = maxPositions
    }

    /// Prompt ids for `prefix`, given the tokenizer's `encode`.
    public func ids(prefix: String, encode: (String) -> [Int]) -> [Int] {
        Array(repeating: imageTokenID, count: imageTokens) + [bosID] + encode(prefix + "\n")
    }

    /// Checks that the prompt plus `maxNewTokens` fits the model.
    public func validate(promptLength: Int, maxNewTokens: Int) throws {
        if promptLength + maxNewTokens > maxPositions {
            throw GenerationError.promptTooLong(tokens: promptLength, maxNewTokens: maxNewTokens, limit: maxPositions)
        }
    }
}

public enum GenerationError: Error, CustomStringConvertible, Equatable {
    case promptTooLong(tokens: Int, maxNewTokens: Int, limit: Int)
    case imageSizeMismatch(expected: [Int], got: [Int])

    public var description: String {
        switch self {
        case let .promptTooLong(tokens, maxNewTokens, limit):
            return "prompt is \(tokens) tokens (image tokens included); with \(maxNewTokens) new tokens it exceeds the model's \(limit) positions: shorten the prompt or lower --max-tokens"
        case let .imageSizeMismatch(expected, got):
            return "pixel values have shape \(got), the model expects \(expected): preprocess the image at the model's size"
        }
    }
}
