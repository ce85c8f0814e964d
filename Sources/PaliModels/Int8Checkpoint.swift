// `paligemma quantize`: a checkpoint's matrices written as int8 with a scale per row — what
// `--weights int8` computes at load, stored — so a quantized checkpoint loads with a quarter of the
// matrix bytes and gives the same logits, bit for bit, as quantizing at load.
//
// Names (docs/weights.md): a quantized matrix `<name>` is I8 with its checkpoint shape (rows first), and
// `<name>_scale` is F32 [rows]; value = q · scale. Every other tensor (norms, biases, positions, the
// matrices `--weights int8` keeps at higher precision) is copied with its dtype. The optional tied copy
// `language_model.lm_head.weight` is left out (the embedding is the LM head).
import CKernels
import Foundation
import PaliTensor
import PaliWeights

public enum Int8Checkpoint {
    /// Writes `checkpoint`'s tensors, its matrices quantized, to `file` (one safetensors file). Returns
    /// the names quantized. Loads the model once (int8) to learn which tensors are its matrices.
    @discardableResult
    public static func write(_ checkpoint: Checkpoint, hyper: PaliGemmaHyperparameters, to file: URL) throws -> [String] {
        let recorder = MatrixRecorder(checkpoint)
        _ = try PaliGemmaModel(hyper: hyper, weights: recorder)
        try checkpoint.verifyAllUsed()
        let quantized = Set(recorder.int8Matrices)
        // The plan first (names, dtypes, shapes: the header), then each tensor's bytes as the writer asks
        // for them: one matrix in memory at a time (its F32 values, q and scales), not the whole copy.
        var planned: [SafetensorsPlannedEntry] = []
        var sources: [(name: String, quantize: Bool)] = []
        for name in checkpoint.tensorNames where !TensorNames.optionalTiedCopies.contains(name) {
            guard let info = checkpoint.info(name), let location = checkpoint.location(of: name) else { continue }
            if quantized.contains(name) {
                guard info.dtype != .i8 else {
                    throw WeightsError.invalidTensor(path: location.file.path, tensor: name, detail: "is already int8: this checkpoint is quantized")
                }
                planned.append(SafetensorsPlannedEntry(name: name, dtype: .i8, shape: info.shape))
                planned.append(SafetensorsPlannedEntry(name: name + Checkpoint.int8ScaleSuffix, dtype: .f32, shape: [info.shape.first ?? 1]))
                sources += [(name, true), (name, true)]
            } else {
                planned.append(SafetensorsPlannedEntry(name: name, dtype: info.dtype, shape: info.shape))
                sources.append((name, false))
            }
        }
        var files: [URL: SafetensorsFile] = [:]
        var pendingScales: [UInt8] = []
        try SafetensorsWriter.write(planned: planned, metadata: ["format": "pt",
            "paligemma_quantization": "int8: <name> I8 [rows, ...], <name>_scale F32 [rows]; w = q * scale (per output channel, symmetric)"],
            to: file) { index -> [UInt8] in
            let (name, quantize) = sources[index]
            if quantize {
                // The scales follow their matrix: computed with it, handed out on the next call.
                if planned[index].name != name { defer { pendingScales = [] }; return pendingScales }
                let values = try checkpoint.tensor(name)
                let rows = planned[index].shape.first ?? 1, k = rows == 0 ? 0 : values.count / rows
                var q = [UInt8](repeating: 0, count: rows * k + 4)
                var scales = [Float](repeating: 0, count: rows)
                q.withUnsafeMutableBytes { qp in
                    scales.withUnsafeMutableBufferPointer { sp in
                        // The quantization packing does (amax / 127, rint, ±127): the portable variant's
                        // activation quantization is the same function of a row.
                        pg_i8_quantize_rows(Int32(PG_I8_PORTABLE), Int32(rows), Int32(k), values.data, Int32(k),
                                            qp.baseAddress!, Int32(k), sp.baseAddress!)
                    }
                }
                withExtendedLifetime(values) {}
                q.removeLast(4)
                pendingScales = scales.withUnsafeBytes { Array($0) }
                return q
            }
            guard let location = checkpoint.location(of: name) else { return [] }
            let url = location.file
            let source = try files[url] ?? SafetensorsFile(contentsOf: url)
            files[url] = source
            return try source.rawBytes(location.diskName)
        }
        return quantized.sorted()
    }
}

/// A checkpoint seen through the model's loading: records each matrix it packs as int8.
private final class MatrixRecorder: WeightSource {
    let base: Checkpoint
    private let lock = NSLock()
    private(set) var int8Matrices: [String] = []
    init(_ base: Checkpoint) { self.base = base }

    func tensor(_ name: String, shape: [Int]) throws -> Tensor { try base.tensor(name, shape: shape) }
    func contains(_ name: String) -> Bool { base.contains(name) }
    func matrix(_ name: String, shape: [Int]) throws -> MatrixRows {
        let rows = try base.matrix(name, shape: shape)
        if WeightsMode.int8.precision(for: rows.element, name: TensorNames.canonical(name)) == .int8 {
            lock.lock(); int8Matrices.append(TensorNames.canonical(name)); lock.unlock()
        }
        return rows
    }
    var weightsMode: WeightsMode { .int8 }
    var gemm: GEMMPolicy { .fixed(.portable) }
}
