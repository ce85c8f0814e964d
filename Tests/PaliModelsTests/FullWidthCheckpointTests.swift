import Foundation
import Testing
import PaliGeneration
import PaliImage
import PaliModels
import PaliTensor
import PaliWeights

// PaliGemma-3B-224 widths, 1 vision + 2 decoder layers, BF16 in 4 shards with the hub's names, written
// at test time by FullWidthCheckpoint (the recipe make_fullwidth_golden.py shares) and loaded the normal
// way (ModelBundle: index, BF16 → F32, legacy names, unused-tensor check). transformers 5.23's outputs
// for the same weights are in Tests/Fixtures/fullwidth/ (golden.safetensors, golden.json).
// Costs ~1.5 GB of temporary disk (deleted at the end) and ~4.5 GB of memory (F32 weights 3 GB + the
// mapped BF16 shards).
//
// Debug builds (what `swift test` runs) execute the Swift SIMD kernels unoptimised. The test therefore
// checks the 8 greedy tokens by teacher forcing: one decoder forward over the prompt plus
// transformers' first 7 new tokens (the prompt rows are exactly the prefill: the prefix block does not
// see later rows), and token j must be the arg-max of row T − 1 + j. That is the greedy condition itself; KV-cached decoding is compared with transformers on
// the tiny checkpoints (TransformersGoldenTests). Release builds (`swift test -c release`) also run the
// Generator's KV-cached greedy path here.

private struct FullWidthGolden: Decodable {
    struct Shard: Decodable { let file: String; let tensors: [String] }
    let prompt: String
    let tokens: [Int]
    let checksums: [String: String]
    let shards: [Shard]
}

/// Largest |a − b| / max |b|, elementwise over equal-length arrays.
private func relativeToMax(_ a: UnsafePointer<Float>, _ b: [Float]) -> Float {
    let denom = b.map { abs($0) }.max() ?? 1
    var worst: Float = 0
    for i in b.indices { worst = max(worst, abs(a[i] - b[i])) }
    return worst / denom
}

/// Largest |a_i − b_i| / |b_i| (for norms, all well away from 0).
private func elementwiseRelative(_ a: [Float], _ b: [Float]) -> Float {
    guard a.count == b.count else { return .infinity }
    return zip(a, b).map { abs($0 - $1) / max(abs($1), 1e-30) }.max() ?? 0
}

private func rowNorms(_ x: UnsafePointer<Float>, rows: Int, width: Int) -> [Float] {
    (0..<rows).map { r in
        var s: Double = 0
        for i in 0..<width { let v = Double(x[r * width + i]); s += v * v }
        return Float(s.squareRoot())
    }
}

@Test(.timeLimit(.minutes(5)))
func fullWidthCheckpointMatchesTransformers() throws {
    let fixture = fixtures.appendingPathComponent("fullwidth")
    let golden = try JSONDecoder().decode(FullWidthGolden.self,
                                          from: Data(contentsOf: fixture.appendingPathComponent("golden.json")))
    let ref = try SafetensorsFile(contentsOf: fixture.appendingPathComponent("golden.safetensors"))
    let fm = FileManager.default
    let dir = fm.temporaryDirectory.appendingPathComponent("fullwidth-\(UUID().uuidString)")
    try fm.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? fm.removeItem(at: dir) }
    let clock = ContinuousClock()
    var timings: [(String, Duration)] = []
    func timed<T>(_ label: String, _ body: () throws -> T) rethrows -> T {
        let start = clock.now
        let result = try body()
        timings.append((label, clock.now - start))
        return result
    }

    // The checkpoint: the fixture's small files + the shards made from the recipe.
    for name in ["config.json", "preprocessor_config.json", "tokenizer.model", "image.png"] {
        try fm.copyItem(at: fixture.appendingPathComponent(name), to: dir.appendingPathComponent(name))
    }
    let layout = FullWidthCheckpoint.shards()
    #expect(layout.map { [$0.file] + $0.tensors.map(\.name) } == golden.shards.map { [$0.file] + $0.tensors },
            "shard layout differs from make_fullwidth_golden.py's")
    let checksums = try timed("generate + write") { try FullWidthCheckpoint.write(to: dir) }
    #expect(checksums.count == golden.checksums.count)
    for (name, sum) in golden.checksums.sorted(by: { $0.key < $1.key }) {
        let mine = checksums[name].map { String(repeating: "0", count: 16 - String($0, radix: 16).count) + String($0, radix: 16) }
        #expect(mine == sum, "\(name): the Swift recipe differs from make_fullwidth_golden.py's")
    }
    let shardFiles = try fm.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".safetensors") }
    #expect(shardFiles.count == layout.count && layout.count >= 3)

    // Load as a user would.
    let bundle = try ModelBundle(directory: dir)
    let model = try timed("load (BF16 kept)") { try bundle.loadModel() }
    #expect(model.decoder.embedding?.precision == .bf16)
    var expected = ModelPresets.paligemma3b224
    expected.vision.layers = FullWidthCheckpoint.visionLayers
    expected.decoder.layers = FullWidthCheckpoint.textLayers
    expected.decoder.slidingLayers = Array(repeating: false, count: FullWidthCheckpoint.textLayers)
    expected.imageTokenID = 3001
    #expect(bundle.hyper == expected, "config.json → \(bundle.hyper)")

    // Inputs: ids and pixel values as transformers' processor made them.
    let ids = bundle.promptIDs(golden.prompt)
    #expect(ids == (try ref.int64s("input_ids")).map { Int($0) }, "input ids")
    let preprocessor = ImagePreprocessor(configuration: try ImageProcessorConfiguration.load(modelDirectory: dir))
    let pixels = Tensor(shape: [3, 224, 224], values: try preprocessor.pixelValues(contentsOf: dir.appendingPathComponent("image.png")))
    #expect(maxRelativeError(pixels.scalars, try ref.tensor("pixel_values").scalars) <= 1e-6, "pixel values")

    // Vision tower and projector.
    let d = FullWidthCheckpoint.d, v = FullWidthCheckpoint.vocab, n = FullWidthCheckpoint.imageTokens
    let features = try timed("vision + projector") { () throws -> Tensor in
        let vision = model.vision(pixels.reshaped([1, 3, 224, 224]))
        let features = model.projector(vision).reshaped([n, d])
        let visionNorms = rowNorms(vision.data, rows: n, width: FullWidthCheckpoint.dv)
        #expect(elementwiseRelative(visionNorms, try ref.tensor("vision_norms").scalars) <= 1e-5, "vision norms")
        #expect(elementwiseRelative(rowNorms(features.data, rows: n, width: d), try ref.tensor("projector_norms").scalars) <= 1e-5,
                "projector norms")
        let rows = try ref.tensor("projector_rows").scalars
        #expect(relativeToMax(features.data, Array(rows.prefix(d))) <= 1e-5, "projector row 0")
        #expect(relativeToMax(features.data + (n - 1) * d, Array(rows.suffix(d))) <= 1e-5, "projector row \(n - 1)")
        return features
    }

    // One decoder forward: the prompt (= the prefill) followed by transformers' first 7 new tokens.
    let t = ids.count, tokens = golden.tokens
    let sequence = ids + tokens.dropLast()
    let positions = try ref.int64s("logits_positions").map { Int($0) }
    let predicting = Array((t - 1)..<(t - 1 + tokens.count))   // row t − 1 + j predicts new token j
    let selected = positions + predicting
    let (hidden, logits) = timed("decoder (\(sequence.count) rows) + head (\(selected.count) rows)") { () -> (Tensor, Tensor) in
        let hidden = model.embed(ids: sequence, imageFeatures: features)
        let cache = model.decoder.makeCache(capacity: sequence.count)
        model.decoder.forward(hidden, steps: [SequenceStep(tokens: sequence.count, cache: cache, prefixLength: t)])
        return (hidden, model.decoder.logits(hidden, rows: selected))
    }
    func logitRow(_ position: Int) -> UnsafeMutablePointer<Float> { logits.data + selected.firstIndex(of: position)! * v }

    // The same forward with the checkpoint widened to F32 at load: equal bit for bit.
    do {
        let widened = try timed("load (BF16 → F32)") { try bundle.loadModel(weights: .f32) }
        let hidden32 = widened.embed(ids: sequence, imageFeatures: widened.projector(widened.vision(pixels.reshaped([1, 3, 224, 224]))).reshaped([n, d]))
        let cache = widened.decoder.makeCache(capacity: sequence.count)
        widened.decoder.forward(hidden32, steps: [SequenceStep(tokens: sequence.count, cache: cache, prefixLength: t)])
        let logits32 = widened.decoder.logits(hidden32, rows: selected)
        #expect(logits32.scalars.map(\.bitPattern) == logits.scalars.map(\.bitPattern), "BF16-kept vs F32-widened logits")
    }

    // int8 weights (issue 16), measured at the real widths: logits of every text position (the prompt
    // and the teacher-forced tokens: every row that predicts a token) against the BF16 model's, relative
    // to each row's largest |logit|, and top-1 agreement. Lossy by design: the bounds are loose sanity
    // limits (a broken quantization gives errors of order 1 and random arg-maxes); the figures printed are
    // the measurement (docs/weights.md).
    do {
        let quantized = try timed("load (int8)") { try bundle.loadModel(weights: .int8) }
        let hidden8 = quantized.embed(ids: sequence, imageFeatures: quantized.projector(quantized.vision(pixels.reshaped([1, 3, 224, 224]))).reshaped([n, d]))
        let cache = quantized.decoder.makeCache(capacity: sequence.count)
        quantized.decoder.forward(hidden8, steps: [SequenceStep(tokens: sequence.count, cache: cache, prefixLength: t)])
        let textRows = Array(n..<sequence.count)
        let reference = model.decoder.logits(hidden, rows: textRows), mine = quantized.decoder.logits(hidden8, rows: textRows)
        var worst: Float = 0, meanSum: Float = 0, agree = 0
        for r in textRows.indices {
            let a = mine.data + r * v, b = reference.data + r * v
            var scale: Float = 0, diff: Float = 0, sum: Float = 0, bestA = 0, bestB = 0
            for i in 0..<v {
                scale = max(scale, abs(b[i]))
                let e = abs(a[i] - b[i])
                diff = max(diff, e); sum += e
                if a[i] > a[bestA] { bestA = i }
                if b[i] > b[bestB] { bestB = i }
            }
            worst = max(worst, diff / scale)
            meanSum += sum / Float(v) / scale
            if bestA == bestB { agree += 1 }
        }
        let mean = meanSum / Float(textRows.count)
        print("full-width checkpoint, --weights int8 vs BF16 over \(textRows.count) text positions: max error \(worst), "
              + "mean error \(mean) (× the row's max |logit|), top-1 agrees at \(agree)/\(textRows.count)")
        #expect(worst < 0.5 && mean < 0.1, "int8 logits: max \(worst), mean \(mean) × the row's max |logit|")
        #expect(agree * 2 > textRows.count, "int8 top-1 agrees at \(agree) of \(textRows.count) text positions")
    }

    let hiddenNorms = rowNorms(hidden.data, rows: t, width: d)
    #expect(elementwiseRelative(hiddenNorms, try ref.tensor("hidden_norms").scalars) <= 1e-5, "residual norms after the last layer")
    let finalWeight = FullWidthCheckpoint.values("language_model.model.norm.weight", shape: [d])
    let normed = Tensor(zeros: [t, d])
    finalWeight.withUnsafeBufferPointer {
        Norms.rmsNorm(hidden.data, rows: t, width: d, weight: $0.baseAddress!, eps: 1e-6, into: normed.data)
    }
    #expect(elementwiseRelative(rowNorms(normed.data, rows: t, width: d), try ref.tensor("final_norms").scalars) <= 1e-5,
            "norms after the final RMSNorm")

    // Logits: the last prompt position in full, every 16th id at a few other positions.
    let lastError = relativeToMax(logitRow(t - 1), try ref.tensor("logits_last").scalars)
    #expect(lastError <= 1e-4, "last-position logits: max error \(lastError) × max |logit|")
    let strided = try ref.tensor("logits_rows")
    let stride16 = (v + 15) / 16
    #expect(strided.shape == [positions.count, stride16])
    var rowsError: Float = 0
    for (i, position) in positions.enumerated() {
        let row = logitRow(position)
        let mine = (0..<stride16).map { row[16 * $0] }
        rowsError = max(rowsError, relativeToMax(mine, Array(UnsafeBufferPointer(start: strided.data + i * stride16, count: stride16))))
    }
    #expect(rowsError <= 1e-4, "logits at positions \(positions): max error \(rowsError) × max |logit|")

    // Greedy tokens (teacher forcing, see the top of the file): token j is the arg-max of row t − 1 + j.
    let argmaxes = predicting.map { position -> Int in
        let row = logitRow(position)
        var best = 0
        for i in 1..<v where row[i] > row[best] { best = i }
        return best
    }
    #expect(argmaxes == tokens, "greedy tokens")
    #expect(tokens == (try ref.int64s("greedy_tokens")).map { Int($0) })

    #if !DEBUG
    // Optimised builds: the Generator's own path (prefill, then KV-cached decode steps).
    let generator = Generator(model: model, stopIDs: bundle.stopIDs)
    let result = timed("Generator: \(tokens.count) greedy tokens") {
        generator.generate([GenerationRequest(promptIDs: ids, pixelValues: pixels, maxNewTokens: tokens.count)])[0]
    }
    #expect(result.tokens == tokens, "greedy tokens (KV-cached generation)")
    #endif

    let report = timings.map { "\($0.0) \(String(format: "%.2f", Double($0.1.components.seconds) + Double($0.1.components.attoseconds) / 1e18)) s" }
    print("full-width checkpoint: \(report.joined(separator: "; ")); logit errors: last row \(lastError), other rows \(rowsError) (× max |logit|)")
}

private func relativeToMax(_ a: [Float], _ b: [Float]) -> Float {
    a.withUnsafeBufferPointer { relativeToMax($0.baseAddress!, b) }
}
