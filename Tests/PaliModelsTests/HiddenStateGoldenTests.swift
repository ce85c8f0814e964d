import Foundation
import Testing
import PaliGeneration
import PaliModels
import PaliTensor
import PaliWeights

// Per-layer hidden states against transformers 5.23 (Tests/Oracle/make_model_goldens.py, which documents
// each tensor): the SigLIP embeddings and each encoder layer, post_layernorm, the projector, the decoder
// input and each decoder layer, the final norm. The logits test says THAT something differs; this one
// says WHERE. Inputs are the goldens' own pixel values and ids, so preprocessing and the tokenizer play
// no part. Each state must agree to `hiddenStateTolerance` relative to its own max |value|.

let hiddenStateTolerance: Float = 1e-5

/// max |ours − ref| / max |ref| (∞ when the element counts differ).
func relativeToMax(_ ours: Tensor, _ ref: Tensor) -> Float {
    guard ours.count == ref.count else { return .infinity }
    var diff: Float = 0, scale: Float = 0
    for i in 0..<ref.count {
        diff = max(diff, abs(ours.data[i] - ref.data[i]))
        scale = max(scale, abs(ref.data[i]))
    }
    return diff / max(scale, .leastNormalMagnitude)
}

@Test(arguments: ["pg1-mqa", "pg2-softcap", "pg1-sharded-bf16"])
func hiddenStatesMatchTransformersPerLayer(name: String) throws {
    let (dir, goldens) = try loadGoldens(name)
    let bundle = try ModelBundle(directory: dir)
    let model = try bundle.loadModel()
    let h = bundle.hyper, s = h.vision.imageSize, n = h.imageTokens, d = h.decoder.width
    // One single-layer decoder per layer, chained over their own caches (as pipeline stages run).
    let weights = try Checkpoint(directory: dir)
    let single = try (0..<h.decoder.layers).map {
        try GemmaDecoder(hyper: h.decoder, layers: $0..<($0 + 1), embed: false, head: false, weights: weights)
    }
    let finalNorm = try weights.tensor("language_model.model.norm.weight", shape: [d])
    var report: [String] = []

    for (k, g) in goldens.enumerated() {
        let file = try SafetensorsFile(contentsOf: dir.appendingPathComponent(g.file))
        func check(_ ours: Tensor, _ key: String) throws {
            let ref = try file.tensor(key)
            #expect(ours.count == ref.count, "\(name) #\(k) \(key): \(ours.shape) vs \(ref.shape)")
            let e = relativeToMax(ours, ref)
            report.append("\(key) \(e)")
            #expect(e <= hiddenStateTolerance, "\(name) #\(k) '\(g.prompt)' \(key): relative error \(e)")
        }
        let pixels = try file.tensor("pixel_values").reshaped([1, 3, s, s])
        let ids = try file.int64s("input_ids").map { Int($0) }

        // Vision tower: embeddings, each encoder layer, post_layernorm; then the projector.
        let states = model.vision.hiddenStates(pixels)
        #expect(states.count == h.vision.layers + 2)
        for i in 0...h.vision.layers { try check(states[i], "vision_hidden_\(i)") }
        try check(states[h.vision.layers + 1], "vision_post_layernorm")
        #expect(states.last!.scalars == model.vision(pixels).scalars, "hiddenStates' output is callAsFunction's")
        let projected = model.projector(states.last!).reshaped([n, d])
        try check(projected, "projector")

        // Decoder: the input (image rows unscaled, text rows × √D), then layer by layer.
        let x = model.embed(ids: ids, imageFeatures: projected)
        try check(x, "text_hidden_0")
        for (i, decoder) in single.enumerated() {
            decoder.forward(x, steps: [SequenceStep(tokens: ids.count, cache: decoder.makeCache(capacity: ids.count),
                                                    prefixLength: ids.count)])
            try check(x, "text_hidden_\(i + 1)")
        }
        try check(Norms.rmsNorm(x, weight: finalNorm, eps: h.decoder.eps), "text_final_norm")

        // The full decoder (all layers in one) gives the same last state as the chain.
        let full = model.embed(ids: ids, imageFeatures: projected)
        model.decoder.forward(full, steps: [SequenceStep(tokens: ids.count, cache: model.decoder.makeCache(capacity: ids.count),
                                                         prefixLength: ids.count)])
        #expect(full.scalars == x.scalars, "\(name) #\(k): layer-range chain vs full decoder")
    }
    // Measured errors, worst per state over the cases (shown with `swift test`'s output).
    var worst: [String: Float] = [:], order: [String] = []
    for line in report {
        let parts = line.split(separator: " "), key = String(parts[0]), e = Float(parts[1])!
        if worst[key] == nil { order.append(key) }
        worst[key] = max(worst[key] ?? 0, e)
    }
    print("hidden states \(name): " + order.map { "\($0)=\(worst[$0]!)" }.joined(separator: " "))
}
