import ArgumentParser
import Foundation
import Logging
import PaliTensor

/// `--gemm` and `--batch-invariant`: which matrix-product kernels the model's matrices use.
struct GEMMOptions: ParsableArguments {
    @Option(help: ArgumentHelp(
        "Matrix-product kernel: auto (each matrix shape's fastest, timed once on this CPU and cached), or one of avx512, avx2, portable (ours), openblas (f32 matrices only), onednn (f32 matrices, and int8 where oneDNN multiplies them with VNNI or AMX; where libdnnl.so.2 is installed).",
        valueName: "auto|NAME"))
    var gemm: String = "auto"

    @Flag(help: "With --gemm auto, choose among batch-invariant kernels only (ours): a record's result never depends on the jobs batched with it, to the last bit. Also set by PALIGEMMA_BATCH_INVARIANT=1.")
    var batchInvariant = false

    func validate() throws {
        guard let policy = GEMMPolicy(name: gemm) else {
            throw ValidationError("--gemm \(gemm): expected auto or one of \(GEMMKernel.allCases.map(\.description).joined(separator: ", "))")
        }
        if case .fixed(let kernel) = policy, !kernel.isAvailable {
            if kernel == .onednn {
                throw ValidationError("--gemm onednn: oneDNN (libdnnl.so.2) could not be loaded: install it (Debian: apt-get install libdnnl2), or unset PALIGEMMA_NO_ONEDNN")
            }
            throw ValidationError("--gemm \(gemm): this CPU cannot run it (it has: \(Machine.cpuFeatures))")
        }
        if batchInvariant, case .fixed(let kernel) = policy, !kernel.isBatchInvariant {
            throw ValidationError("--gemm \(gemm) is not batch invariant: drop --batch-invariant or pick one of ours")
        }
    }

    /// Sends the measured choice's notes (a measurement starting, a cache not used and why) to stderr.
    func logChoices(as label: String) {
        let logger = Logger(label: label)
        GEMMChoice.log = { logger.notice(.init(stringLiteral: $0)) }
    }

    /// The policy the options name; `PALIGEMMA_BATCH_INVARIANT=1` stands for `--batch-invariant`.
    var policy: GEMMPolicy {
        let env = ProcessInfo.processInfo.environment["PALIGEMMA_BATCH_INVARIANT"] == "1"
        return GEMMPolicy(name: gemm, batchInvariant: batchInvariant || env) ?? .auto(batchInvariant: true)
    }
}
