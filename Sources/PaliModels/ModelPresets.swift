// Named model shapes (SPEC §1.1, §1.2). Used by the benchmark; real checkpoints carry config.json.

public enum ModelPresets {
    public struct UnknownPreset: Error, CustomStringConvertible {
        public let name: String
        public var description: String { "unknown preset '\(name)': use one of \(ModelPresets.names.joined(separator: ", "))" }
    }

    /// The 3B models at 224, 448 and 896 px (256, 1,024 and 4,096 image tokens in the prefix).
    public static let names = ["pg1-3b-224", "pg1-3b-448", "pg1-3b-896", "pg2-3b-224", "pg2-3b-448", "pg2-3b-896"]

    public static func named(_ name: String) throws -> PaliGemmaHyperparameters {
        let parts = name.split(separator: "-")
        guard parts.count == 3, parts[1] == "3b", let size = Int(parts[2]), [224, 448, 896].contains(size) else {
            throw UnknownPreset(name: name)
        }
        var hyper: PaliGemmaHyperparameters
        switch parts[0] {
        case "pg1": hyper = paligemma3b224
        case "pg2": hyper = paligemma2_3b224
        default: throw UnknownPreset(name: name)
        }
        hyper.vision.imageSize = size   // same weights but the position table: (size/14)² patches
        return hyper
    }

    /// SigLIP-So400m/14 at 224 px (SPEC §1.1).
    public static let so400m224 = VisionHyperparameters(width: 1152, mlpWidth: 4304, layers: 27, heads: 16,
                                                         imageSize: 224, patchSize: 14, eps: 1e-6)

    /// PaliGemma 1 3B at 224 px: So400m + Gemma-2B (SPEC §1.1).
    public static let paligemma3b224 = PaliGemmaHyperparameters(
        vision: so400m224,
        decoder: DecoderHyperparameters(width: 2048, mlpWidth: 16384, layers: 18, heads: 8, kvHeads: 1, headDim: 256,
                                        vocabSize: 257_216, eps: 1e-6, ropeTheta: 10_000, gemma2: false,
                                        attentionScale: 1 / 16, attentionSoftcap: nil, finalSoftcap: nil,
                                        slidingWindow: nil, slidingLayers: Array(repeating: false, count: 18)),
        imageTokenID: 257_152)

    /// PaliGemma 2 3B at 224 px: So400m + Gemma 2 2B (SPEC §1.2).
    public static let paligemma2_3b224 = PaliGemmaHyperparameters(
        vision: so400m224,
        decoder: DecoderHyperparameters(width: 2304, mlpWidth: 9216, layers: 26, heads: 8, kvHeads: 4, headDim: 256,
                                        vocabSize: 257_216, eps: 1e-6, ropeTheta: 10_000, gemma2: true,
                                        attentionScale: 1 / 16, attentionSoftcap: 50, finalSoftcap: 30,
                                        slidingWindow: 4096, slidingLayers: (0..<26).map { $0 % 2 == 0 }),
        imageTokenID: 257_152)
}
