// `paligemma logits`: the prefill's logits for every prompt position, as transformers'
// `model(**inputs).logits[0]`, for checking the engine against a reference.
import ArgumentParser
import Foundation
import PaliGeneration
import PaliWeights

struct LogitsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "logits",
        abstract: "Write F32 logits [T, V] of every prompt position and I64 input_ids [T] (safetensors).")

    @OptionGroup var model: ModelOptions
    @OptionGroup var gemm: GEMMOptions
    @Option(help: "Image file (JPEG or PNG).") var image: String
    @Option(help: "Prompt prefix, e.g. \"caption en\".") var prompt: String
    @Option(help: "Output .safetensors file.") var output: String

    func run() throws {
        model.applyThreads()
        let bundle = try ModelBundle(directory: model.directory)
        let loader = try ImageLoader(bundle: bundle, maxPixels: model.maxPixels)
        let pixels = try loader.pixels(image)
        let ids = bundle.promptIDs(prompt)
        try bundle.prompt.validate(promptLength: ids.count, maxNewTokens: 0)
        gemm.logChoices(as: "paligemma logits")
        let generator = Generator(model: try bundle.loadModel(weights: model.weights, gemm: gemm.policy, progressLabel: "paligemma logits"), stopIDs: bundle.stopIDs)
        let logits = generator.prefillLogits(promptIDs: ids, pixelValues: pixels)
        try SafetensorsWriter.write([
            .f32("logits", shape: logits.shape, logits.scalars),
            .i64("input_ids", shape: [ids.count], ids.map(Int64.init)),
        ], to: URL(fileURLWithPath: output))
    }
}
