import Foundation
import Testing
import PaliGeneration
@testable import PaliModels
import PaliTensor
import PaliWeights

// `GemmaDecoder.forward(readRows:)`: the last layer carries only the rows the caller reads back (the LM
// head's rows at prefill). Checked against transformers' final hidden state (the goldens), against the
// untrimmed forward, and for the cache every later step reads.

/// The decoder input of golden `k` of `name`, with its ids.
private func decoderInput(_ model: PaliGemmaModel, _ h: PaliGemmaHyperparameters, dir: URL, golden g: Golden)
    throws -> (Tensor, [Int], SafetensorsFile) {
    let file = try SafetensorsFile(contentsOf: dir.appendingPathComponent(g.file))
    let s = h.vision.imageSize
    let pixels = try file.tensor("pixel_values").reshaped([1, 3, s, s])
    let ids = try file.int64s("input_ids").map { Int($0) }
    let projected = model.projector(model.vision(pixels)).reshaped([h.imageTokens, h.decoder.width])
    return (model.embed(ids: ids, imageFeatures: projected), ids, file)
}

/// Row `r` of a [R, width] tensor, as a [1, width] tensor.
private func row(_ x: Tensor, _ r: Int, width: Int) -> Tensor {
    Tensor(shape: [1, width], values: Array<Float>(UnsafeBufferPointer(start: x.data + r * width, count: width)))
}

@Test(arguments: ["pg1-mqa", "pg2-softcap"])
func readRowsKeepsTheReadRowsAndTheWholeCache(name: String) throws {
    let (dir, goldens) = try loadGoldens(name)
    let bundle = try ModelBundle(directory: dir)
    let model = try bundle.loadModel()
    let h = bundle.hyper, d = h.decoder.width
    let weights = try Checkpoint(directory: dir)
    let finalNorm = try weights.tensor("language_model.model.norm.weight", shape: [d])
    let decoder = model.decoder

    var inputs: [(Tensor, [Int])] = []
    for g in goldens.prefix(2) {
        let (x, ids, file) = try decoderInput(model, h, dir: dir, golden: g)
        inputs.append((x, ids))
        let t = ids.count

        // Untrimmed, and with only the last row read back.
        let full = Tensor(shape: x.shape, values: x.scalars), trimmed = Tensor(shape: x.shape, values: x.scalars)
        let fullCache = decoder.makeCache(capacity: t), trimmedCache = decoder.makeCache(capacity: t)
        decoder.forward(full, steps: [SequenceStep(tokens: t, cache: fullCache, prefixLength: t)])
        decoder.forward(trimmed, steps: [SequenceStep(tokens: t, cache: trimmedCache, prefixLength: t)], readRows: [t - 1])

        // Every layer's keys and values are the untrimmed ones, bit for bit (later steps attend to them).
        #expect(trimmedCache.length == t)
        for layer in decoder.layerRange {
            let n = t * h.decoder.kvWidth
            #expect(Array<Float>(UnsafeBufferPointer(start: trimmedCache.key(layer: layer), count: n))
                    == Array<Float>(UnsafeBufferPointer(start: fullCache.key(layer: layer), count: n)), "\(name): keys of layer \(layer)")
            #expect(Array<Float>(UnsafeBufferPointer(start: trimmedCache.value(layer: layer), count: n))
                    == Array<Float>(UnsafeBufferPointer(start: fullCache.value(layer: layer), count: n)), "\(name): values of layer \(layer)")
        }
        // The last row: transformers' final norm, and the untrimmed row.
        let last = row(trimmed, t - 1, width: d)
        let refLast = row(try file.tensor("text_final_norm"), t - 1, width: d)
        let e = relativeToMax(Norms.rmsNorm(last, weight: finalNorm, eps: h.decoder.eps), refLast)
        #expect(e <= hiddenStateTolerance, "\(name): last row against transformers, relative error \(e)")
        #expect(relativeToMax(last, row(full, t - 1, width: d)) <= 1e-6, "\(name): last row against the untrimmed forward")
    }

    // Two sequences in one step, reading row 0, rows 2 and 3 and the last row of the first (runs of one
    // and two queries) and the last of the second: each read row as without readRows, and each sequence's
    // last row the same bits as with that sequence alone in the step.
    let (a, idsA) = inputs[0], (b, idsB) = inputs[1]
    let ta = idsA.count, tb = idsB.count
    let both = Tensor(zeros: [ta + tb, d]), bothFull = Tensor(zeros: [ta + tb, d])
    for t in [both, bothFull] {
        t.data.update(from: a.data, count: ta * d)
        (t.data + ta * d).update(from: b.data, count: tb * d)
    }
    func steps() -> [SequenceStep] {
        [SequenceStep(tokens: ta, cache: decoder.makeCache(capacity: ta), prefixLength: ta),
         SequenceStep(tokens: tb, cache: decoder.makeCache(capacity: tb), prefixLength: tb)]
    }
    let read = [0, 2, 3, ta - 1, ta + tb - 1]
    decoder.forward(both, steps: steps(), readRows: read)
    decoder.forward(bothFull, steps: steps())
    for r in read {
        #expect(relativeToMax(row(both, r, width: d), row(bothFull, r, width: d)) <= 1e-6, "\(name): row \(r) of a two-sequence step")
    }
    let alone = Tensor(shape: a.shape, values: a.scalars)
    decoder.forward(alone, steps: [SequenceStep(tokens: ta, cache: decoder.makeCache(capacity: ta), prefixLength: ta)],
                    readRows: [ta - 1])
    #expect(row(alone, ta - 1, width: d).scalars == row(both, ta - 1, width: d).scalars,
            "\(name): a sequence's read row does not depend on the other sequences of its step")
}
