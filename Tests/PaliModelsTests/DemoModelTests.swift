import Foundation
import Testing
import PaliGeneration
import PaliImage
import PaliModels
import PaliTensor

// The shipped demo model (models/paligemma-shapes, trained by Tests/Oracle/train_demo_model.py) on
// held-out scenes (shapes.py seed 1001, Tests/Fixtures/demo): greedy tokens and decoded text must equal
// what transformers generated (Tests/Oracle/eval_demo_model.py), for captions, boxes and masks alike.

struct DemoExpectation: Decodable { let id: String; let image: String; let prompt: String; let tokens: [Int]; let text: String }

@Test func demoModelMatchesTransformersOnHeldOutScenes() throws {
    let repository = fixtures.deletingLastPathComponent().deletingLastPathComponent()
    let modelDir = repository.appendingPathComponent("models/paligemma-shapes")
    let demo = fixtures.appendingPathComponent("demo")
    let lines = try String(contentsOf: demo.appendingPathComponent("expected.jsonl"), encoding: .utf8)
        .split(separator: "\n").map { try JSONDecoder().decode(DemoExpectation.self, from: Data($0.utf8)) }
    #expect(lines.count >= 20)
    let bundle = try ModelBundle(directory: modelDir)
    let generator = Generator(model: try bundle.loadModel(), stopIDs: bundle.stopIDs)
    let preprocessor = ImagePreprocessor(configuration: try ImageProcessorConfiguration.load(modelDirectory: modelDir))
    let decoder = try MaskDecoder(contentsOf: modelDir.appendingPathComponent("vae-oid.npz"))
    let s = bundle.hyper.vision.imageSize
    let requests = try lines.map { line in
        GenerationRequest(promptIDs: bundle.promptIDs(line.prompt),
                          pixelValues: Tensor(shape: [3, s, s], values: try preprocessor.pixelValues(
                              contentsOf: demo.appendingPathComponent(line.image))),
                          maxNewTokens: 40)
    }
    let results = generator.generate(requests)   // one batch: batching must not change any answer
    var withObjects = 0
    for (line, result) in zip(lines, results) {
        #expect(result.tokens == line.tokens, "\(line.id) '\(line.prompt)'")
        #expect(bundle.text(result.tokens) == line.text, "\(line.id): text")
        if !line.prompt.hasPrefix("caption") {
            let image = try ImageDecoder().decode(contentsOf: demo.appendingPathComponent(line.image))
            let parse = TaskOutput.parse(text: line.text, imageWidth: image.width, imageHeight: image.height,
                                         maskDecoder: decoder)
            if !parse.objects.isEmpty { withObjects += 1 }
            if line.prompt.hasPrefix("segment") {
                #expect(parse.objects.allSatisfy { $0.mask != nil }, "\(line.id): every segment object has a mask")
            }
        }
    }
    #expect(withObjects > 0, "the detect/segment answers hold objects")
}
