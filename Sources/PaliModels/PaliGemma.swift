// PaliGemma = SigLIP → projector → Gemma decoder (SPEC §2.2). Image rows enter the decoder
// unscaled; text rows are embeddings × √D. The model is pure: tensors in, tensors out, plus KV caches.
// Pipeline stages use the pieces (`vision`, `decoder` on a layer range); the single-process path
// composes the same pieces.
import PaliTensor

public struct PaliGemmaHyperparameters: Sendable, Equatable {
    public var vision: VisionHyperparameters
    public var decoder: DecoderHyperparameters
    public var imageTokenID: Int
    public var bosID: Int
    public var eosID: Int
    public var padID: Int

    public init(vision: VisionHyperparameters, decoder: DecoderHyperparameters, imageTokenID: Int,
                bosID: Int = 2, eosID: Int = 1, padID: Int = 0) {
        self.vision = vision; self.decoder = decoder; self.imageTokenID = imageTokenID
        self.bosID = bosID; self.eosID = eosID; self.padID = padID
    }

    /// Image tokens per image.
    public var imageTokens: Int { vision.tokens }
}

public final class PaliGemmaModel: @unchecked Sendable {
    public let hyper: PaliGemmaHyperparameters
    public let vision: SiglipVisionTower
    public let projector: Projector
    public let decoder: GemmaDecoder

    public init(hyper: PaliGemmaHyperparameters, weights: WeightSource) throws {
        self.hyper = hyper
        vision = try SiglipVisionTower(hyper: hyper.vision, weights: weights)
        projector = try Projector(visionWidth: hyper.vision.width, textWidth: hyper.decoder.width, weights: weights)
        decoder = try GemmaDecoder(hyper: hyper.decoder, layers: 0..<hyper.decoder.layers, embed: true, head: true,
                                   weights: weights)
    }

    /// Bytes of the packed matrices held.
    public var packedBytes: Int { vision.packedBytes + projector.packedBytes + decoder.packedBytes }

    /// pixel values [B, 3, S, S] → image features [B, N, D] (projector output, unscaled).
    public func imageFeatures(_ pixels: Tensor) -> Tensor {
        projector(vision(pixels))
    }

    /// Decoder input for one sequence: text rows embedded × √D, rows whose id is the image token
    /// replaced in order by `imageFeatures` rows [N, D] (transformers' masked_scatter).
    public func embed(ids: [Int], imageFeatures: Tensor?) -> Tensor {
        PaliGemmaModel.embed(ids: ids, imageFeatures: imageFeatures, imageTokenID: hyper.imageTokenID, decoder: decoder)
    }

    public static func embed(ids: [Int], imageFeatures: Tensor?, imageTokenID: Int, decoder: GemmaDecoder) -> Tensor {
        let x = decoder.embed(ids)
        let d = decoder.hyper.width
        var next = 0
        for (r, id) in ids.enumerated() where id == imageTokenID {
            guard let f = imageFeatures, next < f.rows else {
                preconditionFailure("prompt has more <image> tokens than image features")
            }
            (x.data + r * d).update(from: f.data + next * d, count: d)
            next += 1
        }
        return x
    }
}
