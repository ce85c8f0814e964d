import Foundation
import Testing
import PaliGeneration
import PaliImage
import PaliModels
import PaliTensor
import PaliWeights

// Tiny random checkpoints written by transformers 5.23 (Tests/Oracle/make_model_goldens.py) and the
// outputs transformers computed for them: input ids, pixel values, prefill logits, greedy tokens.

struct Golden: Decodable { let file: String; let image: String; let prompt: String; let text: String; let tokens: [Int] }

func loadGoldens(_ name: String) throws -> (URL, [Golden]) {
    let dir = fixtures.appendingPathComponent("models/\(name)")
    let data = try Data(contentsOf: dir.appendingPathComponent("golden.json"))
    return (dir, try JSONDecoder().decode([Golden].self, from: data))
}

@Test(arguments: ["pg1-mqa", "pg2-softcap", "pg1-sharded-bf16"])
func matchesTransformers(name: String) throws {
    let (dir, goldens) = try loadGoldens(name)
    let bundle = try ModelBundle(directory: dir)
    let model = try bundle.loadModel()
    let generator = Generator(model: model, stopIDs: bundle.stopIDs)
    let preprocessor = ImagePreprocessor(configuration: try ImageProcessorConfiguration.load(modelDirectory: dir))
    let s = bundle.hyper.vision.imageSize
    var requests: [GenerationRequest] = []
    for g in goldens {
        let file = try SafetensorsFile(contentsOf: dir.appendingPathComponent(g.file))
        let ids = bundle.promptIDs(g.prompt)
        #expect(ids == (try file.int64s("input_ids")).map { Int($0) }, "\(name) '\(g.prompt)': input ids")
        let pixels = Tensor(shape: [3, s, s], values: try preprocessor.pixelValues(contentsOf: dir.appendingPathComponent(g.image)))
        let refPixels = try file.tensor("pixel_values")
        #expect(maxRelativeError(pixels.scalars, refPixels.scalars) <= 1e-6, "\(name): pixel values")

        let logits = generator.prefillLogits(promptIDs: ids, pixelValues: pixels)
        let ref = try file.tensor("logits")
        #expect(logits.shape == ref.shape)
        let maxAbs = ref.scalars.map { abs($0) }.max() ?? 1
        var worst: Float = 0
        for i in 0..<min(logits.count, ref.count) { worst = max(worst, abs(logits.data[i] - ref.data[i])) }
        #expect(worst <= 1e-4 * maxAbs, "\(name) '\(g.prompt)': logits differ by \(worst) (max |logit| \(maxAbs))")

        let request = GenerationRequest(promptIDs: ids, pixelValues: pixels, maxNewTokens: g.tokens.count)
        let alone = generator.generate([request])[0]
        #expect(alone.tokens == g.tokens, "\(name) '\(g.prompt)': greedy tokens")
        #expect(bundle.text(alone.tokens) == g.text, "\(name) '\(g.prompt)': decoded text")
        requests.append(request)
    }
    // Batched (different prompt lengths in one forward) equals one by one.
    let batched = generator.generate(requests)
    #expect(batched.map(\.tokens) == goldens.map(\.tokens), "\(name): batched greedy tokens")
}

/// Largest |a − b| relative to max(1, max |b|).
func maxRelativeError(_ a: [Float], _ b: [Float]) -> Float {
    guard a.count == b.count else { return .infinity }
    let denom = max(1, b.map { abs($0) }.max() ?? 0)
    var m: Float = 0
    for i in a.indices { m = max(m, abs(a[i] - b[i])) }
    return m / denom
}
