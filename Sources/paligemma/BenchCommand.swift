// `paligemma bench`: vision images/s, prefill tokens/s and decode tokens/s on random weights made
// in-process, at PaliGemma-3B-224 widths by default, beside the machine's measured sgemm rate: the
// faster of OpenBLAS's cblas_sgemm and our packed-weight kernel on a 2048³ product (both reported).
import ArgumentParser
import Foundation
import Logging
import PaliGeneration
import PaliModels
import PaliTensor
import PaliWeights
import PaliBatch
import CKernels

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Time vision, prefill and decode on random weights; print JSON.")

    @Option(help: "Model shape preset: pg1-3b-224, pg2-3b-224, or the same at 448 or 896 px (pg1-3b-448, …).") var preset: String = "pg1-3b-224"
    @Option(help: "Vision layers (default: the preset's).") var visionLayers: Int?
    @Option(help: "Decoder layers (default: the preset's).") var textLayers: Int?
    @Option(help: "Text tokens after the image tokens in the prefill prompt.") var promptTokens: Int = 8
    @Option(help: "Decode steps to time.") var decodeSteps: Int = 8
    @Option(help: "Images in the batched vision measurement.") var visionBatch: Int = 4
    @Option(help: "BLAS threads (default: OpenBLAS's choice).") var threads: Int?
    @Option(help: "Precision matrices are kept at: auto or f32 (random weights are f32), bf16 or int8; several, comma-separated (f32,bf16,int8), time each in turn and print the ratios.")
    var weights: String = "auto"
    /// The modes `--weights` names, in order.
    var weightsModes: [WeightsMode] { weights.split(separator: ",").compactMap { WeightsMode(rawValue: String($0)) } }

    func validate() throws {
        let names = weights.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        for name in names where WeightsMode(rawValue: name) == nil {
            throw ValidationError("--weights: '\(name)' is not one of \(WeightsMode.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        if Set(names).count != names.count { throw ValidationError("--weights names a precision twice: \(weights)") }
        if loadModel != nil && names.count > 1 { throw ValidationError("--load-model takes one --weights") }
    }
    @Option(help: "Timed runs of each phase after its warm-up; the fastest counts (background load only ever slows a run down).")
    var repeats: Int = 3

    @Option(help: "Time loading this model directory (from the page cache after a first read) instead of the phases.")
    var loadModel: String?
    @OptionGroup var gemm: GEMMOptions
    @Flag(help: "With --gemm auto: time every kernel on every matrix shape again (and rewrite the cache) instead of using the cached rates.")
    var remeasureGemm = false

    func run() throws {
        if let threads { BLAS.threads = threads }
        if let loadModel { return try benchLoad(URL(fileURLWithPath: loadModel)) }
        var hyper = try ModelPresets.named(preset)
        if let v = visionLayers { hyper.vision.layers = v }
        if let t = textLayers {
            hyper.decoder.layers = t
            hyper.decoder.slidingLayers = Array(hyper.decoder.slidingLayers.prefix(t))
        }
        let openblas = measureSGEMM(), packed = measurePackedGEMM()
        benchLogger.info("\(Machine.cpuName) [\(Machine.cpuFeatures)]")
        benchLogger.info(.init(stringLiteral: "sgemm 2048³: OpenBLAS \(String(format: "%.1f", openblas)) GFLOP/s, "
            + "packed \(GEMMKernel.best) kernel \(String(format: "%.1f", packed)) GFLOP/s; making random weights…"))
        GEMMChoice.log = { benchLogger.info(.init(stringLiteral: $0)) }
        GEMMChoice.shared.remeasureAll = remeasureGemm
        let modes = weightsModes
        if modes.count == 1 {
            let report = try phases(hyper: hyper, weights: modes[0], sgemm: (openblas, packed))
            let data = try JSONSerialization.data(withJSONObject: report, options: [.sortedKeys, .prettyPrinted])
            print(String(decoding: data, as: UTF8.self))
            return
        }
        // Several precisions: each model made, timed and freed in turn; then the ratios to the first.
        var reports: [String: [String: Any]] = [:]
        for mode in modes {
            benchLogger.info("--weights \(mode): making random weights…")
            reports[mode.rawValue] = try phases(hyper: hyper, weights: mode, sgemm: (openblas, packed))
        }
        let base = modes[0].rawValue
        var ratios: [String: Any] = [:]
        for mode in modes.dropFirst() {
            let r = ratiosOf(reports[mode.rawValue]!, to: reports[base]!)
            ratios["\(mode.rawValue)_vs_\(base)"] = r
            benchLogger.info(.init(stringLiteral: "\(mode.rawValue) vs \(base): " + r.sorted { $0.key < $1.key }
                .map { "\($0.key) \(String(format: "%.2f", $0.value))×" }.joined(separator: ", ")))
        }
        let data = try JSONSerialization.data(withJSONObject: ["weights": modes.map(\.rawValue), "runs": reports, "ratios": ratios],
                                              options: [.sortedKeys, .prettyPrinted])
        print(String(decoding: data, as: UTF8.self))
    }

    /// Speed-ups of `run` over `base` (rates: run / base; resident bytes: run / base).
    func ratiosOf(_ run: [String: Any], to base: [String: Any]) -> [String: Double] {
        func value(_ r: [String: Any], _ phase: String, _ key: String) -> Double? {
            (r[phase] as? [String: Any])?[key] as? Double
        }
        var out: [String: Double] = [:]
        for (name, phase, key) in [("vision_batch1", "vision", "images_per_s_batch1"),
                                   ("vision_batch\(visionBatch)", "vision", "images_per_s_batch\(visionBatch)"),
                                   ("prefill", "prefill", "tokens_per_s"),
                                   ("decode_batch1", "decode", "tokens_per_s_batch1"),
                                   ("decode_batch8", "decode", "tokens_per_s_batch8")] {
            if let a = value(run, phase, key), let b = value(base, phase, key), b > 0 { out[name] = round3(a / b) }
        }
        if let a = run["packed_bytes"] as? Int, let b = base["packed_bytes"] as? Int, b > 0 {
            out["packed_bytes"] = round3(Double(a) / Double(b))
        }
        if let a = run["generate_16_tokens_seconds"] as? Double, let b = base["generate_16_tokens_seconds"] as? Double, a > 0 {
            out["generate_16_tokens"] = round3(b / a)
        }
        return out
    }

    /// Times vision, prefill, decode and generation on random weights kept at `weights`: today's report.
    func phases(hyper: PaliGemmaHyperparameters, weights: WeightsMode, sgemm rates: (Double, Double)) throws -> [String: Any] {
        let (openblas, packed) = rates
        let sgemm = max(openblas, packed)
        let random = RandomWeights(seed: 1)
        random.weightsMode = weights
        random.gemm = gemm.policy
        let model = try PaliGemmaModel(hyper: hyper, weights: random)
        let choices = gemmChoices()
        let gen = Generator(model: model)
        let v = hyper.vision, d = hyper.decoder
        let s = v.imageSize

        func pixels(_ b: Int) -> Tensor {
            let t = Tensor(zeros: [b, 3, s, s])
            for i in 0..<t.count { t.data[i] = Float((i * 7919) % 255) / 127.5 - 1 }
            return t
        }
        let n = max(1, repeats)
        // Vision.
        let p1 = pixels(1), pb = pixels(visionBatch)
        _ = model.imageFeatures(p1)  // warm-up
        let v1 = best(n) { _ = model.imageFeatures(p1) }
        let vb = best(n) { _ = model.imageFeatures(pb) }
        let visionFlops = Double(FLOPs.vision(v) + FLOPs.projector(v, textWidth: d.width))

        // Prefill of image tokens + prompt, last-row logits.
        let ids = Array(repeating: hyper.imageTokenID, count: v.tokens) + [hyper.bosID]
            + (0..<promptTokens).map { 1000 + $0 }
        let features = model.imageFeatures(pixels(1)).reshaped([v.tokens, d.width])
        var cache = model.decoder.makeCache(capacity: ids.count + decodeSteps + 1)
        let prefill = best(n) {
            cache = model.decoder.makeCache(capacity: ids.count + decodeSteps + 1)
            let x = model.embed(ids: ids, imageFeatures: features)
            model.decoder.forward(x, steps: [SequenceStep(tokens: ids.count, cache: cache, prefixLength: ids.count)],
                                  readRows: [ids.count - 1])
            _ = model.decoder.logits(x, rows: [ids.count - 1])
        }
        let prefillFlops = Double(FLOPs.decoder(d, tokens: ids.count, context: ids.count) + FLOPs.head(d, rows: 1))

        // Decode at batch 1 and 8, from copies of the last prefill's cache (the same prompt in every
        // sequence); each timed run starts again from the prefill.
        func decode(batch: Int) -> Double {
            let caches = (0..<batch).map { _ in cache.copy() }
            return best(n) {
                for c in caches { c.truncate(to: ids.count) }
                for step in 0..<decodeSteps {
                    let x = model.decoder.embed(Array(repeating: 1000 + step, count: batch))
                    model.decoder.forward(x, steps: caches.map { SequenceStep(tokens: 1, cache: $0, prefixLength: ids.count) })
                    _ = model.decoder.logits(x, rows: Array(0..<batch))
                }
            } / Double(decodeSteps)
        }
        let d1 = decode(batch: 1), d8 = decode(batch: 8)
        // Batch-1 decode reads every decoder matrix (and the LM head) once per token: its weight bytes
        // per second beside the machine's streaming read rate say how close decode is to the memory limit.
        let decodeBytes = Double(model.decoder.packedBytes)
        let bandwidth = Machine.readBandwidth()
        let fmaPeak = Machine.fmaPeak()

        // End to end: one image, 16 greedy tokens (the transformers figure is 28.6 s at full size).
        let e2e = best(n) {
            _ = gen.generate([GenerationRequest(promptIDs: ids, pixelValues: pixels(1).reshaped([3, s, s]), maxNewTokens: 16)])
        }

        func pct(_ flops: Double, _ seconds: Double) -> Double { (flops / seconds / 1e9) / sgemm }
        let report: [String: Any] = [
            "preset": preset, "vision_layers": v.layers, "text_layers": d.layers,
            "blas_threads": BLAS.threads,
            "weights": weights == .bf16 || weights == .int8 ? weights.rawValue : "f32",
            "packed_bytes": model.packedBytes,
            "repeats": n,
            "sgemm_gflops": round1(sgemm),
            "openblas_sgemm_gflops": round1(openblas),
            "packed_gemm_gflops": round1(packed),
            "gemm_kernel": GEMMKernel.best.description,
            "gemm_policy": gemm.policy.description,
            "gemm_choices": choices,
            // Batched keys first, so `--vision-batch 1` (the same keys) cannot write one key twice.
            "vision": ["images_per_s_batch\(visionBatch)": round3(Double(visionBatch) / vb),
                       "fraction_of_sgemm_batch\(visionBatch)": round3(pct(visionFlops * Double(visionBatch), vb))]
                .merging(["images_per_s_batch1": round3(1 / v1), "seconds_batch1": round3(v1),
                          "fraction_of_sgemm_batch1": round3(pct(visionFlops, v1))]) { _, batch1 in batch1 },
            "prefill": ["tokens": ids.count, "seconds": round3(prefill), "tokens_per_s": round1(Double(ids.count) / prefill),
                        "fraction_of_sgemm": round3(pct(prefillFlops, prefill))],
            "decode": ["seconds_per_step_batch1": round3(d1), "tokens_per_s_batch1": round3(1 / d1),
                       "seconds_per_step_batch8": round3(d8), "tokens_per_s_batch8": round3(8 / d8),
                       "weight_bytes_per_step": Int(decodeBytes),
                       "weight_gb_per_s_batch1": round3(decodeBytes / d1 / 1e9),
                       "fraction_of_read_bandwidth_batch1": round3(decodeBytes / d1 / 1e9 / bandwidth)],
            "read_bandwidth_gb_per_s": round3(bandwidth),
            "fma_peak_gflops": round1(fmaPeak),
            "cpu": Machine.cpuName, "cpu_features": Machine.cpuFeatures,
            "generate_16_tokens_seconds": round3(e2e),
        ]
        return report
    }

    /// Each matrix shape of the model with every candidate kernel's rate per bucket of rows (from the
    /// measured choice: `--gemm auto`) and the kernel its weights were packed for; also printed on stderr.
    func gemmChoices() -> [[String: Any]] {
        guard case .auto(let invariant) = gemm.policy else { return [] }   // one kernel named: nothing chosen
        var rows: [[String: Any]] = []
        for (e, rowLookups) in GEMMChoice.shared.askedEntries {
            let choice = e.choice(batchInvariant: invariant, oursOnly: rowLookups)
            var rates: [String: [String: Double]] = [:]
            var line = "[\(e.n), \(e.k)] \(e.precision):"
            for (kernel, perM) in e.gflops.sorted(by: { $0.key.rawValue > $1.key.rawValue }) {
                rates[kernel.description] = Dictionary(uniqueKeysWithValues: perM.map { (String($0.key), round1($0.value)) })
                line += " \(kernel) " + GEMMChoice.buckets.map { m in perM[m].map { String(format: "%.1f", $0) } ?? "–" }.joined(separator: "/")
            }
            benchLogger.info(.init(stringLiteral: line + " GFLOP/s at M = " + GEMMChoice.buckets.map(String.init).joined(separator: "/") + " → \(choice)" + (rowLookups ? " (rows looked up: ours only)" : "")))
            rows.append(["n": e.n, "k": e.k, "precision": e.precision.rawValue, "gflops": rates, "choice": choice.description,
                         "row_lookups": rowLookups])
        }
        return rows
    }

    /// Loads a checkpoint `repeats` times (the first read may come from disk; the fastest counts) and
    /// prints the rate in source bytes per second, the packed bytes held and the peak RSS.
    func benchLoad(_ dir: URL) throws {
        let bundle = try ModelBundle(directory: dir)
        var fastest = Double.infinity, bytes = 0, held = 0
        for _ in 0..<max(1, repeats) {
            let checkpoint = try Checkpoint(directory: dir)
            checkpoint.weightsMode = weightsModes[0]
            checkpoint.gemm = gemm.policy
            let start = DispatchTime.now()
            let model = try PaliGemmaModel(hyper: bundle.hyper, weights: checkpoint)
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
            fastest = min(fastest, seconds)
            bytes = checkpoint.matrixBytesLoaded
            held = model.packedBytes
            benchLogger.info(.init(stringLiteral: String(format: "loaded %.2f GB of matrices in %.2f s (%.2f GB/s)",
                                                         Double(bytes) / 1e9, seconds, Double(bytes) / 1e9 / seconds)))
        }
        let report: [String: Any] = [
            "model": dir.path, "weights": weightsModes[0].description, "threads": BLAS.threads,
            "matrix_bytes": bytes, "packed_bytes": held, "load_seconds": round3(fastest),
            "load_gb_per_s": round3(Double(bytes) / 1e9 / fastest),
            "peak_rss_bytes": ProcessMemory.peakResidentBytes ?? 0,
        ]
        let data = try JSONSerialization.data(withJSONObject: report, options: [.sortedKeys, .prettyPrinted])
        print(String(decoding: data, as: UTF8.self))
    }

    /// The machine's sgemm rate: 2048³ (A·Bᵀ), 1 warm-up, then the fastest of `max(5, repeats)` runs of
    /// 4 products (the same best-of policy as the phases, so neither side gains from background load).
    func measureSGEMM() -> Double {
        BLAS.withOpenBLASThreads(BLAS.threads) {
            rate2048 { a, b, c, n in
                BLAS.sgemm(m: n, n: n, k: n, a: a.data, lda: n, b: b.data, ldb: n, transposeB: true, c: c.data, ldc: n)
            }
        }
    }

    /// Our packed-weight kernel on the same product, same policy (the weight packed once, untimed).
    func measurePackedGEMM() -> Double {
        var packed: PackedWeight?
        return rate2048 { a, b, c, n in
            let w = packed ?? PackedWeight(b)
            packed = w
            Linear.forward(a.data, rows: n, inFeatures: n, weight: w, bias: nil, into: c.data)
        }
    }

    /// GFLOP/s of `product` (C = A·Bᵀ, 2048³) under the policy above; its first call is the warm-up.
    func rate2048(_ product: (Tensor, Tensor, Tensor, Int) -> Void) -> Double {
        let n = 2048
        let a = Tensor(zeros: [n, n]), b = Tensor(zeros: [n, n]), c = Tensor(zeros: [n, n])
        for i in 0..<a.count { a.data[i] = Float(i % 13) * 0.01; b.data[i] = Float(i % 7) * 0.01 }
        product(a, b, c, n)
        let reps = 4
        let t = best(max(5, repeats)) { for _ in 0..<reps { product(a, b, c, n) } }
        return 2 * Double(n * n * n) * Double(reps) / t / 1e9
    }
}

func time(_ body: () -> Void) -> Double {
    let start = DispatchTime.now().uptimeNanoseconds
    body()
    return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
}
/// The fastest of `n` timed runs of `body`.
func best(_ n: Int, _ body: () -> Void) -> Double {
    (0..<max(1, n)).map { _ in time(body) }.min()!
}
func round1(_ x: Double) -> Double { (x * 10).rounded() / 10 }
func round3(_ x: Double) -> Double { (x * 1000).rounded() / 1000 }
/// Notes on stderr as the benchmark goes (the numbers themselves go to stdout).
let benchLogger = Logger(label: "paligemma bench")

/// What machine the numbers come from.
enum Machine {
    /// /proc/cpuinfo's "model name" with its family/model/stepping (virtual machines often hide the name).
    static var cpuName: String { CPUInfo.name }

    /// ISA extensions our kernels care about (CPUID + XGETBV).
    static var cpuFeatures: String { String(cString: pg_cpu_features()) }

    /// Multiply-add peak in GFLOP/s on `Parallel.threads` threads at once: independent FMA chains in
    /// registers (`pg_fma_peak_loop`, the widest vectors our kernels use here), best of 5 runs of 240
    /// million FMAs a thread (~0.04 s at 3 GHz with AVX2). No product can beat it; the phases' rates
    /// read against it say what is left.
    static func fmaPeak() -> Double {
        // Threads of its own: GCD's concurrentPerform sometimes ran both parts on one thread (half the peak).
        let threads = max(1, Parallel.threads), rounds = 20_000_000
        var best = 0.0
        for _ in 0..<5 {
            let done = DispatchSemaphore(value: 0)
            let flops = UnsafeMutablePointer<Double>.allocate(capacity: threads)
            let start = DispatchTime.now()
            for t in 0..<threads {
                let slot = Int(bitPattern: flops + t)   // an address: Sendable, unlike the pointer
                Thread { UnsafeMutablePointer<Double>(bitPattern: slot)!.pointee = pg_fma_peak_loop(rounds); done.signal() }.start()
            }
            for _ in 0..<threads { done.wait() }
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
            best = max(best, (0..<threads).reduce(0) { $0 + flops[$1] } / seconds / 1e9)
            flops.deallocate()
        }
        return best
    }

    /// Streaming read rate in GB/s on `Parallel.threads` threads: a 1 GiB buffer read whole, best of 5.
    static func readBandwidth() -> Double {
        let count = 1 << 28   // 1 GiB of floats: far beyond any cache
        let buffer = Tensor(zeros: [count])
        for i in stride(from: 0, to: count, by: 1024) { buffer.data[i] = 1 }
        var best = Double.infinity
        for _ in 0..<5 {
            let start = DispatchTime.now()
            Parallel.forEachChunk(count, grain: 1 << 20) { r in
                let s = pg_stream_sum(buffer.data + r.lowerBound, r.count)
                if s.isNaN { print("") }   // keeps the sum (and so the reads) alive
            }
            best = min(best, Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9)
        }
        return Double(count * 4) / best / 1e9
    }
}
