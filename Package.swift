// swift-tools-version:5.10
// paligemma-swift: a CPU-first PaliGemma engine and MPI batch service.
// Layers (dependencies point down only): see docs/architecture.md.
import PackageDescription

// Kernels need AVX2/FMA: swiftc targets baseline x86-64 unless told otherwise (about 20x slower SIMD).
#if arch(x86_64)
let cpuFlags: [SwiftSetting] = [.unsafeFlags(["-target-cpu", "haswell"])]
let cCPUFlags: [CSetting] = [.unsafeFlags(["-mavx2", "-mfma", "-mf16c", "-O3"])]
#else
let cpuFlags: [SwiftSetting] = []
let cCPUFlags: [CSetting] = [.unsafeFlags(["-O3"])]
#endif

let package = Package(
    name: "paligemma-swift",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "paligemma", targets: ["paligemma"]),
        .library(name: "PaliTensor", targets: ["PaliTensor"]),
        .library(name: "PaliWeights", targets: ["PaliWeights"]),
        .library(name: "PaliTokenizer", targets: ["PaliTokenizer"]),
        .library(name: "PaliImage", targets: ["PaliImage"]),
        .library(name: "PaliModels", targets: ["PaliModels"]),
        .library(name: "PaliGeneration", targets: ["PaliGeneration"]),
        // For the fuzz targets (Fuzz/Package.swift), which reach the parsers through products.
        .library(name: "PaliPipeline", targets: ["PaliPipeline"]),
        .library(name: "PaliBatch", targets: ["PaliBatch"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/weichsel/ZIPFoundation", from: "0.9.20"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
    ],
    targets: [
        // C shims: the only places that see C headers.
        .systemLibrary(name: "CBLAS", path: "Sources/CBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CMPI", path: "Sources/CMPI", pkgConfig: "ompi-c",
                       providers: [.apt(["libopenmpi-dev", "openmpi-bin"])]),
        .systemLibrary(name: "CArchive", path: "Sources/CArchive", pkgConfig: "libarchive",
                       providers: [.apt(["libarchive-dev"])]),
        // Our packed-weight SGEMM micro-kernels (AVX-512F / AVX2+FMA / portable C, chosen at run time).
        .target(name: "CKernels", cSettings: cCPUFlags),
        .target(name: "CImageCodecs", cSettings: cCPUFlags,
                linkerSettings: [.linkedLibrary("jpeg"), .linkedLibrary("png16")]),

        // JSON: one value type (key order and number text kept), a strict parser, the encoder of records.
        .target(name: "PaliJSON"),

        // Kernels: Tensor, packed-weight GEMM (CKernels), OpenBLAS for the rest, norms, activations, RoPE, attention.
        .target(name: "PaliTensor", dependencies: ["CBLAS", "CKernels", "PaliJSON"], swiftSettings: cpuFlags),
        // Weights: safetensors (mmap, f32/bf16/f16, sharded index), config.json.
        .target(name: "PaliWeights", dependencies: ["PaliJSON", "PaliTensor", .product(name: "ZIPFoundation", package: "ZIPFoundation"),
                                                   .product(name: "Logging", package: "swift-log")],
                swiftSettings: cpuFlags),
        // Inputs: SentencePiece tokenizer.
        .target(name: "PaliTokenizer"),
        // Inputs: image decode (libjpeg-turbo, libpng), PIL-exact bicubic resize, normalize.
        .target(name: "PaliImage", dependencies: ["CImageCodecs"], swiftSettings: cpuFlags),

        // Models: SigLIP, projector, Gemma / Gemma 2, PaliGemma. Pure: tensors in, tensors out.
        .target(name: "PaliModels", dependencies: ["PaliTensor", "PaliWeights"], swiftSettings: cpuFlags),

        // Generation: prompt format, prefill/decode with KV caches, sampler, task parsers.
        .target(name: "PaliGeneration", dependencies: ["PaliJSON", "PaliModels", "PaliTensor", "PaliTokenizer", "PaliWeights", "PaliImage",
                                                      .product(name: "Logging", package: "swift-log")],
                swiftSettings: cpuFlags),

        // Pipeline: transports (MPI, in-process), wire format, layout and stage planning.
        .target(name: "PaliPipeline", dependencies: ["CMPI", .product(name: "Logging", package: "swift-log")]),
        // Rank program for the real-mpirun tests of PaliPipeline (ring of messages, crash, hang).
        .executableTarget(name: "pipeline-selftest", dependencies: ["PaliPipeline"]),
        // Batch files: manifests (JSONL/CSV/folder, WebDataset tar shards through libarchive), output records, shards, resume, run.json/stats.json, progress.
        .target(name: "PaliBatch", dependencies: ["PaliJSON", "CArchive", .product(name: "Crypto", package: "swift-crypto")]),
        // `paligemma run`: coordinator, vision ranks and decoder stages over a Transport.
        .target(name: "PaliRun", dependencies: ["PaliJSON", "PaliBatch", "PaliPipeline", "PaliGeneration", "PaliModels", "PaliImage",
                                                "PaliTensor", "PaliWeights", .product(name: "Logging", package: "swift-log")],
                swiftSettings: cpuFlags),

        // `paligemma report`: the HTML page over a run's records (images, boxes, masks, errors).
        .target(name: "PaliReport", dependencies: ["PaliBatch", "PaliGeneration", "PaliImage", "PaliJSON"]),

        .executableTarget(
            name: "paligemma",
            dependencies: [
                "PaliTensor", "PaliWeights", "PaliTokenizer", "PaliImage", "PaliModels", "PaliGeneration",
                "PaliJSON", "PaliBatch", "PaliRun", "PaliReport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: cpuFlags),

        .testTarget(name: "PaliJSONTests", dependencies: ["PaliJSON"]),
        .testTarget(name: "PaliTensorTests", dependencies: ["PaliTensor"], swiftSettings: cpuFlags),
        .testTarget(name: "PaliWeightsTests", dependencies: ["PaliWeights", "PaliJSON"]),
        .testTarget(name: "PaliTokenizerTests", dependencies: ["PaliTokenizer"]),
        .testTarget(name: "PaliModelsTests", dependencies: ["PaliModels", "PaliGeneration", "PaliWeights", "PaliTensor", "PaliImage"],
                    swiftSettings: cpuFlags),
        .testTarget(name: "PaliImageTests", dependencies: ["PaliImage", "PaliWeights"]),
        .testTarget(name: "PaliPipelineTests", dependencies: ["PaliPipeline"]),
        .testTarget(name: "PaliBatchTests", dependencies: ["PaliBatch", "PaliJSON"]),
        .testTarget(name: "PaliReportTests", dependencies: ["PaliReport", "PaliBatch", "PaliJSON"]),
        .testTarget(name: "PaliRunTests", dependencies: ["PaliRun", "PaliBatch", "PaliJSON", "PaliGeneration", "PaliImage", "PaliTensor"],
                    swiftSettings: cpuFlags),
        .testTarget(name: "PaliTasksTests", dependencies: ["PaliJSON", "PaliGeneration", "PaliModels", "PaliWeights", "PaliTensor", "PaliImage",
                                                        .product(name: "ZIPFoundation", package: "ZIPFoundation")],
                    swiftSettings: cpuFlags),
    ]
)
