// Matrices kept at their shipped precision. A BF16 checkpoint kept as BF16 panels must give the logits
// of the same checkpoint widened to F32 at load, bit for bit, with every micro-kernel this CPU runs
// (BF16 is widened exactly in registers and summed in the same order). `--weights bf16` on an F32
// checkpoint rounds each weight: not exact; the error on the goldens is measured here and bounded
// loosely (docs/weights.md records the figures).
import Foundation
import Testing
import PaliGeneration
import PaliImage
import PaliModels
import PaliTensor
import PaliWeights

private func prefillLogits(_ dir: URL, _ goldens: [Golden], weights: WeightsMode, kernel: GEMMKernel) throws -> [[Float]] {
    let bundle = try ModelBundle(directory: dir)
    let model = try bundle.loadModel(weights: weights, gemm: .fixed(kernel))
    let generator = Generator(model: model, stopIDs: bundle.stopIDs)
    let preprocessor = ImagePreprocessor(configuration: try ImageProcessorConfiguration.load(modelDirectory: dir))
    let s = bundle.hyper.vision.imageSize
    return try goldens.map { g in
        let pixels = Tensor(shape: [3, s, s], values: try preprocessor.pixelValues(contentsOf: dir.appendingPathComponent(g.image)))
        return generator.prefillLogits(promptIDs: bundle.promptIDs(g.prompt), pixelValues: pixels).scalars
    }
}

private let kernelsHere = GEMMKernel.allCases.filter { $0.isAvailable && $0.supports(.bf16) }

@Test(arguments: kernelsHere)
func bf16KeptEqualsF32WidenedBitForBit(kernel: GEMMKernel) throws {
    let (dir, goldens) = try loadGoldens("pg1-sharded-bf16")
    let kept = try prefillLogits(dir, goldens, weights: .auto, kernel: kernel)
    let widened = try prefillLogits(dir, goldens, weights: .f32, kernel: kernel)
    for (i, g) in goldens.enumerated() {
        #expect(kept[i].map(\.bitPattern) == widened[i].map(\.bitPattern), "\(kernel) '\(g.prompt)'")
    }
}

@Test func autoKeepsTheCheckpointsPrecision() throws {
    for (name, want) in [("pg1-sharded-bf16", WeightPrecision.bf16), ("pg1-mqa", .f32)] {
        let bundle = try ModelBundle(directory: fixtures.appendingPathComponent("models/\(name)"))
        let auto = try bundle.loadModel()
        #expect(auto.decoder.embedding?.precision == want, "\(name)")
        let f32 = try bundle.loadModel(weights: .f32)
        #expect(f32.decoder.embedding?.precision == .f32 && f32.packedBytes == auto.packedBytes * 4 / want.bytesPerElement)
    }
}

@Test(arguments: ["pg1-mqa", "pg2-softcap"])
func bf16RoundedF32CheckpointStaysClose(name: String) throws {
    let (dir, goldens) = try loadGoldens(name)
    let rounded = try prefillLogits(dir, goldens, weights: .bf16, kernel: .best)
    let exact = try prefillLogits(dir, goldens, weights: .f32, kernel: .best)
    var worst: Float = 0, sum: Float = 0, count = 0
    for (a, b) in zip(rounded, exact) {
        let scale = b.map { abs($0) }.max() ?? 1
        for (x, y) in zip(a, b) { worst = max(worst, abs(x - y) / scale); sum += abs(x - y) / scale; count += 1 }
    }
    print("--weights bf16 on \(name) (F32 checkpoint): logit error max \(worst), mean \(sum / Float(count)) × max |logit|")
    #expect(worst > 0, "rounding to BF16 changed nothing: the F32 weights were not rounded")
    #expect(worst < 0.05, "\(name): BF16-rounded weights move the logits by \(worst) × max |logit|")
}
