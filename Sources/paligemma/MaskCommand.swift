// `paligemma mask`: the VQ-VAE mask decoder alone (SPEC §5.2), for checking it against a reference:
// 16 seg codes → F32 `mask` [64, 64], the decoder's output before any clipping or threshold.
import ArgumentParser
import Foundation
import PaliModels
import PaliWeights

struct MaskCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mask",
        abstract: "Decode 16 <seg> codes with the VQ-VAE mask decoder; write F32 mask [64, 64] (safetensors).",
        discussion: """
            The decoder is big_vision's vae-oid.npz (or a file with the same keys). Codes are the numbers of the
            16 <segNNN> tokens in output order (row-major over the 4×4 grid). The output holds the decoder's
            logits (about [-1, 1]) before the paste's clip, resize and threshold (see docs/tasks.md).
            """)

    @Option(help: "Mask decoder weights (.npz), e.g. vae-oid.npz.") var decoder: String
    @Option(help: "16 comma-separated codebook indices, e.g. 12,7,0,...") var codes: String
    @Option(help: "Output .safetensors file.") var output: String

    /// The codes as integers; the count and format are checked here, the range once the decoder is loaded.
    func parsedCodes() throws -> [Int] {
        let parts = codes.split(separator: ",", omittingEmptySubsequences: false)
            .map { $0.trimmingCharacters(in: .whitespaces) }
        let values = try parts.enumerated().map { i, p -> Int in
            guard let v = Int(p) else {
                throw ValidationError("--codes: item \(i + 1) (\"\(p)\") is not an integer; give 16 comma-separated codes")
            }
            return v
        }
        guard values.count == MaskDecoder.codesPerMask else {
            throw ValidationError("--codes: got \(values.count) codes, the decoder takes exactly \(MaskDecoder.codesPerMask)")
        }
        return values
    }

    func validate() throws {
        _ = try parsedCodes()
    }

    func run() throws {
        let codes = try parsedCodes()
        let maskDecoder = try MaskDecoder(contentsOf: URL(fileURLWithPath: decoder))
        try maskDecoder.validate(codes: codes)   // the codebook size comes from the file
        let mask = maskDecoder.decode(codes: codes)
        try SafetensorsWriter.write([.f32("mask", shape: mask.shape, mask.scalars)], to: URL(fileURLWithPath: output))
    }
}
