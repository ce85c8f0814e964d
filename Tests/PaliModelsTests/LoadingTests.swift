import Foundation
import Testing
import PaliModels
import PaliTensor
import PaliWeights

let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures")

/// Checkpoints written by transformers 5.23 (sharded, 5.x names) and with the hub's legacy names.
@Test(arguments: ["tiny_sharded", "tiny_hub"])
func loadingUsesEveryTensor(name: String) throws {
    let dir = fixtures.appendingPathComponent("weights/\(name)")
    let config = try PaliGemmaConfiguration(contentsOf: dir)
    let checkpoint = try Checkpoint(directory: dir)
    let model = try PaliGemmaModel(hyper: PaliGemmaHyperparameters(config), weights: checkpoint)
    #expect(checkpoint.unusedTensorNames().isEmpty, "unused: \(checkpoint.unusedTensorNames())")
    try checkpoint.verifyAllUsed()
    // A forward pass runs and gives finite logits of the right shape.
    let s = model.hyper.vision.imageSize
    let pixels = Tensor(zeros: [1, 3, s, s])
    let features = model.imageFeatures(pixels)
    #expect(features.shape == [1, model.hyper.imageTokens, model.hyper.decoder.width])
}

@Test func wrongShapeNamesTensorAndBothShapes() throws {
    let dir = fixtures.appendingPathComponent("weights/tiny_sharded")
    var config = try PaliGemmaConfiguration(contentsOf: dir)
    config.text.intermediateSize += 1
    let checkpoint = try Checkpoint(directory: dir)
    do {
        _ = try PaliGemmaModel(hyper: PaliGemmaHyperparameters(config), weights: checkpoint)
        Issue.record("loading with a wrong intermediate size must fail")
    } catch let error as WeightsError {
        let text = "\(error)"
        #expect(text.contains("mlp.gate_proj.weight"), "\(text)")
        #expect(text.contains("33") && text.contains("32"), "\(text)")
    }
}
