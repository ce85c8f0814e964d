// `paligemma generate`: answers for one or several (image, prompt) pairs, run as one batch.
import ArgumentParser
import Foundation
import PaliBatch
import PaliGeneration
import PaliJSON
import PaliImage
import PaliModels

struct GenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Generate answers for (image, prompt) pairs; several pairs run as one batch.",
        discussion: """
            Pairs come from repeated --image/--prompt options (one prompt for all images is fine), or from
            --jobs FILE.jsonl with lines {"image": PATH, "prompt": TEXT} (paths relative to the file).
            Prints one answer per line, or with --json one line {"logprob", "text", "tokens"} per pair, tokens
            being the generated ids up to and including <eos> when produced, logprob the sum of their
            log-probabilities under the model (with --beams, the beam's score: that sum / the number of tokens);
            --token-logprobs adds "token_logprobs", one per token. When the answer holds <loc>/<seg> tokens
            (detect, segment), the JSON line also has "objects": [{"label", "box": [x0, y0, x1, y1], "mask"}] in
            pixels of the original image (masks as COCO RLE, decoded with --mask-decoder), and "problems" when
            part of the answer is malformed (docs/tasks.md).
            """)

    @OptionGroup var model: ModelOptions
    @OptionGroup var gemm: GEMMOptions
    @Option(help: "Image file (JPEG or PNG); repeat for a batch.") var image: [String] = []
    @Option(help: "Prompt prefix, e.g. \"caption en\"; repeat to pair with each --image.") var prompt: [String] = []
    @Option(help: "JSONL file of {\"image\", \"prompt\"} lines.") var jobs: String?
    @OptionGroup var sampling: SamplingOptions
    @Flag(help: "Print one JSON line per pair: {\"logprob\", \"text\", \"tokens\"} (+ \"objects\" for detect/segment).") var json = false
    @Flag(help: "With --json, add each token's log-probability (\"token_logprobs\").") var tokenLogprobs = false
    @Option(help: "VQ-VAE mask decoder (.npz) for <seg> codes (default: MODEL/vae-oid.npz when it exists).")
    var maskDecoder: String?

    func validate() throws {
        if jobs == nil && image.isEmpty { throw ValidationError("give --image PATH (and --prompt TEXT), or --jobs FILE.jsonl") }
        if jobs != nil && !image.isEmpty { throw ValidationError("use either --image/--prompt or --jobs, not both") }
        if tokenLogprobs && !json { throw ValidationError("--token-logprobs adds a field to the --json output: give --json too") }
        if let maskDecoder, !FileManager.default.fileExists(atPath: maskDecoder) {
            throw ValidationError("--mask-decoder \(maskDecoder): no such file")
        }
        if !image.isEmpty && !(prompt.count == image.count || prompt.count <= 1) {
            throw ValidationError("give one --prompt per --image (\(image.count) images, \(prompt.count) prompts), or a single --prompt for all")
        }
    }

    func pairs() throws -> [(image: String, prompt: String)] {
        if let jobs {
            let url = URL(fileURLWithPath: jobs)
            let base = url.deletingLastPathComponent()
            let text = try String(contentsOf: url, encoding: .utf8)
            return try text.split(separator: "\n", omittingEmptySubsequences: false).enumerated().compactMap { n, line in
                guard !line.trimmingCharacters(in: .whitespaces).isEmpty else { return nil }
                guard let obj = try? JSONValue.parse(line), let img = obj["image"]?.stringValue else {
                    throw ValidationError("\(jobs):\(n + 1): expected a JSON object with \"image\" (and \"prompt\")")
                }
                let path = img.hasPrefix("/") ? img : base.appendingPathComponent(img).path
                return (path, obj["prompt"]?.stringValue ?? "")
            }
        }
        return image.enumerated().map { i, img in (img, prompt.isEmpty ? "" : prompt[prompt.count == 1 ? 0 : i]) }
    }

    func run() throws {
        model.applyThreads()
        let bundle = try ModelBundle(directory: model.directory)
        let loader = try ImageLoader(bundle: bundle, maxPixels: model.maxPixels)
        let pairs = try pairs()
        let requests = try pairs.map { pair -> GenerationRequest in
            let ids = bundle.promptIDs(pair.prompt)
            try bundle.prompt.validate(promptLength: ids.count, maxNewTokens: sampling.maxTokens)
            return GenerationRequest(promptIDs: ids, pixelValues: try loader.pixels(pair.image),
                                     maxNewTokens: sampling.maxTokens, sampling: sampling.parameters, beams: sampling.beams)
        }
        gemm.logChoices(as: "paligemma generate")
        let generator = Generator(model: try bundle.loadModel(weights: model.weights, gemm: gemm.policy, progressLabel: "paligemma generate"), stopIDs: bundle.stopIDs)
        let decoderURL = maskDecoder.map { URL(fileURLWithPath: $0) } ?? bundle.directory.appendingPathComponent("vae-oid.npz")
        var loadedDecoder: MaskDecoder?
        for (pair, result) in zip(pairs, generator.generate(requests)) {
            let text = bundle.text(result.tokens)
            if json {
                var fields: [(String, JSONValue)] = [("text", .string(text)), ("tokens", .array(result.tokens.map { .int($0) })),
                                                     ("logprob", .double(result.logprob, decimals: OutputRecord.logprobDecimals))]
                if tokenLogprobs {
                    fields.append(("token_logprobs", .array(result.tokenLogprobs.map {
                        .double($0, decimals: OutputRecord.logprobDecimals)
                    })))
                }
                if text.contains("<loc") || text.contains("<seg") {
                    // Loaded on first use: only segmentation answers need it.
                    if loadedDecoder == nil, text.contains("<seg"), FileManager.default.fileExists(atPath: decoderURL.path) {
                        loadedDecoder = try MaskDecoder(contentsOf: decoderURL)
                    }
                    let header = try ImageDecoder(maxPixels: model.maxPixels).header(contentsOf: URL(fileURLWithPath: pair.image))
                    let parsed = TaskOutput.parse(text: text, imageWidth: header.width, imageHeight: header.height,
                                                  maskDecoder: loadedDecoder)
                    fields += parsed.jsonFields ?? []
                }
                // Keys sorted at every level, as this command has always printed them.
                print(JSONValue.object(fields).sortingKeys.encoded)
            } else {
                print(text)
            }
        }
    }
}
